"""keisei-plugin-inductor: TorchInductor compile strategies and model transforms for keisei.

The entry point is :mod:`keisei_plugin_inductor.plugin` (no torch at import); the
strategies live in :mod:`.compilers`, :mod:`.aot` and :mod:`.transforms` (torch).
"""

from __future__ import annotations

__version__ = "0.1.0"
