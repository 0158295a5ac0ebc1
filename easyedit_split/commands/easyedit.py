"""``easyedit-split easyedit``: make EasyEdit's unmodified scripts see the plugin (opt-in, undoable)."""

from __future__ import annotations

import argparse
import sys

HELP = "enable/disable/status of automatic registration into EasyEdit in this Python environment"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("enable", "disable", "status"),
                   help="enable: write a .pth file into site-packages that registers the plugin whenever EasyEdit's "
                        "steer.utils.alg_dict is imported; disable: remove it; status: say whether it is there")
    p.add_argument("--keep-upstream", action="store_true",
                   help="(enable) keep EasyEdit's own spilt/sft/reps entries instead of taking them over")
    p.add_argument("--site-dir", default=None, help="site-packages folder to use (default: this interpreter's)")


def run(args: argparse.Namespace) -> int:
    from ..easyedit import autoregister

    if args.action == "enable":
        path = autoregister.enable(args.site_dir, keep_upstream=args.keep_upstream)
        keep = " (keeping EasyEdit's own spilt/sft/reps)" if args.keep_upstream else ""
        sys.stdout.write(f"enabled{keep}: {path}\nundo with: easyedit-split easyedit disable\n")
    elif args.action == "disable":
        path, existed = autoregister.disable(args.site_dir)
        sys.stdout.write(f"disabled: removed {path}\n" if existed else f"was not enabled ({path} does not exist)\n")
    else:
        path, enabled, keep = autoregister.status(args.site_dir)
        if enabled:
            sys.stdout.write(f"enabled{' (keep upstream)' if keep else ''}: {path}\n")
        else:
            sys.stdout.write(f"disabled: {path} does not exist\n")
    return 0
