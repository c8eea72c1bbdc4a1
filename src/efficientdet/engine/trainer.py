"""``train``: the training loop, from a laptop CPU to many GPUs (``torchrun``), resumable exactly.

One optimizer step processes ``batch_size * grad_accum`` images per process. Everything that decides
the next step (model, EMA, optimizer, schedule, loss scaler, random generators, data position) is saved
in each checkpoint, so ``resume`` continues as if the run had never stopped.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from efficientdet.config import TrainConfig
from efficientdet.data.records import DetectionDataset
from efficientdet.engine import checkpoint as ckpt
from efficientdet.engine.distributed import DistInfo, all_reduce_sum, barrier, init_distributed
from efficientdet.engine.logger import RunLogger, plot_curves
from efficientdet.engine.optim import (
    Ema,
    clip_gradients,
    create_optimizer,
    create_scheduler,
    effective_lr,
    freeze_parameters,
    frozen_norms,
)
from efficientdet.engine.recipe import resolve_recipe, set_bn_momentum
from efficientdet.errors import ConfigError, EfficientDetError

log = logging.getLogger(__name__)

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class TrainingError(EfficientDetError, RuntimeError):
    """Training cannot go on (for example the loss keeps being NaN); the message says what to try."""


@dataclass
class TrainResult:
    """What a run produced: its folder, checkpoints, per-epoch history and best validation metric."""

    output_dir: Path
    last_checkpoint: Path | None = None
    best_checkpoint: Path | None = None
    best_metric: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    curves: Path | None = None
    step_losses: list[float] = field(default_factory=list)


def _load_datasets(cfg: TrainConfig) -> tuple[DetectionDataset, DetectionDataset | None]:
    from efficientdet.data.parsers import load_dataset

    if not cfg.train_data:
        raise ConfigError("no training data: set train_data (--data PATH) to a dataset folder or annotation file")
    train = load_dataset(cfg.train_data, cfg.data_format, split="train")
    val = load_dataset(cfg.val_data, cfg.data_format, split="val") if cfg.val_data else None
    if val is not None and tuple(val.label_names) != tuple(train.label_names):
        raise ConfigError(f"the validation classes {list(val.label_names)[:5]}... differ from the training classes "
                          f"{list(train.label_names)[:5]}...; both splits must share one label list")
    return train, val


def build_model(cfg: TrainConfig, dataset: DetectionDataset) -> nn.Module:
    """The detector for ``cfg``, with a class head for the dataset's classes."""
    from efficientdet.factory import create_model

    model = create_model(
        cfg.model,
        pretrained=cfg.pretrained,
        pretrained_backbone=cfg.pretrained_backbone and not cfg.pretrained and cfg.checkpoint is None,
        checkpoint_path=cfg.checkpoint,
        image_size=cfg.image_size,
        overrides=dict(cfg.model_overrides),
    )
    names, ids = tuple(dataset.label_names), tuple(dataset.category_ids)
    if model.config.num_classes != dataset.num_classes or model.config.label_names != names:
        if model.config.num_classes == dataset.num_classes and model.config.label_names is None:
            model.config = replace(model.config, label_names=names, category_ids=ids)
        else:
            model.reset_classes(dataset.num_classes, names, ids)
    else:
        model.config = replace(model.config, category_ids=ids)
    return model


def _autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    dtype = AMP_DTYPES.get(amp)
    if amp not in AMP_DTYPES:
        raise ConfigError(f"amp={amp!r}: choose none, bf16 or fp16")
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _unwrap(model: nn.Module) -> nn.Module:
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


