"""The official EfficientDet / effdet box coder (Faster R-CNN style, no scale factors).

Encoding of a box against an anchor (both xyxy pixels), with centres ``(yc, xc)`` and sizes ``(h, w)``:
``ty = (yc - yca) / ha``, ``tx = (xc - xca) / wa``, ``th = log(h / ha)``, ``tw = log(w / wa)``. The encoder adds
:data:`ENCODE_EPS` to all four sizes first, as the official and effdet encoders do (it keeps ``log`` finite
for empty boxes), and computes centres as ``min + size / 2`` where the decoder uses ``(min + max) / 2``
(equal up to rounding; kept so that targets match the references bit for bit). Both directions compute in float32 (or float64 when given) and never in half precision.
"""

from __future__ import annotations

import torch
from torch import Tensor

ENCODE_EPS = 1e-7
"""Added to anchor and box heights and widths before encoding (official / effdet value)."""


def _float(t: Tensor) -> Tensor:
    return t if t.dtype == torch.float64 else t.float()


def _centre_size(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(yc, xc, h, w)``; the centre as ``(min + max) / 2``, as the official decoder computes it."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return (y1 + y2) / 2, (x1 + x2) / 2, y2 - y1, x2 - x1


def _centre_size_encoder(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(yc, xc, h, w)``; the centre as ``min + size / 2``, as the official encoder computes it."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    h, w = y2 - y1, x2 - x1
    return y1 + h / 2, x1 + w / 2, h, w


def encode(boxes: Tensor, anchors: Tensor) -> Tensor:
    """Encode ``boxes [..., 4]`` xyxy against ``anchors [..., 4]`` xyxy (broadcast) -> ``[..., 4]`` ``(ty, tx, th, tw)``."""
    yc, xc, h, w = _centre_size_encoder(_float(boxes))
    yca, xca, ha, wa = _centre_size_encoder(_float(anchors))
    ha, wa, h, w = ha + ENCODE_EPS, wa + ENCODE_EPS, h + ENCODE_EPS, w + ENCODE_EPS
    return torch.stack([(yc - yca) / ha, (xc - xca) / wa, torch.log(h / ha), torch.log(w / wa)], dim=-1)


def decode(deltas: Tensor, anchors: Tensor, max_log_scale: float | None = None) -> Tensor:
    """Decode ``deltas [..., 4]`` ``(ty, tx, th, tw)`` against ``anchors [..., 4]`` xyxy (broadcast) -> xyxy ``[..., 4]``.

    The result is float32 (float64 for float64 inputs). ``th`` / ``tw`` are not clamped (as the official
    output); pass ``max_log_scale`` (e.g. ``log(1000 / 16)``) to clamp them from above.
    """
    ty, tx, th, tw = _float(deltas).unbind(-1)
    if max_log_scale is not None:
        th, tw = th.clamp(max=max_log_scale), tw.clamp(max=max_log_scale)
    yca, xca, ha, wa = _centre_size(_float(anchors))
    w = torch.exp(tw) * wa
    h = torch.exp(th) * ha
    yc = ty * ha + yca
    xc = tx * wa + xca
    return torch.stack([xc - w / 2.0, yc - h / 2.0, xc + w / 2.0, yc + h / 2.0], dim=-1)


__all__ = ["ENCODE_EPS", "encode", "decode"]
