"""One module per ``keisei`` command (discovered automatically)."""
