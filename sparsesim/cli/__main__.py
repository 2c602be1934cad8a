"""``python -m sparsesim.cli``: the command line."""

import sys

from sparsesim.cli import main

sys.exit(main())
