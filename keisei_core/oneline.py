"""One helper for the one-line error texts keisei prints, records and compares."""

from __future__ import annotations


def one_line(exc: BaseException) -> str:
    """``"TypeName: message"`` with every run of whitespace (newlines too) made one space.

    Plugin failures, cell errors and declined strategies are shown in tables and JSON,
    where a multi-line traceback text would break the layout.
    """
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
