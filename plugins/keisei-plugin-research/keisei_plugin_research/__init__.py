"""keisei-plugin-research: research network families for keisei (cell lattice, experts
with ghosts, square transformer). The plugin module is :mod:`keisei_plugin_research.plugin`."""

__version__ = "0.1.0"
