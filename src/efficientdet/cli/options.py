"""Options that several commands share, defined once so that a flag means the same thing everywhere.

- ``--model NAME``: a registered architecture (``efficientdet models``; official TF names such as
  ``efficientdet-d0`` are accepted). It never decides the weights on its own:
- ``--pretrained``: the published weights of ``--model`` (downloaded once, cached, hash-checked);
- ``--checkpoint FILE``: weights from a file (which may also name its own architecture);
- neither: random weights, which every command that reports results warns about.
- ``--output PATH``: what the command writes (``--out`` is still accepted, hidden, for older scripts).
"""

from __future__ import annotations

import argparse

EPILOG = """\
options shared by the commands (the same meaning everywhere):
  --model NAME       a registered architecture (`efficientdet models`; official names such as
                     efficientdet-d0 work too); it does not choose the weights by itself:
  --pretrained       load the published weights of --model (downloaded once, then cached)
  --checkpoint FILE  load weights from a file (which may record its own architecture)
                     with neither, the weights are random, and commands that report results warn
  --output PATH      what the command writes (a file or folder)

`efficientdet COMMAND --help` lists the options of one command."""

MODEL_HELP = ("registered architecture (`efficientdet models`; official names like efficientdet-d0 work too); its "
              "weights come from --pretrained or --checkpoint, else they are random")
PRETRAINED_HELP = "load the published weights of --model (downloaded once, then cached)"


def add_model_options(p: argparse.ArgumentParser, checkpoint_help: str, *, model_help: str = MODEL_HELP,
                      pretrained_help: str = PRETRAINED_HELP, pretrained_default: bool | None = False) -> None:
    """``--model``, ``--pretrained`` and ``--checkpoint`` with the shared meaning (see the module docstring).

    ``--no-pretrained`` (the old spelling of "random weights" in predict / export) is accepted, hidden.
    """
    p.add_argument("--model", metavar="NAME", help=model_help)
    p.add_argument("--pretrained", action="store_true", default=pretrained_default, help=pretrained_help)
    p.add_argument("--no-pretrained", dest="pretrained", action="store_false", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    p.add_argument("--checkpoint", metavar="FILE", help=checkpoint_help)


def add_output_option(p: argparse.ArgumentParser, help: str, *, default: str | None = None,
                      required: bool = False, metavar: str = "PATH") -> None:
    """``--output PATH`` (``--out`` is a hidden alias kept for scripts written before the rename)."""
    group = p.add_mutually_exclusive_group(required=required)
    group.add_argument("--output", default=default, metavar=metavar, help=help)
    group.add_argument("--out", dest="output", default=argparse.SUPPRESS, metavar=metavar, help=argparse.SUPPRESS)
