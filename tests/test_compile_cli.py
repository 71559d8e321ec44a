"""``keisei validate``: the report on stdout, exit 0 compiled/fallback/skipped, 1 failed with
--no-fallback, 2 for usage errors."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from keisei_core.cli.main import main

SMALL = ["--set", "conv_channels=2", "--set", "num_actions=30", "--batch-sizes", "1,3"]

SHIFT_PLUGIN = """
    from keisei_core import hookimpl, StrategySpec
    from keisei_core.compile import add_forward_wrapper


    def shifted(module, inner, obs):
        logits, value = inner(obs)
        return logits + 0.5, value


    @hookimpl
    def keisei_register_compile_strategies(register):
        register(StrategySpec(
            "shift-logits",
            lambda model, context: add_forward_wrapper(model, shifted),
            kind="transform",
        ))
"""


@pytest.fixture
def shift_plugin(tmp_path: Path) -> str:
    path = tmp_path / "shift_plugin.py"
    path.write_text(textwrap.dedent(SHIFT_PLUGIN))
    return str(path)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    out = json.loads(captured.out) if "--json" in argv and captured.out.strip() else captured.out
    return status, out, captured.err


def test_json_report_of_a_validated_strategy(capsys: pytest.CaptureFixture[str]) -> None:
    status, report, _err = _run(capsys, "validate", "actor-critic", "--strategy", "eager", *SMALL, "--json")
    assert status == 0
    assert report["status"] == "compiled" and report["strategy"] == "eager"
    # Declared 1 and 3; validation adds the off-bucket sizes 33 and (3 being declared) 5.
    assert report["declared_batch_sizes"] == [1, 3] and report["modes"] == ["eval", "train"]
    assert report["batch_sizes"] == [1, 3, 5, 33]
    assert report["model_options"]["conv_channels"] == 2
    assert {c["batch_size"] for c in report["checks"]} == {1, 3, 5, 33}
    assert all(c["passed"] for c in report["checks"])


def test_terminal_report_shows_the_worst_difference_per_output(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _err = _run(capsys, "validate", "actor-critic", "-s", "eager", *SMALL, "--eval-only")
    assert status == 0
    assert out.splitlines()[0].startswith("eager: compiled")
    assert "forward.logits" in out and "evaluate_actions.entropy" in out and "train" not in out.split("modes")[1].splitlines()[0]


def test_fallback_exits_0_and_no_fallback_exits_1(capsys: pytest.CaptureFixture[str], shift_plugin: str) -> None:
    status, report, _err = _run(capsys, "validate", "-p", shift_plugin, "actor-critic", "-s", "shift-logits", *SMALL, "--json")
    assert status == 0 and report["status"] == "fallback"
    assert "forward.logits" in report["reason"]
    status, report, _err = _run(
        capsys, "validate", "-p", shift_plugin, "actor-critic", "-s", "shift-logits", *SMALL, "--json", "--no-fallback"
    )
    assert status == 1 and report["status"] == "failed"
    status, report, _err = _run(
        capsys, "validate", "-p", shift_plugin, "actor-critic", "-s", "shift-logits", *SMALL, "--json", "--atol", "1",
    )
    assert status == 0 and report["status"] == "compiled" and report["tolerance"]["atol"] == 1.0


def test_a_skipped_strategy_exits_0_with_the_reason(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    plugin = tmp_path / "cuda_only.py"
    plugin.write_text(textwrap.dedent("""
        from keisei_core import hookimpl, StrategySpec

        @hookimpl
        def keisei_register_compile_strategies(register):
            register(StrategySpec("cuda-thing", lambda model, context: model, devices={"cuda"}))
    """))
    status, report, _err = _run(capsys, "validate", "-p", str(plugin), "actor-critic", "-s", "cuda-thing", *SMALL, "--json")
    assert status == 0 and report["status"] == "skipped"
    assert report["reason"] == "strategy 'cuda-thing' runs on cuda only, not cpu"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["actor-critic", "-s", "egaer"], "unknown strategy 'egaer'; did you mean 'eager'?"),
        (["actor-critc", "-s", "eager"], "unknown model 'actor-critc'; did you mean 'actor-critic'?"),
        (["actor-critic", "-s", "eager", "--set", "conv_channels=0"], "conv_channels"),
        (["actor-critic", "-s", "eager", "--atol", "-1"], "--atol must be >= 0"),
    ],
)
def test_usage_errors_exit_2_with_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    status, _out, err = _run(capsys, "validate", *argv)
    assert status == 2
    line = err.strip().splitlines()[-1]
    assert line.startswith("keisei: error:") and message in line


def test_bad_batch_sizes_are_rejected_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["validate", "actor-critic", "-s", "eager", "--batch-sizes", "1,zero"])
    assert info.value.code == 2
    assert "comma-separated integers" in capsys.readouterr().err
