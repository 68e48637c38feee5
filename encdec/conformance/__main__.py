"""`python -m encdec.conformance`: the same as `encdec conformance`."""

import sys

from .cli import main

sys.exit(main())
