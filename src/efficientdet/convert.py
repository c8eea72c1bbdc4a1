"""Converting official TF and effdet checkpoints into this library's weights file: what ``efficientdet convert`` runs.

The file written (``.safetensors`` recommended) carries the model config (anchors, preprocessing and
post-processing of the source), so ``create_model(FILE)``, ``Predictor(checkpoint=FILE)`` and ``efficientdet
predict --checkpoint FILE`` need nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from efficientdet.config import DetectorConfig
from efficientdet.factory import create_model
from efficientdet.weights.checkpoint import load_weights, read_model_checkpoint, save_inference_weights


@dataclass
class Conversion:
    """What a conversion read and wrote.

    ``tensors_read``: entries of the source (TF variables, or tensors of the effdet state dict);
    ``has_ema`` / ``used_ema``: whether the source holds EMA weights and whether they were converted;
    ``output``: the file written (``None`` when only verified); ``fidelity``: report lines of ``verify``.
    """

    source: Path
    config: DetectorConfig
    state_dict: dict[str, torch.Tensor]
    tensors_read: int
    has_ema: bool
    used_ema: bool
    output: Path | None = None
    fidelity: list[str] = field(default_factory=list)


def convert_tf(checkpoint: str | os.PathLike[str], output: str | os.PathLike[str] | None = None, *,
               model: str | None = None, ema: bool = True, verify: Sequence[str | os.PathLike[str]] = ()) -> Conversion:
    """Convert an official google/automl checkpoint (folder, prefix or ``.tar.gz`` / ``.tgz``).

    Args:
        checkpoint: the TF checkpoint.
        output: where to write the weights (with the config); ``None`` converts (and verifies) only.
        model: the architecture, official (``efficientdet-d0``) or registry (``tf_efficientdet_d0``) name;
            guessed from the file when omitted.
        ema: the EMA weights when the checkpoint has them (else the raw ones).
        verify: ``.npz`` files with TF's network input (and optionally its outputs), see
            :mod:`efficientdet.weights.fidelity`; the report lines go to :attr:`Conversion.fidelity`.
    """
    from efficientdet.weights.tf_convert import EMA_SUFFIX, convert_tf_checkpoint
    from efficientdet.weights.tf_reader import list_tf_checkpoint

    entries = list_tf_checkpoint(checkpoint)
    has_ema = any(k.endswith(EMA_SUFFIX) for k in entries)
    use_ema = has_ema and ema
    config, state = convert_tf_checkpoint(checkpoint, model, use_ema=use_ema)
    result = Conversion(Path(checkpoint), config, state, len(entries), has_ema, use_ema)
    if verify:
        result.fidelity = _fidelity(config, state, verify)
    if output is not None:
        result.output = save_inference_weights(state, config, output, ema=use_ema)
    return result


def convert_effdet(checkpoint: str | os.PathLike[str], model: str, output: str | os.PathLike[str], *,
                   ema: bool = True) -> Conversion:
    """Convert an effdet (rwightman/efficientdet-pytorch) checkpoint or state dict of architecture ``model`` (its
    effdet name, e.g. ``tf_efficientdet_d0``); the class count is read from the weights. ``ema``: the EMA
    weights when the file has them."""
    read = read_model_checkpoint(checkpoint, use_ema=None if ema else False)
    net = create_model(model, checkpoint_path=read)
    state = net.state_dict()
    path = save_inference_weights(state, net.config, output, ema=read.used_ema)
    return Conversion(Path(checkpoint), net.config, state, len(read.state_dict), read.has_ema, read.used_ema, path)


def _fidelity(config: DetectorConfig, state: dict[str, torch.Tensor], paths: Sequence[str | os.PathLike[str]]
              ) -> list[str]:
    """:func:`~efficientdet.weights.fidelity.measure_fidelity` of the converted weights on ``paths``, as lines."""
    from efficientdet.weights.fidelity import measure_fidelity, read_verify_npz

    model = create_model(config).eval()
    load_weights(model, state, source="the converted weights")
    inputs, tf_outputs = read_verify_npz([str(p) for p in paths], range(config.min_level, config.max_level + 1))
    lines = measure_fidelity(model, inputs, tf_outputs).lines()
    if tf_outputs is None:
        lines.append("  (no TF outputs in the files: add class_p*/box_p* to compare with TF)")
    return lines


__all__ = ["Conversion", "convert_tf", "convert_effdet"]
