"""`python -m colorize.cli COMMAND ...`: the `colorize` command (what submitted jobs run)."""

import sys

from colorize.cli import main

sys.exit(main())
