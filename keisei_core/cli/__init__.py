"""The ``keisei`` command line."""
