"""Sub-commands of the ``easyedit-split`` CLI (see :mod:`easyedit_split.cli`)."""
