# keisei: setup / test / bench / lint. Every install goes through constraints.txt, which
# pins torch==2.13.0 (the CPU build on this machine), so no CUDA build is ever pulled.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
CONSTRAINTS := constraints.txt
PLUGIN_DIRS := $(sort $(dir $(wildcard plugins/*/pyproject.toml)))
STAMP := $(VENV)/.keisei-setup
# Plugins' build steps (the fused-SE C++ kernel) compile against the installed torch, so
# builds run without isolation; setuptools/wheel/ninja are installed first for that.
PIP_INSTALL := $(PIP) install --disable-pip-version-check --no-build-isolation -c $(CONSTRAINTS)

.PHONY: setup test test-serial test-fast bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS) $(wildcard plugins/*/pyproject.toml) $(wildcard plugins/*/setup.py) $(wildcard plugins/*/csrc/*)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --disable-pip-version-check -q -c $(CONSTRAINTS) "setuptools>=77" wheel ninja torch==2.13.0
	$(PIP_INSTALL) -q -e '.[dev,testing,wandb,plots,pandas]' $(foreach d,$(PLUGIN_DIRS),-e $(d))
	touch $(STAMP)

# The two test trees run as two pytest processes side by side (one per core on a 2-core
# machine: about 12 min instead of about 21 serially); each has its own session-wide
# artifact cache (conftest.py). plugins/' output is printed when both have finished.
test: setup
	@log=$$(mktemp); \
	echo "make test: tests/ here, plugins/ in parallel (its output follows)"; \
	$(BIN)/python -m pytest -q plugins > $$log 2>&1 & plugins_pid=$$!; \
	$(BIN)/python -m pytest -q tests; core=$$?; \
	wait $$plugins_pid; plugins=$$?; \
	echo "--- plugins/"; cat $$log; rm -f $$log; \
	echo "make test: tests/ exit $$core, plugins/ exit $$plugins"; \
	test $$core -eq 0 && test $$plugins -eq 0

test-serial: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

bench: setup
	$(BIN)/keisei bench

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy keisei_core $(foreach d,$(PLUGIN_DIRS),$(wildcard $(d)keisei_plugin_*))

clean:
	rm -rf $(VENV) build results wandb .pytest_cache .mypy_cache .ruff_cache
