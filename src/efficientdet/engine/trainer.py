"""``train``: the training loop, from a laptop CPU to many GPUs (``torchrun``), resumable exactly.

:class:`Trainer` holds a run's state and its step; what happens around the step (validation, checkpoints,
``metrics.csv`` and TensorBoard, the console) are hooks (:mod:`efficientdet.engine.hooks`), and a user adds
more with ``train(..., hooks=[...])``. Each part gets its slice of the :class:`~efficientdet.config.TrainConfig`.

One optimizer step processes ``batch_size * grad_accum`` images per process. Everything that decides
the next step (model, EMA, optimizer, schedule, loss scaler, random generators, data position) and the
running sums of the epoch in progress are saved in each checkpoint, so ``resume`` continues as if the run had
never stopped, down to the bytes of ``metrics.csv`` (its wall-time columns aside, see
:data:`~efficientdet.engine.logger.WALL_TIME_COLUMNS`).

What a kill loses: ``last.pth`` is written (atomically) after every epoch, every ``save_every_steps`` optimizer
steps, and after the first optimizer step once ``save_every_minutes`` (default 10) of training have passed
since the last save; so a killed run loses at most about ``save_every_minutes`` of work
(:class:`~efficientdet.engine.hooks.CheckpointHook`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from efficientdet.config import DataConfig, TrainConfig, TrainModelConfig, flat_train_settings
from efficientdet.data.records import DetectionDataset
from efficientdet.engine import checkpoint as ckpt
from efficientdet.engine.distributed import DistInfo, all_reduce_sum, barrier, init_distributed
from efficientdet.engine.hooks import HookBase, default_hooks
from efficientdet.engine.logger import RunLogger, console_output, plot_curves
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
from efficientdet.precision import amp_dtype

log = logging.getLogger(__name__)

"""``RuntimeConfig.amp`` -> the autocast dtype (``none``: full precision)."""

TOTALS = ("loss", "cls_loss", "box_loss", "batches", "images", "nonfinite_steps", "skipped_images", "dropped_boxes")
"""The running sums of an epoch (one float64 vector, index by name with :func:`_at`); loss sums are over the
batches that made a step, the counts are exact integers."""


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


def _load_datasets(data: DataConfig) -> tuple[DetectionDataset, DetectionDataset | None]:
    from efficientdet.data.parsers import load_dataset

    if not data.train_data:
        raise ConfigError("no training data: set train_data (--data PATH) to a dataset folder or annotation file")
    train = load_dataset(data.train_data, data.data_format, split=data.train_split, default_split="train")
    val = None
    if data.val_data:
        val = load_dataset(data.val_data, data.data_format, split=data.val_split, default_split="val")
    if val is not None and tuple(val.label_names) != tuple(train.label_names):
        raise ConfigError(f"the validation classes {list(val.label_names)[:5]}... differ from the training classes "
                          f"{list(train.label_names)[:5]}...; both splits must share one label list")
    return train, val


def build_model(detector: TrainModelConfig, dataset: DetectionDataset) -> nn.Module:
    """The detector a run trains (its ``detector`` slice), with a class head for the dataset's classes."""
    from efficientdet.factory import create_model

    model = create_model(
        detector.model,
        pretrained=detector.pretrained,
        pretrained_backbone=detector.pretrained_backbone and not detector.pretrained and detector.checkpoint is None,
        checkpoint_path=detector.checkpoint,
        image_size=detector.image_size,
        overrides=dict(detector.model_overrides),
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
    dtype = amp_dtype(amp)  # the one dtype table (efficientdet.precision)
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type=device.type, dtype=dtype)


RESUME_KEYS = ("batch_size", "grad_accum", "seed")
"""Settings that fix the data order and the steps: a resumed run must keep them."""


