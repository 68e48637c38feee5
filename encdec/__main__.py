"""`python -m encdec ...` runs the `encdec` command."""

import sys

from .cli import main

sys.exit(main())
