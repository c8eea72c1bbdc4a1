"""Detection metrics: COCO, Pascal VOC (2007 11-point and 2010+ area) and Open Images.

Every evaluator is built from a :class:`~efficientdet.data.records.DetectionDataset` and used as
``reset()`` / ``update(images, detections)`` / ``compute() -> dict[str, float]``; see
:mod:`efficientdet.evaluation.base`. :func:`create_evaluator` builds one by name.
"""

from __future__ import annotations

import inspect
from typing import Any

from efficientdet.data.records import DetectionDataset
from efficientdet.errors import ConfigError
from efficientdet.evaluation.base import DetectionEvaluator, ImageDetections, format_table
from efficientdet.evaluation.coco import (
    COCO_METRIC_NAMES,
    CocoEvaluator,
    CocoResult,
    coco_ground_truth,
    coco_results_array,
    format_per_class_table,
    per_class_ap_rows,
    write_coco_results,
)
from efficientdet.evaluation.openimages import OpenImagesEvaluator, expand_hierarchy
from efficientdet.evaluation.voc import VOCEvaluator

EVALUATORS = ("coco", "voc07", "voc", "openimages")


def create_evaluator(kind: str, dataset: DetectionDataset, **options: Any) -> DetectionEvaluator:
    """An evaluator by name.

    ``coco``: :class:`CocoEvaluator` (options ``backend``, ``annotation_file``). ``voc07``: VOC 2007
    11-point AP; ``voc``: VOC 2010+ area AP (:class:`VOCEvaluator`; options ``iou_threshold``,
    ``pixel_inclusive``). ``openimages``: the Open Images challenge metric (:class:`OpenImagesEvaluator`;
    options ``group_of_weight``, ``use_image_labels``, ``iou_threshold``).
    """
    table: dict[str, tuple[type[DetectionEvaluator], dict[str, Any]]] = {
        "coco": (CocoEvaluator, {}),
        "voc07": (VOCEvaluator, {"method": "11point"}),
        "voc": (VOCEvaluator, {"method": "area"}),
        "openimages": (OpenImagesEvaluator, {}),
    }
    if kind not in table:
        raise ConfigError(f"unknown evaluator {kind!r}; choose one of {', '.join(EVALUATORS)}")
    cls, fixed = table[kind]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "dataset", *fixed}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(
            f"evaluator {kind!r} has no option {unknown[0]!r}; its options are {', '.join(sorted(accepted))}"
        )
    return cls(dataset, **fixed, **options)


__all__ = [
    "COCO_METRIC_NAMES",
    "EVALUATORS",
    "CocoEvaluator",
    "CocoResult",
    "DetectionEvaluator",
    "ImageDetections",
    "OpenImagesEvaluator",
    "VOCEvaluator",
    "coco_ground_truth",
    "coco_results_array",
    "create_evaluator",
    "expand_hierarchy",
    "format_per_class_table",
    "format_table",
    "per_class_ap_rows",
    "write_coco_results",
]
