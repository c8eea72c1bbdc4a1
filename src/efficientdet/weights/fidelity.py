"""How close a converted official checkpoint comes to TensorFlow, measured against float64 (``convert --verify``).

Float32 networks with random or badly conditioned weights amplify rounding: two correct float32
implementations can differ far more than 1e-4, and by how much depends on the model. So the figures are
measured per checkpoint and input against a float64 run of this port (the best available answer):

- ``ours_f32``: this port in float32 vs float64, i.e. our own float32 rounding error;
- ``tf_f32``: TF's recorded float32 outputs vs our float64 (TF's rounding error, plus any port error);
- ``ours_vs_tf``: our float32 vs TF's float32 outputs;
- ``tf_se_vs_tf``: the same with TF's float32 squeeze-excite mean reproduced
  (:func:`tf_squeeze_excite_mean`), TF's largest rounding difference to a plain mean (``None`` without SE).

Each is the largest absolute difference on the class logits and on the box outputs. If ``tf_f32`` is
about as large as ``ours_f32`` (or both are below ~1e-3), the conversion is right and the rest is rounding;
a conversion mistake (wrong weight set, layout or epsilon) shows as errors of order 1.

TF's outputs come as ``.npz`` files (keys merged over all files given; the official fixtures in
``shared/reference/tf-official*`` have this layout):

- ``input``: float32 ``[B, H, W, 3]``, the exact network input (after TF's preprocessing), NHWC;
- ``class_p{L}``, ``box_p{L}`` for every level ``L`` of the model (3 .. 7): TF's raw head outputs for
  ``input``, float32 ``[B, H_L, W_L, A * K]`` and ``[B, H_L, W_L, A * 4]`` (NHWC, channel ``a * K + k``),
  from the same weight set as the conversion (EMA unless ``--no-ema``). Optional: without them only
  ``ours_f32`` is measured.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import types
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from efficientdet.errors import WeightsError
from efficientdet.structures import HeadOutputs

TF_MEAN_LANES = 4
"""Partial sums of TF's float32 spatial mean (Eigen's reduction over 4-float SSE packets)."""


def tf_squeeze_excite_mean(x: Tensor) -> Tensor:
    """TF's float32 ``reduce_mean`` over H, W of ``x [B, C, H, W]`` (float32) -> ``[B, C, 1, 1]``.

    Eigen sums the ``H * W`` positions (NHWC order) in :data:`TF_MEAN_LANES` running float32 sums, position
    ``i`` into sum ``i % 4`` (in order), then adds the four and divides by ``H * W``. Its rounding differs
    from PyTorch's pairwise mean by up to ~1e-6 relative, which these networks amplify (D0: 2e-3 on logits).
    """
    b, c, h, w = x.shape
    flat = x.detach().permute(0, 2, 3, 1).reshape(b, h * w, c).cpu()
    lanes = torch.nn.functional.pad(flat, (0, 0, 0, (-h * w) % TF_MEAN_LANES)).reshape(b, -1, TF_MEAN_LANES, c)
    running = np.cumsum(lanes.numpy(), axis=1, dtype=np.float32)[:, -1]  # sequential float32 sums per lane
    total = running.sum(axis=1, dtype=np.float32)
    return torch.from_numpy(total / np.float32(h * w)).to(x.device).reshape(b, c, 1, 1)


def _tf_se_forward(self: nn.Module, x: Tensor) -> Tensor:
    """timm's ``SqueezeExcite.forward`` with :func:`tf_squeeze_excite_mean` as the squeeze."""
    return x * self.gate(self.conv_expand(self.act1(self.conv_reduce(tf_squeeze_excite_mean(x)))))


def _squeeze_excites(model: nn.Module) -> list[nn.Module]:
    from timm.models._efficientnet_blocks import SqueezeExcite

    return [m for m in model.modules() if isinstance(m, SqueezeExcite)]


@contextlib.contextmanager
def tf_squeeze_excite(model: nn.Module) -> Iterator[int]:
    """Within the block, ``model``'s squeeze-excite layers use TF's float32 mean; yields how many there are."""
    layers = _squeeze_excites(model)
    for layer in layers:
        layer.forward = types.MethodType(_tf_se_forward, layer)
    try:
        yield len(layers)
    finally:
        for layer in layers:
            del layer.forward


@dataclasses.dataclass(frozen=True)
class Fidelity:
    """Largest absolute differences ``(class logits, box outputs)`` of one checkpoint on one input batch."""

    model: str
    input_shape: tuple[int, ...]
    logit_range: tuple[float, float]
    ours_f32: tuple[float, float]
    tf_f32: tuple[float, float] | None = None
    ours_vs_tf: tuple[float, float] | None = None
    tf_se_vs_tf: tuple[float, float] | None = None

    def lines(self) -> list[str]:
        """A readable report, one figure per line."""

        def pair(v: tuple[float, float] | None) -> str:
            return "-" if v is None else f"class logits {v[0]:.1e}, box outputs {v[1]:.1e}"

        b, _, h, w = self.input_shape
        out = [f"fidelity of {self.model} on {b} input(s) of {h}x{w} (logits in [{self.logit_range[0]:.1f}, "
               f"{self.logit_range[1]:.1f}]), largest absolute differences:",
               f"  ours float32 vs ours float64:            {pair(self.ours_f32)}"]
        if self.tf_f32 is not None:
            out += [f"  TF float32 vs ours float64:              {pair(self.tf_f32)}",
                    f"  ours float32 vs TF float32:              {pair(self.ours_vs_tf)}",
                    "  ours float32 with TF's float32 SE mean vs TF float32: "
                    + (pair(self.tf_se_vs_tf) if self.tf_se_vs_tf is not None else "- (no squeeze-excite layers)")]
        return out


