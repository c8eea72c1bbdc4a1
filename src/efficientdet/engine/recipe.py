"""Training recipes: the optimisation settings a run gets when the user leaves them unset.

Two recipes, chosen by :attr:`TrainConfig.recipe <efficientdet.config.TrainConfig>`:

``official``
    Google's EfficientDet recipe, tuned for 300 COCO epochs: learning rate 0.08 per 64 images (scaled
    linearly with the global batch, ``lr_base`` / ``lr_base_batch``) for every layer, one warm-up epoch, EMA
    decay 0.9998, BatchNorm momentum as the model config says (0.01, TF decay 0.99, in the FPN and heads).

``finetune``
    Settings derived from the run itself (``S`` optimizer steps of ``B`` images each), so a short run or a
    small dataset learns fast without hand tuning:

    =====================  ===================================================================================
    learning rate          ``0.0025 * B`` (0.02 for batch 8, 0.16 for 64): twice the official rate per image,
                           for the pretrained backbone
    pyramid and heads      3 times the backbone's rate (``head_lr_scale``): they start from random weights,
                           the backbone from ImageNet; a slower backbone instead (0.3x) learned less
    warm-up                3 % of the steps (at least one), expressed in (fractional) epochs
    EMA decay              ``1 - 1 / h`` with the horizon ``h = S / 10`` steps, between 0.9 and 0.9998
    BatchNorm momentum     ``50 / S`` between 0.01 and 0.1, in every BatchNorm layer: running statistics
                           average over the last 2 % of the run (at most 100 steps), so they follow the
                           weights they normalise and forget their initial values
    =====================  ===================================================================================

    For long runs it meets the official recipe (momentum 0.01 from 5,000 steps on, decay 0.9998 from 50,000);
    only the rates stay higher.

``auto`` (the default) picks ``official`` for long runs on large datasets (at least 20,000 optimizer steps
*and* 10,000 training images) and ``finetune`` otherwise.

Whatever the recipe, a value the user set wins: ``lr``, ``warmup_epochs``, ``ema_decay``, ``bn_momentum`` and
``head_lr_scale`` are ``None`` in :class:`~efficientdet.config.TrainConfig` unless given, and a
``model_overrides`` entry for ``*.norm.momentum`` keeps the model's own BatchNorm momentum.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch.nn as nn

from efficientdet.config import TrainConfig
from efficientdet.errors import ConfigError

# the official recipe (Google's EfficientDet, 300 COCO epochs)
OFFICIAL_WARMUP_EPOCHS = 1.0
OFFICIAL_EMA_DECAY = 0.9998

# auto: official only for long runs on large datasets
AUTO_OFFICIAL_MIN_STEPS = 20_000
AUTO_OFFICIAL_MIN_IMAGES = 10_000

# finetune
FINETUNE_LR_PER_IMAGE = 0.0025
"""Learning rate per image of the global batch: 0.02 for batch 8 (effdet's loop rate; official 0.00125)."""
FINETUNE_WARMUP_FRACTION = 0.03
FINETUNE_EMA_HORIZON_FRACTION = 0.1
FINETUNE_EMA_DECAY_RANGE = (0.9, OFFICIAL_EMA_DECAY)
FINETUNE_BN_HORIZON_FRACTION = 0.02
FINETUNE_BN_MOMENTUM_RANGE = (0.01, 0.1)
FINETUNE_HEAD_LR_SCALE = 3.0
"""The new pyramid and heads learn at this multiple of the pretrained backbone's rate (official: 1)."""

RESOLVED_FIELDS = ("lr", "warmup_epochs", "ema_decay", "bn_momentum", "head_lr_scale")
"""The TrainConfig fields a recipe fills in when they are ``None``."""


@dataclass(frozen=True)
class Recipe:
    """The resolved optimisation settings of a run, and where each came from.

    ``bn_momentum`` ``None``: the model's BatchNorm momentum is left as built. ``explicit``: the fields of
    :data:`RESOLVED_FIELDS` the user set (they were not derived).
    """

    name: str
    total_steps: int
    global_batch: int
    steps_per_epoch: int
    lr: float
    warmup_epochs: float
    ema_decay: float
    bn_momentum: float | None
    head_lr_scale: float = 1.0
    explicit: tuple[str, ...] = ()
    reason: str = ""
    ema: bool = True

    @property
    def warmup_steps(self) -> int:
        return round(self.warmup_epochs * self.steps_per_epoch)

    def describe(self) -> str:
        """One line for the start of training, e.g. ``recipe finetune (auto: 240 steps ...): lr 0.02 ...``."""
        bn = "as built" if self.bn_momentum is None else f"{self.bn_momentum:.3g}"
        mark = {f: " (set)" if f in self.explicit else "" for f in RESOLVED_FIELDS}
        ema = f"EMA decay {self.ema_decay:.4g}{mark['ema_decay']}" if self.ema else "no EMA"
        head = ("" if self.head_lr_scale == 1.0 else
                f" (pyramid and heads x{self.head_lr_scale:.3g}{mark['head_lr_scale']})")
        return (f"recipe {self.name} ({self.reason}): lr {self.lr:.4g}{mark['lr']}{head} for batch {self.global_batch}, "
                f"warm-up {self.warmup_steps} steps ({self.warmup_epochs:.3g} epochs){mark['warmup_epochs']}, "
                f"{self.total_steps} steps, {ema}, "
                f"BatchNorm momentum {bn}{mark['bn_momentum']}")


def _clamp(value: float, bounds: tuple[float, float]) -> float:
    return min(max(value, bounds[0]), bounds[1])


def choose_recipe(cfg: TrainConfig, total_steps: int, num_images: int) -> tuple[str, str]:
    """The recipe name for ``cfg`` (``auto`` resolved) and why, in words."""
    if cfg.recipe != "auto":
        return cfg.recipe, "chosen"
    long_run = total_steps >= AUTO_OFFICIAL_MIN_STEPS and num_images >= AUTO_OFFICIAL_MIN_IMAGES
    if long_run:
        return "official", f"auto: {total_steps} steps on {num_images} images"
    return "finetune", (f"auto: {total_steps} steps on {num_images} images; official from "
                        f"{AUTO_OFFICIAL_MIN_STEPS} steps and {AUTO_OFFICIAL_MIN_IMAGES} images")


def finetune_values(total_steps: int, global_batch: int, steps_per_epoch: int) -> dict[str, float]:
    """The ``finetune`` recipe for ``total_steps`` optimizer steps of ``global_batch`` images."""
    steps = max(int(total_steps), 1)
    warmup_steps = max(1, round(FINETUNE_WARMUP_FRACTION * steps))
    ema_horizon = FINETUNE_EMA_HORIZON_FRACTION * steps
    bn_horizon = FINETUNE_BN_HORIZON_FRACTION * steps
    return {
        "lr": FINETUNE_LR_PER_IMAGE * global_batch,
        "warmup_epochs": warmup_steps / max(steps_per_epoch, 1),
        "ema_decay": _clamp(1.0 - 1.0 / max(ema_horizon, 1.0), FINETUNE_EMA_DECAY_RANGE),
        "bn_momentum": _clamp(1.0 / max(bn_horizon, 1.0), FINETUNE_BN_MOMENTUM_RANGE),
        "head_lr_scale": FINETUNE_HEAD_LR_SCALE,
    }


def official_lr(cfg: TrainConfig, global_batch: int) -> float:
    """The official rate, scaled linearly: ``lr_base`` (0.08) per ``lr_base_batch`` (64) images."""
    return cfg.lr_base * global_batch / cfg.lr_base_batch


def official_values(cfg: TrainConfig, global_batch: int) -> dict[str, float | None]:
    """The ``official`` recipe: 0.08 per 64 images, 1 warm-up epoch, EMA 0.9998, BatchNorm momentum as built."""
    return {
        "lr": official_lr(cfg, global_batch),
        "warmup_epochs": OFFICIAL_WARMUP_EPOCHS,
        "ema_decay": OFFICIAL_EMA_DECAY,
        "bn_momentum": None,
        "head_lr_scale": 1.0,
    }


def resolve_recipe(cfg: TrainConfig, *, steps_per_epoch: int, num_images: int,
                   world_size: int = 1) -> tuple[TrainConfig, Recipe]:
    """Fill the unset fields of :data:`RESOLVED_FIELDS` from the run's recipe.

    ``steps_per_epoch``: optimizer steps per epoch (batches per process / ``grad_accum``). Returns a copy of
    ``cfg`` whose ``lr``, ``warmup_epochs`` and ``ema_decay`` are numbers (``bn_momentum`` stays ``None`` when
    the model's own momentum is kept) and the :class:`Recipe` that says what was chosen.
    """
    global_batch = cfg.batch_size * world_size * cfg.grad_accum
    total_steps = steps_per_epoch * cfg.epochs
    name, reason = choose_recipe(cfg, total_steps, num_images)
    values = (finetune_values(total_steps, global_batch, steps_per_epoch) if name == "finetune"
              else official_values(cfg, global_batch))
    explicit = tuple(f for f in RESOLVED_FIELDS if getattr(cfg, f) is not None)
    resolved = {f: getattr(cfg, f) if f in explicit else values[f] for f in RESOLVED_FIELDS}
    if "bn_momentum" not in explicit and any(k.endswith("norm.momentum") for k, _ in cfg.model_overrides):
        resolved["bn_momentum"] = None  # the user set the model's momentum: keep it
        explicit += ("bn_momentum",)
    for f in ("lr", "ema_decay", "head_lr_scale"):
        if not (resolved[f] > 0 and math.isfinite(resolved[f])):
            raise ConfigError(f"{f}={resolved[f]!r}: must be a positive number")
    if resolved["warmup_epochs"] < 0:
        raise ConfigError(f"warmup_epochs={resolved['warmup_epochs']!r}: must be 0 or more")
    if resolved["bn_momentum"] is not None and not 0 < resolved["bn_momentum"] <= 1:
        raise ConfigError(f"bn_momentum={resolved['bn_momentum']!r}: must be in (0, 1] (PyTorch's meaning: "
                          "0.01 == TF decay 0.99)")
    recipe = Recipe(name=name, total_steps=total_steps, global_batch=global_batch, steps_per_epoch=steps_per_epoch,
                    explicit=explicit, reason=reason, ema=cfg.ema, **resolved)
    return dataclasses.replace(cfg, **resolved), recipe


def set_bn_momentum(model: nn.Module, momentum: float) -> int:
    """Set the running-statistics momentum of every BatchNorm layer of ``model``; returns how many."""
    count = 0
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = momentum
            count += 1
    return count
