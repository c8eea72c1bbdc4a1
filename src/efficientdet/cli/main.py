"""``efficientdet`` command: dispatches to one module per sub-command.

Each module ``efficientdet.cli.<name>`` defines ``register(subparsers)``, which adds its parser and sets
``func`` (called with the parsed namespace, returning an exit code). Modules import heavy libraries
inside ``func`` so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# OpenMP threads that busy-wait make small and shared machines many times slower (measured 10-20x on 2 cores
# under contention); set before torch is imported, and only when the user has not chosen.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

COMMANDS = ("demo", "models", "data", "train", "validate", "predict", "export", "convert", "benchmark", "checkpoint")


def build_parser() -> argparse.ArgumentParser:
    from efficientdet import __version__
    from efficientdet.cli.options import EPILOG

    parser = argparse.ArgumentParser(prog="efficientdet", description="EfficientDet object detection.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"efficientdet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"efficientdet.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"efficientdet.cli.{name}":
                continue  # command not part of this build
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    from efficientdet.errors import EfficientDetError

    try:
        return int(args.func(args) or 0)
    except EfficientDetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
