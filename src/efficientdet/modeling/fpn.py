"""Feature pyramids (BiFPN, PAN, QuadFPN) whose topology is data: a tuple of :class:`FpnNode`.

A cell starts from the features ``[P_min .. P_max]`` (indices ``0 .. L-1`` of a running list). Each node
resamples its inputs to its level, fuses them (weighted or plain sum), and appends its output to the
list. The cell's outputs are the last ``L`` entries, ordered ``P_min .. P_max``.

Resampling targets take their size from the tensor of the node's level, never from a size fixed at
build time, so one model serves any input size.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from efficientdet.config import FpnConfig, FpnNode, FusionWeighting, choices
from efficientdet.errors import ConfigError
from efficientdet.modeling.layers import (
    can_fold,
    create_act,
    create_conv,
    create_downsample,
    create_norm,
    fold_conv_norm,
)

FASTATTN_EPS = 1e-4
"""Added to the sum of fast-attention weights (official value)."""

WEIGHT_METHODS = choices(FusionWeighting)


# --- topologies ---------------------------------------------------------------------------------------


class _Ids:
    """Tracks, per level, the running-list indices of the features produced at that level."""

    def __init__(self, min_level: int, max_level: int) -> None:
        self.by_level = {level: [i] for i, level in enumerate(range(min_level, max_level + 1))}
        self.count = max_level - min_level + 1

    def last(self, level: int) -> int:
        return self.by_level[level][-1]

    def add(self, level: int) -> None:
        self.by_level[level].append(self.count)
        self.count += 1


def bifpn_topology(min_level: int, max_level: int, weight_method: str = "fastattn") -> tuple[FpnNode, ...]:
    """BiFPN (EfficientDet paper, Fig. 2d): one top-down pass, then a bottom-up pass with skip inputs."""
    ids = _Ids(min_level, max_level)
    nodes = []
    for level in range(max_level - 1, min_level - 1, -1):  # top-down
        nodes.append(FpnNode(level, (ids.last(level), ids.last(level + 1)), weight_method))
        ids.add(level)
    for level in range(min_level + 1, max_level + 1):  # bottom-up, with every earlier feature of the level
        nodes.append(FpnNode(level, (*ids.by_level[level], ids.last(level - 1)), weight_method))
        ids.add(level)
    return tuple(nodes)


def pan_topology(min_level: int, max_level: int, weight_method: str = "fastattn") -> tuple[FpnNode, ...]:
    """PAN-style pyramid: a top-down pass over every level, then a bottom-up pass over every level."""
    ids = _Ids(min_level, max_level)
    nodes = []
    for level in range(max_level, min_level - 1, -1):
        inputs = (ids.last(level),) if level == max_level else (ids.last(level), ids.last(level + 1))
        nodes.append(FpnNode(level, inputs, weight_method))
        ids.add(level)
    for level in range(min_level, max_level + 1):
        inputs = (ids.last(level),) if level == min_level else (ids.last(level), ids.last(level - 1))
        nodes.append(FpnNode(level, inputs, weight_method))
        ids.add(level)
    return tuple(nodes)


def qufpn_topology(min_level: int, max_level: int, weight_method: str = "fastattn") -> tuple[FpnNode, ...]:
    """Quad-FPN: (top-down -> bottom-up) and (bottom-up -> top-down) paths, merged per level.

    The merge nodes always use fast attention and come last, ordered ``P_min .. P_max``, so the cell's
    outputs line up with its inputs (the layout of effdet's QuadFPN weights).
    """
    ids = _Ids(min_level, max_level)
    by = ids.by_level
    nodes = []

    def add(level: int, inputs: tuple[int, ...], method: str = weight_method) -> None:
        nodes.append(FpnNode(level, inputs, method))
        ids.add(level)

    # Path 1, top-down from the inputs.
    for level in range(max_level - 1, min_level - 1, -1):
        add(level, (ids.last(level), ids.last(level + 1)))
    by[max_level].append(by[max_level][-1])  # the top level passes through path 1 unchanged
    # Path 2, bottom-up over path 1 (with skips from the inputs); the top level takes the raw input.
    for level in range(min_level + 1, max_level):
        add(level, (*by[level], ids.last(level - 1)))
    add(max_level, (by[max_level][0], ids.last(max_level - 1)))
    by[min_level].append(by[min_level][-1])
    # Path 3, bottom-up from the inputs.
    for level in range(min_level + 1, max_level + 1):
        below = by[level - 1][0] if level == min_level + 1 else ids.last(level - 1)
        add(level, (by[level][0], below))
    by[min_level].append(by[min_level][-1])
    # Path 4, top-down over path 3 (with skips from the inputs).
    for level in range(max_level - 1, min_level, -1):
        add(level, (by[level][0], by[level][-1], ids.last(level + 1)))
    add(min_level, (by[min_level][0], ids.last(min_level + 1)))
    by[max_level].append(by[max_level][-1])
    # Merge path 2 and path 4 per level.
    for level in range(min_level, max_level + 1):
        add(level, (by[level][2], by[level][4]), "fastattn")
    return tuple(nodes)


TOPOLOGIES = {"bifpn": bifpn_topology, "pan": pan_topology, "qufpn": qufpn_topology}


def fpn_topology(cfg: FpnConfig, min_level: int, max_level: int) -> tuple[FpnNode, ...]:
    """The nodes of one cell: ``cfg.nodes`` when given, else the named topology."""
    if cfg.nodes is not None:
        return tuple(cfg.nodes)
    return TOPOLOGIES[cfg.topology](min_level, max_level, cfg.weight_method)


# --- modules ------------------------------------------------------------------------------------------


def resample_to(x: torch.Tensor, size: tuple[int, int], pool: nn.Module | None, mode: str) -> torch.Tensor:
    """Resample ``x [B, C, h, w]`` to spatial ``size``: pooling when given (downsampling), else interpolation."""
    if pool is not None:
        return pool(x)
    if mode == "nearest":
        h, w = x.shape[-2:]
        if all(isinstance(v, int) for v in (h, w, *size)) and size[0] % h == 0 and size[1] % w == 0:
            # the same pixels; exported graphs get a constant-scale Resize, which onnxruntime runs in its
            # blocked layout (a Resize to computed sizes costs two layout conversions there)
            return F.interpolate(x, scale_factor=(size[0] // h, size[1] // w), mode="nearest")
        return F.interpolate(x, size=size, mode="nearest")
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


class Resample(nn.Module):
    """Brings one feature to a node: optional 1x1 channel projection (+ norm), then down/upsampling.

    ``[B, C_in, h, w] -> [B, C_out, H, W]`` where ``(H, W)`` is the size of the target-level tensor.
    """

    def __init__(self, in_channels: int, out_channels: int, level_diff: int, cfg: FpnConfig) -> None:
        super().__init__()
        self.level_diff = level_diff  # target level - input level: > 0 downsample, < 0 upsample
        self.conv: nn.Module | None = None
        self.norm: nn.Module | None = None
        if in_channels != out_channels:
            bias = not cfg.resample_bn or cfg.redundant_bias
            self.conv = create_conv(in_channels, out_channels, 1, separable=False, pad_type=cfg.pad_type, bias=bias)
            self.norm = create_norm(cfg.norm, out_channels) if cfg.resample_bn else None
        self.pool = create_downsample(cfg.downsample, 2**level_diff, cfg.pad_type) if level_diff > 0 else None
        self.mode = cfg.downsample if level_diff > 0 else cfg.upsample

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if self.conv is not None:
            x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.level_diff != 0:
            x = resample_to(x, size, self.pool, self.mode)
        return x

    def fuse(self, *, for_onnx: bool = False) -> Resample:
        """Inference form (eval mode, in place): the projection's BatchNorm folded into its 1x1 conv."""
        if can_fold(self.conv, self.norm):
            self.conv = fold_conv_norm(self.conv, self.norm)
            self.norm = None
        return self


class FusionNode(nn.Module):
    """One pyramid node: resample inputs, fuse them, then act -> conv -> norm (or conv -> norm -> act)."""

    def __init__(self, node: FpnNode, in_channels: list[int], in_levels: list[int], cfg: FpnConfig) -> None:
        super().__init__()
        self.inputs = tuple(node.inputs)
        self.level = node.level
        self.weight_method = node.weight_method
        self.resample = nn.ModuleList(
            Resample(in_channels[i], cfg.channels, node.level - in_levels[i], cfg) for i in node.inputs
        )
        self.weight = nn.Parameter(torch.ones(len(node.inputs))) if node.weight_method != "sum" else None
        self.pre_act = None if cfg.conv_bn_act else create_act(cfg.act)
        self.conv = create_conv(cfg.channels, cfg.channels, 3, separable=cfg.separable_conv, pad_type=cfg.pad_type,
                                bias=cfg.redundant_bias)
        self.norm: nn.Module = create_norm(cfg.norm, cfg.channels)
        self.post_act = create_act(cfg.act) if cfg.conv_bn_act else None
        # set by fuse(): the normalised weights as fixed numbers, and how to apply them
        self.fused = False
        self.fixed_weights: list[float] | None = None
        self.weights_as_conv = False

    def fusion_weights(self, dtype: torch.dtype = torch.float32) -> torch.Tensor | None:
        """The normalised fusion weights ``[len(inputs)]`` in ``dtype`` (``None``: a plain sum).

        ``attn``: softmax; ``fastattn``: ``relu(w) / (sum(relu(w)) + FASTATTN_EPS)`` (the official formulas).
        """
        if self.weight is None:
            return None
        w = self.weight.to(dtype)
        return torch.softmax(w, dim=0) if self.weight_method == "attn" else F.relu(w) / (F.relu(w).sum() + FASTATTN_EPS)

    def combine(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """Weighted sum of same-shape inputs ``[B, C, H, W]`` as the node's weight method says."""
        if self.fused:
            return self._combine_fixed(xs)
        w = self.fusion_weights(xs[0].dtype)
        if w is None:
            out = xs[0]
            for x in xs[1:]:
                out = out + x
            return out
        out = xs[0] * w[0]
        for i in range(1, len(xs)):
            out = out + xs[i] * w[i]
        return out

    def _combine_fixed(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """:meth:`combine` with the weights fixed by :meth:`fuse` (inference only: it adds in place)."""
        weights = self.fixed_weights
        if weights is None:
            x = xs[0] if len(xs) == 1 else xs[0] + xs[1]
            for other in xs[2:]:
                x = x.add_(other)
            return x
        if self.weights_as_conv:
            # w * x as a 1 x 1 depthwise convolution (same products): exported graphs keep convolutions in
            # onnxruntime's blocked layout, where a Mul by a scalar costs two layout conversions
            c = int(xs[0].shape[1])
            return sum(F.conv2d(xi, xi.new_full((c, 1, 1, 1), w), None, 1, 0, 1, c) for xi, w in zip(xs, weights))
        x = xs[0] * weights[0]
        for other, w in zip(xs[1:], weights[1:]):
            x = x.add_(other, alpha=w)  # x + w * other in one pass over a tensor this node owns
        return x

    def forward(self, feats: list[torch.Tensor], sizes: list[tuple[int, int]], min_level: int) -> torch.Tensor:
        size = sizes[self.level - min_level]
        x = self.combine([r(feats[i], size) for r, i in zip(self.resample, self.inputs)])
        if self.pre_act is not None:
            x = self.pre_act(x)
        x = self.norm(self.conv(x))
        if self.post_act is not None:
            x = self.post_act(x)
        return x

    def fuse(self, *, for_onnx: bool = False) -> FusionNode:
        """Inference form (eval mode, in place; its resamplers fuse separately): the norm folded into the conv,
        the fusion weights computed once from :meth:`fusion_weights`, inputs added in place.

        ``for_onnx``: the weights applied as 1 x 1 depthwise convolutions (see :meth:`_combine_fixed`).
        """
        if self.training:
            raise RuntimeError("FusionNode.fuse() makes an inference-only node (fixed weights, in-place adds); "
                               "call .eval() first, and train the unfused model")
        if can_fold(self.conv, self.norm):
            self.conv = fold_conv_norm(self.conv, self.norm)
            self.norm = nn.Identity()
        w = self.fusion_weights()
        self.fixed_weights = None if w is None else [float(v) for v in w.detach()]
        self.weights_as_conv = for_onnx
        self.fused = True
        return self


class FpnCell(nn.Module):
    """One repeat of the pyramid: ``L`` features in, ``L`` features out (``P_min .. P_max``)."""

    def __init__(self, nodes: tuple[FpnNode, ...], in_channels: list[int], min_level: int, max_level: int,
                 cfg: FpnConfig) -> None:
        super().__init__()
        self.min_level = min_level
        self.num_levels = max_level - min_level + 1
        channels = list(in_channels)
        levels = list(range(min_level, max_level + 1))
        self.nodes = nn.ModuleList()
        for node in nodes:
            bad = [i for i in node.inputs if i >= len(channels)]
            if bad:
                raise ConfigError(f"fpn node {node} reads inputs {bad} that do not exist yet")
            self.nodes.append(FusionNode(node, channels, levels, cfg))
            channels.append(cfg.channels)
            levels.append(node.level)
        self.out_levels = levels[-self.num_levels:]
        if self.out_levels != list(range(min_level, max_level + 1)):
            raise ConfigError(f"the last {self.num_levels} fpn nodes must produce levels {min_level}..{max_level} in "
                              f"order, got {self.out_levels}")

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        sizes = [(f.shape[-2], f.shape[-1]) for f in feats]
        running = list(feats)  # never mutate the caller's list
        for node in self.nodes:
            running.append(node(running, sizes, self.min_level))
        return running[-self.num_levels:]


class FeaturePyramid(nn.Module):
    """Extra levels above the backbone (by 1x1 conv + downsampling) followed by ``cfg.repeats`` cells.

    Input: backbone features for levels ``min_level .. min_level + len(in_channels) - 1``.
    Output: ``max_level - min_level + 1`` tensors ``[B, cfg.channels, H_l, W_l]``, ``P_min .. P_max``.
    """

    def __init__(self, cfg: FpnConfig, in_channels: list[int], min_level: int, max_level: int) -> None:
        super().__init__()
        num_levels = max_level - min_level + 1
        if len(in_channels) > num_levels:
            raise ConfigError(f"backbone gives {len(in_channels)} levels but the pyramid has only {num_levels}")
        self.extra = nn.ModuleList()
        channels = list(in_channels)
        for _ in range(num_levels - len(in_channels)):
            self.extra.append(Resample(channels[-1], cfg.channels, 1, cfg))
            channels.append(cfg.channels)
        nodes = fpn_topology(cfg, min_level, max_level)
        self.grad_checkpointing = False
        self.cells = nn.ModuleList()
        for _ in range(cfg.repeats):
            self.cells.append(FpnCell(nodes, channels, min_level, max_level, cfg))
            channels = [cfg.channels] * num_levels

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        feats = list(feats)
        for extra in self.extra:
            h, w = feats[-1].shape[-2:]
            feats.append(extra(feats[-1], ((h - 1) // 2 + 1, (w - 1) // 2 + 1)))
        for cell in self.cells:
            if self.grad_checkpointing and torch.is_grad_enabled():
                from torch.utils.checkpoint import checkpoint

                feats = list(checkpoint(lambda *xs, c=cell: tuple(c(list(xs))), *feats, use_reentrant=False))
            else:
                feats = cell(feats)
        return feats
