"""Non-maximum suppression: batched hard NMS, and a fixed-shape greedy NMS (hard or Gaussian soft).

Boxes are ``xyxy`` pixels. Both functions follow TensorFlow's ``NonMaxSuppressionV5`` (what the official
EfficientDet uses): candidates are visited by descending score; a box is suppressed when its IoU with a
selected box is ``> iou_threshold``; in soft mode a score is multiplied by ``exp(-IoU^2 / sigma)`` for
every selected box and ``iou_threshold`` is not used; candidates whose score is ``<= score_threshold``
are dropped.

Ties: among exactly equal scores the candidate with the lower index goes first, as in TF's kernel, whose
priority queue orders equal scores by box index. In soft mode this includes a decayed score that lands
exactly on another candidate's score: the lower index wins, whatever the two scores were before. Where
the candidates are not in the order of TF's box indices (a best-first prefix of the anchors),
:func:`greedy_nms` takes those indices as ``ids``.

TF's soft-NMS keeps a priority queue and re-scores a candidate lazily, when it reaches the top. That
selects the same boxes, in the same order, as the eager greedy loop used here (select the highest
current score, lowest index among equal ones, decay all others), up to float rounding of the products:
TF multiplies a candidate's pending decays newest first, in batches, this loop in selection order, so a
decayed score can differ in its last bit. The loop runs once per output slot (``max_outputs``), never
once per candidate, and is batched over images.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torchvision
from torch import Tensor

from efficientdet.ops.boxes import box_areas, paired_box_iou

SOFT_NMS_SIGMA = 0.5
"""Official Gaussian soft-NMS sigma (config convention: decay ``exp(-IoU^2 / sigma)``, TF op sigma 0.25)."""

SOFT_NMS_SCORE_THRESHOLD = 0.001
"""Official score threshold of soft-NMS when none is configured."""

NMS_IOU_THRESHOLD = 0.5
"""Default IoU threshold of hard NMS (official and effdet)."""

PAIRWISE_LIMIT = 1 << 19
"""Largest ``B * C * C`` for which :func:`greedy_nms` precomputes all pairwise effects (cheaper below it)."""


def batched_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float = NMS_IOU_THRESHOLD) -> Tensor:
    """Hard NMS within each group: ``boxes [M, 4]`` xyxy, ``scores [M]``, ``groups [M]`` int -> kept indices ``[K]``.

    Boxes of different groups never suppress each other (use ``group = image * num_classes + class`` to
    run per-image, per-class NMS in one call). The result is sorted by descending score; equal scores
    keep ascending index order on every device. Boxes must be finite. IoUs are computed in float64 (after
    moving each group to its own region), so a result can differ from float32 NMS only for an IoU within
    about 1e-7 of the threshold.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    boxes, groups = boxes[order].double(), groups[order]
    # Move each group to its own region so one NMS call handles all; float64 keeps the IoUs exact enough.
    low, high = boxes.min(), boxes.max()
    offsets = (groups.to(torch.float64) * (high - low + 1.0) - low)[:, None]
    rank = -torch.arange(order.numel(), dtype=torch.float64, device=boxes.device)  # strictly decreasing
    keep = torchvision.ops.nms(boxes + offsets, rank, iou_threshold)
    return order[keep.sort().values]


def is_tracing() -> bool:
    """True while tracing, compiling or exporting (data-dependent shortcuts must be skipped)."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()


def decay_scale(sigma: float) -> float:
    """TF's float32 soft-NMS factor ``-0.5 / (sigma / 2)`` (``= -1 / sigma``, rounded as TF rounds it)."""
    return float(np.float32(-0.5) / np.float32(sigma / 2))


def _effect(iou: Tensor, same_group: Tensor | None, iou_threshold: float, sigma: float) -> Tensor:
    """What selecting a box does to candidates with overlap ``iou`` (float32): the soft-NMS decay factor
    (``sigma > 0``) or the hard-NMS suppression flag. ``same_group``: bool, False where groups differ (no effect).

    The decay is TF's: the exponent ``scale * iou * iou`` in float32, its ``exp`` correctly rounded to float32
    (computed in float64), as the C library's ``expf`` that TF calls; float32 ``torch.exp`` can be an ulp off.
    """
    if same_group is not None:
        iou = iou * same_group
    if sigma > 0:
        return torch.exp((decay_scale(sigma) * iou * iou).double()).float()
    return iou > iou_threshold