def _max_diff(a: HeadOutputs, b: HeadOutputs) -> tuple[float, float]:
    return tuple(float((x.double() - y.double()).abs().max()) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


@torch.no_grad()
def measure_fidelity(model: nn.Module, inputs: Tensor, tf_outputs: HeadOutputs | None = None) -> Fidelity:
    """Compare ``model`` (an :class:`~efficientdet.modeling.detector.EfficientDet`) in float32 and float64 on
    ``inputs [B, 3, H, W]`` (the exact network input), and with TF's ``tf_outputs`` (flattened like the model's
    ``HeadOutputs``: ``[B, N, K]``, ``[B, N, 4]``) when given. Runs on the model's device."""
    model = model.eval()
    x = inputs.to(next(model.parameters()).device, torch.float32)
    ours = model(x)
    exact = copy.deepcopy(model).double()(x.double())
    lo, hi = float(exact.cls_logits.min()), float(exact.cls_logits.max())
    result = Fidelity(getattr(model.config, "name", type(model).__name__), tuple(x.shape), (lo, hi),
                      _max_diff(ours, exact))
    if tf_outputs is None:
        return result
    tf_outputs = HeadOutputs(*(t.to(x.device) for t in tf_outputs))
    if tuple(tf_outputs.cls_logits.shape) != tuple(ours.cls_logits.shape) or tuple(
            tf_outputs.box_deltas.shape) != tuple(ours.box_deltas.shape):
        raise WeightsError(f"TF's outputs have shapes {tuple(tf_outputs.cls_logits.shape)} and "
                           f"{tuple(tf_outputs.box_deltas.shape)}, the model's {tuple(ours.cls_logits.shape)} and "
                           f"{tuple(ours.box_deltas.shape)}: are they from this model and input?")
    with tf_squeeze_excite(model) as layers:
        tf_se = model(x) if layers else None
    return dataclasses.replace(result, tf_f32=_max_diff(tf_outputs, exact), ours_vs_tf=_max_diff(ours, tf_outputs),
                               tf_se_vs_tf=None if tf_se is None else _max_diff(tf_se, tf_outputs))


def read_verify_npz(paths: Sequence[str | Path], levels: Sequence[int]) -> tuple[Tensor, HeadOutputs | None]:
    """The network input ``[B, 3, H, W]`` and TF's flattened outputs (or ``None``) from ``.npz`` files in the
    layout of the module docstring (keys merged over ``paths``; a later file wins)."""
    arrays: dict[str, np.ndarray] = {}
    where: dict[str, Path] = {}
    for p in map(Path, paths):
        if not p.is_file():
            raise WeightsError(f"--verify file {p} does not exist")
        try:
            with np.load(p) as data:
                for key in data.files:
                    arrays[key], where[key] = data[key], p
        except (OSError, ValueError) as err:
            raise WeightsError(f"--verify file {p} is not a readable .npz archive ({err})") from err
    names = ", ".join(str(p) for p in paths)
    if "input" not in arrays:
        raise WeightsError(f"no 'input' array in {names}: it needs the network input as 'input', float32 "
                           "[B, H, W, 3] (NHWC), and optionally TF's outputs 'class_p3', 'box_p3', ...")
    x = arrays["input"]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise WeightsError(f"'input' in {where['input']} has shape {x.shape}; expected [B, H, W, 3] (NHWC)")
    inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).permute(0, 3, 1, 2).contiguous()
    keys = [f"{kind}_p{level}" for kind in ("class", "box") for level in levels]
    present = [k for k in keys if k in arrays]
    if not present:
        return inputs, None
    if len(present) != len(keys):
        missing = [k for k in keys if k not in arrays]
        raise WeightsError(f"{names} hold some of TF's outputs but not {', '.join(missing)}; give all of "
                           f"{', '.join(keys)} (or none)")
    b = inputs.shape[0]

    def flat(kind: str, width: int | None) -> Tensor:
        parts = []
        for level in levels:
            a = arrays[f"{kind}_p{level}"]
            if a.ndim != 4 or a.shape[0] != b:
                raise WeightsError(f"'{kind}_p{level}' in {where[f'{kind}_p{level}']} has shape {a.shape}; "
                                   f"expected [{b}, H, W, channels] (NHWC, batch of 'input')")
            parts.append(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).reshape(b, -1, width or 1))
        return torch.cat(parts, dim=1)

    box = flat("box", 4)
    anchors = box.shape[1]
    per_anchor = sum(arrays[f"class_p{level}"][0].size for level in levels) // max(anchors, 1)
    return inputs, HeadOutputs(flat("class", per_anchor), box)


__all__ = ["TF_MEAN_LANES", "Fidelity", "measure_fidelity", "read_verify_npz", "tf_squeeze_excite",
           "tf_squeeze_excite_mean"]