def _check_same_run(path: str | Path, saved: dict[str, Any], cfg: TrainConfig) -> None:
    """Refuse to resume with settings that would change the data order or the step count (``saved``: the
    checkpoint's ``train_config``, in slices or, from older checkpoints, flat)."""
    saved = flat_train_settings(saved)
    changed = [f"{k}={saved[k]!r} (now {getattr(cfg, k)!r})" for k in RESUME_KEYS
               if k in saved and saved[k] != getattr(cfg, k)]
    if changed:
        raise ConfigError(f"{path} was trained with {', '.join(changed)}; resume with the same settings, or start "
                          "a new run from its weights with --checkpoint")


class Trainer:
    """One training run: its state and its step; :func:`train` is the one-call entry point.

    ``hooks``: more :class:`~efficientdet.engine.hooks.HookBase` objects, called with the default ones
    (validation, metrics, checkpoints, console) in ``priority`` order.
    """

    def __init__(self, cfg: TrainConfig, *, train_dataset: DetectionDataset | None = None,
                 val_dataset: DetectionDataset | None = None, resume: str | Path | None = None,
                 hooks: Iterable[HookBase] = ()) -> None:
        self.cfg = cfg
        self.dist: DistInfo = init_distributed(cfg.runtime.device)
        self.device = self.dist.device
        torch.manual_seed(cfg.runtime.seed)
        self._setup_data(train_dataset, val_dataset)
        self._setup_model()
        self._setup_loaders()
        self._setup_optimization()
        self._reset_progress()
        self.resumed_from = resume
        if resume is not None:
            self.load_state(resume)
        self.logger = RunLogger(self.out_dir, tensorboard=cfg.outputs.tensorboard, enabled=self.dist.is_main,
                                purge_step=self.step + 1 if resume is not None else None)  # steps redone
        if resume is not None:
            self.logger.truncate_after(self.epoch)
        self.hooks: list[HookBase] = []
        self.register_hooks([*default_hooks(), *hooks])

    # --- set-up: one slice each -------------------------------------------------------------------------

    def _setup_data(self, train_dataset: DetectionDataset | None, val_dataset: DetectionDataset | None) -> None:
        from efficientdet.data.check import require_usable

        data = self.cfg.data
        if train_dataset is None:
            train_dataset, val_dataset = _load_datasets(data)
        require_usable(train_dataset, data.train_data or "(given in Python)", "training set")
        if val_dataset is not None:
            require_usable(val_dataset, data.val_data or "(given in Python)", "validation set", boxes=False)
        self.train_dataset, self.val_dataset = train_dataset, val_dataset
        self.out_dir = Path(self.cfg.outputs.output)
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)

    def _setup_model(self) -> None:
        from efficientdet.data.preprocess import Normalizer
        from efficientdet.training.losses import DetectionLoss

        runtime, freeze = self.cfg.runtime, self.cfg.optim.freeze
        model = build_model(self.cfg.detector, self.train_dataset)
        self.config = model.config
        check_input_size(model, self.config.image_size)
        self.frozen_norms: list[nn.Module] = []
        if freeze:
            freeze_parameters(model, freeze)
            self.frozen_norms = frozen_norms(model)
        if runtime.sync_bn and self.dist.distributed:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if runtime.grad_checkpointing:
            model.set_grad_checkpointing(True)
        model.to(self.device)
        if runtime.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model  # the plain module (saved, evaluated, averaged by EMA)
        self.normalize = Normalizer.from_config(self.config.preprocess, channels_last=runtime.channels_last).to(self.device)
        self.loss_fn = DetectionLoss(self.config.loss, self.config.num_classes)

    def _setup_loaders(self) -> None:
        from efficientdet.data.loader import create_loader

        data, size, pre = self.cfg.data, self.config.image_size, self.config.preprocess
        world = (self.dist.world_size, self.dist.rank) if self.dist.distributed else False
        common: dict[str, Any] = {"num_workers": data.workers, "distributed": world, "seed": self.cfg.runtime.seed,
                                  "fill": pre.fill, "mean": pre.mean}
        self.train_loader = create_loader(self.train_dataset, data.batch_size, True, size, augment=self.cfg.augment,
                                          pin_memory=self.device.type == "cuda", **common)
        if len(self.train_loader) == 0:
            raise ConfigError(f"the training set ({len(self.train_dataset)} images) is smaller than one batch "
                              f"({data.batch_size} x {self.dist.world_size} processes); lower batch_size")
        self.val_loader = None
        if self.val_dataset is not None:
            self.val_loader = create_loader(self.val_dataset, data.batch_size, False, size, **common)

    def _setup_optimization(self) -> None:
        self.steps_per_epoch = math.ceil(len(self.train_loader) / self.cfg.optim.grad_accum)
        # the recipe fills in lr, warm-up, EMA decay and BN momentum the user left unset (engine/recipe.py)
        self.cfg, self.recipe = resolve_recipe(self.cfg, steps_per_epoch=self.steps_per_epoch,
                                               num_images=len(self.train_dataset), world_size=self.dist.world_size)
        optim, model = self.cfg.optim, self.model
        if optim.bn_momentum is not None:
            set_bn_momentum(model, optim.bn_momentum)
        self.ema = Ema(model, optim.ema_decay) if optim.ema else None
        self.lr = effective_lr(self.cfg, self.dist.world_size)
        self.optimizer = create_optimizer(model, optim, self.lr)
        self.scheduler = create_scheduler(self.optimizer, optim, self.lr, self.steps_per_epoch,
                                          seed=self.cfg.runtime.seed)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.cfg.runtime.amp == "fp16")
        self.net: nn.Module = model
        if self.dist.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if self.cfg.runtime.compile:
            self.net = torch.compile(self.net)

    def _reset_progress(self) -> None:
        self.epoch = 0  # completed epochs
        self.step = 0  # optimizer steps done
        self.epoch_batches = 0  # batches consumed in the current epoch
        self.epoch_images = 0  # images trained on in this process, this session of the epoch
        self.best_metric: float | None = None
        self.improved = False  # the epoch just done set a new best_metric (EvalHook)
        self.history: list[dict[str, Any]] = []
        self.step_losses: list[float] = []
        self.last_loss: dict[str, torch.Tensor] | None = None
        self.row: dict[str, Any] = {}  # the summary of the epoch just done (hooks add to it)
        self.totals = torch.zeros(len(TOTALS), dtype=torch.float64)  # of the epoch in progress

    # --- hooks ---------------------------------------------------------------------------------------------

    def register_hooks(self, hooks: Iterable[HookBase]) -> None:
        """Add hooks (each gets ``hook.trainer``); all are kept sorted by ``priority``, stable."""
        hooks = list(hooks)
        for hook in hooks:
            if not isinstance(hook, HookBase):
                raise ConfigError(f"hooks must be efficientdet.engine.hooks.HookBase objects, got {type(hook).__name__}")
            hook.trainer = self
        self.hooks = sorted([*self.hooks, *hooks], key=lambda h: h.priority)

    def _call(self, point: str) -> None:
        for hook in self.hooks:
            getattr(hook, point)()

    # --- the run -----------------------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        """Train the epochs left; the run's lines go to stdout unless ``efficientdet.train`` has handlers."""
        with console_output():
            self._call("before_train")
            while self.epoch < self.cfg.optim.epochs:
                self._call("before_epoch")
                summary = self.train_epoch()
                self.epoch, self.epoch_batches, self.improved = self.epoch + 1, 0, False
                self.row = {"epoch": self.epoch, **summary}
                self._call("after_epoch")
                barrier()
            self._call("after_train")
        return self._result()

    def train_epoch(self) -> dict[str, float]:
        """One epoch (or its rest, after a resume): its summary (means, counts, then wall-time columns)."""
        self.model.train()
        for m in self.frozen_norms:
            m.eval()
        loader = self.train_loader
        loader.set_epoch(self.epoch, start_batch=self.epoch_batches)
        self.epoch_images, self.last_loss, start = 0, None, time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        pending = False  # gradients accumulated since the last optimizer step
        for batch in loader:
            self.epoch_batches += 1
            self.totals[_at("skipped_images")] += len(batch.skipped)
            self.totals[_at("dropped_boxes")] += batch.dropped_boxes
            if self._usable(batch):
                losses = self._forward_backward(batch)
                pending = losses is not None  # a non-finite loss dropped the step's gradients
                if losses is not None:
                    self.last_loss = losses
                    self.epoch_images += len(batch)
            step_ends = self.epoch_batches % self.cfg.optim.grad_accum == 0 or self.epoch_batches == len(loader)
            if pending and step_ends:
                self._optimizer_step()
                pending = False
                self._call("after_step")
        return self._epoch_summary(time.perf_counter() - start)

    def _usable(self, batch: Any) -> bool:
        """Whether to train on this batch: not when its images, in any process, were all skipped (every process
        must run the same collectives)."""
        empty = len(batch) == 0
        if self.dist.distributed:
            empty = bool(all_reduce_sum(torch.tensor(float(empty), device=self.device)) > 0)
        return not empty

    def _normalizer(self, num_positives: torch.Tensor) -> torch.Tensor:
        """The loss divisor: global positives / processes (see training.losses.detection_loss)."""
        total = all_reduce_sum(num_positives.sum().float())
        return (total + 1.0) / self.dist.world_size

    def _forward_backward(self, batch: Any) -> dict[str, torch.Tensor] | None:
        """Loss and gradients of one batch, added to the epoch's sums; ``None`` when the loss is not finite
        (in any process), which skips the batch and drops the gradients accumulated for this step."""
        batch = batch.to(self.device)
        pixels = self.normalize(batch.images)
        with _autocast(self.device, self.cfg.runtime.amp):
            outputs = self.net(pixels)
        anchors = self.model.anchors(tuple(pixels.shape[-2:]), self.device)
        losses = self.loss_fn(outputs, anchors, batch.targets, normalizer=self._normalizer)
        finite = torch.isfinite(losses["total"]).all()
        if self.dist.distributed:  # every process must agree on skipping a step
            finite = all_reduce_sum(finite.float()) == self.dist.world_size
        if not bool(finite):
            self._skip_nonfinite()
            return None
        self.scaler.scale(losses["total"] / self.cfg.optim.grad_accum).backward()
        self.totals[:3] += torch.stack([losses["total"], losses["cls"], losses["box"]]).detach().double().cpu()
        self.totals[_at("batches")] += 1
        self.totals[_at("images")] += len(batch)
        return {k: v.detach() for k, v in losses.items()}

    def _skip_nonfinite(self) -> None:
        self.totals[_at("nonfinite_steps")] += 1
        self.optimizer.zero_grad(set_to_none=True)
        nonfinite = int(self.totals[_at("nonfinite_steps")])
        log.warning("non-finite loss at epoch %d, step %d; skipping this step", self.epoch + 1, self.step)
        if nonfinite >= self.cfg.runtime.max_nonfinite_steps:
            raise TrainingError(
                f"the loss was NaN/inf in {nonfinite} steps this epoch. Try a lower learning rate "
                f"(now {self.lr:.4g}), amp=none or bf16 instead of fp16, gradient clipping (clip_grad 10), "
                "and `efficientdet data check` on the dataset (degenerate or huge boxes)")

    def _optimizer_step(self) -> None:
        self.scaler.unscale_(self.optimizer)
        clip_gradients([p for p in self.model.parameters() if p.grad is not None], self.cfg.optim)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.scheduler.step_update(num_updates=self.step)
        if self.ema is not None:
            self.ema.update(self.model)
        self.step_losses.append(float(self.last_loss["total"]))  # type: ignore[index]

    def _epoch_summary(self, elapsed: float) -> dict[str, float]:
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
        images_per_s = self.epoch_images * self.dist.world_size / max(elapsed, 1e-9)
        if self.dist.is_main and (t["skipped_images"] or t["dropped_boxes"]):
            log.warning("epoch %d: %d unreadable images skipped, %d unusable boxes dropped (not finite or empty)",
                        self.epoch + 1, int(t["skipped_images"]), int(t["dropped_boxes"]))
        return {
            "train_loss": t["loss"] / n, "train_cls_loss": t["cls_loss"] / n, "train_box_loss": t["box_loss"] / n,
            "lr": self.optimizer.param_groups[0]["lr"], "nonfinite_steps": int(t["nonfinite_steps"]),
            "skipped_images": int(t["skipped_images"]), "dropped_boxes": int(t["dropped_boxes"]),
            "images_per_s": images_per_s, "epoch_time_s": elapsed,
        }

    def eval_model(self) -> nn.Module:
        """The model that is evaluated and kept as ``best.pth``'s weights: the EMA when on."""
        return self.ema.module if self.ema is not None else self.model

    def _result(self) -> TrainResult:
        result = TrainResult(self.out_dir, best_metric=self.best_metric, history=self.history,
                             step_losses=self.step_losses)
        if self.dist.is_main:
            for name, attr in (("last.pth", "last_checkpoint"), ("best.pth", "best_checkpoint")):
                if (self.out_dir / name).is_file():
                    setattr(result, attr, self.out_dir / name)
            result.curves = plot_curves(self.logger.csv_path, self.out_dir / "curves.png")
        self.logger.close()
        return result

    # --- checkpoints -------------------------------------------------------------------------------------

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
        if not self.dist.is_main:
            return None
        return ckpt.atomic_save(self.state(totals), self.out_dir / name)

    def load_state(self, path: str | Path) -> None:
        data = ckpt.load_checkpoint(path)
        saved = data.get("config", {})
        if saved.get("num_classes") != self.config.num_classes:
            raise ConfigError(f"{path} was trained for {saved.get('num_classes')} classes, the dataset has "
                              f"{self.config.num_classes}; resume with the same dataset")
        _check_same_run(path, data.get("train_config") or {}, self.cfg)
        self.model.load_state_dict(data["model"])
        if self.ema is not None and data.get("ema") is not None:
            self.ema.module.load_state_dict(data["ema"])
            self.ema.num_updates = int(data.get("ema_updates", 0))
        saved_groups = len(data["optimizer"].get("param_groups", ()))
        if saved_groups != len(self.optimizer.param_groups):
            saved_scale = flat_train_settings(data.get("train_config") or {}).get("head_lr_scale")
            hint = ("it was written before the finetune recipe trained the pyramid and heads at their own rate; "
                    "resume with --set head_lr_scale=1" if saved_scale is None else
                    f"it was trained with head_lr_scale={saved_scale}; resume with --set head_lr_scale={saved_scale}")
            raise ConfigError(f"{path} holds {saved_groups} optimizer parameter groups, this run has "
                              f"{len(self.optimizer.param_groups)}: {hint}")
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


