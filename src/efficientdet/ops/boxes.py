"""Box helpers beyond :mod:`torchvision.ops` (which provides ``box_iou``, ``box_convert``, ``box_area``...).

Boxes are ``xyxy`` float pixels unless a name says otherwise.
"""

from __future__ import annotations

import torch
from torch import Tensor


def swap_xy(boxes: Tensor) -> Tensor:
    """``[..., 4]`` ``xyxy`` <-> ``yxyx`` (the official TF / effdet order); the same swap both ways."""
    return boxes[..., [1, 0, 3, 2]]


def box_areas(boxes: Tensor) -> Tensor:
    """Areas ``[...]`` of xyxy boxes ``[..., 4]`` (negative for inverted boxes)."""
    return (boxes[..., 3] - boxes[..., 1]) * (boxes[..., 2] - boxes[..., 0])


def paired_box_iou(boxes1: Tensor, boxes2: Tensor, area1: Tensor | None = None, area2: Tensor | None = None) -> Tensor:
    """IoU of corresponding boxes: ``[..., 4]`` and ``[..., 4]`` (broadcast) xyxy -> ``[...]``.

    Boxes need ``x1 <= x2`` and ``y1 <= y2``. Pairs with no intersection (empty boxes included) get IoU 0,
    as in TF's NMS kernels; the arithmetic follows TF's ``IOU`` so that NMS matches it bit for bit. ``area1`` / ``area2``: the
    :func:`box_areas` of the inputs when already known.
    """
    wh = (torch.minimum(boxes1[..., 2:], boxes2[..., 2:]) - torch.maximum(boxes1[..., :2], boxes2[..., :2])).clamp(
        min=0
    )
    inter = wh[..., 0] * wh[..., 1]
    area1 = box_areas(boxes1) if area1 is None else area1
    area2 = box_areas(boxes2) if area2 is None else area2
    return (inter / (area1 + area2 - inter)).nan_to_num(nan=0.0)  # 0 / 0 when both boxes are empty


def box_coverage(regions: Tensor, boxes: Tensor) -> Tensor:
    """Fraction of each box's area inside the corresponding region: ``[..., 4]``, ``[..., 4]`` (broadcast) xyxy -> ``[...]``.

    Intersection over the area of ``boxes`` (IoA); 0 for empty boxes.
    """
    wh = (torch.minimum(regions[..., 2:], boxes[..., 2:]) - torch.maximum(regions[..., :2], boxes[..., :2])).clamp(
        min=0
    )
    return (wh[..., 0] * wh[..., 1] / box_areas(boxes)).nan_to_num(nan=0.0, posinf=0.0)


def clip_boxes(boxes: Tensor, size: Tensor) -> Tensor:
    """Clip ``[..., 4]`` xyxy boxes to ``[0, W] x [0, H]``; ``size [..., 2]`` is ``(H, W)`` and broadcasts.

    For boxes ``[B, D, 4]`` pass ``size`` as ``[B, 1, 2]``.
    """
    hw = size.to(boxes.dtype)
    upper = torch.stack([hw[..., 1], hw[..., 0], hw[..., 1], hw[..., 0]], dim=-1)
    return torch.minimum(boxes.clamp(min=0), upper)


__all__ = ["swap_xy", "box_areas", "paired_box_iou", "box_coverage", "clip_boxes"]
