"""Class and box heads: convolutions shared across pyramid levels, a norm per level and repeat."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from timm.layers import drop_path

from efficientdet.config import HeadConfig, NormConfig
from efficientdet.modeling.layers import create_act, create_conv, create_norm, init_head_


class Head(nn.Module):
    """Predicts ``num_outputs`` values per anchor at every location of every level.

    Input: ``L`` tensors ``[B, C, H_l, W_l]`` (``P_min .. P_max``).
    Output: ``[B, N, num_outputs]`` with ``N = sum_l H_l * W_l * num_anchors``, ordered level, row, column,
    anchor; the conv channel of anchor ``a`` and output ``k`` is ``a * num_outputs + k``.
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

    def forward_level(self, x: torch.Tensor, level: int) -> torch.Tensor:
        """``[B, C, H, W] -> [B, num_anchors * num_outputs, H, W]`` for pyramid level index ``level``."""
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms[level])):
            y = self.act(norm(conv(x)))
            if self.survival_prob is not None and i > 0:
                y = drop_path(y, 1.0 - self.survival_prob, self.training) + x
            x = y
        return self.predict(x)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        outs = []
        for level, x in enumerate(feats):
            if self.grad_checkpointing and torch.is_grad_enabled():
                from torch.utils.checkpoint import checkpoint

                out = checkpoint(self.forward_level, x, level, use_reentrant=False)
            else:
                out = self.forward_level(x, level)
            outs.append(out.permute(0, 2, 3, 1).reshape(out.shape[0], -1, self.num_outputs))
        return torch.cat(outs, dim=1)


def prior_bias(prior_prob: float) -> float:
    """Class-head bias so that the initial sigmoid output is ``prior_prob``: ``-log((1 - p) / p)``."""
    return -math.log((1.0 - prior_prob) / prior_prob)
