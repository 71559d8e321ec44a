"""The config layer's name for the project's one cattrs converter, which lives in the
foundation (:mod:`keisei_core.serialization`) so that every layer (compile reports,
checkpoints, results) unstructures through it without importing the config layer."""

from __future__ import annotations

from keisei_core.serialization import attrs_has, converter, make_converter, structure, unstructure

__all__ = ["attrs_has", "converter", "make_converter", "structure", "unstructure"]
