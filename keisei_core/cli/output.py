"""Terminal tables and JSON on stdout; warnings and errors go to stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from keisei_core.text_table import format_table

__all__ = ["format_table", "print_json", "print_table"]


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def print_table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    print(format_table(rows, headers))
