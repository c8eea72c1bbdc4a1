"""Head outputs + anchors -> detections, batched over images.

Two modes (``PostprocessConfig.mode``), each reproducing its reference:

- ``topk`` (effdet ``DetBenchPredict``): the ``max_detection_points`` best (anchor, class) pairs by logit,
  decoded, clipped to the image, then NMS per class (or class-agnostic), at most ``max_detections``.
- ``global`` (official ``postprocess_global``): the best class of every anchor, one class-agnostic NMS
  over all anchors on the unclipped boxes, then clipping. ``class_agnostic`` and ``max_detection_points``
  do not apply.

``nms``: ``hard`` (IoU ``> iou_threshold`` suppresses) or ``soft`` (Gaussian, decay ``exp(-IoU^2 / sigma)``;
reported scores are the decayed ones). A candidate needs a score ``> score_threshold``; a threshold of 0
means the official default: none for hard NMS, :data:`~efficientdet.ops.nms.SOFT_NMS_SCORE_THRESHOLD` for soft.

Scores: ``global`` mode computes them as TF does in float32 (:func:`~efficientdet.ops.sigmoid.tf_sigmoid`,
bit for bit, which saturates to exactly 1.0 from logit 16.6355 on), ``topk`` mode correctly rounded
(:func:`~efficientdet.ops.sigmoid.rounded_sigmoid`). Ties, as in TF's NMS kernel: candidates are ordered by
descending score, then ascending anchor index (``topk`` mode: anchor, then class), and NMS gives equal
scores, decayed ones included, to the lower anchor (and class) first, in every path (eager, traced,
exported, batched, per class).

Speed without changing the result: the top-k runs on logits (sigmoid is monotonic) over the
``max_detection_points`` anchors with the largest best-class logit, which must hold the global top-k over
anchors x classes (their best pairs first, see :func:`_topk_order`). NMS first runs on the best-scoring
prefix of the candidates and grows it only while the prefix cannot prove its result final (too few
detections, or soft-NMS scores that fell below the best score left out). While tracing for export, NMS
runs once on all candidates (fixed shapes): hard NMS as one ``batched_nms`` call (:func:`hard_nms_fixed`),
soft NMS as the unrolled greedy loop.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from efficientdet.config import NmsMethod, PostprocessConfig, PostprocessMode, choices
from efficientdet.errors import ConfigError
from efficientdet.modeling.anchors import input_size_from_anchors
from efficientdet.ops.box_coder import decode
from efficientdet.ops.boxes import clip_boxes
from efficientdet.ops.nms import SOFT_NMS_SCORE_THRESHOLD, batched_nms, greedy_nms, is_tracing
from efficientdet.ops.sigmoid import rounded_sigmoid, tf_sigmoid
from efficientdet.structures import Detections, HeadOutputs, ImageMeta

PAD_LABEL = -1
"""Label of the padding rows of :func:`postprocess_padded`."""

PREFIX_MIN = 256
"""Candidates first given to NMS (at least ``2 * max_detections``); grown while the result is not final."""

MODES = choices(PostprocessMode)
NMS_METHODS = choices(NmsMethod)


def override(cfg: PostprocessConfig, *, nms: str | None = None, max_detections: int | None = None,
             score_threshold: float | None = None, iou_threshold: float | None = None) -> PostprocessConfig:
    """``cfg`` with the given settings changed (``None`` keeps a value); the new config checks them."""
    changes = {k: v for k, v in (("nms", nms), ("max_detections", max_detections),
                                 ("score_threshold", score_threshold), ("iou_threshold", iou_threshold)) if v is not None}
    return dataclasses.replace(cfg, **changes)


def _check(outputs: HeadOutputs, anchors: Tensor) -> None:
    """Shapes of the head outputs and anchors (the config checked its own values when it was built)."""
    logits, deltas = outputs
    if logits.dim() != 3 or deltas.dim() != 3 or deltas.shape[-1] != 4 or logits.shape[:2] != deltas.shape[:2]:
        raise ValueError(
            f"expected cls_logits [B, N, K] and box_deltas [B, N, 4], got {tuple(logits.shape)} and {tuple(deltas.shape)}"
        )
    if anchors.shape != (logits.shape[1], 4):
        raise ValueError(
            f"anchors {tuple(anchors.shape)} do not fit the head outputs (N = {logits.shape[1]}); "
            "generate them for the same input size and anchor config as the model"
        )


class Candidates(NamedTuple):
    """The best ``p`` candidates of every image, best first: ``anchor``, ``label``, ``score`` ``[B, p]``,
    ``boxes [B, p, 4]`` xyxy input pixels, and ``next_score [B]``, the best score left out (-inf if none)."""

    anchor: Tensor
    label: Tensor
    score: Tensor
    boxes: Tensor
    next_score: Tensor


def _topk_order(logits: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Top-``k`` (anchor, class) pairs by logit, best first: ``anchor [B, k]``, ``label [B, k]``, ``score [B, k]``
    (correctly rounded sigmoid); equal scores in ascending (anchor, class) order, the order TF gives ties.

    The pool: the best pair of each of the ``m`` anchors with the largest best-class logit (they hold the global
    top-k), then the other classes of those anchors. Best pairs first makes the final top-k cheap where it
    keeps a running top-k (onnxruntime: 1.3 instead of 5.1 ms for D0), and helps PyTorch's too.
    """
    b, n, num_classes = logits.shape
    k = min(k, n * num_classes)
    m = min(k, n)
    best, top_anchors = logits.amax(dim=-1).topk(m, dim=1, sorted=False)  # [B, m]; the last top-k sorts
    pool = logits[torch.arange(b, device=logits.device)[:, None], top_anchors]  # [B, m, K]
    best_class = pool.argmax(dim=-1)  # [B, m]
    others = pool.scatter(-1, best_class[..., None], -math.inf).reshape(b, -1)  # each best pair only once
    values, flat = torch.cat([best, others], dim=1).topk(k, dim=1)  # sorted, best first
    is_best = flat < m
    other = (flat - m).clamp(min=0)
    rank = torch.where(is_best, flat, other // num_classes)
    label = torch.where(is_best, best_class.gather(1, flat.clamp(max=m - 1)), other % num_classes)
    anchor, score = top_anchors.gather(1, rank), rounded_sigmoid(values)
    # Equal scores (equal logits, or logits that round to one score) by ascending (anchor, class): number
    # the runs of equal scores, then sort by (run, pair). The keys are distinct, so any sort gives this order;
    # an ascending top-k is that sort in every runtime (ExecuTorch's portable kernels have no sort).
    run = torch.cat([torch.zeros_like(score[:, :1], dtype=torch.int64), (score[:, 1:] != score[:, :-1]).long()], 1)
    keys = run.cumsum(1) * (n * num_classes) + anchor * num_classes + label
    order = keys.topk(keys.shape[1], dim=1, largest=False).indices
    return anchor.gather(1, order), label.gather(1, order), score


def _ranking_keys(scores: Tensor) -> Tensor:
    """int64 keys that order ``scores [B, N]`` (float32 >= 0) by descending score, then ascending index; no ties."""
    bits = scores.contiguous().view(torch.int32).long()  # increases with the value for non-negative floats
    return (bits << 32) | torch.arange(scores.shape[1] - 1, -1, -1, device=scores.device)


class CandidateSource:
    """The NMS candidates of every image, best first, handed out as growing prefixes (:meth:`take`).

    Inputs: ``outputs`` (``cls_logits [B, N, K]``, ``box_deltas [B, N, 4]``), ``anchors [N, 4]`` xyxy input
    pixels, ``cfg`` (``mode``, ``max_detection_points``) and ``clip_to [B, 1, 2]``: the ``(H, W)`` in input
    pixels that ``topk`` mode clips the decoded boxes to.

    ``topk`` mode: the top ``max_detection_points`` (anchor, class) pairs by logit, boxes clipped (effdet
    clips before NMS). ``global`` mode: every anchor with its best class, by descending score, then
    ascending anchor index (TF's order); boxes are not clipped (the official code clips after NMS).
    ``size`` is the number of candidates per image; ``take(size)`` gives them all (what export graphs use).
    """

    def __init__(self, outputs: HeadOutputs, anchors: Tensor, cfg: PostprocessConfig, clip_to: Tensor) -> None:
        self.logits, self.deltas = outputs
        self.anchors, self.mode, self.clip_to = anchors, cfg.mode, clip_to
        self.rows = torch.arange(self.logits.shape[0], device=self.logits.device)[:, None]
        if self.mode == "topk":
            self.anchor, self.label, self.scores = _topk_order(self.logits, cfg.max_detection_points)
        else:
            self.scores = tf_sigmoid(self.logits.amax(dim=-1))  # [B, N], anchor order, TF's float32 values
            self.keys: Tensor | None = None
        self.size = self.scores.shape[1]

    def take(self, p: int) -> Candidates:
        """The best ``p`` candidates (and the best score left out)."""
        more = min(p + 1, self.size)
        if self.mode == "topk":
            anchor, score, label = self.anchor[:, :p], self.scores[:, :more], self.label[:, :p]
        else:
            if more == self.size:  # everything: a stable sort (also what tracing records)
                order = self.scores.sort(dim=1, descending=True, stable=True).indices
            else:  # a prefix: top-k of tie-free keys, much cheaper than sorting all anchors
                if self.keys is None:
                    self.keys = _ranking_keys(self.scores)
                order = self.size - 1 - (self.keys.topk(more, dim=1).values & 0xFFFFFFFF)
            score = self.scores.gather(1, order)
            anchor = order[:, :p]
            label = self.logits[self.rows, anchor].argmax(dim=-1)
        next_score = score[:, p] if more > p else torch.full_like(score[:, 0], -math.inf)
        boxes = decode(self.deltas[self.rows, anchor], self.anchors[anchor])  # [B, p, 4]
        if self.mode == "topk":
            boxes = clip_boxes(boxes, self.clip_to)
        return Candidates(anchor, label, score[:, :p], boxes, next_score)

    def count_at_least(self, score: Tensor) -> int:
        """The most candidates that any image has with a score ``>= score [B]``."""
        return int((self.scores >= score[:, None]).sum(dim=1).max())


def _hard_nms_padded(
    boxes: Tensor, scores: Tensor, groups: Tensor | None, iou_threshold: float, score_threshold: float, d: int
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`batched_nms` over all images at once, as padded ``[B, D]`` outputs (candidates sorted best first)."""
    b, c = scores.shape
    flat_group = torch.arange(b, device=scores.device)[:, None].expand(b, c)
    if groups is not None:
        flat_group = flat_group * (int(groups.max()) + 1) + groups
    valid = (scores > score_threshold).reshape(-1).nonzero().squeeze(1)
    keep = valid[
        batched_nms(
            boxes.reshape(-1, 4)[valid], scores.reshape(-1)[valid], flat_group.reshape(-1)[valid], iou_threshold
        )
    ]
    keep = keep.sort().values  # by image, then by position (= score order)
    image, pos = keep // c, keep % c
    per_image = torch.bincount(image, minlength=b)
    slot = torch.arange(keep.numel(), device=keep.device) - (per_image.cumsum(0) - per_image)[image]
    fits = slot < d
    idx = torch.zeros(b, d, dtype=torch.int64, device=scores.device)
    idx[image[fits], slot[fits]] = pos[fits]
    counts = per_image.clamp(max=d)
    out_scores = scores.gather(1, idx) * (torch.arange(d, device=scores.device) < counts[:, None])
    return idx, out_scores, counts


def hard_nms_mask(boxes: Tensor, scores: Tensor, groups: Tensor | None, iou_threshold: float) -> Tensor:
    """``kept [B, C]`` bool: hard NMS per image (and per group) of ``boxes [B, C, 4]`` xyxy, ``scores [B, C]``.

    One :func:`~efficientdet.ops.nms.batched_nms` call over all images, no Python loop and no ``int()`` of
    data, so traced graphs stay valid for other inputs. No score threshold: a candidate at or below it can
    only suppress lower-scored ones, which are dropped by the same threshold afterwards.
    """
    b, c = scores.shape
    image = torch.arange(b, device=scores.device)[:, None].expand(b, c)
    flat_groups = image if groups is None else image * (groups.max() + 1) + groups
    keep = batched_nms(boxes.reshape(-1, 4), scores.reshape(-1), flat_groups.reshape(-1), iou_threshold)
    kept = torch.zeros(b * c, dtype=torch.bool, device=scores.device)
    return kept.index_put((keep,), torch.ones_like(keep, dtype=torch.bool)).reshape(b, c)


def first_kept(kept: Tensor, max_outputs: int) -> tuple[Tensor, Tensor, Tensor]:
    """The first ``D = max_outputs`` kept candidates of each image, with fixed shapes (traceable).

    ``kept [B, C]`` bool over candidates in NMS order (best first). Returns ``indices [B, D]`` int64 into
    ``C`` (0 in unused slots), ``valid [B, D]`` bool and ``counts [B]`` int64.
    """
    b, c = kept.shape
    position = torch.arange(c, device=kept.device).expand(b, c)
    slots = torch.where(kept, position, c).topk(min(max_outputs, c), dim=1, largest=False).values  # ascending
    if max_outputs > c:
        slots = torch.cat([slots, slots.new_full((b, max_outputs - c), c)], dim=1)
    valid = slots < c
    return torch.where(valid, slots, 0), valid, kept.sum(dim=1).clamp(max=max_outputs)


def hard_nms_fixed(boxes: Tensor, scores: Tensor, groups: Tensor | None, iou_threshold: float, score_threshold: float,
                   max_outputs: int, kept: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Hard NMS per image (and group) with fixed-shape outputs: the traceable hard path.

    Inputs: ``boxes [B, C, 4]`` xyxy, ``scores [B, C]`` sorted best first (as :class:`CandidateSource`
    gives them), optional ``groups [B, C]`` int. Same result as :func:`~efficientdet.ops.nms.greedy_nms`
    with ``sigma = 0``. Returns ``indices [B, D]`` int64 into ``C``, ``scores [B, D]`` and ``counts [B]``;
    slots ``>= counts[b]`` hold index 0 and score 0. ``kept [B, C]``: the NMS result when another kernel computed
    it (the ONNX operator), else :func:`hard_nms_mask` computes it.
    """
    if kept is None:
        kept = hard_nms_mask(boxes, scores, groups, iou_threshold)
    # the first D kept candidates of each image (candidates are in NMS order, so these are the best)
    indices, valid, counts = first_kept(kept & (scores > score_threshold), max_outputs)
    return indices, scores.gather(1, indices) * valid, counts


HARD_NMS = ("auto", "torchvision", "onnx", "greedy")
"""How :class:`Postprocessor` runs hard NMS (chosen once, when it is built):

- ``auto``: eagerly, :func:`~efficientdet.ops.nms.batched_nms` on growing prefixes of the candidates (fast,
  dynamic shapes); while tracing, ``torchvision``;
- ``torchvision``: one fixed-shape pass over all candidates (:func:`hard_nms_mask`, the op ``torchvision::nms``);
- ``onnx``: one pass through the ONNX ``NonMaxSuppression`` operator (:mod:`efficientdet.export`);
- ``greedy``: the fixed-shape greedy loop of :func:`~efficientdet.ops.nms.greedy_nms` without decay (no NMS
  operator needed: ExecuTorch).

Every kernel selects the same detections; soft NMS is always the greedy loop with its Gaussian decay."""


class Postprocessor(nn.Module):
    """Head outputs + anchors -> padded detections: the one post-processing of every inference path.

    ``cfg`` (mode, NMS, thresholds) and the hard NMS kernel (:data:`HARD_NMS`) are checked and chosen once,
    here. :meth:`select` (NMS on the candidates) is the step a runtime without an NMS kernel overrides.

    ``forward(outputs, anchors, clip_to)``: ``outputs`` (``cls_logits [B, N, K]``, ``box_deltas [B, N, 4]``),
    ``anchors [N, 4]`` xyxy input pixels, ``clip_to [B, 2]`` float32 ``(H, W)`` in input pixels to clip each
    image's boxes to (``None``: the input, ``input_size`` or inferred from the anchors). Returns ``boxes
    [B, D, 4]`` xyxy float32 input pixels, ``scores [B, D]`` float32 (descending), ``labels [B, D]`` int64
    (``0 .. K-1``) and ``counts [B]`` int64, ``D = cfg.max_detections``; rows ``>= counts[b]`` are zero with
    label :data:`PAD_LABEL`.
    """

    def __init__(self, cfg: PostprocessConfig, hard_nms: str = "auto") -> None:
        super().__init__()
        if hard_nms not in HARD_NMS:
            raise ConfigError(f"hard_nms={hard_nms!r} is unknown; use one of {', '.join(HARD_NMS)}")
        self.cfg = cfg
        self.hard_nms = hard_nms
        self.soft = cfg.nms == "soft"
        # a candidate needs a score above this; 0 means the official default (none for hard NMS)
        self.threshold = cfg.score_threshold if cfg.score_threshold > 0 else (
            SOFT_NMS_SCORE_THRESHOLD if self.soft else -math.inf)

    def forward(self, outputs: HeadOutputs, anchors: Tensor, clip_to: Tensor | None = None,
                input_size: tuple[int, int] | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        _check(outputs, anchors)
        cfg = self.cfg
        b = outputs.cls_logits.shape[0]
        if clip_to is None:
            size = input_size or input_size_from_anchors(anchors)
            clip_to = torch.tensor(size, dtype=torch.float32, device=anchors.device).expand(b, 2)
        clip_to = clip_to.to(device=anchors.device, dtype=torch.float32)[:, None, :]  # [B, 1, 2]
        cand, keep, out_scores, counts = self._nms(CandidateSource(outputs, anchors, cfg, clip_to))
        out_boxes = cand.boxes.gather(1, keep[..., None].expand(-1, -1, 4))
        out_labels = cand.label.gather(1, keep)
        if cfg.mode == "global":  # the official code clips after NMS
            out_boxes = clip_boxes(out_boxes, clip_to)
        valid = torch.arange(cfg.max_detections, device=counts.device)[None, :] < counts[:, None]
        out_boxes = out_boxes * valid[..., None]
        out_scores = out_scores * valid
        out_labels = torch.where(valid, out_labels, PAD_LABEL)
        return out_boxes, out_scores, out_labels, counts

    def _nms(self, source: CandidateSource) -> tuple[Candidates, Tensor, Tensor, Tensor]:
        """NMS: the candidates used, ``indices [B, D]`` into them, ``scores [B, D]`` and ``counts [B]``.

        The ``auto`` kernel, run eagerly, starts on the best-scoring prefix of the candidates and grows it
        while the prefix cannot prove its result final; the others take all candidates at once (fixed shapes).
        """
        cfg, d = self.cfg, self.cfg.max_detections
        num_classes = source.logits.shape[-1]
        class_aware = cfg.mode == "topk" and not cfg.class_agnostic and num_classes > 1
        c = source.size
        grow = self.hard_nms == "auto" and not is_tracing()
        p = min(c, max(PREFIX_MIN, 2 * d)) if grow else c
        while True:
            cand = source.take(p)
            groups = cand.label if class_aware else None
            idx, scores, counts = self.select(cand, groups, num_classes)
            if p == c:
                return cand, idx, scores, counts
            # Final when no candidate left out can still be selected: D found (in soft mode, the last scoring
            # above the best score left out, as decays only lower scores; an equal one could have won the tie by
            # its anchor), or all left out are below threshold. Hard NMS visits candidates in their order.
            final = counts == d
            if self.soft:
                final = final & (scores[:, -1] > cand.next_score)
            final = final | (cand.next_score <= self.threshold)
            if bool(final.all()):
                return cand, idx, scores, counts
            # Soft-NMS may still select anything scoring above its last selection: include all of those.
            needed = source.count_at_least(torch.where(counts == d, scores[:, -1], self.threshold)) if self.soft else 0
            p = min(c, max(4 * p, needed + 1))

    def select(self, cand: Candidates, groups: Tensor | None, num_classes: int) -> tuple[Tensor, Tensor, Tensor]:
        """NMS of ``cand`` (best first; ``groups [B, C]`` class ids for per-class NMS, else ``None``;
        ``num_classes`` = K): ``indices [B, D]`` int64 into the candidates (0 in unused slots), ``scores
        [B, D]`` (0 in unused slots; soft NMS: the decayed scores) and ``counts [B]`` int64."""
        cfg, d, threshold = self.cfg, self.cfg.max_detections, self.threshold
        if self.soft:  # equal (decayed) scores go to the lower anchor, then class: TF's box index order
            ids = cand.anchor * num_classes + cand.label
            return greedy_nms(cand.boxes, cand.score, d, cfg.iou_threshold, cfg.soft_nms_sigma, threshold, groups, ids)
        if self.hard_nms == "greedy":
            idx, _, counts = greedy_nms(cand.boxes, cand.score, d, cfg.iou_threshold, 0.0, threshold, groups)
            valid = torch.arange(d, device=counts.device)[None, :] < counts[:, None]
            return idx, cand.score.gather(1, idx) * valid, counts
        if self.hard_nms == "auto" and not is_tracing():
            return _hard_nms_padded(cand.boxes, cand.score, groups, cfg.iou_threshold, threshold, d)
        kept = None
        if self.hard_nms == "onnx":
            from efficientdet.export import onnx_nms_mask

            kept = onnx_nms_mask(cand.boxes, cand.score, groups, num_classes if groups is not None else 1,
                                 cfg.iou_threshold, threshold, d)
        return hard_nms_fixed(cand.boxes, cand.score, groups, cfg.iou_threshold, threshold, d, kept)


def postprocess_padded(
    outputs: HeadOutputs,
    anchors: Tensor,
    cfg: PostprocessConfig,
    scales: Tensor | None = None,
    image_sizes: Tensor | None = None,
    input_size: tuple[int, int] | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Detections as fixed-shape tensors (traceable for export): :class:`Postprocessor` as a function.

    Inputs: ``outputs`` (``cls_logits [B, N, K]``, ``box_deltas [B, N, 4]``), ``anchors [N, 4]`` xyxy input
    pixels. ``scales [B]``: input pixels per original pixel (:attr:`ImageMeta.scale`); ``image_sizes [B, 2]``:
    original ``(H, W)``. Boxes are clipped to the original image (``image_sizes * scales`` in input pixels),
    or to the input (``input_size``, else inferred from the anchors) when ``image_sizes`` is ``None``, then
    divided by ``scales`` when given (otherwise they stay in input pixels).

    Returns ``boxes [B, D, 4]`` xyxy float32, ``scores [B, D]`` float32 (descending), ``labels [B, D]`` int64
    (``0 .. K-1``) and ``counts [B]`` int64, ``D = cfg.max_detections``; rows ``>= counts[b]`` are zero with
    label :data:`PAD_LABEL`.
    """
    clip_to = None
    if image_sizes is not None:
        clip_to = image_sizes.to(torch.float32)
        if scales is not None:
            clip_to = clip_to * scales.to(clip_to)[:, None]
    boxes, scores, labels, counts = Postprocessor(cfg)(outputs, anchors, clip_to, input_size)
    if scales is not None:
        boxes = boxes / scales.to(boxes)[:, None, None]
    return boxes, scores, labels, counts


def postprocess(
    outputs: HeadOutputs,
    anchors: Tensor,
    cfg: PostprocessConfig,
    metas: list[ImageMeta] | None = None,
    label_names: tuple[str, ...] | None = None,
) -> list[Detections]:
    """Detections of every image: ``outputs`` (``cls_logits [B, N, K]``, ``box_deltas [B, N, 4]``), ``anchors [N, 4]``.

    With ``metas``, boxes are clipped to each original image and returned in its pixels (xyxy); without,
    they stay in input pixels, clipped to the input size (inferred from the anchors).
    """
    b = outputs.cls_logits.shape[0]
    scales = image_sizes = None
    if metas is not None:
        if len(metas) != b:
            raise ValueError(f"got {len(metas)} image metas for a batch of {b} images; give one per image")
        device = outputs.cls_logits.device
        scales = torch.tensor([m.scale for m in metas], dtype=torch.float32, device=device)
        image_sizes = torch.tensor([m.orig_size for m in metas], dtype=torch.float32, device=device)
    return unpad(postprocess_padded(outputs, anchors, cfg, scales, image_sizes), label_names=label_names)


def unpad(padded: tuple[Tensor, Tensor, Tensor, Tensor], scales: Tensor | None = None,
          label_names: Sequence[str] | None = None) -> list[Detections]:
    """Padded detections (``boxes [B, D, 4]``, ``scores [B, D]``, ``labels [B, D]``, ``counts [B]``) -> one
    :class:`Detections` per image, its first ``counts[b]`` rows; boxes divided by ``scales [B]`` when given
    (input pixels -> original-image pixels)."""
    boxes, scores, labels, counts = padded
    if scales is not None:
        boxes = boxes / scales.to(boxes)[:, None, None]
    names = tuple(label_names) if label_names is not None else None
    return [Detections(boxes[i, :n], scores[i, :n], labels[i, :n], names) for i, n in enumerate(counts.tolist())]


__all__ = [
    "PAD_LABEL",
    "PREFIX_MIN",
    "MODES",
    "NMS_METHODS",
    "Candidates",
    "CandidateSource",
    "HARD_NMS",
    "Postprocessor",
    "override",
    "hard_nms_mask",
    "first_kept",
    "hard_nms_fixed",
    "postprocess",
    "postprocess_padded",
    "unpad",
]
