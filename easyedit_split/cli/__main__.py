"""``python -m easyedit_split.cli``: the ``easyedit-split`` command line."""

import sys

from easyedit_split.cli import main

if __name__ == "__main__":  # not when a package walk imports this module
    sys.exit(main())
