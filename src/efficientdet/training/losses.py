"""The EfficientDet detection loss: sigmoid focal loss for classes plus a box regression loss.

Class loss (per anchor and class, summed, divided by ``sum(num_positives) + 1`` over the batch, as the
official code and effdet): the official focal loss ``alpha_t * (1 - p_t)^gamma * BCE(logit, target)``
with label smoothing applied to the BCE target only, or effdet's legacy form (same value, computed
through ``exp(gamma * (-t * x - log1p(exp(-x))))``; no label smoothing). Anchors with class target
:data:`~efficientdet.training.assigner.IGNORE` do not count.

Box loss on positive anchors (``LossConfig.box_loss``, a name in the box-loss registry,
:func:`register_box_loss`):

- ``huber`` (official, ``delta`` 0.1) or ``smooth_l1`` (``beta = delta``) on the encoded ``(ty, tx, th, tw)``,
  summed and divided by ``4 * (sum(num_positives) + 1)``; total ``= cls + box_loss_weight * box``;
- ``iou`` / ``giou`` / ``diou`` / ``ciou`` on the decoded boxes (``1 - IoU`` etc.), summed and divided by
  ``sum(num_positives) + 1``; total ``= cls + iou_loss_weight * box``.

A registered loss says which of the two it works on (``decoded``); the normalisation and weight follow.

The official box loss masks every coordinate whose target is exactly 0 (``box_targets != 0``), which also
drops the loss of a box centred exactly on its anchor; here the mask is "positive anchor" instead, the same
for every other box.

All losses compute in float32 whatever the input dtype (safe under ``torch.autocast``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from efficientdet.config import LossConfig
from efficientdet.errors import ConfigError
from efficientdet.ops.box_coder import decode
from efficientdet.ops.boxes import paired_box_iou
from efficientdet.structures import HeadOutputs, Targets
from efficientdet.training.assigner import IGNORE, AssignedTargets, assign_targets

IOU_LOSSES = ("iou", "giou", "diou", "ciou")
"""The IoU family of :func:`iou_loss` (each also a registered box loss)."""

MAX_LOG_SCALE = math.log(1000.0 / 16)
"""Clamp of predicted ``th`` / ``tw`` when decoding boxes for the IoU losses (keeps ``exp`` finite)."""


def focal_loss(logits: Tensor, targets: Tensor, alpha: float, gamma: float, label_smoothing: float = 0.0) -> Tensor:
    """Official sigmoid focal loss per element: ``logits`` and ``targets`` (0 / 1) of the same shape -> same shape.

    ``alpha_t * (1 - p_t)^gamma * BCE(logits, t')`` with ``t' = t * (1 - s) + s / 2`` (label smoothing ``s``
    changes only the cross-entropy, not the focal weights).
    """
    logits, targets = logits.float(), targets.float()
    prob = logits.sigmoid()
    p_t = targets * prob + (1.0 - targets) * (1.0 - prob)
    alpha_t = targets * alpha + (1.0 - targets) * (1.0 - alpha)
    if label_smoothing > 0:
        targets = targets * (1.0 - label_smoothing) + 0.5 * label_smoothing
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return alpha_t * (1.0 - p_t) ** gamma * ce


def focal_loss_legacy(logits: Tensor, targets: Tensor, alpha: float, gamma: float) -> Tensor:
    """effdet's legacy focal loss per element (the early official form): same shapes as :func:`focal_loss`.

    ``alpha_t * exp(gamma * (-t * x - log1p(exp(-x)))) * BCE(x, t)``: equal to :func:`focal_loss` without
    smoothing in exact arithmetic, but it overflows for very negative logits.
    """
    logits, targets = logits.float(), targets.float()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    modulator = torch.exp(gamma * (targets * -logits) - gamma * torch.log1p(torch.exp(-logits)))
    return torch.where(targets == 1.0, alpha, 1.0 - alpha) * modulator * ce


def iou_loss(pred_boxes: Tensor, target_boxes: Tensor, kind: str) -> Tensor:
    """IoU-family loss per box: ``[P, 4]`` and ``[P, 4]`` xyxy -> ``[P]``. ``kind``: ``iou`` | ``giou`` | ``diou`` | ``ciou``."""
    pred_boxes, target_boxes = pred_boxes.float(), target_boxes.float()
    if kind == "iou":
        return 1.0 - paired_box_iou(pred_boxes, target_boxes)
    fn = {
        "giou": torchvision.ops.generalized_box_iou_loss,
        "diou": torchvision.ops.distance_box_iou_loss,
        "ciou": torchvision.ops.complete_box_iou_loss,
    }.get(kind)
    if fn is None:
        raise ConfigError(f"unknown IoU loss {kind!r}; use one of {', '.join(IOU_LOSSES)}")
    return fn(pred_boxes, target_boxes, reduction="none")


def _class_loss(logits: Tensor, cls_targets: Tensor, cfg: LossConfig) -> Tensor:
    """Summed focal loss over ``logits [B, N, K]`` for ``cls_targets [B, N]`` (ignored anchors left out).

    Every element is first scored as a negative (target 0); the ``P`` positive (anchor, class) elements
    are then corrected, so no ``[B, N, K]`` one-hot target is built.
    """
    logits = logits.float()
    zeros = logits.new_zeros(())
    if cfg.legacy_focal:
        negative = focal_loss_legacy(logits, zeros.expand_as(logits), cfg.alpha, cfg.gamma)
    else:
        negative = focal_loss(logits, zeros.expand_as(logits), cfg.alpha, cfg.gamma, cfg.label_smoothing)
    total = (negative.sum(dim=-1) * (cls_targets != IGNORE)).sum()
    positive = cls_targets >= 0
    pos_logits = logits[positive].gather(1, cls_targets[positive][:, None]).squeeze(1)  # [P]
    ones = pos_logits.new_ones(()).expand_as(pos_logits)
    if cfg.legacy_focal:
        correction = focal_loss_legacy(pos_logits, ones, cfg.alpha, cfg.gamma)
        correction = correction - focal_loss_legacy(pos_logits, zeros.expand_as(pos_logits), cfg.alpha, cfg.gamma)
    else:
        correction = focal_loss(pos_logits, ones, cfg.alpha, cfg.gamma, cfg.label_smoothing)
        correction = correction - focal_loss(
            pos_logits, zeros.expand_as(pos_logits), cfg.alpha, cfg.gamma, cfg.label_smoothing
        )
    return total + correction.sum()


# --- box losses: a registry ------------------------------------------------------------------------------

BoxLossFn = Callable[[Tensor, Tensor, LossConfig], Tensor]


@dataclass(frozen=True)
class BoxLoss:
    """A registered box regression loss.

    ``fn(pred [P, 4], target [P, 4], cfg) -> Tensor``: the loss summed over the ``P`` positive anchors (a
    float32 scalar). ``decoded=False``: ``pred`` / ``target`` are the encoded ``(ty, tx, th, tw)`` (the sum
    is divided by ``4 * normalizer`` and weighted by ``cfg.box_loss_weight``); ``decoded=True``: they are
    xyxy boxes decoded against their anchors (divided by ``normalizer``, weighted by ``cfg.iou_loss_weight``).
    """

    name: str
    fn: BoxLossFn
    decoded: bool = False


_BOX_LOSSES: dict[str, BoxLoss] = {}


def register_box_loss(name: str, fn: BoxLossFn | None = None, *, decoded: bool = False,
                      replace: bool = False) -> Callable[[BoxLossFn], BoxLossFn] | BoxLossFn:
    """Add a box loss selectable as ``LossConfig(box_loss=name)`` (see :class:`BoxLoss` for ``fn``).

    Use it as a call, ``register_box_loss("l1", fn)``, or a decorator, ``@register_box_loss("l1")``.
    A taken name is a :class:`~efficientdet.errors.ConfigError` unless ``replace=True``.
    """

    def add(f: BoxLossFn) -> BoxLossFn:
        if name in _BOX_LOSSES and not replace:
            raise ConfigError(f"box loss {name!r} is already registered; pass replace=True to swap it")
        _BOX_LOSSES[name] = BoxLoss(name, f, decoded)
        return f

    return add if fn is None else add(fn)


def unregister_box_loss(name: str) -> None:
    """Remove a registered box loss (for tests and plugins that clean up after themselves)."""
    _BOX_LOSSES.pop(name, None)


def box_loss_names() -> tuple[str, ...]:
    """The registered box losses, in registration order."""
    return tuple(_BOX_LOSSES)


def get_box_loss(name: str) -> BoxLoss:
    """The box loss registered as ``name``; a :class:`~efficientdet.errors.ConfigError` naming the choices otherwise."""
    loss = _BOX_LOSSES.get(name)
    if loss is None:
        raise ConfigError(f"loss.box_loss {name!r} is unknown; use one of {', '.join(_BOX_LOSSES)} "
                          "(or add one with efficientdet.training.losses.register_box_loss)")
    return loss


def _huber(pred: Tensor, target: Tensor, cfg: LossConfig) -> Tensor:
    return F.huber_loss(pred, target, reduction="sum", delta=cfg.delta)


def _smooth_l1(pred: Tensor, target: Tensor, cfg: LossConfig) -> Tensor:
    return F.smooth_l1_loss(pred, target, reduction="sum", beta=cfg.delta)


def _iou_family(pred_boxes: Tensor, target_boxes: Tensor, cfg: LossConfig, kind: str) -> Tensor:
    return iou_loss(pred_boxes, target_boxes, kind).sum()


register_box_loss("huber", _huber)
register_box_loss("smooth_l1", _smooth_l1)
for _kind in IOU_LOSSES:
    register_box_loss(_kind, partial(_iou_family, kind=_kind), decoded=True)


def _box_loss(deltas: Tensor, box_targets: Tensor, positive: Tensor, anchors: Tensor, cfg: LossConfig) -> Tensor:
    """Summed box loss over positive anchors: ``deltas``, ``box_targets [B, N, 4]``, ``positive [B, N]``."""
    loss = get_box_loss(cfg.box_loss)
    pred, target = deltas.float()[positive], box_targets.float()[positive]  # [P, 4]
    if loss.decoded:
        pos_anchors = anchors.float().expand(positive.shape[0], -1, -1)[positive]
        pred, target = decode(pred, pos_anchors, max_log_scale=MAX_LOG_SCALE), decode(target, pos_anchors)
    return loss.fn(pred, target, cfg)


def check_loss_config(cfg: LossConfig) -> None:
    """Raise :class:`ConfigError` for loss settings that cannot work together."""
    get_box_loss(cfg.box_loss)
    if cfg.legacy_focal and cfg.label_smoothing > 0:
        raise ConfigError("loss.label_smoothing needs the official focal loss; set loss.legacy_focal to false")
    if not 0 <= cfg.label_smoothing < 1:
        raise ConfigError(f"loss.label_smoothing must be in [0, 1), got {cfg.label_smoothing}")


def detection_loss(
    outputs: HeadOutputs, anchors: Tensor, assigned: AssignedTargets, cfg: LossConfig,
    normalizer: Tensor | None = None,
) -> dict[str, Tensor]:
    """Loss of head outputs (``cls_logits [B, N, K]``, ``box_deltas [B, N, 4]``) against assigned targets.

    ``anchors [N, 4]`` xyxy (used by the IoU losses). ``normalizer``: what the summed losses are divided by;
    default ``num_positives.sum() + 1`` of this batch (distributed training passes the global count divided
    by the number of processes, so that the averaged gradients equal those of one process on the whole
    batch). Returns float32 scalars ``{"total", "cls", "box"}``.
    """
    check_loss_config(cfg)
    logits, deltas = outputs
    if logits.shape[:2] != assigned.cls_targets.shape or deltas.shape != assigned.box_targets.shape:
        raise ValueError(
            f"head outputs {tuple(logits.shape)} / {tuple(deltas.shape)} do not match the targets "
            f"{tuple(assigned.cls_targets.shape)} / {tuple(assigned.box_targets.shape)}"
        )
    if normalizer is None:
        normalizer = assigned.num_positives.sum() + 1.0
    cls_loss = _class_loss(logits, assigned.cls_targets, cfg) / normalizer
    box_sum = _box_loss(deltas, assigned.box_targets, assigned.cls_targets >= 0, anchors, cfg)
    if get_box_loss(cfg.box_loss).decoded:
        box_loss = box_sum / normalizer
        total = cls_loss + cfg.iou_loss_weight * box_loss
    else:
        box_loss = box_sum / (4.0 * normalizer)
        total = cls_loss + cfg.box_loss_weight * box_loss
    return {"total": total, "cls": cls_loss, "box": box_loss}


class DetectionLoss(nn.Module):
    """Assigns targets and computes :func:`detection_loss`.

    ``forward(outputs, anchors [N, 4], targets: list[Targets]) -> {"total", "cls", "box"}`` float32 scalars;
    target boxes in input pixels (xyxy), labels ``0 .. num_classes-1``.
    """

    def __init__(self, cfg: LossConfig, num_classes: int) -> None:
        super().__init__()
        check_loss_config(cfg)
        self.cfg = cfg
        self.num_classes = num_classes

    def forward(self, outputs: HeadOutputs, anchors: Tensor, targets: list[Targets],
                normalizer: Callable[[Tensor], Tensor] | None = None) -> dict[str, Tensor]:
        """``normalizer``: maps this batch's ``num_positives [B]`` to the loss divisor (see :func:`detection_loss`)."""
        if outputs.cls_logits.shape[-1] != self.num_classes:
            raise ValueError(
                f"the class head has {outputs.cls_logits.shape[-1]} outputs but the loss was built for "
                f"{self.num_classes} classes"
            )
        if len(targets) != outputs.cls_logits.shape[0]:
            raise ValueError(f"got {len(targets)} targets for a batch of {outputs.cls_logits.shape[0]} images")
        with torch.no_grad():
            assigned = assign_targets(anchors, targets, self.cfg, self.num_classes)
        norm = normalizer(assigned.num_positives) if normalizer is not None else None
        return detection_loss(outputs, anchors, assigned, self.cfg, norm)


__all__ = [
    "IOU_LOSSES",
    "BoxLoss",
    "register_box_loss",
    "unregister_box_loss",
    "box_loss_names",
    "get_box_loss",
    "MAX_LOG_SCALE",
    "focal_loss",
    "focal_loss_legacy",
    "iou_loss",
    "check_loss_config",
    "detection_loss",
    "DetectionLoss",
]
