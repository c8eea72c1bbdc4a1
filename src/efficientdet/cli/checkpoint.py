"""``efficientdet checkpoint``: average the last checkpoints of a run, or clean one into inference weights."""

from __future__ import annotations

import argparse

from efficientdet.cli.options import add_output_option


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("checkpoint", help="average or clean training checkpoints")
    cmd = p.add_subparsers(dest="checkpoint_command", metavar="ACTION")
    avg = cmd.add_parser("average", help="average the weights of several checkpoints (e.g. the last N epochs)")
    avg.add_argument("paths", nargs="*", help="checkpoint files (or use --run DIR --last N)")
    avg.add_argument("--run", help="a training output folder holding epoch_*.pth files")
    avg.add_argument("--last", type=int, default=5, help="with --run: how many of the latest epoch_*.pth (default 5)")
    add_output_option(avg, "output file (.safetensors)", required=True, metavar="FILE")
    avg.add_argument("--raw", action="store_true", help="average the raw weights instead of the EMA weights")
    avg.set_defaults(func=run_average)
    clean = cmd.add_parser("clean", help="strip optimizer state: inference weights named <name>-<sha8>.safetensors")
    clean.add_argument("path", help="a training checkpoint (last.pth / best.pth)")
    add_output_option(clean, "output folder (default: current folder)", default=".", metavar="DIR")
    clean.add_argument("--raw", action="store_true", help="keep the raw weights instead of the EMA weights")
    clean.add_argument("--name", help="file name stem (default: the model name)")
    clean.set_defaults(func=run_clean)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def run_average(args: argparse.Namespace) -> int:
    from pathlib import Path

    from efficientdet.engine.checkpoint import average_checkpoints
    from efficientdet.errors import ConfigError

    paths = [Path(p) for p in args.paths]
    if args.run:
        found = sorted(Path(args.run).glob("epoch_*.pth"))
        if not found:
            raise ConfigError(f"{args.run} has no epoch_*.pth files; train with --set save_every_epochs=1")
        paths += found[-args.last:]
    out = average_checkpoints(paths, args.output, use_ema=False if args.raw else None)
    print(f"averaged {len(paths)} checkpoints -> {out}")
    return 0


def run_clean(args: argparse.Namespace) -> int:
    from efficientdet.engine.checkpoint import clean_checkpoint

    out = clean_checkpoint(args.path, args.output, use_ema=False if args.raw else None, name=args.name)
    print(f"inference weights -> {out}\nuse them with: efficientdet predict IMAGES --checkpoint {out}")
    return 0
