"""``python -m fodlam.cli``: the ``fodlam`` command."""

import sys

from . import main

sys.exit(main())
