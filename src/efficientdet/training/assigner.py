"""Anchor target assignment (the official / effdet IoU matcher), vectorised over the batch.

Each anchor takes the ground-truth box with the highest IoU (ties: the first box). It is positive when
that IoU is ``>= match_threshold``, background when ``< unmatched_threshold`` and ignored in between.
Then every ground-truth box is forced onto its best anchor (ties: the first anchor; several boxes on one
anchor: the first box), which makes that anchor positive for it. Unlike effdet, a box that overlaps no
anchor at all (IoU 0 everywhere, e.g. empty or outside the input) is not forced onto anchor 0.

Ignore regions (``Targets.ignore``: crowd, difficult) take no part in matching; an anchor that would be
background becomes :data:`IGNORE` when at least :data:`IGNORE_COVERAGE` of its area lies inside one.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from efficientdet.config import LossConfig
from efficientdet.errors import ConfigError, DataError
from efficientdet.ops.box_coder import encode
from efficientdet.ops.boxes import box_coverage, paired_box_iou
from efficientdet.structures import Targets

BACKGROUND = -1
"""Class target of a negative anchor."""

IGNORE = -2
"""Class target of an anchor that counts neither as positive nor as negative."""

IGNORE_COVERAGE = 0.5
"""Fraction of an anchor's area inside an ignore region that makes a background anchor ignored."""

CHUNK_ELEMENTS = 1 << 20
"""Largest ``boxes * N`` IoU block computed at once (bounds the matcher's memory)."""


class AssignedTargets(NamedTuple):
    """Training targets of every anchor.

    ``cls_targets [B, N]`` int64: the class ``0 .. K-1`` of positive anchors, :data:`BACKGROUND` or
    :data:`IGNORE`. ``box_targets [B, N, 4]`` float32: the matched box encoded ``(ty, tx, th, tw)`` against
    the anchor, zero for non-positive anchors. ``num_positives [B]`` float32.
    """

    cls_targets: Tensor
    box_targets: Tensor
    num_positives: Tensor


