"""Sharded matrices: the assignment is a stable partition, shards merge back into the
whole matrix, and merge refuses what does not belong together (one clear line each)."""

from __future__ import annotations

import copy
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keisei_core.bench.engine import BenchEngine
from keisei_core.bench.merge import MergeError, merge_results
from keisei_core.bench.results import load_results
from keisei_core.bench.shards import (
    Shard,
    assign_shards,
    config_fingerprint,
    matrix_cells,
    shard_cells,
    wandb_group,
)
from keisei_core.cli.main import main
from keisei_core.config import load_experiment
from keisei_core.config.experiment import ExperimentConfig, ModelEntry, WandbSettings
from keisei_core.errors import ConfigError
from keisei_core.plugins import PluginHost

NAMES = st.text(alphabet="abcdefgh-", min_size=1, max_size=6)


@st.composite
def matrices(draw: Any) -> ExperimentConfig:
    labels = draw(st.lists(NAMES, min_size=1, max_size=4, unique=True))
    return ExperimentConfig(
        models=[ModelEntry("actor-critic", label=label) for label in labels],
        strategies=draw(st.lists(NAMES, min_size=1, max_size=3, unique=True)),
        probes=draw(st.lists(NAMES, min_size=1, max_size=4, unique=True)),
        batch_sizes=draw(st.lists(st.integers(1, 512), min_size=1, max_size=4, unique=True)),
    )


@settings(max_examples=60)
@given(config=matrices(), count=st.integers(1, 9), data=st.data())
def test_shards_partition_the_matrix_stably_and_evenly(config: ExperimentConfig, count: int, data: Any) -> None:
    everything = matrix_cells(config)
    shares = [shard_cells(config, Shard(i, count)) for i in range(1, count + 1)]
    owned = [cell for share in shares for cell in share]
    assert sorted(owned) == sorted(everything)  # every cell once: disjoint and complete
    sizes = [len(share) for share in shares]
    assert max(sizes) - min(sizes) <= 1
    # The assignment depends on the cells, not on the order the config lists them in.
    shuffled = ExperimentConfig(
        models=data.draw(st.permutations(config.models)),
        strategies=data.draw(st.permutations(config.strategies)),
        probes=data.draw(st.permutations(config.probes)),
        batch_sizes=data.draw(st.permutations(config.batch_sizes)),
    )
    assert assign_shards(matrix_cells(shuffled), count) == assign_shards(everything, count)
    for i in range(1, count + 1):
        assert set(shard_cells(shuffled, Shard(i, count))) == set(shares[i - 1])


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "a/b", "3", "1/2/3", ""])
def test_bad_shard_text_is_one_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="--shard"):
        Shard.parse(text)


def test_fingerprint_ignores_output_and_tracking_but_not_the_matrix(tmp_path: Path) -> None:
    base = ExperimentConfig(plugins=[str(tmp_path / "a" / "mine.py")])
    same = ExperimentConfig(
        plugins=[str(tmp_path / "elsewhere" / "mine.py")],
        output_dir="other",
        wandb=WandbSettings(mode="disabled", group="g"),
    )
    assert config_fingerprint(base) == config_fingerprint(same)
    assert config_fingerprint(base) != config_fingerprint(ExperimentConfig(batch_sizes=[1, 65]))
    assert config_fingerprint(base) != config_fingerprint(ExperimentConfig(probe_options={"latency": {"x": 1}}))
    assert wandb_group(base, config_fingerprint(base)).startswith("experiment-")
    assert wandb_group(same, config_fingerprint(same)) == "g"


CONFIG = """
name = "sharded"
models = [
  { name = "actor-critic", options = { input_channels = 4, board_size = 3, num_actions = 40 }, label = "tiny" },
  { name = "actor-critic", options = { input_channels = 4, board_size = 3, num_actions = 50 }, label = "tiny2" },
]
strategies = ["eager"]
probes = ["latency", "flops"]
batch_sizes = [1, 2, 3]
[bench]
warmup_seconds = 0.0
min_samples = 3
max_samples = 5
time_budget_seconds = 0.02
threads = 1
[wandb]
mode = "disabled"
"""


