"""Training hooks: what happens around the training loop, added without editing it (detectron2's ``HookBase``).

:meth:`Trainer.fit <efficientdet.engine.trainer.Trainer.fit>` calls every hook at five points::

    before_train
    for each epoch:
        before_epoch
        after_step          after each optimizer step
        after_epoch         trainer.row holds the epoch's summary; hooks may add to it
    after_train

A hook reads (and may change) the trainer's state: ``trainer.epoch`` (completed epochs), ``trainer.step``
(optimizer steps done), ``trainer.epoch_batches``, ``trainer.last_loss``, ``trainer.row``, the model and
optimizer, ``trainer.cfg`` (the :class:`~efficientdet.config.TrainConfig`) and ``trainer.dist`` (rank, world
size). Hooks run in ``priority`` order, lower first (ties: the order given). Every process calls every hook at
the same points, so a hook may use collectives; write files and log on ``trainer.dist.is_main`` only.

The defaults (:func:`default_hooks`), in their order:

=====================  ====  ===================================================================================
:class:`EvalHook`       10   validation with the evaluator ``eval_metric`` every ``eval_every`` epochs: metrics
                             into the epoch's row, the best value of its primary metric
(user hooks)            50   :class:`HookBase` ``priority`` unless a hook says otherwise
:class:`MetricsHook`    70   the epoch's row into the history, ``metrics.csv`` and TensorBoard; per-step scalars
:class:`CheckpointHook` 80   ``last.pth`` / ``best.pth`` / ``epoch_NNNN.pth``, and within an epoch every
                             ``save_every_steps`` steps and after ``save_every_minutes`` of training
:class:`ConsoleHook`    90   the run's lines (``logging``, logger ``efficientdet.train``) and the progress bar
=====================  ====  ===================================================================================

``metrics.csv`` is written before the checkpoint of the same epoch (a resumed run drops rows after its
checkpoint's epoch, so the two always agree).
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import torch

from efficientdet.engine.distributed import all_reduce_sum
from efficientdet.engine.logger import TRAIN_LOG, WALL_TIME_COLUMNS
from efficientdet.errors import DataError

if TYPE_CHECKING:
    from efficientdet.engine.trainer import Trainer

log = logging.getLogger(TRAIN_LOG)

VALIDATION_IMAGES = 3
"""Validation images drawn with their detections into TensorBoard after each evaluation."""


class HookBase:
    """A training hook: override any of the five methods (each does nothing here). ``trainer`` is set when the
    trainer takes the hook; ``priority`` orders the hooks (lower first, see the module docstring)."""

    priority: int = 50
    trainer: Trainer

    def before_train(self) -> None:
        """Once, before the first epoch of this call to ``fit`` (after a resume: the first epoch left)."""

    def before_epoch(self) -> None:
        """Before each epoch (after a mid-epoch resume: before the rest of that epoch)."""

    def after_step(self) -> None:
        """After each optimizer step (``trainer.step`` counts it, ``trainer.last_loss`` holds its losses)."""

    def after_epoch(self) -> None:
        """After each epoch; ``trainer.row`` is its summary (``trainer.epoch`` counts it already)."""

    def after_train(self) -> None:
        """Once, after the last epoch."""


class EvalHook(HookBase):
    """Validates the evaluation model (EMA when on) with the evaluator named ``outputs.eval_metric`` every
    ``eval_every`` epochs and after the last; adds its metrics to the epoch's row, keeps the best value of its
    ``primary_metric`` in ``trainer.best_metric`` and sets ``trainer.improved``. With TensorBoard, also the
    per-class AP table and a few validation images with their detections."""

    priority = 10

    def after_epoch(self) -> None:
        t = self.trainer
        every, epochs = t.cfg.outputs.eval_every, t.cfg.optim.epochs
        if t.val_loader is None or not every or not (t.epoch % every == 0 or t.epoch == epochs):
            return
        evaluator, metrics = self.evaluate()
        t.row.update(metrics)
        key = type(evaluator).primary_metric
        if key in metrics and (t.best_metric is None or metrics[key] > t.best_metric):
            t.best_metric, t.improved = metrics[key], True

    def evaluate(self) -> tuple[Any, dict[str, float]]:
        """``(evaluator, metrics)`` of the evaluation model on the validation set."""
        from efficientdet.engine.evaluate import evaluate
        from efficientdet.evaluation import create_evaluator

        t = self.trainer
        evaluator = create_evaluator(t.cfg.outputs.eval_metric, t.val_dataset)
        metrics = evaluate(t.eval_model(), t.val_loader, evaluator, device=t.device, amp=t.cfg.runtime.amp,
                           channels_last=t.cfg.runtime.channels_last,
                           progress=t.cfg.outputs.progress and t.dist.is_main)
        if t.logger.writer is not None and metrics:
            table = getattr(evaluator, "per_class_table", None)
            if table is not None:
                t.logger.log_text("val/per_class_AP", table(), t.step)
            t.logger.log_images("val/predictions", draw_validation_images(t), t.step)
        return evaluator, metrics


class MetricsHook(HookBase):
    """The record of the run: per-step TensorBoard scalars every ``log_every_steps``; after each epoch its
    row (wall-time columns last) into ``trainer.history`` (saved in checkpoints), ``metrics.csv`` and
    TensorBoard (:class:`~efficientdet.engine.logger.RunLogger`)."""

    priority = 70

    def after_step(self) -> None:
        t, losses = self.trainer, self.trainer.last_loss
        every = t.cfg.outputs.log_every_steps
        if t.logger.writer is None or not every or t.step % every or losses is None:
            return
        t.logger.log_scalars({"train/loss": float(losses["total"]), "train/cls_loss": float(losses["cls"]),
                              "train/box_loss": float(losses["box"]),
                              "lr": t.optimizer.param_groups[0]["lr"]}, t.step)

    def after_epoch(self) -> None:
        t = self.trainer
        for key in WALL_TIME_COLUMNS:  # last, so the reproducible columns come first
            if key in t.row:
                t.row[key] = t.row.pop(key)
        t.history.append(t.row)
        t.logger.log_epoch(t.row, step=t.step)


class CheckpointHook(HookBase):
    """Atomic checkpoints (:meth:`Trainer.save <efficientdet.engine.trainer.Trainer.save>`): ``last.pth``
    after every epoch, ``best.pth`` when the validation metric improved, ``epoch_NNNN.pth`` every
    ``save_every_epochs``; within an epoch ``last.pth`` every ``save_every_steps`` optimizer steps and after the
    first step once ``save_every_minutes`` have passed since the last save (any process's clock decides)."""

    priority = 80

    def before_train(self) -> None:
        self._last_save = time.monotonic()

    def after_step(self) -> None:
        t, out = self.trainer, self.trainer.cfg.outputs
        minutes_due = out.save_every_minutes > 0 and time.monotonic() - self._last_save >= 60.0 * out.save_every_minutes
        if t.dist.distributed:  # clocks differ: every process must take the same decision
            minutes_due = bool(all_reduce_sum(torch.tensor(float(minutes_due), device=t.device)) > 0)
        steps_due = bool(out.save_every_steps) and t.step % out.save_every_steps == 0
        if (steps_due or minutes_due) and t.epoch_batches < len(t.train_loader):
            self.save("last.pth")

    def after_epoch(self) -> None:
        t = self.trainer
        self.save("last.pth")
        if t.improved:
            self.save("best.pth")
        every = t.cfg.outputs.save_every_epochs
        if every and t.epoch % every == 0:
            self.save(f"epoch_{t.epoch:04d}.pth")

    def save(self, name: str) -> None:
        self.trainer.save(name)
        self._last_save = time.monotonic()


class ConsoleHook(HookBase):
    """What the user watches (main process): the run's start, one line per epoch (``logging`` INFO on the
    ``efficientdet.train`` logger, which :func:`~efficientdet.engine.logger.console_output` shows on stdout)
    and a progress bar per epoch (``outputs.progress``)."""

    priority = 90

    def before_train(self) -> None:
        t = self.trainer
        if not t.dist.is_main:
            return
        epochs = t.cfg.optim.epochs
        if t.resumed_from is not None:
            log.info("resumed %s: epoch %d, step %d, batch %d of the epoch", t.resumed_from, t.epoch, t.step,
                     t.epoch_batches)
        log.info("training %s on %d images (%d classes), %d steps/epoch x %d epochs, lr %.4g, device %s, "
                 "%d process(es)", t.config.name, len(t.train_dataset), t.config.num_classes, t.steps_per_epoch,
                 epochs, t.lr, t.device, t.dist.world_size)
        log.info("%s", t.recipe.describe())
        if t.epoch >= epochs:
            log.info("all %d epochs are done already (the checkpoint has %d); raise --epochs to train longer",
                     epochs, t.epoch)

    def before_epoch(self) -> None:
        self._bar, self._done, self._start = None, self.trainer.epoch_batches, time.perf_counter()
        t = self.trainer
        if t.cfg.outputs.progress and t.dist.is_main:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=len(t.train_loader), initial=t.epoch_batches, unit="batch", dynamic_ncols=True,
                             desc=f"epoch {t.epoch + 1}/{t.cfg.optim.epochs}", leave=False, disable=None,
                             mininterval=1.0)

    def after_step(self) -> None:
        t = self.trainer
        if self._bar is None:
            return
        rate = t.epoch_images * t.dist.world_size / max(time.perf_counter() - self._start, 1e-9)
        loss = f"{float(t.last_loss['total']):.4f}" if t.last_loss is not None else "-"
        self._bar.set_postfix(loss=loss, lr=f"{t.optimizer.param_groups[0]['lr']:.2e}", img_s=f"{rate:.1f}")
        self._bar.update(t.epoch_batches - self._done)
        self._done = t.epoch_batches

    def after_epoch(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self.trainer.dist.is_main:
            log.info("%s", epoch_line(self.trainer.row, self.trainer.cfg.optim.epochs))


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    """``epoch 2/10 | loss 1.2345 | (cls 0.8000, box 0.00712) | 35.1 img/s | 12s | val mAP 0.1234 (AP50 0.2345)``."""
    parts = [f"epoch {row['epoch']}/{epochs}", f"loss {row['train_loss']:.4f}",
             f"(cls {row['train_cls_loss']:.4f}, box {row['train_box_loss']:.5f})",
             f"{row['images_per_s']:.1f} img/s", f"{row['epoch_time_s']:.0f}s"]
    if "AP" in row and "AP50" in row:  # COCO
        parts.append(f"val mAP {row['AP']:.4f} (AP50 {row['AP50']:.4f})")
    elif "mAP" in row:  # VOC, Open Images, ...
        parts.append(f"val mAP {row['mAP']:.4f}")
    if row.get("skipped_images"):
        parts.append(f"{row['skipped_images']} unreadable images skipped")
    if row.get("dropped_boxes"):
        parts.append(f"{row['dropped_boxes']} unusable boxes dropped")
    if row.get("nonfinite_steps"):
        parts.append(f"{row['nonfinite_steps']} non-finite steps skipped")
    return " | ".join(parts)


def default_hooks() -> list[HookBase]:
    """The hooks every run has (see the module docstring)."""
    return [EvalHook(), MetricsHook(), CheckpointHook(), ConsoleHook()]


@torch.inference_mode()
def draw_validation_images(trainer: Trainer, count: int = VALIDATION_IMAGES) -> list[Any]:
    """The first ``count`` readable validation images (PIL) with the evaluation model's detections drawn."""
    from efficientdet.data.images import read_image
    from efficientdet.data.preprocess import preprocess
    from efficientdet.postprocess import postprocess
    from efficientdet.visualize import draw_detections

    images = []
    for record in (trainer.val_dataset.records if trainer.val_dataset is not None else [])[:count]:
        with contextlib.suppress(DataError):  # an unreadable image was reported by the evaluation already
            images.append(read_image(record.path))
    if not images:
        return []
    model, config = trainer.eval_model(), trainer.config
    was_training = model.training
    model.eval()
    batch = preprocess(images, config.preprocess, trainer.device)
    outputs = model(batch.pixels)
    anchors = model.anchors(tuple(batch.pixels.shape[-2:]), trainer.device)
    detections = postprocess(outputs, anchors, config.postprocess, batch.metas, config.label_names)
    model.train(was_training)
    return [draw_detections(image, det.to("cpu"), score_threshold=0.2) for image, det in zip(images, detections)]


__all__ = ["HookBase", "EvalHook", "MetricsHook", "CheckpointHook", "ConsoleHook", "default_hooks", "epoch_line"]