def _flat_targets(targets: list[Targets], device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """All boxes of the batch in one list: ``boxes [T, 4]``, ``labels [T]``, ``image [T]``, ``ignore [T]``."""
    for i, t in enumerate(targets):
        if t.boxes.dim() != 2 or t.boxes.shape[-1] != 4 or t.labels.shape != t.boxes.shape[:1]:
            raise DataError(
                f"targets[{i}]: boxes {tuple(t.boxes.shape)} and labels {tuple(t.labels.shape)} do not match; "
                "expected boxes [M, 4] (xyxy input pixels) and labels [M]"
            )
    counts = torch.tensor([len(t.labels) for t in targets], device=device)
    boxes = torch.cat([t.boxes.to(device, torch.float32) for t in targets])
    labels = torch.cat([t.labels.to(device, torch.int64) for t in targets])
    ignore = torch.cat(
        [
            t.ignore.to(device, torch.bool)
            if t.ignore is not None
            else torch.zeros(len(t.labels), dtype=torch.bool, device=device)
            for t in targets
        ]
    )
    image = torch.repeat_interleave(torch.arange(len(targets), device=device), counts)
    return boxes, labels, image, ignore


def _best_per_image(values: Tensor, image: Tensor, num_images: int) -> tuple[Tensor, Tensor]:
    """For ``values [T, N]`` of boxes from images ``image [T]``: the max over each image's boxes ``[B, N]``
    (-1 where an image has none) and the row of the first box reaching it (``T`` where none)."""
    t, n = values.shape
    index = image[:, None].expand(t, n)
    best = values.new_full((num_images, n), -1.0).scatter_reduce(0, index, values, "amax")
    rows = torch.arange(t, device=values.device)[:, None]
    first = torch.where(values == best[image], rows, t)
    return best, torch.full((num_images, n), t, device=values.device).scatter_reduce(0, index, first, "amin")


def assign_targets(
    anchors: Tensor, targets: list[Targets], cfg: LossConfig, num_classes: int | None = None
) -> AssignedTargets:
    """Match ``anchors [N, 4]`` (xyxy input pixels) with the boxes of every image (xyxy input pixels).

    ``targets``: one :class:`Targets` per image (any number of boxes, zero included). ``num_classes``:
    when given, labels outside ``0 .. num_classes-1`` raise :class:`DataError`. Work and memory grow with
    the total number of boxes in the batch times ``N`` (computed in blocks of :data:`CHUNK_ELEMENTS`).
    """
    if not targets:
        raise ValueError("assign_targets needs one Targets per image; got an empty list")
    if cfg.unmatched_threshold > cfg.match_threshold:
        raise ConfigError(
            f"loss.unmatched_threshold ({cfg.unmatched_threshold}) must not exceed loss.match_threshold "
            f"({cfg.match_threshold})"
        )
    device, n, b = anchors.device, anchors.shape[0], len(targets)
    anchors = anchors.float()
    boxes, labels, image, ignore = _flat_targets(targets, device)
    regular = (~ignore).nonzero().squeeze(1)
    if num_classes is not None and bool(((labels[regular] < 0) | (labels[regular] >= num_classes)).any()):
        raise DataError(
            f"target labels must lie in 0..{num_classes - 1} (the model's classes); got {labels[regular].unique().tolist()}"
        )
    boxes, labels, image, regions, region_image = (
        boxes[regular],
        labels[regular],
        image[regular],
        boxes[ignore],
        image[ignore],
    )
    t = len(labels)

    best_iou = torch.full((b, n), -1.0, device=device)  # best IoU with a box of the image (-1: no box)
    best_box = torch.zeros((b, n), dtype=torch.int64, device=device)  # its row in `boxes`
    forced_box = torch.full((b * n,), t, dtype=torch.int64, device=device)  # t: not forced
    step = max(1, CHUNK_ELEMENTS // max(1, n))
    for start in range(0, t, step):
        rows = slice(start, min(t, start + step))
        iou = paired_box_iou(boxes[rows, None], anchors)  # [rows, N]
        value, first = _best_per_image(iou, image[rows], b)
        better = value > best_iou  # strictly: earlier boxes win ties
        best_iou = torch.where(better, value, best_iou)
        best_box = torch.where(better, first + start, best_box)
        # Force every box onto its best anchor; the first box wins an anchor wanted by several.
        top_iou, top_anchor = iou.max(dim=1)
        row_index = torch.arange(rows.start, rows.stop, device=device)
        forced_box.scatter_reduce_(0, image[rows] * n + top_anchor, torch.where(top_iou > 0, row_index, t), "amin")
    covered = torch.zeros((b, n), dtype=torch.bool, device=device)
    for start in range(0, len(regions), step):
        rows = slice(start, start + step)
        coverage, _ = _best_per_image(box_coverage(regions[rows, None], anchors), region_image[rows], b)
        covered |= coverage >= IGNORE_COVERAGE

    forced_box = forced_box.view(b, n)
    forced = forced_box < t
    matched = torch.where(forced, forced_box, best_box)
    positive = forced | (best_iou >= cfg.match_threshold)
    background = ~positive & (best_iou < cfg.unmatched_threshold) & ~covered
    if t == 0:
        matched_labels, matched_boxes = torch.zeros_like(matched), anchors.expand(b, n, 4)
    else:
        matched_labels, matched_boxes = labels[matched], boxes[matched]
    cls_targets = torch.where(positive, matched_labels, torch.where(background, BACKGROUND, IGNORE))
    box_targets = torch.where(positive[..., None], encode(matched_boxes, anchors), 0.0)
    return AssignedTargets(cls_targets, box_targets, positive.sum(dim=1).float())


__all__ = ["BACKGROUND", "IGNORE", "IGNORE_COVERAGE", "CHUNK_ELEMENTS", "AssignedTargets", "assign_targets"]
