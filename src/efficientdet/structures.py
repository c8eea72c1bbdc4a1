"""Data structures passed between the parts of the library.

Box format everywhere inside the library: ``xyxy``, float32, absolute pixels of the image or tensor the
boxes belong to. Image sizes are ``(height, width)``. Labels are int64 ``0 .. num_classes - 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor


class HeadOutputs(NamedTuple):
    """Raw network outputs, flattened once in anchor order.

    ``cls_logits``: ``[B, N, K]`` class logits (before sigmoid).
    ``box_deltas``: ``[B, N, 4]`` box regression ``(ty, tx, th, tw)`` of the official box coder.

    ``N`` enumerates levels ``P_min .. P_max``, then row ``y``, column ``x``, then anchor
    ``a = scale * n_ratios + ratio`` (the official and effdet order).
    """

    cls_logits: Tensor
    box_deltas: Tensor


@dataclass(frozen=True)
class ImageMeta:
    """How one original image was placed in the network input.

    The image was resized by ``scale`` (input pixels per original pixel) and placed at the top-left of
    an ``input_size`` canvas; the rest is padding. ``orig_size`` and ``input_size`` are ``(H, W)``.
    """

    orig_size: tuple[int, int]
    input_size: tuple[int, int]
    scale: float

    @property
    def valid_size(self) -> tuple[int, int]:
        """``(H, W)`` of the part of the input covered by the image (not padding).

        The letterbox truncates ``size * scale`` computed in float32, as the official code does.
        """
        import numpy as np

        h, w = self.orig_size
        s = np.float32(self.scale)
        return (min(self.input_size[0], int(np.float32(h) * s)), min(self.input_size[1], int(np.float32(w) * s)))


@dataclass
class ImageBatch:
    """A preprocessed batch: ``pixels [B, 3, H, W]`` (float, normalised) and one :class:`ImageMeta` per image."""

    pixels: Tensor
    metas: list[ImageMeta]

    def to(self, *args: Any, **kwargs: Any) -> ImageBatch:
        return ImageBatch(self.pixels.to(*args, **kwargs), self.metas)


@dataclass
class Targets:
    """Ground truth of one image, in network-input pixels.

    ``boxes``: ``[M, 4]`` float32 xyxy. ``labels``: ``[M]`` int64 in ``0 .. K-1``.
    ``ignore``: ``[M]`` bool, regions (crowd, difficult) whose anchors count neither as positive nor
    negative. ``M`` may be 0.
    """

    boxes: Tensor
    labels: Tensor
    ignore: Tensor | None = None

    def __post_init__(self) -> None:
        if self.ignore is None:
            self.ignore = torch.zeros(self.labels.shape, dtype=torch.bool, device=self.labels.device)

    def to(self, device: torch.device | str) -> Targets:
        ignore = None if self.ignore is None else self.ignore.to(device)
        return Targets(self.boxes.to(device), self.labels.to(device), ignore)


@dataclass
class Detections:
    """Detections of one image.

    ``boxes``: ``[N, 4]`` float32 xyxy in original-image pixels. ``scores``: ``[N]`` float32 in ``[0, 1]``,
    sorted descending. ``labels``: ``[N]`` int64 in ``0 .. K-1``. ``label_names``: the name of every
    class index, when known.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    label_names: tuple[str, ...] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def names(self) -> list[str]:
        """Class name of each detection (the label index as text when names are unknown)."""
        if self.label_names is None:
            return [str(int(i)) for i in self.labels]
        return [self.label_names[int(i)] for i in self.labels]

    def to(self, device: torch.device | str) -> Detections:
        return Detections(self.boxes.to(device), self.scores.to(device), self.labels.to(device), self.label_names)

    def filter(self, keep: Tensor) -> Detections:
        """A new ``Detections`` with the rows selected by the bool mask or index tensor ``keep``."""
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep], self.label_names)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python lists: ``{"boxes": [[x1, y1, x2, y2], ...], "scores": [...], "labels": [...], "names": [...]}``."""
        return {
            "boxes": self.boxes.tolist(),
            "scores": self.scores.tolist(),
            "labels": self.labels.tolist(),
            "names": self.names,
        }

    def to_coco(self, image_id: int, category_ids: list[int] | None = None) -> list[dict[str, Any]]:
        """COCO results rows (``bbox`` as ``[x, y, w, h]``); ``category_ids[label]`` maps labels to dataset ids."""
        rows = []
        for box, score, label in zip(self.boxes.tolist(), self.scores.tolist(), self.labels.tolist()):
            x1, y1, x2, y2 = box
            cat = category_ids[label] if category_ids is not None else label
            rows.append(
                {
                    "image_id": image_id,
                    "category_id": int(cat),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": float(score),
                }
            )
        return rows


__all__ = ["HeadOutputs", "ImageMeta", "ImageBatch", "Targets", "Detections"]
