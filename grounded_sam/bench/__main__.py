"""``python -m grounded_sam.bench``: see :mod:`grounded_sam.bench.cli`."""

import sys

from grounded_sam.bench.cli import main

sys.exit(main())
