"""``train``: the training loop, from a laptop CPU to many GPUs (``torchrun``), resumable exactly.

One optimizer step processes ``batch_size * grad_accum`` images per process. Everything that decides
the next step (model, EMA, optimizer, schedule, loss scaler, random generators, data position) and the
running sums of the epoch in progress are saved in each checkpoint, so ``resume`` continues as if the run had
never stopped, down to the bytes of ``metrics.csv`` (its wall-time columns aside, see
:data:`~efficientdet.engine.logger.WALL_TIME_COLUMNS`).

What a kill loses: ``last.pth`` is written (atomically) after every epoch, every ``save_every_steps`` optimizer
steps, and after the first optimizer step once ``save_every_minutes`` (default 10) of training have passed
since the last save; so a killed run loses at most about ``save_every_minutes`` of work.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from efficientdet.config import TrainConfig
from efficientdet.data.records import DetectionDataset
from efficientdet.engine import checkpoint as ckpt
from efficientdet.engine.distributed import DistInfo, all_reduce_sum, barrier, init_distributed
from efficientdet.engine.logger import WALL_TIME_COLUMNS, RunLogger, plot_curves
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
from efficientdet.errors import ConfigError, DataError, EfficientDetError

log = logging.getLogger(__name__)

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}

TOTALS = ("loss", "cls_loss", "box_loss", "batches", "images", "nonfinite_steps", "skipped_images", "dropped_boxes")
"""The running sums of an epoch (one float64 vector, index by name with :func:`_at`); loss sums are over the
batches that made a step, the counts are exact integers."""

VALIDATION_IMAGES = 3
"""Validation images drawn with their detections into TensorBoard after each evaluation."""


def _at(name: str) -> int:
    return TOTALS.index(name)


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
    train = load_dataset(cfg.train_data, cfg.data_format, split=cfg.train_split, default_split="train")
    val = None
    if cfg.val_data:
        val = load_dataset(cfg.val_data, cfg.data_format, split=cfg.val_split, default_split="val")
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


def check_input_size(model: nn.Module, image_size: tuple[int, int]) -> None:
    """Refuse an input size the model cannot train at, before anything starts (:class:`ConfigError`).

    BatchNorm in training needs more than one value per channel. The pyramid and head norms of this library
    accept a single value (:class:`~efficientdet.modeling.layers.BatchNorm2d`, TensorFlow's behaviour: P7 is
    1 x 1 at inputs up to 128), the backbone's do not: its deepest feature (stride ``s``) holds
    ``ceil(H / s) * ceil(W / s)`` values per image, and since skipped images can shrink any batch to one image,
    that must be at least 2. Any other size works: sizes need not be multiples of the largest stride.
    """
    backbone = getattr(model, "backbone", None)
    info = getattr(backbone, "feature_info", None)
    stride = max(info.reduction()) if info is not None else 32
    h, w = int(image_size[0]), int(image_size[1])
    if math.ceil(h / stride) * math.ceil(w / stride) < 2:
        raise ConfigError(
            f"image size {h}x{w} is too small to train {model.config.name}: its backbone reduces images {stride}x, "
            f"leaving one value per channel, and BatchNorm cannot train on one value; use an image size above "
            f"{stride} on at least one side")


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


RESUME_KEYS = ("batch_size", "grad_accum", "seed")
"""Settings that fix the data order and the steps: a resumed run must keep them."""


def _check_same_run(path: str | Path, saved: dict[str, Any], cfg: TrainConfig, world_size: int) -> None:
    """Refuse to resume with settings that would change the data order or the step count."""
    changed = [f"{k}={saved[k]!r} (now {getattr(cfg, k)!r})" for k in RESUME_KEYS
               if k in saved and saved[k] != getattr(cfg, k)]
    if changed:
        raise ConfigError(f"{path} was trained with {', '.join(changed)}; resume with the same settings, or start "
                          "a new run from its weights with --checkpoint")


class Trainer:
    """Holds the state of one training run; :func:`train` is the one-call entry point."""

    def __init__(self, cfg: TrainConfig, *, train_dataset: DetectionDataset | None = None,
                 val_dataset: DetectionDataset | None = None, resume: str | Path | None = None) -> None:
        from efficientdet.data.check import require_usable
        from efficientdet.data.loader import create_loader
        from efficientdet.data.preprocess import Normalizer
        from efficientdet.training.losses import DetectionLoss

        self.cfg = cfg
        self.dist: DistInfo = init_distributed(cfg.device)
        self.device = self.dist.device
        torch.manual_seed(cfg.seed)
        if train_dataset is None:
            train_dataset, val_dataset = _load_datasets(cfg)
        require_usable(train_dataset, cfg.train_data or "(given in Python)", "training set")
        if val_dataset is not None:
            require_usable(val_dataset, cfg.val_data or "(given in Python)", "validation set", boxes=False)
        self.train_dataset, self.val_dataset = train_dataset, val_dataset
        self.out_dir = Path(cfg.output)
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)

        model = build_model(cfg, train_dataset)
        self.config = model.config
        check_input_size(model, self.config.image_size)
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
        self.totals = torch.zeros(len(TOTALS), dtype=torch.float64)  # of the epoch in progress
        self._last_save = time.monotonic()
        if resume is not None:
            self.load_state(resume)
        self.logger = RunLogger(self.out_dir, tensorboard=cfg.tensorboard, enabled=self.dist.is_main,
                                purge_step=self.step + 1 if resume is not None else None)  # steps redone
        if resume is not None:
            self.logger.truncate_after(self.epoch)

    # --- checkpoints ---------------------------------------------------------------------------------

    def state(self, totals: torch.Tensor | None = None) -> dict[str, Any]:
        """Everything :meth:`load_state` needs; ``totals``: the epoch's running sums over all processes."""
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
            "epoch_totals": dict(zip(TOTALS, (self.totals if totals is None else totals).tolist())),
            "best_metric": self.best_metric,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": ckpt.rng_state(),
            "history": self.history,
            "step_losses": self.step_losses,
        }

    def save(self, name: str) -> Path | None:
        """Write a checkpoint (main process). Every process calls it at the same points (it sums the epoch)."""
        totals = all_reduce_sum(self.totals.to(self.device)).cpu() if self.dist.distributed else self.totals
        self._last_save = time.monotonic()
        if not self.dist.is_main:
            return None
        return ckpt.atomic_save(self.state(totals), self.out_dir / name)

    def load_state(self, path: str | Path) -> None:
        data = ckpt.load_checkpoint(path)
        saved = data.get("config", {})
        if saved.get("num_classes") != self.config.num_classes:
            raise ConfigError(f"{path} was trained for {saved.get('num_classes')} classes, the dataset has "
                              f"{self.config.num_classes}; resume with the same dataset")
        _check_same_run(path, data.get("train_config") or {}, self.cfg, self.dist.world_size)
        self.model.load_state_dict(data["model"])
        if self.ema is not None and data.get("ema") is not None:
            self.ema.module.load_state_dict(data["ema"])
            self.ema.num_updates = int(data.get("ema_updates", 0))
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        self.scaler.load_state_dict(data["scaler"])
        self.epoch, self.step = int(data["epoch"]), int(data["step"])
        self.epoch_batches = int(data.get("epoch_batches", 0))
        saved_totals = data.get("epoch_totals") or {}
        if self.dist.is_main:  # the saved sums are over all processes: count them once
            self.totals = torch.tensor([float(saved_totals.get(k, 0.0)) for k in TOTALS], dtype=torch.float64)
        self.best_metric = data.get("best_metric")
        self.history = list(data.get("history", []))
        self.step_losses = list(data.get("step_losses", []))
        ckpt.set_rng_state(data["rng"])
        if self.dist.is_main:
            print(f"resumed {path}: epoch {self.epoch}, step {self.step}, batch {self.epoch_batches} of the epoch")

    # --- one epoch -------------------------------------------------------------------------------------

    def _normalizer(self, num_positives: torch.Tensor) -> torch.Tensor:
        """The loss divisor: global positives / processes (see training.losses.detection_loss)."""
        total = all_reduce_sum(num_positives.sum().float())
        return (total + 1.0) / self.dist.world_size

    def train_epoch(self) -> dict[str, float]:
        """One epoch (or its rest, after a resume): its summary row (means, counts, then wall-time columns)."""
        cfg = self.cfg
        self.model.train()
        for m in self.frozen_norms:
            m.eval()
        loader = self.train_loader
        loader.set_epoch(self.epoch, start_batch=self.epoch_batches)
        images_here, start = 0, time.perf_counter()
        progress = self._progress(len(loader), initial=self.epoch_batches)
        self.optimizer.zero_grad(set_to_none=True)
        pending = False  # gradients accumulated since the last optimizer step
        last_loss: dict[str, torch.Tensor] | None = None
        for batch in loader:
            self.epoch_batches += 1
            self.totals[_at("skipped_images")] += len(batch.skipped)
            self.totals[_at("dropped_boxes")] += batch.dropped_boxes
            save_due, usable = self._batch_flags(batch)
            losses = self._forward_backward(batch) if usable else None
            if losses is not None:
                pending, last_loss = True, losses
                images_here += len(batch)
            elif usable:  # a non-finite loss: the step's gradients were dropped
                pending = False
            if pending and (self.epoch_batches % cfg.grad_accum == 0 or self.epoch_batches == len(loader)):
                self._optimizer_step()
                pending = False
                self.step_losses.append(float(last_loss["total"]))  # type: ignore[index]
                self._log_step(last_loss)  # type: ignore[arg-type]
                steps_due = cfg.save_every_steps and self.step % cfg.save_every_steps == 0
                if (steps_due or save_due) and self.epoch_batches < len(loader):
                    self.save("last.pth")
            if progress is not None:
                rate = images_here * self.dist.world_size / max(time.perf_counter() - start, 1e-9)
                loss_text = f"{float(last_loss['total']):.4f}" if last_loss is not None else "-"
                progress.set_postfix(loss=loss_text, lr=f"{self.optimizer.param_groups[0]['lr']:.2e}",
                                     img_s=f"{rate:.1f}")
                progress.update(1)
        if progress is not None:
            progress.close()
        elapsed = time.perf_counter() - start
        return self._epoch_summary(images_here, elapsed)

    def _forward_backward(self, batch: Any) -> dict[str, torch.Tensor] | None:
        """Loss and gradients of one batch, added to the epoch's sums; ``None`` when the loss is not finite
        (in any process), which skips the batch and drops the gradients accumulated for this step."""
        cfg = self.cfg
        batch = batch.to(self.device)
        pixels = self.normalize(batch.images)
        with _autocast(self.device, cfg.amp):
            outputs = self.net(pixels)
        anchors = self.model.anchors(tuple(pixels.shape[-2:]), self.device)
        losses = self.loss_fn(outputs, anchors, batch.targets, normalizer=self._normalizer)
        finite = torch.isfinite(losses["total"]).all()
        if self.dist.distributed:  # every process must agree on skipping a step
            finite = all_reduce_sum(finite.float()) == self.dist.world_size
        if not bool(finite):
            self.totals[_at("nonfinite_steps")] += 1
            self.optimizer.zero_grad(set_to_none=True)
            nonfinite = int(self.totals[_at("nonfinite_steps")])
            log.warning("non-finite loss at epoch %d, step %d; skipping this step", self.epoch + 1, self.step)
            if nonfinite >= cfg.max_nonfinite_steps:
                raise TrainingError(
                    f"the loss was NaN/inf in {nonfinite} steps this epoch. Try a lower learning rate "
                    f"(now {self.lr:.4g}), amp=none or bf16 instead of fp16, gradient clipping (clip_grad 10), "
                    "and `efficientdet data check` on the dataset (degenerate or huge boxes)")
            return None
        self.scaler.scale(losses["total"] / cfg.grad_accum).backward()
        self.totals[:3] += torch.stack([losses["total"], losses["cls"], losses["box"]]).detach().double().cpu()
        self.totals[_at("batches")] += 1
        self.totals[_at("images")] += len(batch)
        return {k: v.detach() for k, v in losses.items()}

    def _batch_flags(self, batch: Any) -> tuple[bool, bool]:
        """``(save_due, usable)``, agreed by every process: whether ``save_every_minutes`` have passed since the
        last checkpoint (clocks differ: any process decides), and whether to train on this batch (not when
        its images, in any process, were all skipped: every process must run the same collectives)."""
        minutes = self.cfg.save_every_minutes
        due = minutes > 0 and time.monotonic() - self._last_save >= 60.0 * minutes
        empty = len(batch) == 0
        if self.dist.distributed:
            flags = all_reduce_sum(torch.tensor([float(due), float(empty)], device=self.device))
            due, empty = bool(flags[0] > 0), bool(flags[1] > 0)
        return due, not empty

    def _log_step(self, losses: dict[str, torch.Tensor]) -> None:
        """TensorBoard scalars of this optimizer step, every ``log_every_steps`` steps."""
        every = self.cfg.log_every_steps
        if self.logger.writer is None or not every or self.step % every:
            return
        self.logger.log_scalars({"train/loss": float(losses["total"]), "train/cls_loss": float(losses["cls"]),
                                 "train/box_loss": float(losses["box"]),
                                 "lr": self.optimizer.param_groups[0]["lr"]}, self.step)

    def _epoch_summary(self, images_here: int, elapsed: float) -> dict[str, float]:
        """The epoch's row from the sums over all processes (and all sessions of a resumed epoch)."""
        totals = all_reduce_sum(self.totals.to(self.device)).cpu() if self.dist.distributed else self.totals
        t = dict(zip(TOTALS, totals.tolist()))
        self.totals = torch.zeros(len(TOTALS), dtype=torch.float64)
        if t["images"] == 0:
            skipped = getattr(self.train_loader, "skipped", [])
            example = f", e.g. {skipped[0][0]} ({skipped[0][1]})" if skipped else " (see the warnings above)"
            raise TrainingError(
                f"epoch {self.epoch + 1} trained on no image: {int(t['skipped_images'])} images were skipped because they "
                f"could not be read{example} and {int(t['nonfinite_steps'])} steps had a non-finite loss; "
                "check the images with `efficientdet data check`")
        n = max(t["batches"], 1.0)
        images_per_s = images_here * self.dist.world_size / max(elapsed, 1e-9)
        if self.dist.is_main and (t["skipped_images"] or t["dropped_boxes"]):
            log.warning("epoch %d: %d unreadable images skipped, %d unusable boxes dropped (not finite or empty)",
                        self.epoch + 1, int(t["skipped_images"]), int(t["dropped_boxes"]))
        return {
            "train_loss": t["loss"] / n, "train_cls_loss": t["cls_loss"] / n, "train_box_loss": t["box_loss"] / n,
            "lr": self.optimizer.param_groups[0]["lr"], "nonfinite_steps": int(t["nonfinite_steps"]),
            "skipped_images": int(t["skipped_images"]), "dropped_boxes": int(t["dropped_boxes"]),
            "images_per_s": images_per_s, "epoch_time_s": elapsed,
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
        """COCO metrics of the evaluation model on the validation set; with TensorBoard, also the per-class AP
        table and a few validation images with their detections (at the current optimizer step)."""
        from efficientdet.engine.evaluate import evaluate
        from efficientdet.evaluation import create_evaluator

        if self.val_loader is None or self.val_dataset is None:
            return {}
        evaluator = create_evaluator("coco", self.val_dataset)
        metrics = evaluate(self.eval_model(), self.val_loader, evaluator, device=self.device, amp=self.cfg.amp,
                           channels_last=self.cfg.channels_last, progress=self.cfg.progress and self.dist.is_main)
        if self.logger.writer is not None and metrics:
            self.logger.log_text("val/per_class_AP", evaluator.per_class_table(), self.step)
            self.logger.log_images("val/predictions", self.draw_validation_images(), self.step)
        return metrics

    @torch.inference_mode()
    def draw_validation_images(self, count: int = VALIDATION_IMAGES) -> list[Any]:
        """The first ``count`` readable validation images (PIL) with the evaluation model's detections drawn."""
        from efficientdet.data.images import read_image
        from efficientdet.data.preprocess import preprocess
        from efficientdet.postprocess import postprocess
        from efficientdet.visualize import draw_detections

        images = []
        for record in (self.val_dataset.records if self.val_dataset is not None else [])[:count]:
            with contextlib.suppress(DataError):  # an unreadable image was reported by the evaluation already
                images.append(read_image(record.path))
        if not images:
            return []
        model = self.eval_model()
        was_training = model.training
        model.eval()
        batch = preprocess(images, self.config.preprocess, self.device)
        outputs = model(batch.pixels)
        anchors = model.anchors(tuple(batch.pixels.shape[-2:]), self.device)
        detections = postprocess(outputs, anchors, self.config.postprocess, batch.metas, self.config.label_names)
        model.train(was_training)
        return [draw_detections(image, det.to("cpu"), score_threshold=0.2) for image, det in zip(images, detections)]

    # --- the run ---------------------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        cfg = self.cfg
        result = TrainResult(self.out_dir)
        if self.dist.is_main:
            print(f"training {self.config.name} on {len(self.train_dataset)} images ({self.config.num_classes} classes), "
                  f"{self.steps_per_epoch} steps/epoch x {cfg.epochs} epochs, lr {self.lr:.4g}, "
                  f"device {self.device}, {self.dist.world_size} process(es)")
            print(self.recipe.describe(), flush=True)
            if self.epoch >= cfg.epochs:
                print(f"all {cfg.epochs} epochs are done already (the checkpoint has {self.epoch}); "
                      "raise --epochs to train longer")
        while self.epoch < cfg.epochs:
            row: dict[str, Any] = {"epoch": self.epoch + 1}
            row.update(self.train_epoch())
            self.epoch += 1
            self.epoch_batches = 0
            metrics: dict[str, float] = {}
            if self.val_loader is not None and cfg.eval_every and (self.epoch % cfg.eval_every == 0 or self.epoch == cfg.epochs):
                metrics = self.validate()
                row.update(metrics)
            for key in WALL_TIME_COLUMNS:  # last, so the reproducible columns come first
                row[key] = row.pop(key)
            improved = "AP" in metrics and (self.best_metric is None or metrics["AP"] > self.best_metric)
            if improved:
                self.best_metric = metrics["AP"]
            self.history.append(row)
            self.logger.log_epoch(row, step=self.step)
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
            last = self.out_dir / "last.pth"
            result.last_checkpoint = last if last.is_file() else None
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
        if row.get("dropped_boxes"):
            parts.append(f"{row['dropped_boxes']} unusable boxes dropped")
        if row.get("nonfinite_steps"):
            parts.append(f"{row['nonfinite_steps']} non-finite steps skipped")
        print(" | ".join(parts), flush=True)


def train(cfg: TrainConfig | None = None, *, train_dataset: DetectionDataset | None = None,
          val_dataset: DetectionDataset | None = None, resume: str | Path | None = None,
          **settings: Any) -> TrainResult:
    """Train a detector as ``cfg`` says (what ``efficientdet train`` runs); returns where the checkpoints and
    logs went.

    Args:
        cfg: the run's :class:`~efficientdet.config.TrainConfig` (default: the defaults, the official recipe).
        train_dataset / val_dataset: datasets already loaded, instead of ``cfg.train_data`` / ``cfg.val_data``.
        resume: a ``last.pth`` of an earlier run of the same configuration to continue exactly.
        settings: :class:`~efficientdet.config.TrainConfig` fields that replace those of ``cfg``, e.g.
            ``train(train_data="coco/train.json", model="tf_efficientdet_d0", pretrained=True, epochs=20)``.

    Raises:
        ConfigError: an unknown setting (the message lists close matches) or an invalid value.
    """
    if settings:
        cfg = TrainConfig.from_dict({**(cfg.to_dict() if cfg is not None else {}), **settings})
    trainer = Trainer(cfg if cfg is not None else TrainConfig(), train_dataset=train_dataset,
                      val_dataset=val_dataset, resume=resume)
    return trainer.fit()
