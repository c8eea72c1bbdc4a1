"""Pascal VOC detection metric: AP per class and mAP at IoU 0.5.

``method="11point"`` is VOC 2007's 11-point interpolated AP (``create_evaluator("voc07", ...)``);
``method="area"`` is the area under the interpolated precision-recall curve of VOC 2010 and later
(``create_evaluator("voc", ...)``), also what the TF Object Detection API's ``PascalDetectionEvaluator``
reports. Boxes whose record flags them ``ignore`` (``difficult``) are neither hits nor misses. See
:mod:`efficientdet.evaluation.ap` for the exact matching rules and the pixel convention: by default
boxes are continuous (no ``+1``), as in the TF evaluator that serves as our oracle; the devkit's
``+1`` is available with ``pixel_inclusive=True``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from efficientdet.data.records import DetectionDataset, ImageRecord
from efficientdet.errors import ConfigError
from efficientdet.evaluation.ap import (
    AP_METHODS,
    ClassAP,
    MatchedEntries,
    class_average_precision,
    count_ground_truth,
    match_image,
)
from efficientdet.evaluation.base import DetectionEvaluator, ImageDetections, format_table, ignore_flags


class VOCEvaluator(DetectionEvaluator):
    """Pascal VOC AP per class and mAP over the images passed to :meth:`update`.

    ``method``: ``area`` (VOC2010+) | ``11point`` (VOC2007). ``iou_threshold``: 0.5 in VOC.
    ``pixel_inclusive``: use the devkit's ``+1`` pixel convention.

    :meth:`compute` returns ``{"mAP": ..., "AP/<class name>": ...}``; classes without ground truth in the
    evaluated images are left out of both (their AP is undefined). :attr:`result` keeps the per-class
    curves of the last run.
    """

    group_of_weight = 0.0

    def __init__(
        self,
        dataset: DetectionDataset,
        *,
        method: str = "area",
        iou_threshold: float = 0.5,
        pixel_inclusive: bool = False,
    ) -> None:
        super().__init__(dataset)
        if method not in AP_METHODS:
            raise ConfigError(f"unknown VOC AP method {method!r}; choose one of {', '.join(AP_METHODS)}")
        if not 0.0 < iou_threshold <= 1.0:
            raise ConfigError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        self.method = method
        self.iou_threshold = float(iou_threshold)
        self.pixel_inclusive = bool(pixel_inclusive)
        self.result: ClassAP | None = None

    def reset(self) -> None:
        super().reset()
        self.result = None

    def _group_of(self, record: ImageRecord) -> np.ndarray:
        """Group-of flags used for matching; VOC has none (Open Images overrides this)."""
        return np.zeros(len(record.labels), dtype=bool)

    def _select(self, record: ImageRecord, dets: ImageDetections) -> ImageDetections:
        """The detections that take part in the evaluation (all of them for VOC)."""
        return dets

    def compute(self) -> dict[str, float]:
        indices, dets = self.collected()
        if not indices:
            raise ConfigError("no images to evaluate: call update() with detections before compute()")
        k = self.dataset.num_classes
        num_gt = np.zeros(k, dtype=np.float64)
        entries: list[MatchedEntries] = []
        for index, d in zip(indices, dets, strict=True):
            record = self.dataset.records[index]
            group_of = self._group_of(record)
            ignore = ignore_flags(record)
            num_gt += count_ground_truth(record.labels, ignore, group_of, k, self.group_of_weight)
            d = self._select(record, d)
            entries.append(
                match_image(
                    d.boxes,
                    d.scores,
                    d.labels,
                    record.boxes,
                    record.labels,
                    ignore,
                    group_of,
                    iou_threshold=self.iou_threshold,
                    group_of_weight=self.group_of_weight,
                    pixel_inclusive=self.pixel_inclusive,
                )
            )
        self.result = class_average_precision(entries, num_gt, self.method)
        metrics = {"mAP": self.result.mean_ap}
        for name, ap in zip(self.dataset.label_names, self.result.ap.tolist(), strict=True):
            if not np.isnan(ap):
                metrics[f"AP/{name}"] = ap
        return metrics

    def per_class_rows(self) -> list[dict[str, Any]]:
        """One row per class of the last :meth:`compute`: ``class``, ``AP``, ``num_gt``, ``detections``."""
        if self.result is None:
            raise ConfigError("run compute() first; there is no evaluation result yet")
        return [
            {
                "class": name,
                "AP": float(ap),
                "num_gt": int(n) if float(n).is_integer() else float(n),
                "detections": int(e),
            }
            for name, ap, n, e in zip(
                self.dataset.label_names, self.result.ap, self.result.num_gt, self.result.num_entries, strict=True
            )
        ]

    def per_class_table(self, digits: int = 3) -> str:
        """The per-class table as text (``-`` where a class has no ground truth)."""
        return format_table(self.per_class_rows(), ["class", "AP", "num_gt", "detections"], digits)
