"""``efficientdet demo``: the whole product on the built-in sample dataset (see efficientdet.demo)."""

from __future__ import annotations

import argparse

from efficientdet.cli.options import add_output_option


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="sample data -> fine-tune Lite0 -> evaluate -> predict -> ONNX, in minutes on a CPU")
    add_output_option(p, "output folder (default demo_output; reused on a second run)", default="demo_output",
                      metavar="DIR")
    p.add_argument("--budget", default="full", choices=["full", "quick"], help="quick: a smaller run for tests")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from efficientdet.demo import run_demo

    run_demo(args.output, args.budget)
    return 0
