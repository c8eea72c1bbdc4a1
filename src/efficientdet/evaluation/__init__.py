"""Detection metrics: COCO, Pascal VOC (2007 11-point and 2010+ area) and Open Images.

Every evaluator is built from a :class:`~efficientdet.data.records.DetectionDataset` and used as
``reset()`` / ``update(images, detections)`` / ``compute() -> dict[str, float]``; see
:mod:`efficientdet.evaluation.base`. :func:`create_evaluator` builds one by name;
:func:`register_evaluator` adds a name (training's ``eval_metric`` and ``validate --metric`` take any).
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

_REGISTRY: dict[str, tuple[type[DetectionEvaluator], dict[str, Any]]] = {
    "coco": (CocoEvaluator, {}),
    "voc07": (VOCEvaluator, {"method": "11point"}),
    "voc": (VOCEvaluator, {"method": "area"}),
    "openimages": (OpenImagesEvaluator, {}),
}
EVALUATORS = tuple(_REGISTRY)
"""The built-in evaluator names; :func:`evaluator_names` also lists those added with :func:`register_evaluator`."""


def register_evaluator(name: str, cls: type[DetectionEvaluator], **fixed: Any) -> None:
    """Make ``cls`` available by ``name`` to :func:`create_evaluator`, ``validate --metric`` and training
    (``eval_metric``). ``cls`` is built as ``cls(dataset, **fixed, **options)`` and follows
    :class:`DetectionEvaluator` (``reset`` / ``update`` / ``compute``); its class attribute ``primary_metric``
    names the value of ``compute()`` that picks the best checkpoint. A name already taken is refused."""
    if not (isinstance(cls, type) and issubclass(cls, DetectionEvaluator)):
        raise ConfigError(f"register_evaluator({name!r}, ...): {cls!r} is not a DetectionEvaluator subclass")
    if name in _REGISTRY:
        raise ConfigError(f"an evaluator named {name!r} is registered already ({_REGISTRY[name][0].__name__}); "
                          "choose another name")
    _REGISTRY[name] = (cls, dict(fixed))


def evaluator_names() -> tuple[str, ...]:
    """Every registered evaluator name, the built-in ones first."""
    return tuple(_REGISTRY)


def evaluator_class(kind: str, *, what: str = "evaluator") -> type[DetectionEvaluator]:
    """The class registered as ``kind`` (:class:`ConfigError` with the closest names when there is none)."""
    if kind not in _REGISTRY:
        from efficientdet.config import unknown_key_message

        raise ConfigError(unknown_key_message(str(kind), _REGISTRY, what))
    return _REGISTRY[kind][0]


def create_evaluator(kind: str, dataset: DetectionDataset, **options: Any) -> DetectionEvaluator:
    """An evaluator by its registered name (:func:`register_evaluator` adds more).

    ``coco``: :class:`CocoEvaluator` (options ``backend``, ``annotation_file``). ``voc07``: VOC 2007
    11-point AP; ``voc``: VOC 2010+ area AP (:class:`VOCEvaluator`; options ``iou_threshold``,
    ``pixel_inclusive``). ``openimages``: the Open Images challenge metric (:class:`OpenImagesEvaluator`;
    options ``group_of_weight``, ``use_image_labels``, ``iou_threshold``).
    """
    cls = evaluator_class(kind)
    fixed = _REGISTRY[kind][1]
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
    "evaluator_class",
    "evaluator_names",
    "register_evaluator",
    "expand_hierarchy",
    "format_per_class_table",
    "format_table",
    "per_class_ap_rows",
    "write_coco_results",
]
