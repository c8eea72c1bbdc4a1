"""``efficientdet convert``: official TF or effdet checkpoints -> this library's weights (``.safetensors``).

The output carries the model config (anchors, preprocessing and post-processing of the source), so
``efficientdet predict --checkpoint OUT`` and ``Predictor(checkpoint=OUT)`` need nothing else.
"""

from __future__ import annotations

import argparse

from efficientdet.cli.options import add_output_option


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
    from efficientdet.errors import ConfigError
    from efficientdet.weights.checkpoint import save_inference_weights
    from efficientdet.weights.tf_convert import EMA_SUFFIX, convert_tf_checkpoint
    from efficientdet.weights.tf_reader import list_tf_checkpoint

    if not args.output and not args.verify:
        raise ConfigError("convert tf needs --output FILE (the converted weights), --verify NPZ, or both")
    entries = list_tf_checkpoint(args.checkpoint)
    has_ema = any(k.endswith(EMA_SUFFIX) for k in entries)
    use_ema = has_ema and not args.no_ema
    config, state = convert_tf_checkpoint(args.checkpoint, args.model, use_ema=use_ema)
    print(f"read {len(entries)} TF checkpoint entries from {args.checkpoint} "
          f"({'EMA' if use_ema else 'raw'} weights{'' if has_ema else '; the file has no EMA weights'})")
    print(f"model {config.name}: {config.num_classes} classes, input {config.image_size[0]}x{config.image_size[1]}, "
          f"post-processing {config.postprocess.mode}/{config.postprocess.nms} NMS (official)")
    if args.verify:
        _verify(config, state, args.verify)
    if args.output:
        path = save_inference_weights(state, config, args.output, ema=use_ema)
        print(f"wrote {len(state)} tensors -> {path}")
        _usage(path, config.name)
    return 0


def _verify(config: object, state: dict, paths: list[str]) -> None:
    """Print :func:`~efficientdet.weights.fidelity.measure_fidelity` of the converted weights on ``paths``."""
    from efficientdet.modeling.detector import EfficientDet
    from efficientdet.weights.fidelity import measure_fidelity, read_verify_npz

    model = EfficientDet(config).eval()
    model.load_state_dict(state, strict=False)
    inputs, tf_outputs = read_verify_npz(paths, range(model.config.min_level, model.config.max_level + 1))
    for line in measure_fidelity(model, inputs, tf_outputs).lines():
        print(line)
    if tf_outputs is None:
        print("  (no TF outputs in the files: add class_p*/box_p* to compare with TF)")


def run_effdet(args: argparse.Namespace) -> int:
    from efficientdet.factory import create_model, load_weights
    from efficientdet.weights.checkpoint import ModelCheckpoint, save_inference_weights
    from efficientdet.weights.io import has_ema_weights, load_checkpoint_data, state_dict_from

    data = load_checkpoint_data(args.checkpoint)
    has_ema = has_ema_weights(data)
    use_ema = has_ema and not args.no_ema
    state = state_dict_from(data, use_ema=use_ema, path=args.checkpoint)
    num_classes = ModelCheckpoint(args.checkpoint, state).num_classes
    model = create_model(args.model, num_classes=num_classes)
    load_weights(model, state, source=f"weights in {args.checkpoint}")
    path = save_inference_weights(model.state_dict(), model.config, args.output, ema=use_ema)
    print(f"read {len(state)} tensors from {args.checkpoint} ({'EMA' if use_ema else 'raw'} weights"
          f"{'' if has_ema else '; the file has no EMA weights'})")
    print(f"model {model.config.name}: {model.config.num_classes} classes, input "
          f"{model.config.image_size[0]}x{model.config.image_size[1]}")
    print(f"wrote {len(model.state_dict())} tensors -> {path}")
    _usage(path, model.config.name)
    return 0
