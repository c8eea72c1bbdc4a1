"""Readers for the official-TF fixtures in ``shared/reference`` (see their README for every convention), and a
transcription of TF's NMS kernel."""

from __future__ import annotations

import heapq
import math
from pathlib import Path

import numpy as np
import torch

from efficientdet.config import AnchorConfig, aspect_pairs

OFFICIAL_RATIOS = aspect_pairs((1.0, 2.0, 0.5))

# (folder, outputs file, key prefix, post-processing file or None, input size, anchor_scale, image_scale)
CASES = {
    "d0-native": ("tf-official", "d0-outputs-native-ema.npz", "", "d0-postprocess-native-ema.npz", 512, 4.0, 1.25),
    "d0-small-ema": ("tf-official", "d0-outputs-small.npz", "ema_", None, 128, 4.0, 5.0),
    "d0-small-raw": ("tf-official", "d0-outputs-small.npz", "raw_", None, 128, 4.0, 5.0),
    "lite0-native": (
        "tf-official-lite0",
        "lite0-outputs-native-ema.npz",
        "",
        "lite0-postprocess-native-ema.npz",
        320,
        3.0,
        2.0,
    ),
    "lite0-small-ema": ("tf-official-lite0", "lite0-outputs-small.npz", "ema_", None, 128, 3.0, 5.0),
    "lite0-small-raw": ("tf-official-lite0", "lite0-outputs-small.npz", "raw_", None, 128, 3.0, 5.0),
}


def anchor_config(case: str) -> AnchorConfig:
    return AnchorConfig(aspect_ratios=OFFICIAL_RATIOS, anchor_scale=CASES[case][5])


def load_case(root: Path, case: str) -> dict:
    """Flattened outputs (``cls [1, N, 90]``, ``box [1, N, 4]``), official ``anchors`` (yxyx), both detection
    sets ``[1, 100, 7]`` (``soft``, ``hard``), the input size and the image scale."""
    folder, outputs, prefix, post, size, _, image_scale = CASES[case]
    o = np.load(root / folder / outputs)

    def flat(kind: str, k: int) -> torch.Tensor:
        return torch.cat(
            [torch.from_numpy(o[f"{prefix}{kind}_p{level}"]).reshape(1, -1, k) for level in range(3, 8)], 1
        )

    p = np.load(root / folder / post) if post else o
    det_prefix = "" if post else prefix
    out = {
        "cls": flat("class", 90),
        "box": flat("box", 4),
        "anchors": torch.from_numpy(p["anchors"]),
        "soft": torch.from_numpy(p[f"{det_prefix}detections"]),
        "hard": torch.from_numpy(p[f"{det_prefix}detections_hard_nms"]),
        "size": size,
        "image_scale": image_scale,
    }
    if post:
        out["prenms_boxes"] = torch.from_numpy(p["prenms_boxes"])
        out["prenms_scores"] = torch.from_numpy(p["prenms_scores"])
        out["prenms_classes"] = torch.from_numpy(p["prenms_classes"]).long()
        assert float(p["image_scale"][0]) == image_scale
    return out


def tf_nms(boxes: np.ndarray, scores: np.ndarray, max_out: int, iou_thr: float, score_thr: float, tf_sigma: float):
    """TF's CPU kernel, step by step: a priority queue ordered by (score, then lower index), lazy re-scoring,
    float32 arithmetic, boxes yxyx. Returns the selected indices and their (decayed) scores.

    The decay's ``exp`` is the C library's ``expf`` in TF, correctly rounded in practice: float64 ``exp``
    rounded to float32 here (this reproduces the D0 and Lite0 fixtures' soft-NMS scores bit for bit)."""
    boxes, scores = boxes.astype(np.float32), scores.astype(np.float32)

    def iou(i, j):
        a, b = boxes[i], boxes[j]
        area_i = (max(a[0], a[2]) - min(a[0], a[2])) * (max(a[1], a[3]) - min(a[1], a[3]))
        area_j = (max(b[0], b[2]) - min(b[0], b[2])) * (max(b[1], b[3]) - min(b[1], b[3]))
        if area_i <= 0 or area_j <= 0:
            return np.float32(0)
        h = max(min(a[2], b[2]) - max(a[0], b[0]), np.float32(0))
        w = max(min(a[3], b[3]) - max(a[1], b[1]), np.float32(0))
        inter = np.float32(h * w)
        return np.float32(inter / np.float32(area_i + area_j - inter))

    scale = np.float32(-0.5) / np.float32(tf_sigma) if tf_sigma > 0 else np.float32(0)
    queue = [(-s, i, 0, s) for i, s in enumerate(scores) if s > score_thr]  # (priority, index, begin, score)
    heapq.heapify(queue)
    selected, selected_scores = [], []
    while len(selected) < max_out and queue:
        _, i, begin, score = heapq.heappop(queue)
        original = score
        hard_suppressed = False
        for j in range(len(selected) - 1, begin - 1, -1):
            sim = iou(i, selected[j])
            score = np.float32(score * np.float32(math.exp(np.float32(scale * sim * sim))))
            if tf_sigma == 0 and sim > iou_thr:
                hard_suppressed = True
                break
            if score <= score_thr:
                break
        if hard_suppressed:
            continue
        if score == original:
            selected.append(i)
            selected_scores.append(score)
        elif score > score_thr:
            heapq.heappush(queue, (-score, i, len(selected), score))
    return selected, selected_scores
