"""Small building blocks: convolutions with TF-SAME or PyTorch padding, norm/activation factories, init.

Padding: ``pad_type="same"`` reproduces TensorFlow's SAME padding (asymmetric for stride 2 on even sizes,
computed from the input size at run time, so any input size works); ``""`` is PyTorch's symmetric
padding. Both are delegated to timm's ``create_conv2d`` / ``create_pool2d``, which use static padding
whenever it is equivalent (every stride-1 conv) and dynamic padding only where needed.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from timm.layers import create_conv2d, create_pool2d, get_act_layer

from efficientdet.config import NormConfig, NormKind, choices
from efficientdet.errors import ConfigError

NORM_KINDS = choices(NormKind)


def create_act(name: str) -> nn.Module:
    """An activation module by timm name (``swish``/``silu``, ``relu``, ``relu6``, ``hard_swish``, ``mish``, ...)."""
    layer = get_act_layer(name)
    if layer is None:
        raise ConfigError(f"unknown activation {name!r}; use a timm activation name such as 'swish', 'relu6'")
    try:
        return layer(inplace=True)
    except TypeError:
        return layer()


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` that also trains on one value per channel, as TensorFlow's batch norm does.

    The pyramid's coarsest levels are small: at a 128 x 128 input P7 is 1 x 1, so a batch of one image (a
    ``batch_size=1`` run, or a batch that skipped images shrank) gives each channel a single value. PyTorch
    refuses that in training ("Expected more than 1 value per channel"); mathematically the batch mean is the
    value and the variance 0, so the normalised output is ``bias`` and the input's gradient is zero, which is
    what this layer returns. One value says nothing about the variance, so the running statistics are left as
    they are for that step. Any other input, and evaluation, are plain ``nn.BatchNorm2d`` (same state dict).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            # (x - mean) / std is 0: the output is the bias. x and the weight stay in the graph with a zero
            # gradient, so that DDP sees a gradient for every parameter in every process.
            zero = x * 0
            if self.weight is not None:
                zero = zero * self.weight.view(1, -1, 1, 1).to(x.dtype)
            return zero + self.bias.view(1, -1, 1, 1).to(x.dtype) if self.bias is not None else zero
        return super().forward(x)


def create_norm(cfg: NormConfig, channels: int) -> nn.Module:
    """A 2d normalisation layer over ``channels`` as ``cfg`` describes (``batchnorm``: :class:`BatchNorm2d`)."""
    kind = cfg.kind.lower()
    if kind == "batchnorm":
        return BatchNorm2d(channels, eps=cfg.eps, momentum=cfg.momentum)
    if kind == "syncbatchnorm":
        return nn.SyncBatchNorm(channels, eps=cfg.eps, momentum=cfg.momentum)
    if kind == "frozenbatchnorm":
        from torchvision.ops import FrozenBatchNorm2d

        return FrozenBatchNorm2d(channels, eps=cfg.eps)
    if kind == "groupnorm":
        return nn.GroupNorm(math.gcd(cfg.groups, channels), channels, eps=cfg.eps)
    if kind == "layernorm":
        from timm.layers import LayerNorm2d

        return LayerNorm2d(channels, eps=cfg.eps)
    raise ConfigError(f"unknown norm kind {cfg.kind!r}; choose one of {', '.join(NORM_KINDS)}")


class SeparableConv2d(nn.Module):
    """Depthwise ``k x k`` conv (no bias) followed by a pointwise ``1 x 1`` conv (optional bias).

    ``[B, C_in, H, W] -> [B, C_out, H', W']``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, stride: int = 1,
                 pad_type: str = "same", bias: bool = True) -> None:
        super().__init__()
        self.dw = create_conv2d(in_channels, in_channels, kernel_size, stride=stride, padding=pad_type,
                                depthwise=True, bias=False)
        self.pw = create_conv2d(in_channels, out_channels, 1, padding=pad_type, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


def create_conv(in_channels: int, out_channels: int, kernel_size: int, *, separable: bool,
                pad_type: str = "same", bias: bool = True) -> nn.Module:
    """A separable or a standard conv (stride 1)."""
    if separable:
        return SeparableConv2d(in_channels, out_channels, kernel_size, pad_type=pad_type, bias=bias)
    return create_conv2d(in_channels, out_channels, kernel_size, padding=pad_type, bias=bias)


def create_downsample(kind: str, factor: int, pad_type: str) -> nn.Module | None:
    """A pooling layer that reduces resolution by ``factor`` (window ``factor + 1``, the official choice).

    Returns ``None`` for interpolation kinds, which resample to a target size at run time instead.
    """
    if kind in ("max", "avg"):
        return create_pool2d(kind, kernel_size=factor + 1, stride=factor, padding=pad_type)
    return None


# --- initialisation (the official TF initialisers) ---------------------------------------------------


def _fans(weight: torch.Tensor, groups: int) -> tuple[int, int]:
    receptive = weight[0, 0].numel() if weight.dim() > 2 else 1
    fan_in = weight.shape[1] * receptive
    fan_out = weight.shape[0] * receptive // groups
    return fan_in, fan_out


@torch.no_grad()
def glorot_uniform_(conv: nn.Conv2d) -> None:
    """Keras' default kernel initializer (used for the BiFPN and resample convs)."""
    fan_in, fan_out = _fans(conv.weight, conv.groups)
    limit = math.sqrt(6.0 / max(1.0, fan_in + fan_out))
    conv.weight.uniform_(-limit, limit)
    if conv.bias is not None:
        conv.bias.zero_()


@torch.no_grad()
def variance_scaling_(conv: nn.Conv2d) -> None:
    """TF ``variance_scaling`` (scale 1, fan_in, normal): the separable head convs."""
    fan_in, _ = _fans(conv.weight, conv.groups)
    conv.weight.normal_(0.0, math.sqrt(1.0 / max(1.0, fan_in)))
    if conv.bias is not None:
        conv.bias.zero_()


@torch.no_grad()
def normal_001_(conv: nn.Conv2d) -> None:
    """``N(0, 0.01)``: the official init of non-separable head convs."""
    conv.weight.normal_(0.0, 0.01)
    if conv.bias is not None:
        conv.bias.zero_()


def _reset_norms_(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
            with torch.no_grad():
                m.weight.fill_(1.0)
                m.bias.zero_()


def init_fpn_(module: nn.Module) -> None:
    """Official init of the feature pyramid: Glorot-uniform convs, zero biases, unit norms."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            glorot_uniform_(m)
    _reset_norms_(module)


def init_head_(module: nn.Module) -> None:
    """Official init of a head: variance scaling for separable convs, N(0, 0.01) for standard ones."""
    separable_parts: set[int] = set()
    for m in module.modules():
        if isinstance(m, SeparableConv2d):
            variance_scaling_(m.dw)
            variance_scaling_(m.pw)
            separable_parts.update((id(m.dw), id(m.pw)))
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and id(m) not in separable_parts:
            normal_001_(m)
    _reset_norms_(module)
