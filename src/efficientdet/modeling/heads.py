"""Class and box heads: convolutions shared across pyramid levels, a norm per level and repeat.

:class:`Head` is the trainable head; its :meth:`Head.fuse` gives :class:`FoldedHead`, the inference form
with every per-level norm folded into a per-level copy of the conv. Both run the one forward of
:class:`LevelHead`; they differ only in the layers each level uses and in how the last conv is applied.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import drop_path

from efficientdet.config import HeadConfig, NormConfig
from efficientdet.modeling.layers import (
    SeparableConv2d,
    can_fold,
    create_act,
    create_conv,
    create_norm,
    fold_conv_norm,
    init_head_,
)


class LevelHead(nn.Module):
    """The forward shared by :class:`Head` and :class:`FoldedHead`: the same layers run on every level.

    Input: ``L`` tensors ``[B, C, H_l, W_l]`` (``P_min .. P_max``).
    Output: ``[B, N, num_outputs]`` with ``N = sum_l H_l * W_l * num_anchors``, ordered level, row, column,
    anchor; the conv channel of anchor ``a`` and output ``k`` is ``a * num_outputs + k``.

    Subclasses set ``act``, ``survival_prob``, ``num_outputs``, ``grad_checkpointing`` and give
    :meth:`repeats` and :meth:`predict_nhwc`.
    """

    act: nn.Module
    survival_prob: float | None
    num_outputs: int
    grad_checkpointing: bool

    def repeats(self, level: int) -> list[tuple[nn.Module, nn.Module | None]]:
        """``(conv, norm or None)`` of each repeat at pyramid level index ``level``."""
        raise NotImplementedError

    def predict_nhwc(self, x: torch.Tensor) -> torch.Tensor:
        """The output layer: ``[B, C, H, W] -> [B, H, W, num_anchors * num_outputs]``."""
        raise NotImplementedError

    def forward_level(self, x: torch.Tensor, level: int) -> torch.Tensor:
        """``[B, C, H, W] -> [B, H * W * num_anchors, num_outputs]`` for pyramid level index ``level``."""
        for i, (conv, norm) in enumerate(self.repeats(level)):
            y = conv(x)
            if norm is not None:
                y = norm(y)
            y = self.act(y)
            if self.survival_prob is not None and i > 0:
                y = drop_path(y, 1.0 - self.survival_prob, self.training) + x
            x = y
        out = self.predict_nhwc(x)
        return out.reshape(out.shape[0], -1, self.num_outputs)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        outs = []
        for level, x in enumerate(feats):
            if self.grad_checkpointing and torch.is_grad_enabled():
                from torch.utils.checkpoint import checkpoint

                outs.append(checkpoint(self.forward_level, x, level, use_reentrant=False))
            else:
                outs.append(self.forward_level(x, level))
        return torch.cat(outs, dim=1)


class Head(LevelHead):
    """Predicts ``num_outputs`` values per anchor at every location of every level (see :class:`LevelHead`).

    The repeat convs are shared across levels; each level and repeat has its own norm.
    """

    def __init__(self, cfg: HeadConfig, *, channels: int, num_levels: int, num_anchors: int, num_outputs: int,
                 act: str, norm: NormConfig, prior_bias: float | None = None) -> None:
        super().__init__()
        self.survival_prob = cfg.survival_prob
        self.grad_checkpointing = False
        self.convs = nn.ModuleList(
            create_conv(channels, channels, 3, separable=cfg.separable_conv, pad_type=cfg.pad_type,
                        bias=cfg.redundant_bias)
            for _ in range(cfg.repeats)
        )
        # norms[level][repeat]: a separate norm for every level and repeat (statistics differ per level).
        self.norms = nn.ModuleList(
            nn.ModuleList(create_norm(norm, channels) for _ in range(cfg.repeats)) for _ in range(num_levels)
        )
        self.act = create_act(act)
        self._cfg = cfg
        self.channels = channels
        self.num_anchors = num_anchors
        init_head_(self)
        self.reset_outputs(num_outputs, prior_bias)

    def reset_outputs(self, num_outputs: int, prior_bias: float | None = None) -> None:
        """Replace the output conv by a freshly initialised one for ``num_outputs`` values per anchor.

        The shared repeat convs and norms are kept (the official fine-tuning recipe re-initialises only
        the class-prediction layer). ``prior_bias`` fills the new bias (class head), else zeros.
        """
        self.num_outputs = num_outputs
        self.predict = create_conv(self.channels, self.num_anchors * num_outputs, 3,
                                   separable=self._cfg.separable_conv, pad_type=self._cfg.pad_type, bias=True)
        init_head_(self.predict)
        if prior_bias is not None:
            with torch.no_grad():
                self.predict_bias().fill_(prior_bias)

    def predict_bias(self) -> torch.Tensor:
        """The bias of the output conv (``[num_anchors * num_outputs]``)."""
        conv = self.predict.pw if hasattr(self.predict, "pw") else self.predict
        return conv.bias

    def repeats(self, level: int) -> list[tuple[nn.Module, nn.Module | None]]:
        return list(zip(self.convs, self.norms[level]))

    def predict_nhwc(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict(x).permute(0, 2, 3, 1)

    def fuse(self, *, for_onnx: bool = False) -> LevelHead:
        """The inference form (eval mode): a :class:`FoldedHead`, or this head when a norm cannot be folded
        (GroupNorm, LayerNorm, a norm in training mode)."""
        if all(can_fold(conv, norm) for norms in self.norms for conv, norm in zip(self.convs, norms)):
            return FoldedHead(self)
        return self


class FoldedHead(LevelHead):
    """A :class:`Head` whose per-level norms are folded into per-level convs (from :meth:`Head.fuse`).

    Same input and output as the head. When the prediction layer is separable with a plain ``1 x 1``
    pointwise conv (the EfficientDet heads), that pointwise conv runs as a matrix product on the NHWC view of
    the depthwise output: the result comes out directly in anchor order ``(y, x, anchor, output)``. Same
    products (bitwise the same in PyTorch); in onnxruntime it replaces a single-threaded NCHWc -> NHWC
    reorder of the largest tensor of the network (D0: 810 x 64 x 64 class logits) with one of the 64-channel
    input. The depthwise convs are shared with the head, not copied.
    """

    def __init__(self, head: Head) -> None:
        super().__init__()
        self.levels = nn.ModuleList(
            nn.ModuleList(fold_conv_norm(conv, norm) for conv, norm in zip(head.convs, norms)) for norms in head.norms
        )
        self.act = head.act
        self.predict = head.predict
        self.num_outputs = head.num_outputs
        self.survival_prob = head.survival_prob
        self.grad_checkpointing = False
        pw = getattr(head.predict, "pw", None)
        self.pointwise_as_linear = (
            isinstance(head.predict, SeparableConv2d) and type(pw) is nn.Conv2d and pw.kernel_size == (1, 1)
            and pw.stride == (1, 1) and pw.padding == (0, 0) and pw.groups == 1 and pw.padding_mode == "zeros")
        self.train(head.training)

    def repeats(self, level: int) -> list[tuple[nn.Module, nn.Module | None]]:
        return [(conv, None) for conv in self.levels[level]]

    def predict_nhwc(self, x: torch.Tensor) -> torch.Tensor:
        if self.pointwise_as_linear:
            pw = self.predict.pw
            y = self.predict.dw(x).permute(0, 2, 3, 1)
            b, h, w, c = y.shape
            # 2-D, so that exported graphs get one Gemm with its bias (a 4-D MatMul + Add is two passes)
            return F.linear(y.reshape(-1, c), pw.weight.flatten(1), pw.bias).reshape(b, h, w, -1)
        return self.predict(x).permute(0, 2, 3, 1)  # a view in NHWC for channels_last inputs


def prior_bias(prior_prob: float) -> float:
    """Class-head bias so that the initial sigmoid output is ``prior_prob``: ``-log((1 - p) / p)``."""
    return -math.log((1.0 - prior_prob) / prior_prob)
