"""One helper for the one-line error texts keisei prints, records and compares."""

from __future__ import annotations


def flatten(text: str, *, limit: int | None = None) -> str:
    """``text`` on one line: every run of whitespace (newlines too) made one space, cut to
    end in ``...`` when longer than ``limit`` characters."""
    line = " ".join(text.split())
    if limit is not None and len(line) > limit:
        line = line[: max(0, limit - 3)] + "..."
    return line


def one_line(exc: BaseException, *, limit: int | None = None, with_type: bool = True) -> str:
    """``"TypeName: message"`` with every run of whitespace (newlines too) made one space;
    a message longer than ``limit`` characters is cut to end in ``...``. ``with_type=False``
    gives the message alone (for texts that name the failure themselves).

    Plugin failures, cell errors and declined strategies are shown in tables and JSON,
    where a multi-line traceback text would break the layout.
    """
    text = flatten(str(exc), limit=limit)
    if not with_type:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
