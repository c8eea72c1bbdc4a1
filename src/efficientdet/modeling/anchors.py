"""Anchor boxes of the official EfficientDet layout, for any input size.

Layout of the ``N`` anchors (the official and effdet order, the order of :class:`HeadOutputs`): levels
``min_level .. max_level``, then feature row ``y``, column ``x``, then anchor ``a = octave * n_ratios +
ratio``. Anchors are ``xyxy`` float32 in input pixels, not clipped to the image.

Geometry at level ``l`` (computed in float64, then cast to float32, as the official code):

- ``stride = image_size / feat_size`` per axis (fractional when a size is not divisible by ``2**l``);
- centre ``(stride / 2 + i * stride)`` for row / column ``i``;
- ``base = anchor_scale * stride * 2 ** (octave / num_scales)``;
- width ``base_x * x_scale``, height ``base_y * y_scale`` for the aspect pair ``(x_scale, y_scale)``.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import Tensor

from efficientdet.config import AnchorConfig
from efficientdet.errors import ConfigError

ANCHOR_CACHE_SIZE = 8
"""How many ``(image size, device)`` anchor sets one :class:`AnchorGenerator` keeps."""


def feature_sizes(image_size: tuple[int, int], max_level: int) -> list[tuple[int, int]]:
    """Feature-map ``(H, W)`` of every level ``0 .. max_level`` (index = level) for an input ``image_size``.

    Each level halves the previous one, rounding up (TF ``SAME`` stride-2 layers): 512 -> 256 -> 128 ...,
    321 -> 161 -> 81 -> 41 ...
    """
    h, w = (int(s) for s in image_size)
    if h < 1 or w < 1:
        raise ConfigError(f"image_size must be positive (H, W), got {tuple(image_size)}")
    sizes = [(h, w)]
    for _ in range(max_level):
        h, w = (h + 1) // 2, (w + 1) // 2
        sizes.append((h, w))
    return sizes


def _level_scales(cfg: AnchorConfig) -> list[float]:
    num_levels = cfg.max_level - cfg.min_level + 1
    if isinstance(cfg.anchor_scale, (tuple, list)):
        if len(cfg.anchor_scale) != num_levels:
            raise ConfigError(
                f"anchors.anchor_scale has {len(cfg.anchor_scale)} values but the pyramid has {num_levels} levels "
                f"({cfg.min_level}..{cfg.max_level}); give one value or one per level"
            )
        return [float(s) for s in cfg.anchor_scale]
    return [float(cfg.anchor_scale)] * num_levels


def generate_anchors(cfg: AnchorConfig, image_size: tuple[int, int]) -> Tensor:
    """All anchors for an input of ``image_size`` (H, W): ``[N, 4]`` xyxy float32 input pixels (layout above).

    ``N = sum_l H_l * W_l * num_scales * len(aspect_ratios)`` over levels ``min_level .. max_level``.
    """
    if cfg.num_scales < 1 or not cfg.aspect_ratios:
        raise ConfigError("anchors need num_scales >= 1 and at least one aspect ratio")
    sizes = feature_sizes(image_size, cfg.max_level)
    img_h, img_w = sizes[0]
    octaves = torch.arange(cfg.num_scales, dtype=torch.float64) / cfg.num_scales
    aspects = torch.tensor(cfg.aspect_ratios, dtype=torch.float64)  # [R, 2] (x_scale, y_scale)
    levels = []
    for level, scale in zip(range(cfg.min_level, cfg.max_level + 1), _level_scales(cfg), strict=True):
        feat_h, feat_w = sizes[level]
        stride_y, stride_x = img_h / feat_h, img_w / feat_w
        cy = stride_y / 2 + stride_y * torch.arange(feat_h, dtype=torch.float64)
        cx = stride_x / 2 + stride_x * torch.arange(feat_w, dtype=torch.float64)
        octave_mult = (2.0**octaves)[:, None]  # [S, 1]
        half_w = (scale * stride_x * octave_mult * aspects[:, 0]) / 2.0  # [S, R]
        half_h = (scale * stride_y * octave_mult * aspects[:, 1]) / 2.0
        half_w, half_h = half_w.reshape(-1), half_h.reshape(-1)  # [A], a = octave * R + ratio
        cy = cy[:, None, None]  # [H, 1, 1]
        cx = cx[None, :, None]  # [1, W, 1]
        boxes = torch.stack(
            torch.broadcast_tensors(cx - half_w, cy - half_h, cx + half_w, cy + half_h), dim=-1
        )  # [H, W, A, 4]
        levels.append(boxes.reshape(-1, 4))
    return torch.cat(levels).to(torch.float32)


def num_anchors(cfg: AnchorConfig, image_size: tuple[int, int]) -> int:
    """The number ``N`` of anchors (and of head output rows) for an input of ``image_size`` (H, W)."""
    sizes = feature_sizes(image_size, cfg.max_level)
    return sum(h * w for h, w in sizes[cfg.min_level :]) * cfg.num_anchors


def input_size_from_anchors(anchors: Tensor) -> tuple[int, int]:
    """The input ``(H, W)`` that a :func:`generate_anchors` set ``[N, 4]`` was made for.

    Anchor 0 is centred at half the finest stride and the largest centre lies half that stride before
    the input's far edge, so their sum is the input size.
    """
    if anchors.numel() == 0:
        raise ConfigError("cannot infer the input size from an empty anchor set; pass the input size")
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2  # [N, 2] (cx, cy)
    size = centres.max(dim=0).values + centres[0]
    w, h = (int(math.floor(float(v) + 0.5)) for v in size)
    return h, w


class AnchorGenerator:
    """Anchors for any input size, cached per ``(size, device)`` (the last :data:`ANCHOR_CACHE_SIZE` kept).

    ``generator(image_size, device) -> Tensor [N, 4]`` xyxy float32 input pixels. The returned tensor is
    shared between calls; do not modify it in place.
    """

    def __init__(self, cfg: AnchorConfig) -> None:
        self.cfg = cfg
        self._cache: OrderedDict[tuple[tuple[int, int], torch.device], Tensor] = OrderedDict()

    def __call__(self, image_size: tuple[int, int], device: torch.device | str = "cpu") -> Tensor:
        key = ((int(image_size[0]), int(image_size[1])), torch.device(device))
        anchors = self._cache.get(key)
        if anchors is None:
            anchors = generate_anchors(self.cfg, key[0]).to(key[1])
            self._cache[key] = anchors
            if len(self._cache) > ANCHOR_CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return anchors


__all__ = [
    "ANCHOR_CACHE_SIZE",
    "feature_sizes",
    "generate_anchors",
    "num_anchors",
    "input_size_from_anchors",
    "AnchorGenerator",
]
