"""``python -m keisei_core`` is the ``keisei`` command."""

import sys

from keisei_core.cli.main import main

sys.exit(main())
