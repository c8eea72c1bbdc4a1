"""Training recipes: derived values for given steps/batch, explicit settings win, official values, trainer hook."""

import math
from pathlib import Path

import pytest
import torch.nn as nn

from efficientdet.config import TrainConfig, train_config_from
from efficientdet.data.sample import ensure_sample_dataset
from efficientdet.engine.optim import create_optimizer, create_scheduler, effective_lr
from efficientdet.engine.recipe import (
    FINETUNE_HEAD_LR_SCALE,
    choose_recipe,
    finetune_values,
    resolve_recipe,
    set_bn_momentum,
)
from efficientdet.errors import ConfigError

TINY = str(Path(__file__).with_name("tiny.yaml"))


def test_finetune_values_for_a_short_run():
    # 240 steps of 8 images, 7 steps per epoch (the run)
    v = finetune_values(240, 8, 7)
    assert v["lr"] == pytest.approx(0.02)
    assert v["warmup_epochs"] == pytest.approx(7 / 7)  # 3 % of 240 = 7.2 -> 7 steps
    assert v["ema_decay"] == pytest.approx(1 - 1 / 24)  # horizon a tenth of the run
    assert v["bn_momentum"] == pytest.approx(0.1)  # 1 / (2 % of 240) = 0.21, capped at 0.1


def test_finetune_values_for_a_longer_run_approach_the_official_ones():
    v = finetune_values(10_000, 64, 100)
    assert v["lr"] == pytest.approx(0.16)
    assert v["warmup_epochs"] == pytest.approx(3.0)  # 300 steps
    assert v["ema_decay"] == pytest.approx(0.999)
    assert v["bn_momentum"] == pytest.approx(0.01)  # 1 / 200 = 0.005, floored at the official 0.01
    mid = finetune_values(1_000, 16, 50)
    assert mid["bn_momentum"] == pytest.approx(0.05) and mid["ema_decay"] == pytest.approx(0.99)
    assert finetune_values(500_000, 64, 100)["ema_decay"] == pytest.approx(0.9998)  # capped at the official decay
    tiny = finetune_values(3, 2, 1)
    assert tiny["warmup_epochs"] == 1.0 and tiny["ema_decay"] == pytest.approx(0.9)  # at least one warm-up step


def test_auto_picks_official_only_for_long_runs_on_large_datasets():
    cfg = TrainConfig()
    assert choose_recipe(cfg, 240, 54)[0] == "finetune"
    assert choose_recipe(cfg, 500_000, 1_000)[0] == "finetune"  # long but small
    assert choose_recipe(cfg, 5_000, 118_000)[0] == "finetune"  # large but short
    assert choose_recipe(cfg, 554_000, 118_000)[0] == "official"  # 300 COCO epochs
    assert choose_recipe(TrainConfig(recipe="official"), 240, 54)[0] == "official"
    with pytest.raises(ConfigError, match="finetune"):
        choose_recipe(TrainConfig(recipe="fast"), 240, 54)


def test_resolve_finetune_fills_unset_values_and_counts_the_global_batch():
    cfg, recipe = resolve_recipe(TrainConfig(batch_size=4, grad_accum=2, epochs=30), steps_per_epoch=8,
                                 num_images=64, world_size=2)
    assert recipe.name == "finetune" and recipe.total_steps == 240 and recipe.global_batch == 16
    assert cfg.lr == pytest.approx(0.04) and cfg.bn_momentum == pytest.approx(0.1)
    assert cfg.warmup_epochs == pytest.approx(7 / 8) and recipe.warmup_steps == 7
    assert cfg.ema_decay == pytest.approx(1 - 1 / 24) and recipe.explicit == ()
    line = recipe.describe()
    assert "finetune" in line and "lr 0.04" in line and "BatchNorm momentum 0.1" in line


def test_explicit_settings_win_over_the_recipe():
    cfg, recipe = resolve_recipe(TrainConfig(lr=0.003, warmup_epochs=0, ema_decay=0.99, epochs=10),
                                 steps_per_epoch=10, num_images=80)
    assert (cfg.lr, cfg.warmup_epochs, cfg.ema_decay) == (0.003, 0, 0.99)
    assert cfg.bn_momentum == pytest.approx(0.1)  # still derived
    assert set(recipe.explicit) == {"lr", "warmup_epochs", "ema_decay"} and "(set)" in recipe.describe()
    # --set model.fpn.norm.momentum=... keeps the model's own momentum
    sets = ["model.fpn.norm.momentum=0.03", "bn_momentum=null"]
    cfg, recipe = resolve_recipe(train_config_from(None, sets, epochs=10), steps_per_epoch=10, num_images=80)
    assert cfg.bn_momentum is None and "bn_momentum" in recipe.explicit
    cfg, _ = resolve_recipe(train_config_from(None, ["bn_momentum=0.2"], epochs=10), steps_per_epoch=10, num_images=80)
    assert cfg.bn_momentum == 0.2
    with pytest.raises(ConfigError, match="bn_momentum"):
        resolve_recipe(TrainConfig(bn_momentum=1.5), steps_per_epoch=10, num_images=80)
    with pytest.raises(ConfigError, match="lr"):
        resolve_recipe(TrainConfig(lr=-1.0), steps_per_epoch=10, num_images=80)