def train(cfg: TrainConfig | None = None, *, train_dataset: DetectionDataset | None = None,
          val_dataset: DetectionDataset | None = None, resume: str | Path | None = None,
          hooks: Iterable[HookBase] = (), **settings: Any) -> TrainResult:
    """Train a detector as ``cfg`` says (what ``efficientdet train`` runs); returns where the checkpoints and
    logs went. The run's lines (its start, one per epoch) are ``logging`` messages of ``efficientdet.train``,
    shown on stdout unless that logger has handlers of its own.

    Args:
        cfg: the run's :class:`~efficientdet.config.TrainConfig` (default: the defaults, the official recipe).
        train_dataset / val_dataset: datasets already loaded, instead of ``cfg.data.train_data`` / ``val_data``.
        resume: a ``last.pth`` of an earlier run of the same configuration to continue exactly.
        hooks: more :class:`~efficientdet.engine.hooks.HookBase` objects (see :mod:`efficientdet.engine.hooks`).
        settings: :class:`~efficientdet.config.TrainConfig` settings (flat names) that replace those of ``cfg``,
            e.g. ``train(train_data="coco/train.json", model="tf_efficientdet_d0", pretrained=True, epochs=20)``.

    Raises:
        ConfigError: an unknown setting (the message lists close matches) or an invalid value.
    """
    if settings:
        cfg = TrainConfig.from_dict({**(cfg.to_dict() if cfg is not None else {}), **settings})
    trainer = Trainer(cfg if cfg is not None else TrainConfig(), train_dataset=train_dataset,
                      val_dataset=val_dataset, resume=resume, hooks=hooks)
    return trainer.fit()
