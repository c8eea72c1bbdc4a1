"""Seeded, realistic little detection problems shared by the evaluation tests.

Ground truth: images of different sizes, some without boxes, boxes of all COCO size ranges, crowd /
difficult / group-of flags, sparse dataset category ids. Detections: jittered copies of ground-truth
boxes (some twice: duplicates), wrong-class copies and random boxes, every score distinct (the oracles
break score ties in an unspecified order), some images without detections.

COCO boxes lie on a 0.5-pixel grid so that float32 ``xyxy`` and the oracle's float64 ``xywh`` json hold
exactly the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from efficientdet.data.records import DetectionDataset, ImageRecord
from efficientdet.structures import Detections

SPARSE_CATEGORY_IDS = (1, 3, 7, 18, 44, 90)


@dataclass
class Problem:
    dataset: DetectionDataset
    detections: list[Detections]


def make_problem(
    seed: int = 0,
    num_images: int = 40,
    category_ids: tuple[int, ...] = SPARSE_CATEGORY_IDS,
    ignore_rate: float = 0.1,
    group_of_rate: float = 0.0,
    image_labels: bool = False,
    many_detections_image: bool = True,
) -> Problem:
    rng = np.random.default_rng(seed)
    k = len(category_ids)
    records: list[ImageRecord] = []
    detections: list[Detections] = []
    all_boxes, all_labels, owners = [], [], []
    for i in range(num_images):
        h, w = int(rng.integers(200, 481)), int(rng.integers(200, 641))
        m = 0 if i % 7 == 3 else int(rng.integers(1, 9))
        bw = np.round(np.exp(rng.uniform(np.log(4), np.log(0.9 * w), m)) * 2) / 2
        bh = np.round(np.exp(rng.uniform(np.log(4), np.log(0.9 * h), m)) * 2) / 2
        x = np.round(rng.uniform(0, 1, m) * (w - bw) * 2) / 2
        y = np.round(rng.uniform(0, 1, m) * (h - bh) * 2) / 2
        gt = np.stack([x, y, x + bw, y + bh], axis=1).astype(np.float32)
        labels = rng.integers(0, k, m)
        ignore = rng.random(m) < ignore_rate
        group_of = rng.random(m) < group_of_rate if group_of_rate > 0 else None
        img_labels = neg_labels = None
        if image_labels:
            # verified positives: the box classes plus maybe one more; verified negatives: one or two others
            pos = set(labels.tolist()) | ({int(rng.integers(0, k))} if rng.random() < 0.4 else set())
            neg = set(rng.choice(k, size=2, replace=False).tolist()) - pos
            img_labels = np.array(sorted(pos), dtype=np.int64)
            neg_labels = np.array(sorted(neg), dtype=np.int64)
        records.append(
            ImageRecord(
                path=Path(f"img_{i:04d}.jpg"),
                image_id=1000 + 7 * i,
                boxes=gt,
                labels=labels,
                ignore=ignore,
                group_of=group_of,
                size=(h, w),
                image_labels=img_labels,
                negative_labels=neg_labels,
            )
        )

        # detections
        boxes, dlabels = [], []
        if i % 11 != 5:
            for j, (b, lab) in enumerate(zip(gt.astype(np.float64), labels, strict=True)):
                size = np.array([b[2] - b[0], b[3] - b[1]] * 2)
                for _ in range(int(rng.choice([0, 1, 1, 1, 2]))):
                    boxes.append(b + rng.normal(0, 0.12, 4) * size)
                    dlabels.append(lab if rng.random() < 0.85 else int(rng.integers(0, k)))
                if group_of is not None and group_of[j]:  # several detections inside a group-of box
                    for _ in range(int(rng.integers(1, 4))):
                        lo = rng.uniform(0, 0.5, 2)
                        hi = lo + rng.uniform(0.2, 0.5, 2)
                        boxes.append(b[[0, 1, 0, 1]] + np.concatenate([lo, hi]) * size)
                        dlabels.append(lab if rng.random() < 0.9 else int(rng.integers(0, k)))
            n_random = 120 if (many_detections_image and i == 2) else int(rng.integers(0, 6))
            for _ in range(n_random):
                bw_, bh_ = np.exp(rng.uniform(np.log(3), np.log(0.8 * min(w, h)), 2))
                x0, y0 = rng.uniform(0, w - bw_), rng.uniform(0, h - bh_)
                boxes.append(np.array([x0, y0, x0 + bw_, y0 + bh_]))
                dlabels.append(int(rng.integers(0, k)))
        all_boxes.append(np.array(boxes, dtype=np.float64).reshape(-1, 4))
        all_labels.append(np.array(dlabels, dtype=np.int64))
        owners.append(len(boxes))

    # distinct scores over the whole problem
    total = sum(owners)
    scores = (rng.permutation(total) + 1) / (total + 1)
    start = 0
    for boxes, labels, n in zip(all_boxes, all_labels, owners, strict=True):
        s = np.sort(scores[start : start + n])[::-1].copy()
        start += n
        b = boxes.copy()
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1.0)  # keep boxes valid
        detections.append(
            Detections(
                torch.tensor(b, dtype=torch.float32),
                torch.tensor(s, dtype=torch.float32),
                torch.tensor(labels, dtype=torch.int64),
            )
        )
    names = tuple(f"class_{c}" for c in category_ids)
    return Problem(DetectionDataset(records, names, category_ids), detections)


def coco_json(dataset: DetectionDataset) -> dict:
    """The ground truth as a COCO annotation file, written the usual way (independently of our code)."""
    images, annotations = [], []
    for r in dataset.records:
        images.append({"id": r.image_id, "file_name": r.path.name, "height": r.size[0], "width": r.size[1]})
        for (x1, y1, x2, y2), lab, crowd in zip(r.boxes.tolist(), r.labels.tolist(), r.ignore.tolist(), strict=True):
            w, h = x2 - x1, y2 - y1
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": r.image_id,
                    "category_id": dataset.category_ids[lab],
                    "bbox": [x1, y1, w, h],
                    "area": w * h,
                    "iscrowd": int(crowd),
                }
            )
    cats = [{"id": c, "name": n} for c, n in zip(dataset.category_ids, dataset.label_names, strict=True)]
    return {"images": images, "annotations": annotations, "categories": cats}


def coco_results_json(dataset: DetectionDataset, detections: list[Detections], indices: list[int]) -> list[dict]:
    """Detections as a COCO results list, written the usual way."""
    rows = []
    for i in indices:
        d = detections[i]
        for (x1, y1, x2, y2), s, lab in zip(d.boxes.tolist(), d.scores.tolist(), d.labels.tolist(), strict=True):
            rows.append(
                {
                    "image_id": dataset.records[i].image_id,
                    "category_id": dataset.category_ids[lab],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": s,
                }
            )
    return rows
