"""Sharded matrices: ``keisei bench --shard I/N`` runs the I-th of N shares of a config.

Assignment is a pure function of the config's cells, never of the order they run in:
each cell's identity (model label, strategy, probe, batch size -- the key ``keisei
compare`` matches cells on) is hashed with SHA-256, the cells are sorted by that hash,
and the k-th cell of that order goes to shard ``k mod N + 1``. Every machine of an array
job therefore computes the same partition on its own, the shares differ in size by at
most one cell (a plain ``hash mod N`` leaves some shards empty on small matrices), and
reordering models or probes in the file moves no cell to another shard.

The config fingerprint is a SHA-256 of the resolved config minus what cannot change a
measurement (``output_dir`` and the W&B settings) and with local plugin paths reduced to
their file names (each machine has its own checkout). ``keisei merge`` refuses shards
whose fingerprints differ.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import PurePath
from typing import Any

import attrs

from keisei_core.config.experiment import ExperimentConfig, experiment_to_dict
from keisei_core.errors import ConfigError

CellId = tuple[str, str, str, int]
"""(model label, strategy, probe, batch size): ``CellRecord.key``."""

# Settings that change where results go or how they are tracked, never what is measured.
_NOT_FINGERPRINTED = ("output_dir", "wandb")
_SHARD_TEXT = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@attrs.frozen
class Shard:
    """Share ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __attrs_post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.index <= self.count:
            raise ConfigError(
                f"--shard {self.index}/{self.count}: shards are numbered 1..N with N >= 1, e.g. --shard 1/4"
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = _SHARD_TEXT.match(text)
        if not match:
            raise ConfigError(f"--shard {text!r}: expected I/N, e.g. --shard 2/4 (the 2nd of 4 shares)")
        return cls(int(match.group(1)), int(match.group(2)))

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    def to_dict(self) -> dict[str, int]:
        from keisei_core.serialization import unstructure

        return unstructure(self)  # type: ignore[no-any-return]


def matrix_cells(config: ExperimentConfig) -> list[CellId]:
    """Every cell of the config, in config order (models, strategies, batch sizes, probes)."""
    return [
        (entry.display_name, strategy, probe, batch_size)
        for entry in config.models
        for strategy in config.strategies
        for batch_size in config.batch_sizes
        for probe in config.probes
    ]


def cell_digest(cell: CellId) -> str:
    return hashlib.sha256(json.dumps(list(cell), separators=(",", ":")).encode()).hexdigest()


def assign_shards(cells: Iterable[CellId], count: int) -> dict[CellId, int]:
    """Each cell's shard (1..count): round robin over the cells sorted by their digest."""
    if count < 1:
        raise ValueError(f"shard count must be >= 1, got {count}")
    ordered = sorted(set(cells), key=lambda cell: (cell_digest(cell), cell))
    return {cell: position % count + 1 for position, cell in enumerate(ordered)}


def shard_cells(config: ExperimentConfig, shard: Shard) -> list[CellId]:
    """The cells ``shard`` owns, in config order."""
    cells = matrix_cells(config)
    owner = assign_shards(cells, shard.count)
    return [cell for cell in cells if owner[cell] == shard.index]


def _plugin_name(target: str) -> str:
    return PurePath(target).name if target.endswith(".py") or "/" in target else target


def fingerprint_data(config: ExperimentConfig) -> dict[str, Any]:
    data = experiment_to_dict(config)
    for key in _NOT_FINGERPRINTED:
        data.pop(key, None)
    data["plugins"] = [_plugin_name(str(p)) for p in data.get("plugins", [])]
    return data


def config_fingerprint(config: ExperimentConfig) -> str:
    """``sha256:<hex>`` of the config as it decides what is measured (see the module doc)."""
    text = json.dumps(fingerprint_data(config), sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def short_fingerprint(fingerprint: str, length: int = 12) -> str:
    return fingerprint.split(":", 1)[-1][:length]


def wandb_group(config: ExperimentConfig, fingerprint: str) -> str:
    """The W&B group every shard of one matrix logs to: the config's, else name + fingerprint."""
    return config.wandb.group or f"{config.name}-{short_fingerprint(fingerprint)}"


def describe_shards(indexes: Sequence[int], count: int) -> str:
    return ", ".join(f"{i}/{count}" for i in indexes)