class Trainer:
    """Holds the state of one training run; :func:`train` is the one-call entry point."""

    def __init__(self, cfg: TrainConfig, *, train_dataset: DetectionDataset | None = None,
                 val_dataset: DetectionDataset | None = None, resume: str | Path | None = None) -> None:
        from efficientdet.data.loader import create_loader
        from efficientdet.data.preprocess import Normalizer
        from efficientdet.training.losses import DetectionLoss

        self.cfg = cfg
        self.dist: DistInfo = init_distributed(cfg.device)
        self.device = self.dist.device
        torch.manual_seed(cfg.seed)
        if train_dataset is None:
            train_dataset, val_dataset = _load_datasets(cfg)
        self.train_dataset, self.val_dataset = train_dataset, val_dataset
        self.out_dir = Path(cfg.output)
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)

        model = build_model(cfg, train_dataset)
        self.config = model.config
        self.frozen_norms: list[nn.Module] = []
        if cfg.freeze:
            freeze_parameters(model, cfg.freeze)
            self.frozen_norms = frozen_norms(model)
        if cfg.sync_bn and self.dist.distributed:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if cfg.grad_checkpointing:
            model.set_grad_checkpointing(True)
        model.to(self.device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model  # the plain module (saved, evaluated, averaged by EMA)
        size = self.config.image_size
        world = (self.dist.world_size, self.dist.rank) if self.dist.distributed else False
        self.train_loader = create_loader(
            train_dataset, cfg.batch_size, True, size, num_workers=cfg.workers, distributed=world,
            pin_memory=self.device.type == "cuda", seed=cfg.seed, mosaic=cfg.mosaic,
            scale_range=(cfg.scale_min, cfg.scale_max), hflip=cfg.hflip,
            randaugment=(2, 9.0) if cfg.randaugment else None, random_erasing=cfg.random_erasing,
            fill=self.config.preprocess.fill, mean=self.config.preprocess.mean,
        )
        if len(self.train_loader) == 0:
            raise ConfigError(f"the training set ({len(train_dataset)} images) is smaller than one batch "
                              f"({cfg.batch_size} x {self.dist.world_size} processes); lower batch_size")
        self.val_loader = None
        if val_dataset is not None:
            self.val_loader = create_loader(
                val_dataset, cfg.batch_size, False, size, num_workers=cfg.workers, distributed=world,
                seed=cfg.seed, fill=self.config.preprocess.fill, mean=self.config.preprocess.mean,
            )
        self.normalize = Normalizer.from_config(self.config.preprocess, channels_last=cfg.channels_last).to(self.device)
        self.loss_fn = DetectionLoss(self.config.loss, self.config.num_classes)

        self.steps_per_epoch = math.ceil(len(self.train_loader) / cfg.grad_accum)
        # the recipe fills in lr, warm-up, EMA decay and BN momentum the user left unset (engine/recipe.py)
        cfg, self.recipe = resolve_recipe(cfg, steps_per_epoch=self.steps_per_epoch, num_images=len(train_dataset),
                                          world_size=self.dist.world_size)
        self.cfg = cfg
        if cfg.bn_momentum is not None:
            set_bn_momentum(model, cfg.bn_momentum)
        self.ema = Ema(model, cfg.ema_decay) if cfg.ema else None
        self.lr = effective_lr(cfg, self.dist.world_size)
        self.optimizer = create_optimizer(model, cfg, self.lr)
        self.scheduler = create_scheduler(self.optimizer, cfg, self.lr, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.amp == "fp16")
        self.net: nn.Module = model
        if self.dist.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if cfg.compile:
            self.net = torch.compile(self.net)

        self.epoch = 0  # completed epochs
        self.step = 0  # optimizer steps done
        self.epoch_batches = 0  # batches consumed in the current epoch
        self.best_metric: float | None = None
        self.history: list[dict[str, Any]] = []
        self.step_losses: list[float] = []
        self.logger = RunLogger(self.out_dir, tensorboard=cfg.tensorboard, enabled=self.dist.is_main)
        if resume is not None:
            self.load_state(resume)

    # --- checkpoints ---------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        ds = self.train_dataset
        return {
            "format": ckpt.CHECKPOINT_FORMAT,
            "version": ckpt.CHECKPOINT_VERSION,
            "config": self.config.to_dict(),
            "train_config": self.cfg.to_dict(),
            "model": self.model.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "ema_updates": self.ema.num_updates if self.ema is not None else 0,
            "label_names": list(ds.label_names),
            "category_ids": list(ds.category_ids),
            "epoch": self.epoch,
            "step": self.step,
            "epoch_batches": self.epoch_batches,
            "best_metric": self.best_metric,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": ckpt.rng_state(),
            "history": self.history,
            "step_losses": self.step_losses,
        }

    def save(self, name: str) -> Path | None:
        if not self.dist.is_main:
            return None
        return ckpt.atomic_save(self.state(), self.out_dir / name)

    def load_state(self, path: str | Path) -> None:
        data = ckpt.load_checkpoint(path)
        saved = data.get("config", {})
        if saved.get("num_classes") != self.config.num_classes:
            raise ConfigError(f"{path} was trained for {saved.get('num_classes')} classes, the dataset has "
                              f"{self.config.num_classes}; resume with the same dataset")
        self.model.load_state_dict(data["model"])
        if self.ema is not None and data.get("ema") is not None:
            self.ema.module.load_state_dict(data["ema"])
            self.ema.num_updates = int(data.get("ema_updates", 0))
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        self.scaler.load_state_dict(data["scaler"])
        self.epoch, self.step = int(data["epoch"]), int(data["step"])
        self.epoch_batches = int(data.get("epoch_batches", 0))
        self.best_metric = data.get("best_metric")
        self.history = list(data.get("history", []))
        self.step_losses = list(data.get("step_losses", []))
        ckpt.set_rng_state(data["rng"])
        self.logger.truncate_after(self.epoch)
        if self.dist.is_main:
            print(f"resumed {path}: epoch {self.epoch}, step {self.step}, batch {self.epoch_batches} of the epoch")

    # --- one epoch -------------------------------------------------------------------------------------

    def _normalizer(self, num_positives: torch.Tensor) -> torch.Tensor:
        """The loss divisor: global positives / processes (see training.losses.detection_loss)."""
        total = all_reduce_sum(num_positives.sum().float())
        return (total + 1.0) / self.dist.world_size

    def train_epoch(self) -> dict[str, float]:
        cfg = self.cfg
        model, net = self.model, self.net
        model.train()
        for m in self.frozen_norms:
            m.eval()
        loader = self.train_loader
        loader.set_epoch(self.epoch, start_batch=self.epoch_batches)
        sums = torch.zeros(3, dtype=torch.float64)
        count, images_seen, nonfinite = 0, 0, 0
        start = time.perf_counter()
        progress = self._progress(len(loader), initial=self.epoch_batches)
        self.optimizer.zero_grad(set_to_none=True)
        for batch in loader:
            batch = batch.to(self.device)
            pixels = self.normalize(batch.images)
            with _autocast(self.device, cfg.amp):
                outputs = net(pixels)
            anchors = model.anchors(tuple(pixels.shape[-2:]), self.device)
            losses = self.loss_fn(outputs, anchors, batch.targets, normalizer=self._normalizer)
            loss = losses["total"]
            finite = torch.isfinite(loss).all()
            if self.dist.distributed:  # every process must agree on skipping a step
                finite = all_reduce_sum(finite.float()) == self.dist.world_size
            self.epoch_batches += 1
            if not bool(finite):
                nonfinite += 1
                self.optimizer.zero_grad(set_to_none=True)
                warnings.warn(f"non-finite loss at epoch {self.epoch + 1}, step {self.step}; skipping this step",
                              stacklevel=2)
                if nonfinite >= cfg.max_nonfinite_steps:
                    raise TrainingError(
                        f"the loss was NaN/inf in {nonfinite} steps this epoch. Try a lower learning rate "
                        f"(now {self.lr:.4g}), amp=none or bf16 instead of fp16, gradient clipping (clip_grad 10), "
                        "and `efficientdet data check` on the dataset (degenerate or huge boxes)")
                continue
            self.scaler.scale(loss / cfg.grad_accum).backward()
            sums += torch.stack([losses["total"], losses["cls"], losses["box"]]).detach().double().cpu()
            count += 1
            images_seen += len(batch)
            if self.epoch_batches % cfg.grad_accum == 0 or self.epoch_batches == len(loader):
                self._optimizer_step()
                self.step_losses.append(float(loss.detach()))
                if cfg.save_every_steps and self.step % cfg.save_every_steps == 0 and self.epoch_batches < len(loader):
                    self.save("last.pth")
            if progress is not None:
                rate = images_seen * self.dist.world_size / max(time.perf_counter() - start, 1e-9)
                progress.set_postfix(loss=f"{float(loss.detach()):.4f}", lr=f"{self.optimizer.param_groups[0]['lr']:.2e}",
                                     img_s=f"{rate:.1f}")
                progress.update(1)
        if progress is not None:
            progress.close()
        totals = all_reduce_sum(torch.cat([sums, torch.tensor([float(count), float(images_seen)], dtype=torch.float64)]))
        n = max(float(totals[3]), 1.0)
        elapsed = time.perf_counter() - start
        skipped = len(getattr(loader, "skipped", []))
        return {
            "train_loss": float(totals[0]) / n, "train_cls_loss": float(totals[1]) / n,
            "train_box_loss": float(totals[2]) / n, "lr": self.optimizer.param_groups[0]["lr"],
            "images_per_s": float(totals[4]) / max(elapsed, 1e-9), "epoch_time_s": elapsed,
            "nonfinite_steps": nonfinite, "skipped_images": skipped,
        }

    def _optimizer_step(self) -> None:
        self.scaler.unscale_(self.optimizer)
        clip_gradients([p for p in self.model.parameters() if p.grad is not None], self.cfg)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.scheduler.step_update(num_updates=self.step)
        if self.ema is not None:
            self.ema.update(self.model)

    def _progress(self, total: int, initial: int = 0) -> Any:
        if not (self.cfg.progress and self.dist.is_main):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}", unit="batch",
                    dynamic_ncols=True, leave=False, disable=None, mininterval=1.0)

    # --- validation ------------------------------------------------------------------------------------

    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def validate(self) -> dict[str, float]:
        from efficientdet.engine.evaluate import evaluate
        from efficientdet.evaluation import create_evaluator

        if self.val_loader is None or self.val_dataset is None:
            return {}
        evaluator = create_evaluator("coco", self.val_dataset)
        return evaluate(self.eval_model(), self.val_loader, evaluator, device=self.device, amp=self.cfg.amp,
                        channels_last=self.cfg.channels_last, progress=self.cfg.progress and self.dist.is_main)

    # --- the run ---------------------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        cfg = self.cfg
        result = TrainResult(self.out_dir)
        if self.dist.is_main:
            print(f"training {self.config.name} on {len(self.train_dataset)} images ({self.config.num_classes} classes), "
                  f"{self.steps_per_epoch} steps/epoch x {cfg.epochs} epochs, lr {self.lr:.4g}, "
                  f"device {self.device}, {self.dist.world_size} process(es)")
            print(self.recipe.describe(), flush=True)
        while self.epoch < cfg.epochs:
            row: dict[str, Any] = {"epoch": self.epoch + 1}
            row.update(self.train_epoch())
            self.epoch += 1
            self.epoch_batches = 0
            metrics: dict[str, float] = {}
            if self.val_loader is not None and cfg.eval_every and (self.epoch % cfg.eval_every == 0 or self.epoch == cfg.epochs):
                metrics = self.validate()
                row.update(metrics)
            improved = "AP" in metrics and (self.best_metric is None or metrics["AP"] > self.best_metric)
            if improved:
                self.best_metric = metrics["AP"]
            self.history.append(row)
            self.logger.log_epoch(row)
            result.last_checkpoint = self.save("last.pth")
            if improved:
                result.best_checkpoint = self.save("best.pth")
            if cfg.save_every_epochs and self.epoch % cfg.save_every_epochs == 0:
                self.save(f"epoch_{self.epoch:04d}.pth")
            if self.dist.is_main:
                self._print_epoch(row)
            barrier()
        result.history, result.best_metric, result.step_losses = self.history, self.best_metric, self.step_losses
        if self.dist.is_main:
            result.last_checkpoint = self.out_dir / "last.pth"
            if (self.out_dir / "best.pth").is_file():
                result.best_checkpoint = self.out_dir / "best.pth"
            result.curves = plot_curves(self.logger.csv_path, self.out_dir / "curves.png")
        self.logger.close()
        return result

    def _print_epoch(self, row: dict[str, Any]) -> None:
        parts = [f"epoch {row['epoch']}/{self.cfg.epochs}", f"loss {row['train_loss']:.4f}",
                 f"(cls {row['train_cls_loss']:.4f}, box {row['train_box_loss']:.5f})",
                 f"{row['images_per_s']:.1f} img/s", f"{row['epoch_time_s']:.0f}s"]
        if "AP" in row:
            parts.append(f"val mAP {row['AP']:.4f} (AP50 {row['AP50']:.4f})")
        if row.get("skipped_images"):
            parts.append(f"{row['skipped_images']} unreadable images skipped")
        print(" | ".join(parts), flush=True)


def train(cfg: TrainConfig, *, train_dataset: DetectionDataset | None = None,
          val_dataset: DetectionDataset | None = None, resume: str | Path | None = None) -> TrainResult:
    """Train a detector as ``cfg`` says; returns where the checkpoints and logs went.

    ``resume``: a ``last.pth`` of an earlier run of the same configuration to continue exactly.
    """
    trainer = Trainer(cfg, train_dataset=train_dataset, val_dataset=val_dataset, resume=resume)
    return trainer.fit()
