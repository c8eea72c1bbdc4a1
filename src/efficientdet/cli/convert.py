"""``efficientdet convert``: official TF or effdet checkpoints -> this library's weights (``.safetensors``).

Runs :func:`efficientdet.convert.convert_tf` / :func:`~efficientdet.convert.convert_effdet` and prints what was
read and written. The output carries the model config, so ``efficientdet predict --checkpoint OUT`` and
``Predictor(checkpoint=OUT)`` need nothing else.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from efficientdet.cli.options import add_output_option

if TYPE_CHECKING:
    from efficientdet.convert import Conversion


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert official TensorFlow or effdet checkpoints into .safetensors weights")
    kinds = p.add_subparsers(dest="convert_from", metavar="SOURCE")
    p.set_defaults(func=lambda args: p.print_help() or 2)

    tf = kinds.add_parser("tf", help="an official google/automl checkpoint (folder, prefix or .tar.gz / .tgz)")
    tf.add_argument("checkpoint", help="e.g. efficientdet-d0/ or efficientdet-d0.tar.gz")
    tf.add_argument("--model", metavar="NAME", help="the architecture: official (efficientdet-d0) or registry "
                                                    "(tf_efficientdet_d0) name; default: guessed from the file")
    add_output_option(tf, "output file (.safetensors recommended); optional with --verify", metavar="FILE")
    tf.add_argument("--no-ema", action="store_true", help="the raw weights instead of the EMA weights")
    tf.add_argument("--verify", nargs="+", metavar="NPZ",
                    help="measure fidelity on TF's network input and (optionally) TF's outputs for it: .npz files "
                         "with 'input' [B, H, W, 3] and 'class_p3'.. 'box_p7' (keys merged; layout in "
                         "efficientdet.weights.fidelity); prints ours float32 vs float64, TF float32 vs our "
                         "float64, and with TF's squeeze-excite rounding")
    tf.set_defaults(func=run_tf)

    eff = kinds.add_parser("effdet", help="an effdet (rwightman/efficientdet-pytorch) checkpoint or state dict")
    eff.add_argument("checkpoint", help="e.g. tf_efficientdet_d0_34-f153e0cf.pth or a training checkpoint")
    eff.add_argument("--model", metavar="NAME", required=True, help="the architecture: its effdet model name, e.g. "
                                                                    "tf_efficientdet_d0")
    add_output_option(eff, "output file (.safetensors recommended)", required=True, metavar="FILE")
    eff.add_argument("--no-ema", action="store_true", help="the raw weights when the file also has EMA weights")
    eff.set_defaults(func=run_effdet)


def _usage(out: object, name: str) -> None:
    print(f"use it: efficientdet predict IMAGES --checkpoint {out}")
    print(f"    or: Predictor(checkpoint='{out}') / efficientdet.predict.load_model(checkpoint='{out}') in Python "
          f"(the file carries the config of {name})")


def run_tf(args: argparse.Namespace) -> int:
    from efficientdet.convert import convert_tf
    from efficientdet.errors import ConfigError

    if not args.output and not args.verify:
        raise ConfigError("convert tf needs --output FILE (the converted weights), --verify NPZ, or both")
    done = convert_tf(args.checkpoint, args.output or None, model=args.model, ema=not args.no_ema,
                      verify=args.verify or ())
    config = done.config
    print(f"read {done.tensors_read} TF checkpoint entries from {args.checkpoint} ({_ema_note(done)})")
    print(f"model {config.name}: {config.num_classes} classes, input {config.image_size[0]}x{config.image_size[1]}, "
          f"post-processing {config.postprocess.mode}/{config.postprocess.nms} NMS (official)")
    for line in done.fidelity:
        print(line)
    if done.output is not None:
        print(f"wrote {len(done.state_dict)} tensors -> {done.output}")
        _usage(done.output, config.name)
    return 0


def run_effdet(args: argparse.Namespace) -> int:
    from efficientdet.convert import convert_effdet

    done = convert_effdet(args.checkpoint, args.model, args.output, ema=not args.no_ema)
    config = done.config
    print(f"read {done.tensors_read} tensors from {args.checkpoint} ({_ema_note(done)})")
    print(f"model {config.name}: {config.num_classes} classes, input {config.image_size[0]}x{config.image_size[1]}")
    print(f"wrote {len(done.state_dict)} tensors -> {done.output}")
    _usage(done.output, config.name)
    return 0


def _ema_note(done: Conversion) -> str:
    return f"{'EMA' if done.used_ema else 'raw'} weights{'' if done.has_ema else '; the file has no EMA weights'}"
