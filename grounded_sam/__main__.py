"""``python -m grounded_sam``: see :mod:`grounded_sam.cli`."""

import sys

from grounded_sam.cli import main

sys.exit(main())
