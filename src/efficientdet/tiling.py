"""Sliced (tiled) inference: find small objects in large images.

A detector sees its input at a fixed size, so a large photo is shrunk and small objects vanish. Sliced
inference runs the detector on overlapping tiles of the image at their own resolution (plus, optionally,
on the whole image shrunk as usual, for the large objects) and merges the results:

1. every tile's detections are moved to image pixels (``+ (x1, y1)`` of the tile);
2. a tile detection that touches an inner edge of its tile shows a cut object. It is dropped when another
   tile contains it with room to spare on the cut side (that tile sees more of the object), or when the
   whole-image pass found an object of the same class covering at least half of it;
3. the rest, with the whole-image detections, go through class-wise hard NMS
   (:func:`efficientdet.ops.nms.batched_nms`) and the best ``max_detections`` are kept.

With an overlap larger than the objects, every small object lies whole in some tile, so rule 2 removes
exactly the cut copies. Objects larger than the overlap are left to the whole-image pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from efficientdet.errors import ConfigError
from efficientdet.ops.boxes import box_coverage
from efficientdet.ops.nms import NMS_IOU_THRESHOLD, batched_nms
from efficientdet.structures import Detections

EDGE_MARGIN = 2.0
"""Pixels from an inner tile edge within which a box counts as touching it (cut)."""
COVERED = 0.5
"""Fraction of a cut tile box inside a whole-image box of its class for the tile box to be dropped."""

DetectFn = Callable[[Sequence[Tensor]], list[Detections]]
"""``detect(images) -> detections``: ``[3, H, W]`` images in, one :class:`Detections` per image in its pixels."""


def tile_windows(image_size: tuple[int, int], tile_size: int | tuple[int, int], overlap: float = 0.2) -> Tensor:
    """Overlapping windows covering an image: ``[T, 4]`` int64 ``(x1, y1, x2, y2)``, row by row.

    ``image_size`` and ``tile_size`` are ``(H, W)``. Neighbouring windows overlap by at least
    ``overlap * tile`` pixels; the last window of a row or column ends at the image edge. Along a side
    shorter than the tile, the one window is the whole side.
    """
    th, tw = (tile_size, tile_size) if isinstance(tile_size, int) else tile_size
    if th < 1 or tw < 1:
        raise ConfigError(f"tile size must be positive, got {tile_size}")
    if not 0.0 <= overlap < 1.0:
        raise ConfigError(f"tile overlap must be in [0, 1), got {overlap}")

    def starts(length: int, tile: int) -> list[int]:
        if length <= tile:
            return [0]
        stride = max(1, tile - math.ceil(overlap * tile))
        n = math.ceil((length - tile) / stride) + 1
        return [min(i * stride, length - tile) for i in range(n)]

    h, w = image_size
    rows = [(y, min(y + th, h)) for y in starts(h, th)]
    cols = [(x, min(x + tw, w)) for x in starts(w, tw)]
    return torch.tensor([(x1, y1, x2, y2) for y1, y2 in rows for x1, x2 in cols], dtype=torch.int64)


def _cut_sides(boxes: Tensor, window: Tensor, image_size: tuple[int, int], margin: float) -> Tensor:
    """``[N, 4]`` bool: box side (left, top, right, bottom) lies on an inner edge of ``window``."""
    h, w = image_size
    inner = torch.tensor([window[0] > 0, window[1] > 0, window[2] < w, window[3] < h])
    near = torch.stack([
        boxes[:, 0] <= window[0] + margin,
        boxes[:, 1] <= window[1] + margin,
        boxes[:, 2] >= window[2] - margin,
        boxes[:, 3] >= window[3] - margin,
    ], dim=1)
    return near & inner


def _seen_better(boxes: Tensor, cut: Tensor, windows: Tensor, margin: float) -> Tensor:
    """``[N]`` bool: some window contains the box and reaches more than ``margin`` past it on every cut side."""
    win = windows[None].float()  # [1, T, 4]
    b, c = boxes[:, None, :], cut[:, None, :]  # [N, 1, 4]
    low = torch.where(c[..., :2], win[..., :2] < b[..., :2] - margin, win[..., :2] <= b[..., :2])
    high = torch.where(c[..., 2:], win[..., 2:] > b[..., 2:] + margin, win[..., 2:] >= b[..., 2:])
    return (low.all(dim=-1) & high.all(dim=-1)).any(dim=1)


def sliced_predict(
    detect: DetectFn,
    image: Tensor,
    tile_size: int | tuple[int, int],
    *,
    overlap: float = 0.2,
    full_image: bool = True,
    iou_threshold: float = NMS_IOU_THRESHOLD,
    max_detections: int | None = None,
    edge_margin: float = EDGE_MARGIN,
) -> Detections:
    """Detect on overlapping tiles of ``image`` ``[3, H, W]`` (and on the whole image) and merge (module docstring).

    ``detect`` runs the detector (e.g. a :class:`~efficientdet.predict.Predictor`'s batch call) on a list
    of images and returns detections in each image's pixels. ``tile_size`` is ``(H, W)`` or one int, in
    image pixels (the detector resizes tiles to its input). Returns :class:`Detections` in image pixels,
    sorted by score.
    """
    if image.ndim != 3:
        raise ConfigError(f"sliced_predict takes one image [3, H, W], got shape {tuple(image.shape)}")
    size = (int(image.shape[-2]), int(image.shape[-1]))
    windows = tile_windows(size, tile_size, overlap)
    crops = [image[:, y1:y2, x1:x2] for x1, y1, x2, y2 in windows.tolist()]
    tiles = detect(crops + ([image] if full_image else []))
    whole = tiles.pop() if full_image else None
    names = tiles[0].label_names if tiles else None

    boxes, scores, labels, cut_flags = [], [], [], []
    for window, det in zip(windows, tiles, strict=True):
        b = det.boxes.float() + window[[0, 1, 0, 1]].float()
        cut = _cut_sides(b, window, size, edge_margin)
        is_cut = cut.any(dim=1)
        drop = is_cut & _seen_better(b, cut, windows, edge_margin)
        boxes.append(b[~drop])
        scores.append(det.scores[~drop])
        labels.append(det.labels[~drop])
        cut_flags.append(is_cut[~drop])
    boxes_t = torch.cat(boxes) if boxes else torch.zeros(0, 4)
    scores_t = torch.cat(scores) if scores else torch.zeros(0)
    labels_t = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.int64)
    cut_t = torch.cat(cut_flags) if cut_flags else torch.zeros(0, dtype=torch.bool)

    if whole is not None:
        if len(whole) and cut_t.any():
            same = labels_t[:, None] == whole.labels[None, :]
            covered = (box_coverage(whole.boxes[None, :, :].float(), boxes_t[:, None, :]) >= COVERED) & same
            keep = ~(cut_t & covered.any(dim=1))
            boxes_t, scores_t, labels_t = boxes_t[keep], scores_t[keep], labels_t[keep]
        boxes_t = torch.cat([boxes_t, whole.boxes.float()])
        scores_t = torch.cat([scores_t, whole.scores])
        labels_t = torch.cat([labels_t, whole.labels])
        names = names or whole.label_names

    keep = batched_nms(boxes_t, scores_t, labels_t, iou_threshold)
    if max_detections is not None:
        keep = keep[:max_detections]
    return Detections(boxes_t[keep], scores_t[keep], labels_t[keep], names)


__all__ = ["EDGE_MARGIN", "COVERED", "DetectFn", "tile_windows", "sliced_predict"]
