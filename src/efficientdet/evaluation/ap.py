"""Average precision at one IoU threshold, the way Pascal VOC and the Open Images challenge define it.

The matching rules are those of the TensorFlow Object Detection API (``object_detection_evaluation`` /
``per_image_evaluation``), which the official EfficientDet repository and ``effdet`` use for VOC and
Open Images, and which equal the VOC devkit's for ordinary and difficult boxes:

1. Per image and class, detections are taken in descending score order. Each one looks only at the
   ground-truth box it overlaps most (IoU, first box on ties). At ``IoU >= threshold`` it is a true
   positive if that box is not yet taken, a false positive if it is (a duplicate); if the box is an
   ``ignore`` box (VOC ``difficult``, COCO crowd) the detection is dropped: neither hit nor miss.
2. Group-of boxes (Open Images) are matched after that, by intersection over the *detection's* area
   (IoA): every detection not already a true positive whose best group-of box (same class) has
   ``IoA >= threshold`` is dropped, and each group-of box hit at least once adds one entry weighted
   ``group_of_weight`` with the highest score among its hits. So several detections inside one group-of
   box count as a single true positive (weight 1, the challenge metric) or not at all (weight 0).
3. Per class, all entries are sorted by score; precision = cumTP / (cumTP + cumFP), recall = cumTP / nGT
   with ``nGT = #boxes + group_of_weight * #group-of boxes`` (``ignore`` boxes excluded).

Detections with zero width or height are dropped first (as the TF evaluator does; a box clipped to the
image border can collapse). Pixel convention: by default boxes are continuous coordinates and
``area = (x2 - x1) * (y2 - y1)``, as in the TF evaluator and COCO; ``pixel_inclusive=True`` uses the VOC
devkit's ``+1`` (``x2`` is the last pixel inside the box: ``width = x2 - x1 + 1``).

AP: ``"area"`` is the area under the monotone (interpolated) precision-recall curve, the VOC 2010+
definition and the TF evaluator's; ``"11point"`` is VOC 2007's mean interpolated precision at recall
``0, 0.1, ..., 1`` (thresholds are exactly ``k / 10``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from efficientdet.errors import ConfigError

AP_METHODS = ("area", "11point")


def pairwise_overlaps(boxes1: np.ndarray, boxes2: np.ndarray, pixel_inclusive: bool = False) -> tuple[np.ndarray, ...]:
    """Intersections ``[N, M]`` and areas ``[N]``, ``[M]`` of ``xyxy`` boxes (float64 results).

    ``pixel_inclusive`` adds 1 to every width and height (VOC devkit convention).
    """
    a = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
    one = 1.0 if pixel_inclusive else 0.0
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + one
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + one
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[:, 2] - a[:, 0] + one) * (a[:, 3] - a[:, 1] + one)
    area_b = (b[:, 2] - b[:, 0] + one) * (b[:, 3] - b[:, 1] + one)
    return inter, area_a, area_b


@dataclass
class MatchedEntries:
    """Scored entries of one image after matching: ``labels`` ``[E]`` int64, ``scores`` ``[E]`` float64,
    ``weights`` ``[E]`` float64 (true-positive weight; ``0`` is a false positive)."""

    labels: np.ndarray
    scores: np.ndarray
    weights: np.ndarray


def match_image(
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    det_labels: np.ndarray,
    gt_boxes: np.ndarray,
    gt_labels: np.ndarray,
    gt_ignore: np.ndarray,
    gt_group_of: np.ndarray,
    *,
    iou_threshold: float = 0.5,
    group_of_weight: float = 0.0,
    pixel_inclusive: bool = False,
) -> MatchedEntries:
    """Label the detections of one image as true/false positives (rules 1-2 of the module docstring).

    Detections: ``det_boxes [N, 4]`` xyxy, ``det_scores [N]``, ``det_labels [N]``. Ground truth:
    ``gt_boxes [M, 4]`` xyxy, ``gt_labels [M]``, ``gt_ignore [M]`` bool, ``gt_group_of [M]`` bool.
    """
    boxes = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)
    valid = (boxes[:, 0] < boxes[:, 2]) & (boxes[:, 1] < boxes[:, 3])
    order = np.argsort(-np.asarray(det_scores, dtype=np.float64)[valid], kind="stable")
    boxes = boxes[valid][order]
    scores = np.asarray(det_scores, dtype=np.float64)[valid][order]
    labels = np.asarray(det_labels, dtype=np.int64)[valid][order]
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    gt_labels = np.asarray(gt_labels, dtype=np.int64)
    gt_ignore = np.asarray(gt_ignore, dtype=bool)
    gt_group_of = np.asarray(gt_group_of, dtype=bool)

    true_pos = np.zeros(len(scores), dtype=bool)
    dropped = np.zeros(len(scores), dtype=bool)
    regular = ~gt_group_of
    if len(scores) and regular.any():
        inter, area_d, area_g = pairwise_overlaps(boxes, gt_boxes[regular], pixel_inclusive)
        iou = inter / (area_d[:, None] + area_g[None, :] - inter)
        iou[labels[:, None] != gt_labels[regular][None, :]] = -1.0  # only boxes of the detection's class
        best = iou.argmax(axis=1)
        hit = iou[np.arange(len(best)), best] >= iou_threshold
        hit_ignored = hit & gt_ignore[regular][best]
        dropped |= hit_ignored
        candidates = np.flatnonzero(hit & ~hit_ignored)
        _, first = np.unique(best[candidates], return_index=True)  # the first (highest-scoring) claim wins
        true_pos[candidates[first]] = True

    group_labels = np.zeros(0, dtype=np.int64)
    group_scores = np.zeros(0, dtype=np.float64)
    if len(scores) and gt_group_of.any():
        inter, area_d, _ = pairwise_overlaps(boxes, gt_boxes[gt_group_of], pixel_inclusive)
        ioa = inter / area_d[:, None]
        ioa[labels[:, None] != gt_labels[gt_group_of][None, :]] = -1.0
        best = ioa.argmax(axis=1)
        inside = (ioa[np.arange(len(best)), best] >= iou_threshold) & ~true_pos & ~dropped
        dropped |= inside
        best_score = np.zeros(int(gt_group_of.sum()), dtype=np.float64)
        np.maximum.at(best_score, best[inside], scores[inside])
        if group_of_weight > 0:
            keep = best_score > 0
            group_labels, group_scores = gt_labels[gt_group_of][keep], best_score[keep]

    kept = ~dropped
    return MatchedEntries(
        labels=np.concatenate([labels[kept], group_labels]),
        scores=np.concatenate([scores[kept], group_scores]),
        weights=np.concatenate([true_pos[kept].astype(np.float64), np.full(len(group_scores), float(group_of_weight))]),
    )


def count_ground_truth(
    gt_labels: np.ndarray, gt_ignore: np.ndarray, gt_group_of: np.ndarray, num_classes: int, group_of_weight: float
) -> np.ndarray:
    """``[K]`` float64 number of ground-truth instances per class (rule 3 of the module docstring)."""
    labels = np.asarray(gt_labels, dtype=np.int64)
    counted = ~np.asarray(gt_ignore, dtype=bool)
    group = np.asarray(gt_group_of, dtype=bool)
    plain = np.bincount(labels[counted & ~group], minlength=num_classes).astype(np.float64)
    grouped = np.bincount(labels[counted & group], minlength=num_classes).astype(np.float64)
    return plain + group_of_weight * grouped


def precision_recall(scores: np.ndarray, weights: np.ndarray, num_gt: float) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall ``[E]`` after each entry, entries sorted by descending score (stable)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    w = np.asarray(weights, dtype=np.float64)[order]
    tp = np.cumsum(w)
    fp = np.cumsum(w <= 0)
    return tp / (tp + fp), tp / num_gt


def average_precision(precision: np.ndarray, recall: np.ndarray, method: str = "area") -> float:
    """AP from a precision/recall sequence (recall non-decreasing); ``method``: ``area`` | ``11point``."""
    if method not in AP_METHODS:
        raise ConfigError(f"unknown AP method {method!r}; choose one of {', '.join(AP_METHODS)}")
    precision = np.asarray(precision, dtype=np.float64)
    recall = np.asarray(recall, dtype=np.float64)
    if method == "11point":
        points = np.arange(11) / 10
        best = [precision[recall >= t].max() if (recall >= t).any() else 0.0 for t in points]
        return float(np.mean(best))
    if precision.size == 0:
        return 0.0
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]  # precision envelope: best precision at any higher recall
    steps = np.flatnonzero(r[1:] != r[:-1]) + 1
    return float(np.sum((r[steps] - r[steps - 1]) * p[steps]))


@dataclass
class ClassAP:
    """AP of every class: ``ap [K]`` (NaN for classes without ground truth), ``num_gt [K]``,
    ``num_entries [K]`` (scored detections), and each class's ``precision``/``recall`` curve."""

    ap: np.ndarray
    num_gt: np.ndarray
    num_entries: np.ndarray
    precision: list[np.ndarray]
    recall: list[np.ndarray]

    @property
    def mean_ap(self) -> float:
        """Mean AP over the classes that have ground truth (NaN when none has)."""
        valid = ~np.isnan(self.ap)
        return float(np.mean(self.ap[valid])) if valid.any() else float("nan")


def class_average_precision(entries: Sequence[MatchedEntries], num_gt: np.ndarray, method: str = "area") -> ClassAP:
    """Per-class AP from the matched entries of all images and the per-class ground-truth counts ``[K]``."""
    num_classes = len(num_gt)
    labels = np.concatenate([e.labels for e in entries]) if entries else np.zeros(0, dtype=np.int64)
    scores = np.concatenate([e.scores for e in entries]) if entries else np.zeros(0)
    weights = np.concatenate([e.weights for e in entries]) if entries else np.zeros(0)
    by_class = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[by_class], np.arange(num_classes + 1))
    ap = np.full(num_classes, np.nan)
    precisions: list[np.ndarray] = []
    recalls: list[np.ndarray] = []
    for k in range(num_classes):
        sel = by_class[bounds[k] : bounds[k + 1]]
        if num_gt[k] > 0:
            prec, rec = precision_recall(scores[sel], weights[sel], num_gt[k])
            ap[k] = average_precision(prec, rec, method)
        else:
            prec = rec = np.zeros(0)
        precisions.append(prec)
        recalls.append(rec)
    return ClassAP(ap, np.asarray(num_gt, dtype=np.float64), np.diff(bounds), precisions, recalls)
