"""keisei-plugin-restower: Keisei's ActorCriticResTower network family for keisei.

The plugin entry point is :mod:`keisei_plugin_restower.plugin`; the network lives in
:mod:`keisei_plugin_restower.network` (imports torch). This package imports neither.
"""

from __future__ import annotations

__version__ = "0.1.0"
