"""float32 sigmoids with a known rounding: correctly rounded, or exactly TensorFlow's on CPU.

Scores decide NMS order, so one ulp matters where two scores are close: a box's order among near-equal
scores, and which boxes survive where many scores saturate at 1.0.

- :func:`rounded_sigmoid`: ``sigmoid(x)`` computed in float64 and rounded once to float32 (the correctly
  rounded value). It returns exactly 1.0 only for ``x >= 17.33`` (float32 ``torch.sigmoid`` from 16.64).
- :func:`tf_sigmoid`: what TensorFlow's float32 ``tf.math.sigmoid`` returns on x86 CPUs, bit for bit.
  TF evaluates Eigen's ``scalar_logistic_op<float>``: in packets of :data:`TF_PACKET_SIZE` floats (its x86
  builds use AVX without FMA, so a multiply-add rounds twice), ``exp(x)`` from a range-reduced degree-5
  polynomial, then ``e / (1 + e)``; the last ``numel % 8`` elements of the tensor, which fill no packet,
  take the scalar formula ``e = exp(x)`` instead. Both paths clamp ``x`` to at most
  :data:`TF_SIGMOID_CLAMP` = 16.6355324 first, where the result is exactly 1.0, so every logit from 16.6355
  up scores 1.0 (the correctly rounded sigmoid reaches 1.0 only at 17.33). Below -104 the packet path
  returns 0. The packet path is off by up to ~4.5 ulp from the correctly rounded value elsewhere.

Checked against the official fixtures (``tests/ops/test_sigmoid.py``): :func:`tf_sigmoid` of TF's logits
equals TF's pre-NMS scores bit for bit on all 49104 D0 and 19206 Lite0 anchors. The scalar tail uses
PyTorch's float32 ``exp`` where TF calls the C library's ``expf``; the two can differ in the last bit,
which changes a tail score by at most one ulp (the six tail anchors of Lite0 match).
"""

from __future__ import annotations

import torch
from torch import Tensor

TF_PACKET_SIZE = 8
"""Floats per SIMD packet in TensorFlow's x86 CPU builds (AVX); the tensor's last ``numel % 8`` use the scalar path."""

TF_SIGMOID_CLAMP = 16.6355324
"""Eigen clamps float32 logits to at most this before the exponential: the sigmoid of anything above is 1.0."""

_LOWER = -104.0  # below this, Eigen's packet path returns exactly 0
_LOG2E = 1.44269504088896341
_LN2_HI, _LN2_LO = -0.693359375, 2.12194440e-4  # Cephes' two-part -ln(2) (the low part has the other sign)
_EXP_POLY = (0.49999141693115234375, 0.16666877269744873046875, 4.1898667812347412109375e-2,
             8.33471305668354034423828125e-3)  # Eigen's degree-5 minimax coefficients p2 .. p5 of exp(r)


def rounded_sigmoid(logits: Tensor) -> Tensor:
    """Correctly rounded float32 ``sigmoid(logits)`` (any shape): computed in float64, rounded once."""
    return logits.double().sigmoid().float()


def _madd(a: Tensor, b: float | Tensor, c: float | Tensor) -> Tensor:
    """``a * b + c`` with two float32 roundings (a multiply-add without FMA); separate ops, never fused."""
    return torch.add(torch.mul(a, b), c)


def _tf_packet_sigmoid(x: Tensor) -> Tensor:
    """Eigen's packet path of the float32 logistic, op for op in float32 (``x`` float32, any shape)."""
    zero = x < _LOWER
    x = torch.clamp(x, max=TF_SIGMOID_CLAMP) * 0.5  # exp(x) = exp(x / 2) ** 2
    m = torch.floor(_madd(x, _LOG2E, 0.5))  # x / 2 = m ln2 + r
    r = _madd(m, _LN2_LO, _madd(m, _LN2_HI, x))
    r2 = r * r
    p2, p3, p4, p5 = _EXP_POLY
    p = _madd(r, _madd(r2, p5, p3), _madd(r2, p4, p2))
    p = _madd(r2, p, r + 1.0)  # exp(r)
    e = p * torch.pow(2.0, m)  # exact: the result stays a normal float
    e = e * e
    return torch.where(zero, 0.0, e / (e + 1.0))


def _tf_scalar_sigmoid(x: Tensor) -> Tensor:
    """Eigen's scalar path of the float32 logistic (``exp`` of the clamped logit, then ``e / (1 + e)``)."""
    e = torch.exp(torch.clamp(x, max=TF_SIGMOID_CLAMP))
    return e / (e + 1.0)


def tf_sigmoid(logits: Tensor) -> Tensor:
    """TensorFlow's float32 ``tf.math.sigmoid(logits)`` on x86 CPUs, bit for bit (see the module docstring).

    ``logits``: float32, any shape; the whole tensor is one TF op call (its last ``numel % 8`` elements in
    row-major order take the scalar path). Returns float32 of the same shape. Only float32 ops that every
    export format keeps (no data-dependent shapes), so traced and exported graphs compute the same.
    """
    x = logits.float().reshape(-1)
    packets = _tf_packet_sigmoid(x)
    # Only the last TF_PACKET_SIZE - 1 elements can be in the tail; which of them are depends on n, taken from
    # tensor ops (not the Python shape), so that traced graphs keep it dynamic.
    last = TF_PACKET_SIZE - 1
    position = torch.ones_like(x, dtype=torch.int64).cumsum(0)  # 1 .. n
    n = position[-1:]
    in_tail = position[-last:] > n - n % TF_PACKET_SIZE
    tail = torch.where(in_tail, _tf_scalar_sigmoid(x[-last:]), packets[-last:])
    return torch.cat([packets[:-last], tail]).reshape(logits.shape)


__all__ = ["TF_PACKET_SIZE", "TF_SIGMOID_CLAMP", "rounded_sigmoid", "tf_sigmoid"]
