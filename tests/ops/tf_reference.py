"""Readers for the official-TF fixtures in ``shared/reference`` (see their README for every convention)."""

from __future__ import annotations

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
