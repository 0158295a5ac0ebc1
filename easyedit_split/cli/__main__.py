"""``python -m easyedit_split.cli``: the ``easyedit-split`` command line."""

import sys

from easyedit_split.cli import main

sys.exit(main())