@pytest.fixture(scope="module")
def shard_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The matrix above run as three shards by the real engine."""
    root = tmp_path_factory.mktemp("shards")
    (root / "exp.toml").write_text(textwrap.dedent(CONFIG))
    config = load_experiment(root / "exp.toml")
    host = PluginHost([], include_installed=False, env={}).load()
    paths = []
    for index in (1, 2, 3):
        path = root / f"shard{index}" / "results.json"
        BenchEngine(config, host, path, progress=False, shard=Shard(index, 3)).run()
        paths.append(path)
    return paths


def test_shards_run_their_own_cells_and_merge_back(shard_files: list[Path], tmp_path: Path) -> None:
    config = load_experiment(shard_files[0].parent.parent / "exp.toml")
    for index, path in enumerate(shard_files, start=1):
        results = load_results(path)
        assert results.run["shard"] == {"index": index, "count": 3}
        assert results.run["config_fingerprint"] == config_fingerprint(config)
        assert [c.key for c in results.cells] == shard_cells(config, Shard(index, 3))
        assert all(c.status == "ok" for c in results.cells)
    merged = merge_results(list(reversed(shard_files)))
    assert [c.key for c in merged.cells] == matrix_cells(config)  # config order, whatever the input order
    assert merged.run["status"] == "complete" and merged.run["shard"] is None
    assert [m["shard"]["index"] for m in merged.run["merged_from"]] == [1, 2, 3]
    out = tmp_path / "all.json"
    merged.save(out)
    again = load_results(out)
    assert [c.to_dict() for c in again.cells] == [c.to_dict() for c in merged.cells]


def _edited(path: Path, tmp_path: Path, name: str, edit: Any) -> Path:
    data = json.loads(path.read_text())
    edit(data)
    target = tmp_path / name
    target.write_text(json.dumps(data))
    return target


def test_merge_refusals(shard_files: list[Path], tmp_path: Path) -> None:
    one, two, three = shard_files

    def other_config(data: dict[str, Any]) -> None:
        data["run"]["config_fingerprint"] = "sha256:" + "0" * 64

    with pytest.raises(MergeError, match="different configs"):
        merge_results([one, _edited(two, tmp_path, "c.json", other_config), three])

    def other_torch(data: dict[str, Any]) -> None:
        data["manifest"]["torch"] = "1.0.0"

    with pytest.raises(MergeError, match=r"different environments \(torch: .* vs 1\.0\.0\)"):
        merge_results([one, _edited(two, tmp_path, "e.json", other_torch), three])

    def other_plugin_version(data: dict[str, Any]) -> None:
        data["manifest"]["plugins"][0]["version"] = "0.0.1"

    with pytest.raises(MergeError, match=r"different environments.*plugins"):
        merge_results([one, _edited(two, tmp_path, "p.json", other_plugin_version), three])

    def other_commit(data: dict[str, Any]) -> None:
        data["manifest"]["git"] = {"commit": "f" * 40, "dirty": False}

    warned = merge_results([one, _edited(two, tmp_path, "g.json", other_commit), three])
    assert len(warned.cells) == 12
    if load_results(one).manifest.get("git"):
        assert "different checkouts" in " ".join(warned.run["merge_warnings"])

    with pytest.raises(MergeError, match="shard 1/3 given twice"):
        merge_results([one, two, one])
    with pytest.raises(MergeError, match=r"missing shard\(s\) 2/3"):
        merge_results([one, three])

    partial = merge_results([one, three], allow_missing=True)
    assert partial.run["status"] == "partial" and partial.run["missing_shards"] == [2]

    def drop_cell(data: dict[str, Any]) -> None:
        data["cells"].pop()
        data["run"]["status"] = "interrupted"

    with pytest.raises(MergeError, match=r"shard 2/3 .*interrupted.* lacks 1 cell"):
        merge_results([one, _edited(two, tmp_path, "i.json", drop_cell), three])

    def steal_cell(data: dict[str, Any]) -> None:
        data["cells"].append(copy.deepcopy(json.loads(one.read_text())["cells"][0]))

    with pytest.raises(MergeError, match="not one shard 2/3 of this config owns"):
        merge_results([one, _edited(two, tmp_path, "s.json", steal_cell), three])

    def unsharded(data: dict[str, Any]) -> None:
        data["run"]["shard"] = None

    with pytest.raises(MergeError, match="not a shard"):
        merge_results([_edited(one, tmp_path, "u.json", unsharded), two, three])

    def other_count(data: dict[str, Any]) -> None:
        data["run"]["shard"] = {"index": 2, "count": 4}

    with pytest.raises(MergeError, match="shard 2/4"):
        merge_results([one, _edited(two, tmp_path, "n.json", other_count), three])


def test_merge_command(shard_files: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "merged" / "all.json"
    folders = [str(p.parent) for p in shard_files]  # run folders work as well as files
    assert main(["merge", *folders, "-o", str(out), "--no-table"]) == 0
    assert len(load_results(out).cells) == 12
    assert "merged 3 shard(s), 12 cells" in capsys.readouterr().err
    assert not list(out.parent.glob(".*.tmp"))  # the atomic write left no temporary file

    assert main(["merge", *folders[:2], "-o", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["keisei: error: missing shard(s) 3/3; merge all of them (or pass --allow-missing for a partial file)"]
    assert not (tmp_path / "x.json").exists()

    assert main(["merge", *folders, "-o", str(shard_files[0])]) == 2
    assert "would overwrite one of the shards" in capsys.readouterr().err


class _RecordingTracker:
    groups: list[str | None] = []

    def __init__(self, settings: WandbSettings, out_dir: Path, *, run_name: str) -> None:
        self.groups.append(settings.group)
        self.run_dir = None

    def on_start(self, results: Any) -> None: ...

    def on_cell(self, cell: Any, results: Any) -> None: ...

    def finish(self, results: Any, *, table: str, plots: Any) -> None: ...

    def abort(self) -> None: ...


def test_shards_of_one_matrix_share_a_wandb_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import keisei_core.tracking

    monkeypatch.setattr(keisei_core.tracking, "WandbTracker", _RecordingTracker)
    config = tmp_path / "exp.toml"
    config.write_text(textwrap.dedent(CONFIG).replace('probes = ["latency", "flops"]', 'probes = ["flops"]'))
    for index in (1, 2):
        args = ["bench", str(config), "--shard", f"{index}/2", "--wandb", "offline",
                "--out", str(tmp_path / f"s{index}"), "--no-progress"]
        assert main(args) == 0
    fingerprint = load_results(tmp_path / "s1" / "results.json").run["config_fingerprint"]
    assert _RecordingTracker.groups == [f"sharded-{fingerprint[7:19]}"] * 2
    assert main([*args[:-3], "--out", str(tmp_path / "s3"), "--no-progress", "--set", 'wandb.group="mine"']) == 0
    assert _RecordingTracker.groups[-1] == "mine"
