"""effdet as the oracle for target assignment and the loss (inputs converted to its formats)."""

from __future__ import annotations

import os
import warnings
from types import SimpleNamespace

import torch

from efficientdet.config import AnchorConfig, LossConfig
from efficientdet.modeling.anchors import feature_sizes
from efficientdet.ops.boxes import swap_xy
from efficientdet.structures import Targets

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def effdet_labeler(cfg: AnchorConfig, size: tuple[int, int], num_classes: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from effdet.anchors import AnchorLabeler, Anchors
    anchors = Anchors(cfg.min_level, cfg.max_level, cfg.num_scales, list(cfg.aspect_ratios), cfg.anchor_scale, size)
    return AnchorLabeler(anchors, num_classes, match_threshold=0.5)


def effdet_labels(labeler, targets: list[Targets]) -> tuple[list, list, torch.Tensor]:
    """effdet's per-level targets: boxes yxyx, classes 1-based."""
    return labeler.batch_label_anchors([swap_xy(t.boxes) for t in targets], [t.labels + 1 for t in targets])


def flatten_levels(levels: list[torch.Tensor], last: int) -> torch.Tensor:
    """effdet's per-level ``[B, H, W, A * last]`` targets -> ``[B, N, last]`` (``[B, N]`` for ``last == 1``)."""
    b = levels[0].shape[0]
    out = torch.cat([t.reshape(b, -1, last) for t in levels], dim=1)
    return out.squeeze(-1) if last == 1 else out


def unflatten_outputs(flat: torch.Tensor, cfg: AnchorConfig, size: tuple[int, int]) -> list[torch.Tensor]:
    """Our ``[B, N, C]`` head output -> effdet's per-level ``[B, A * C, H, W]``."""
    b, _, c = flat.shape
    out, start = [], 0
    for h, w in feature_sizes(size, cfg.max_level)[cfg.min_level :]:
        n = h * w * cfg.num_anchors
        out.append(flat[:, start : start + n].reshape(b, h, w, cfg.num_anchors * c).permute(0, 3, 1, 2))
        start += n
    return out


def effdet_loss(cfg: LossConfig, num_classes: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from effdet.loss import DetectionLoss
    config = SimpleNamespace(
        num_classes=num_classes,
        alpha=cfg.alpha,
        gamma=cfg.gamma,
        delta=cfg.delta,
        box_loss_weight=cfg.box_loss_weight,
        label_smoothing=cfg.label_smoothing,
        legacy_focal=cfg.legacy_focal,
        jit_loss=False,
    )
    return DetectionLoss(config)


def random_targets(
    counts: list[int],
    size: tuple[int, int],
    num_classes: int,
    seed: int = 0,
    min_side: float = 4.0,
    max_side: float = 80.0,
) -> list[Targets]:
    """Random boxes inside an input of ``size`` (H, W)."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    out = []
    for m in counts:
        wh = torch.rand(m, 2, generator=g) * (max_side - min_side) + min_side
        xy = torch.rand(m, 2, generator=g) * (torch.tensor([w, h]) - wh).clamp(min=1)
        out.append(Targets(torch.cat([xy, xy + wh], dim=1), torch.randint(0, num_classes, (m,), generator=g)))
    return out
