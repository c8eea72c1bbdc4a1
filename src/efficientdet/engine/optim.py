"""Optimiser, learning-rate schedule, gradient clipping and EMA for training (timm underneath).

Each function takes the run's :class:`~efficientdet.config.OptimConfig` slice (``cfg.optim``) whole.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import torch
import torch.nn as nn
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import dispatch_clip_grad
from timm.utils.model_ema import ModelEmaV3

from efficientdet.config import OptimConfig, TrainConfig
from efficientdet.errors import ConfigError

FREEZE_SHORTCUTS = {"backbone": ("backbone.*",), "backbone+fpn": ("backbone.*", "fpn.*")}


def effective_lr(cfg: TrainConfig, world_size: int) -> float:
    """``cfg.lr`` (set by the user or by the recipe), else the official rate for the global batch."""
    if cfg.lr is not None:
        return cfg.lr
    from efficientdet.engine.recipe import official_lr

    return official_lr(cfg, cfg.batch_size * world_size * cfg.grad_accum)


def freeze_parameters(model: nn.Module, patterns: tuple[str, ...]) -> int:
    """Stop gradients for parameters whose name matches any pattern (fnmatch); returns how many were frozen.

    ``backbone`` and ``backbone+fpn`` are shortcuts. BN layers inside frozen parts keep training-mode
    statistics updates unless the caller puts them in eval mode.
    """
    expanded: list[str] = []
    for p in patterns:
        expanded.extend(FREEZE_SHORTCUTS.get(p, (p,)))
    count = 0
    for name, param in model.named_parameters():
        if any(fnmatch.fnmatch(name, pat) for pat in expanded):
            param.requires_grad_(False)
            count += 1
    if expanded and count == 0:
        raise ConfigError(f"freeze patterns {list(patterns)} match no parameter; names look like "
                          f"{[n for n, _ in list(model.named_parameters())[:3]]}")
    return count


def frozen_norms(model: nn.Module) -> list[nn.Module]:
    """Normalisation layers whose parameters are all frozen: they should stay in eval mode while training."""
    out = []
    for m in model.modules():
        if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)):
            params = list(m.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                out.append(m)
    return out


def parameter_groups(model: nn.Module, weight_decay: float, head_lr_scale: float = 1.0) -> list[dict[str, Any]]:
    """Trainable parameters in optimizer groups: no weight decay on norms, biases and fusion weights (1-d).

    With ``head_lr_scale`` 1: two groups (no decay, decay), as timm makes them. Otherwise the parameters outside
    ``backbone.*`` (the new pyramid and heads) get their own two groups, after the backbone's, with
    ``lr_scale=head_lr_scale``, which timm's schedulers multiply into every rate they set (warm-up and decay
    alike). Empty groups are left out.
    """
    scaled = head_lr_scale != 1.0
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            head = scaled and not name.startswith("backbone.")
            groups.setdefault((head, param.ndim > 1), []).append(param)
    out = []
    for (head, decay), params in sorted(groups.items()):  # backbone first, then no decay before decay
        group: dict[str, Any] = {"params": params, "weight_decay": weight_decay if decay else 0.0}
        if head:
            group["lr_scale"] = head_lr_scale
        out.append(group)
    return out


def create_optimizer(model: nn.Module, cfg: OptimConfig, lr: float) -> torch.optim.Optimizer:
    """timm optimizer over trainable parameters (:func:`parameter_groups`): no weight decay on norms, biases
    and fusion weights; the pyramid and heads at ``cfg.head_lr_scale`` times ``lr`` (1 when ``None``)."""
    scale = 1.0 if cfg.head_lr_scale is None else cfg.head_lr_scale
    try:
        return create_optimizer_v2(parameter_groups(model, cfg.weight_decay, scale), opt=cfg.optimizer, lr=lr,
                                   weight_decay=cfg.weight_decay, momentum=cfg.momentum)
    except Exception as err:  # timm raises assorted errors for unknown names
        from timm.optim import list_optimizers

        raise ConfigError(f"cannot create optimizer {cfg.optimizer!r}: {err}. Available: "
                          f"{', '.join(list_optimizers())}") from err


def create_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, lr: float, updates_per_epoch: int, *,
                     seed: int) -> Any:
    """Per-update schedule with linear warm-up from ``lr * warmup_lr_ratio`` (official: cosine, 1 epoch);
    ``seed``: of the learning-rate noise (``lr_noise``), the run's seed."""
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched=cfg.scheduler,
        num_epochs=cfg.epochs,
        warmup_epochs=cfg.warmup_epochs,  # fractional epochs are fine: the schedule runs per update
        warmup_lr=lr * cfg.warmup_lr_ratio,
        min_lr=lr * cfg.min_lr_ratio,
        warmup_prefix=True,  # official: the cosine starts where the warm-up ends
        noise=list(cfg.lr_noise) if cfg.lr_noise else None,
        noise_seed=seed,
        step_on_epochs=False,
        updates_per_epoch=updates_per_epoch,
    )
    return scheduler


def clip_gradients(parameters: Any, cfg: OptimConfig) -> None:
    """Clip by global norm (official: 10), by value, or adaptively (AGC)."""
    if cfg.clip_grad is None or cfg.clip_grad <= 0:
        return
    dispatch_clip_grad(parameters, cfg.clip_grad, mode=cfg.clip_mode)


class Ema(ModelEmaV3):
    """timm's EMA with the official decay schedule: ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__(model, decay=decay)
        self.num_updates = 0

    def get_decay(self, step: int | None = None) -> float:
        n = self.num_updates if step is None else step
        return min(self.decay, (1.0 + n) / (10.0 + n))

    def update(self, model: nn.Module, step: int | None = None) -> None:  # type: ignore[override]
        super().update(model, step=self.num_updates if step is None else step)
        self.num_updates += 1
