"""The one record format every dataset parser produces and every evaluator consumes.

Boxes are ``xyxy`` float32 in pixels of the original image; labels are int64 ``0 .. K-1``;
``category_ids[label]`` is the dataset's own id of that class (COCO category id, VOC/YOLO index, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from efficientdet.errors import DataError


@dataclass
class ImageRecord:
    """One annotated image.

    ``boxes``: ``[M, 4]`` float32 xyxy pixels of the original image. ``labels``: ``[M]`` int64 ``0..K-1``.
    ``ignore``: ``[M]`` bool: crowd (COCO) or difficult (VOC) boxes; neither positive nor negative in
    training, neither hit nor miss in evaluation. ``group_of``: ``[M]`` bool (OpenImages ``IsGroupOf``)
    or ``None``. ``size``: ``(H, W)`` when the annotation states it, else ``None``.
    ``image_labels`` / ``negative_labels``: verified image-level positive / negative classes
    (OpenImages), ``None`` when the format has none. ``area``: ``[M]`` float32 object areas as the
    annotation states them (COCO segmentation areas, which the official metric uses for small / medium /
    large), ``None`` to use box areas.
    """

    path: Path
    image_id: int
    boxes: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray | None = None
    group_of: np.ndarray | None = None
    size: tuple[int, int] | None = None
    image_labels: np.ndarray | None = None
    negative_labels: np.ndarray | None = None
    area: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if self.ignore is None:
            self.ignore = np.zeros(len(self.labels), dtype=bool)
        else:
            self.ignore = np.asarray(self.ignore, dtype=bool).reshape(-1)
        if self.area is not None:
            self.area = np.asarray(self.area, dtype=np.float32).reshape(-1)
        if len(self.boxes) != len(self.labels) or len(self.ignore) != len(self.labels) or (
            self.area is not None and len(self.area) != len(self.labels)
        ):
            raise DataError(
                f"{self.path}: {len(self.boxes)} boxes, {len(self.labels)} labels and {len(self.ignore)} "
                "ignore flags; each box needs exactly one label"
            )


@dataclass
class DetectionDataset:
    """A parsed dataset: the records plus the class names and dataset ids of labels ``0 .. K-1``."""

    records: list[ImageRecord]
    label_names: tuple[str, ...]
    category_ids: tuple[int, ...] = field(default=())
    root: Path | None = None
    format: str = ""

    def __post_init__(self) -> None:
        self.label_names = tuple(self.label_names)
        if not self.category_ids:
            self.category_ids = tuple(range(len(self.label_names)))
        self.category_ids = tuple(int(c) for c in self.category_ids)
        if len(self.category_ids) != len(self.label_names):
            raise DataError(
                f"{len(self.label_names)} label names but {len(self.category_ids)} category ids; "
                "give one dataset id per class"
            )

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def __len__(self) -> int:
        return len(self.records)
