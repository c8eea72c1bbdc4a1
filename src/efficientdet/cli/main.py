"""``efficientdet`` command: dispatches to one module per sub-command, behind one error boundary.

Each module ``efficientdet.cli.<name>`` defines ``register(subparsers)``, which adds its parser and sets
``func`` (called with the parsed namespace, returning an exit code). Modules import heavy libraries
inside ``func`` so that ``--help`` stays fast.

Error boundary (:func:`run_command`): a user mistake (an :class:`~efficientdet.errors.EfficientDetError`, a
file that cannot be read or written, a missing optional package, running out of memory) ends in one line
``error: ...`` on stderr and exit code 2; anything else is a bug in this library: a short message that says
so and how to see the traceback, exit code 1. ``--debug`` (anywhere on the command line) or the environment
variable ``EFFICIENTDET_DEBUG=1`` prints the full traceback as well.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback

# OpenMP threads that busy-wait make small and shared machines many times slower (measured 10-20x on 2 cores
# under contention); set before torch is imported, and only when the user has not chosen. For the same reason the
# commands that run onnxruntime pass it ``spinning=False`` (an argument; nothing reads this variable back).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

COMMANDS = ("demo", "models", "data", "train", "validate", "predict", "export", "convert", "benchmark", "checkpoint")

DEBUG_FLAG = "--debug"
DEBUG_ENV = "EFFICIENTDET_DEBUG"
EXIT_USER_ERROR = 2
EXIT_BUG = 1
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    from efficientdet import __version__
    from efficientdet.cli.options import EPILOG

    parser = argparse.ArgumentParser(prog="efficientdet", description="EfficientDet object detection.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"efficientdet {__version__}")
    parser.add_argument(DEBUG_FLAG, action="store_true",
                        help=f"print the full traceback of an error (also: {DEBUG_ENV}=1); may follow the command too")
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


def _pop_debug(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` without ``--debug`` (accepted before or after the sub-command, up to a ``--``)."""
    end = argv.index("--") if "--" in argv else len(argv)
    kept = [a for a in argv[:end] if a != DEBUG_FLAG] + argv[end:]
    return kept, len(kept) != len(argv) or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def user_error_message(err: BaseException) -> str | None:
    """The one-line message for an exception caused by the user's input or machine; ``None`` for a bug."""
    from efficientdet.errors import EfficientDetError

    if isinstance(err, EfficientDetError):
        return str(err)
    if isinstance(err, OSError) and getattr(err, "filename", None) is not None:
        what = {
            FileNotFoundError: "does not exist",
            IsADirectoryError: "is a folder, a file is expected here",
            NotADirectoryError: "is not a folder (or a part of its path is a file)",
            PermissionError: "is not accessible: permission denied",
        }.get(type(err), err.strerror or str(err))
        names = " -> ".join(str(n) for n in (err.filename, getattr(err, "filename2", None)) if n is not None)
        return f"{names} {what}"
    if isinstance(err, OSError) and err.errno is not None:  # e.g. disk full while writing
        return f"{err.strerror or err} ({type(err).__name__})"
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return f"out of memory ({str(err).splitlines()[0] if str(err) else type(err).__name__}); lower --batch-size " \
               "or --image-size, or use another device"
    if isinstance(err, ModuleNotFoundError) and err.name:
        return f"this needs the Python package {err.name!r}, which is not installed: pip install {err.name}"
    return None


def run_command(func, args: argparse.Namespace, *, debug: bool = False) -> int:  # noqa: ANN001
    """Run ``func(args)``: its exit code, or one ``error:`` line (and the traceback with ``debug``)."""
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - this is the boundary: nothing passes it as a raw traceback
        if debug:
            traceback.print_exc()
        message = user_error_message(err)
        if message is not None:
            print(f"error: {message}", file=sys.stderr)
            return EXIT_USER_ERROR
        text = str(err).splitlines()[0] if str(err) else ""
        print(f"error: internal error ({type(err).__name__}{': ' + text if text else ''}). This is a bug in "
              "efficientdet, not in your input.", file=sys.stderr)
        if not debug:
            print(f"Run the same command with {DEBUG_FLAG} (or {DEBUG_ENV}=1) to see the traceback, and report it "
                  "with the traceback to the project's issue tracker", file=sys.stderr)
        return EXIT_BUG


class _LevelFormatter(logging.Formatter):
    """``warning: message``: the library's log lines, styled like the CLI's ``error:`` lines."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {text}"


def _setup_logging() -> None:
    """Show the library's ``logging`` messages (INFO and above) on stderr, unless the caller set up logging."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LevelFormatter("%(message)s"))
    root.addHandler(handler)
    pkg = logging.getLogger("efficientdet")
    if pkg.level == logging.NOTSET:
        pkg.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    argv, debug = _pop_debug(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself prints usage + one error line and exits 2
    if getattr(args, "func", None) is None:
        parser.print_help()
        return EXIT_USER_ERROR
    _setup_logging()
    return run_command(args.func, args, debug=debug or args.debug)


if __name__ == "__main__":
    sys.exit(main())
