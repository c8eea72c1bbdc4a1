"""Open Images detection metric: AP@0.5 per class with group-of boxes and image-level labels, and mAP.

The default is the Open Images Challenge metric (TF Object Detection API
``OpenImagesChallengeEvaluator``):

* group-of boxes (``record.group_of``): all detections inside one group-of box (IoA >= 0.5, see
  :mod:`efficientdet.evaluation.ap`) together count as one true positive (``group_of_weight=1``);
* image-level labels decide which classes are evaluated in an image: a class is evaluated where it has a
  box or a verified image-level label (``record.image_labels`` positive, ``record.negative_labels``
  negative). Detections of a verified-negative class are false positives; detections of a class the image
  is not labelled for at all are ignored.

``group_of_weight=0, use_image_labels=False`` gives the older Open Images V2 metric
(``OpenImagesDetectionEvaluator``): detections in group-of boxes are ignored and every class is evaluated
in every image.

Class hierarchy: the challenge expands the ground truth to ancestor classes before evaluating (a "Man"
box is also a "Person" box). :func:`expand_hierarchy` does that on a dataset (boxes and positive labels
go up to every ancestor, negative labels down to every descendant); it is not applied automatically,
because most datasets handed to this library carry flat labels. Detections are never expanded: the
model must predict the parent classes itself, as in the challenge.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import numpy as np

from efficientdet.data.records import DetectionDataset, ImageRecord
from efficientdet.errors import ConfigError, DataError
from efficientdet.evaluation.base import ImageDetections, ignore_flags
from efficientdet.evaluation.voc import VOCEvaluator


class OpenImagesEvaluator(VOCEvaluator):
    """Open Images (challenge) AP@``iou_threshold`` per class and mAP; see the module docstring.

    :meth:`compute` returns ``{"mAP": ..., "AP/<class name>": ...}`` over the classes with ground truth in
    the evaluated images.
    """

    def __init__(
        self,
        dataset: DetectionDataset,
        *,
        group_of_weight: float = 1.0,
        use_image_labels: bool = True,
        iou_threshold: float = 0.5,
        method: str = "area",
    ) -> None:
        super().__init__(dataset, method=method, iou_threshold=iou_threshold, pixel_inclusive=False)
        if not 0.0 <= group_of_weight <= 1.0:
            raise ConfigError(f"group_of_weight must be in [0, 1], got {group_of_weight}")
        self.group_of_weight = float(group_of_weight)
        self.use_image_labels = bool(use_image_labels)

    def _group_of(self, record: ImageRecord) -> np.ndarray:
        if record.group_of is None:
            return np.zeros(len(record.labels), dtype=bool)
        group_of = np.asarray(record.group_of, dtype=bool).reshape(-1)
        if len(group_of) != len(record.labels):
            raise DataError(f"{record.path}: {len(group_of)} group_of flags for {len(record.labels)} boxes")
        return group_of

    def _select(self, record: ImageRecord, dets: ImageDetections) -> ImageDetections:
        if not self.use_image_labels:
            return dets
        keep = np.isin(dets.labels, evaluated_classes(record))
        return ImageDetections(dets.boxes[keep], dets.scores[keep], dets.labels[keep])


def evaluated_classes(record: ImageRecord) -> np.ndarray:
    """Classes evaluated in an image under the challenge rules: box labels and verified image-level labels."""
    parts = [record.labels]
    for labels in (record.image_labels, record.negative_labels):
        if labels is not None:
            parts.append(np.asarray(labels, dtype=np.int64).reshape(-1))
    return np.unique(np.concatenate(parts))


def expand_hierarchy(dataset: DetectionDataset, parents: Mapping[int, Iterable[int]]) -> DetectionDataset:
    """A copy of ``dataset`` with the ground truth expanded along a class hierarchy (Open Images challenge).

    ``parents[c]``: the direct parent labels of label ``c`` (labels ``0 .. K-1``; classes without parents
    may be absent). Every box also appears once for each ancestor of its class (same flags); positive
    image-level labels gain their ancestors, negative ones their descendants. Duplicate boxes an image
    already has are not removed, as in the official expansion script.
    """
    k = dataset.num_classes
    direct = {int(c): sorted({int(p) for p in ps}) for c, ps in parents.items()}
    for c, ps in direct.items():
        bad = [x for x in [c, *ps] if not 0 <= x < k]
        if bad:
            raise ConfigError(f"hierarchy label {bad[0]} is outside 0..{k - 1}")
    ancestors = [_closure(c, direct) for c in range(k)]
    children: dict[int, list[int]] = {}
    for c, ps in direct.items():
        for p in ps:
            children.setdefault(p, []).append(c)
    descendants = [_closure(c, children) for c in range(k)]

    records = []
    for r in dataset.records:
        rows = [i for i, lab in enumerate(r.labels.tolist()) for _ in range(1 + len(ancestors[lab]))]
        labels = [a for lab in r.labels.tolist() for a in (lab, *ancestors[lab])]
        records.append(
            dataclasses.replace(
                r,
                boxes=r.boxes[rows],
                labels=np.asarray(labels, dtype=np.int64),
                ignore=ignore_flags(r)[rows],
                group_of=None if r.group_of is None else np.asarray(r.group_of, dtype=bool)[rows],
                image_labels=_expand_labels(r.image_labels, ancestors),
                negative_labels=_expand_labels(r.negative_labels, descendants),
            )
        )
    return dataclasses.replace(dataset, records=records)


def _closure(c: int, edges: Mapping[int, list[int]]) -> list[int]:
    """Every label reachable from ``c`` through ``edges`` (excluding ``c``), in sorted order."""
    seen: set[int] = set()
    stack = list(edges.get(c, []))
    while stack:
        x = stack.pop()
        if x == c:
            raise ConfigError(f"the class hierarchy has a cycle through label {c}")
        if x not in seen:
            seen.add(x)
            stack.extend(edges.get(x, []))
    return sorted(seen)


def _expand_labels(labels: np.ndarray | None, related: list[list[int]]) -> np.ndarray | None:
    if labels is None:
        return None
    flat = np.asarray(labels, dtype=np.int64).reshape(-1).tolist()
    return np.unique(np.asarray(flat + [x for lab in flat for x in related[lab]], dtype=np.int64))