def test_official_recipe_reproduces_the_official_values():
    cfg, recipe = resolve_recipe(TrainConfig(recipe="official", batch_size=8, grad_accum=2), steps_per_epoch=100,
                                 num_images=1600, world_size=4)
    assert cfg.lr == pytest.approx(0.08 * 64 / 64)  # 0.08 per 64 images, global batch 8 x 4 x 2
    assert cfg.warmup_epochs == 1.0 and cfg.ema_decay == 0.9998 and cfg.bn_momentum is None
    assert recipe.name == "official" and "as built" in recipe.describe()
    cfg, _ = resolve_recipe(TrainConfig(recipe="official", batch_size=16), steps_per_epoch=100, num_images=1600)
    assert cfg.lr == pytest.approx(0.02)
    assert effective_lr(TrainConfig(batch_size=16), world_size=2) == pytest.approx(0.04)  # unresolved: official
    assert math.isclose(resolve_recipe(TrainConfig(recipe="official", lr_base=0.16), steps_per_epoch=1,
                                       num_images=8)[0].lr, 0.02)


def test_set_bn_momentum_reaches_every_batchnorm():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=0.01), nn.Sequential(nn.BatchNorm1d(4)),
                          nn.GroupNorm(2, 4))
    assert set_bn_momentum(model, 0.07) == 2
    assert model[1].momentum == 0.07 and model[2][0].momentum == 0.07


def test_trainer_applies_and_prints_the_resolved_recipe(tmp_path, capsys):
    from efficientdet.engine.trainer import Trainer

    data = ensure_sample_dataset(tmp_path / "data", train=16, val=4, size=96)
    cfg = TrainConfig(model=TINY, train_data=str(data["train"]), batch_size=4, epochs=2, workers=0,
                      output=str(tmp_path / "run"), progress=False, pretrained_backbone=False)
    trainer = Trainer(cfg)
    assert trainer.recipe.name == "finetune" and trainer.recipe.total_steps == 8
    assert trainer.lr == pytest.approx(0.01) and trainer.cfg.ema_decay == pytest.approx(0.9)
    norms = [m for m in trainer.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and all(m.momentum == pytest.approx(0.1) for m in norms)
    assert trainer.ema is not None and trainer.ema.decay == pytest.approx(0.9)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.1)  # warm-up starts at a tenth
    trainer.fit()
    assert "recipe finetune (auto: 8 steps on 16 images" in capsys.readouterr().out


def test_an_unknown_recipe_is_refused_where_the_config_is_built():
    from efficientdet.errors import ConfigError

    with pytest.raises(ConfigError, match="recipe='fast'.*auto, finetune, official"):
        TrainConfig(recipe="fast")
    assert TrainConfig().lr is None and TrainConfig(bn_momentum=0.1).bn_momentum == 0.1


class _Detector(nn.Module):
    """A pretrained-style ``backbone`` and new layers outside it (names as in our models and effdet's)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.fpn = nn.Conv2d(4, 4, 1)
        self.class_net = nn.Conv2d(4, 2, 1)


def test_head_lr_scale_comes_from_the_recipe_unless_set():
    cfg, recipe = resolve_recipe(TrainConfig(epochs=10), steps_per_epoch=20, num_images=160)
    assert cfg.head_lr_scale == FINETUNE_HEAD_LR_SCALE and f"heads x{FINETUNE_HEAD_LR_SCALE:g}" in recipe.describe()
    cfg, recipe = resolve_recipe(TrainConfig(recipe="official", epochs=10), steps_per_epoch=20, num_images=160)
    assert cfg.head_lr_scale == 1.0 and "heads x" not in recipe.describe()
    cfg, recipe = resolve_recipe(TrainConfig(head_lr_scale=1.5, epochs=10), steps_per_epoch=20, num_images=160)
    assert cfg.head_lr_scale == 1.5 and "heads x1.5 (set)" in recipe.describe()
    with pytest.raises(ConfigError, match="head_lr_scale"):
        TrainConfig(head_lr_scale=0.0)


def test_pyramid_and_heads_learn_at_the_scaled_rate_through_warm_up_and_decay():
    model = _Detector()
    cfg = TrainConfig(epochs=4, head_lr_scale=3.0, warmup_epochs=1.0, weight_decay=1e-4)
    optimizer = create_optimizer(model, cfg.optim, 0.02)
    groups = optimizer.param_groups
    # backbone groups first (1-d norms and biases without decay, then weights), then the new layers
    names = {id(p): n for n, p in model.named_parameters()}
    first = [names[id(p)] for p in groups[0]["params"] + groups[1]["params"]]
    assert all(n.startswith("backbone.") for n in first) and len(first) == 4
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert [g["weight_decay"] for g in groups] == [0.0, 1e-4, 0.0, 1e-4]
    assert [g.get("lr_scale", 1.0) for g in groups] == [1.0, 1.0, 3.0, 3.0]
    scheduler = create_scheduler(optimizer, cfg.optim, 0.02, updates_per_epoch=10, seed=cfg.seed)
    for step in (0, 5, 10, 25):  # warm-up start, mid warm-up, peak, cosine decay
        scheduler.step_update(num_updates=step)
        backbone, head = groups[0]["lr"], groups[2]["lr"]
        assert backbone > 0 and head == pytest.approx(3.0 * backbone)
    assert groups[0]["lr"] < 0.02  # decaying
    # scale 1 (the official recipe): one rate, two groups (no decay, decay) as before, no lr_scale key
    plain = create_optimizer(model, TrainConfig().optim, 0.02).param_groups
    assert [g["weight_decay"] for g in plain] == [0.0, 4e-5] and all("lr_scale" not in g for g in plain)