def greedy_nms(
    boxes: Tensor,
    scores: Tensor,
    max_outputs: int,
    iou_threshold: float = NMS_IOU_THRESHOLD,
    sigma: float = 0.0,
    score_threshold: float = -math.inf,
    groups: Tensor | None = None,
    ids: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Greedy NMS per image with fixed-shape outputs (traceable for export).

    Inputs: ``boxes [B, C, 4]`` xyxy, ``scores [B, C]``, optional ``groups [B, C]`` int (boxes of different
    groups never suppress each other, e.g. classes). ``sigma > 0`` selects Gaussian soft-NMS (score decay
    ``exp(-IoU^2 / sigma)``, the official config convention; a ``score_threshold`` below 0 counts as 0),
    ``sigma == 0`` hard NMS at ``iou_threshold``. Among equal current scores the candidate with the lowest
    ``ids [B, C]`` (int, distinct within an image; default: the position ``0 .. C-1``) is selected first:
    give the anchor index to break ties as TF does when the candidates are in another order.

    Returns ``indices [B, D]`` int64 into ``C``, ``scores [B, D]`` float32 (decayed scores in soft mode) and
    ``counts [B]`` int64 with ``D = max_outputs``; slots ``>= counts[b]`` hold index 0 and score 0.
    """
    if ids is None:
        return _greedy_nms(boxes, scores, max_outputs, iou_threshold, sigma, score_threshold, groups)
    # Put the candidates in id order, where the loop's "first index among equal maxima" is the lowest id.
    order = ids.argsort(dim=1)
    boxes = boxes.gather(1, order[..., None].expand(-1, -1, boxes.shape[-1]))
    groups = None if groups is None else groups.gather(1, order)
    idx, out_scores, counts = _greedy_nms(boxes, scores.gather(1, order), max_outputs, iou_threshold, sigma,
                                          score_threshold, groups)
    valid = torch.arange(max_outputs, device=counts.device) < counts[:, None]
    return torch.where(valid, order.gather(1, idx), 0), out_scores, counts


def _greedy_nms(
    boxes: Tensor,
    scores: Tensor,
    max_outputs: int,
    iou_threshold: float,
    sigma: float,
    score_threshold: float,
    groups: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`greedy_nms` with ties broken by position (the lowest index among equal maxima)."""
    b, c = scores.shape
    device = scores.device
    indices = torch.zeros(b, max_outputs, dtype=torch.int64, device=device)
    out_scores = torch.zeros(b, max_outputs, dtype=torch.float32, device=device)
    if c == 0 or max_outputs == 0:
        return indices, out_scores, torch.zeros(b, dtype=torch.int64, device=device)
    soft = sigma > 0
    boxes = boxes.float()
    areas = box_areas(boxes)
    # Removed candidates hold `gone`: 0 in soft mode (scores only shrink, so multiplying stays safe),
    # -inf in hard mode. A candidate is selectable while its score is > `floor`.
    floor = max(score_threshold, 0.0) if soft else score_threshold
    gone = torch.tensor(0.0 if soft else -math.inf, device=device)
    current = torch.where(scores > floor, scores.float(), gone)
    rows = torch.arange(b, device=device)
    # The effect of each possible selection on every candidate, precomputed when it is small enough; the
    # diagonal removes the selected box itself.
    table = None
    if b * c * c <= PAIRWISE_LIMIT:
        iou = paired_box_iou(boxes[:, :, None], boxes[:, None], areas[:, :, None], areas[:, None])
        same = None if groups is None else groups[:, :, None] == groups[:, None, :]
        table = _effect(iou, same, iou_threshold, sigma)  # [B, selected, candidate]
        table = table.masked_fill(torch.eye(c, dtype=torch.bool, device=device), 0.0 if soft else True)
    tracing = is_tracing()
    picked: list[Tensor] = []
    picked_scores: list[Tensor] = []
    for _ in range(max_outputs):
        best, idx = current.max(dim=1)  # the first index among equal maxima
        if not tracing and not bool((best > floor).any()):
            break
        picked.append(idx)
        picked_scores.append(best)
        if table is not None:
            effect = table[rows, idx]  # [B, C]
        else:
            iou = paired_box_iou(boxes, boxes[rows, idx][:, None], areas, areas[rows, idx][:, None])
            same = None if groups is None else groups == groups[rows, idx][:, None]
            effect = _effect(iou, same, iou_threshold, sigma)
        current = current * effect if soft else current.masked_fill(effect, -math.inf)
        if table is None:
            current = current.index_put((rows, idx), gone)
    if not picked:
        return indices, out_scores, torch.zeros(b, dtype=torch.int64, device=device)
    found_scores = torch.stack(picked_scores, dim=1)
    found = found_scores > floor
    n = found.shape[1]
    indices[:, :n] = torch.stack(picked, dim=1) * found
    out_scores[:, :n] = torch.where(found, found_scores, 0.0)
    return indices, out_scores, found.sum(dim=1)


def soft_nms(
    boxes: Tensor,
    scores: Tensor,
    max_outputs: int,
    sigma: float = SOFT_NMS_SIGMA,
    score_threshold: float = SOFT_NMS_SCORE_THRESHOLD,
    groups: Tensor | None = None,
    ids: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Gaussian soft-NMS (official defaults) per image: :func:`greedy_nms` with ``sigma > 0``.

    ``boxes [B, C, 4]`` xyxy, ``scores [B, C]`` -> ``indices [B, D]``, decayed ``scores [B, D]``, ``counts [B]``.
    """
    if sigma <= 0:
        raise ValueError(f"soft_nms sigma must be > 0, got {sigma}")
    return greedy_nms(boxes, scores, max_outputs, sigma=sigma, score_threshold=score_threshold, groups=groups,
                      ids=ids)


__all__ = [
    "SOFT_NMS_SIGMA",
    "SOFT_NMS_SCORE_THRESHOLD",
    "NMS_IOU_THRESHOLD",
    "PAIRWISE_LIMIT",
    "is_tracing",
    "batched_nms",
    "greedy_nms",
    "soft_nms",
]
