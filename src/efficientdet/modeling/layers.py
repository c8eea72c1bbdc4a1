"""Small building blocks: convolutions with TF-SAME or PyTorch padding, norm/activation factories, init.

Padding: ``pad_type="same"`` reproduces TensorFlow's SAME padding (asymmetric for stride 2 on even sizes,
computed from the input size at run time, so any input size works); ``""`` is PyTorch's symmetric
padding. Both are delegated to timm's ``create_conv2d`` / ``create_pool2d``, which use static padding
whenever it is equivalent (every stride-1 conv) and dynamic padding only where needed.

Inference fusion (what each module's ``fuse()`` uses, see :mod:`efficientdet.fast`): :func:`fold_conv_norm`
moves an eval-mode BatchNorm into the convolution before it, and :class:`TfSameConv2d` /
:class:`TfSameMaxPool2d` give TF-SAME padding without copying the input into a padded tensor.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import BatchNormAct2d, Conv2dSame, create_conv2d, create_pool2d, get_act_layer
from torch.nn.utils.fusion import fuse_conv_bn_eval

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


# --- inference fusion: BatchNorm folding and copy-free TF-SAME padding ---------------------------------


def same_padding(size: int, kernel_size: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF ``SAME`` padding ``(before, after)`` of one axis of length ``size`` (``after - before`` is 0 or 1)."""
    effective = (kernel_size - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _symmetric(size: int, kernel_size: int, stride: int, dilation: int) -> tuple[int, int]:
    """``(padding, skip)``: symmetric conv padding that reproduces SAME padding once ``skip`` leading outputs go.

    With ``after = before + 1``, padding ``before + stride`` on both sides shifts the output grid by one
    step: output ``j + 1`` reads the inputs of SAME output ``j``, and the last SAME output stays in range.
    """
    before, after = same_padding(size, kernel_size, stride, dilation)
    if before == after:
        return before, 0
    return before + stride, 1


class TfSameConv2d(nn.Conv2d):
    """A 2d convolution with TensorFlow ``SAME`` padding for any input size, without padding the input.

    Same parameters, same outputs as timm's ``Conv2dSame``: ``[B, C_in, H, W] -> [B, C_out, ceil(H / s),
    ceil(W / s)]``. Asymmetric padding is replaced by symmetric padding plus a shifted output (see
    :func:`_symmetric`), which costs one extra output row / column instead of a padded copy of the input.
    ``pad_input``: pad explicitly instead (for export: ``F.pad`` + convolution become one ONNX ``Conv``
    with asymmetric ``pads``).
    """

    pad_input = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        # int(): a traced size becomes a constant (exported graphs have a fixed image size)
        if self.pad_input:
            top, bottom = same_padding(int(x.shape[-2]), kh, sh, dh)
            left, right = same_padding(int(x.shape[-1]), kw, sw, dw)
            if (top, left) != (bottom, right):
                x = F.pad(x, (left, right, top, bottom))
                top = left = 0
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation, self.groups)
        ph, skip_h = _symmetric(int(x.shape[-2]), kh, sh, dh)
        pw, skip_w = _symmetric(int(x.shape[-1]), kw, sw, dw)
        y = F.conv2d(x, self.weight, self.bias, self.stride, (ph, pw), self.dilation, self.groups)
        if skip_h or skip_w:
            y = y[:, :, skip_h:, skip_w:]
        return y

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, pad_input: bool = False) -> TfSameConv2d:
        """The same layer as a :class:`TfSameConv2d`, sharing ``conv``'s parameters."""
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0, conv.dilation, conv.groups,
                  conv.bias is not None, device="meta")
        new.weight = conv.weight
        new.bias = conv.bias
        new.pad_input = pad_input
        return new.train(conv.training)


class TfSameMaxPool2d(nn.Module):
    """Max pooling with TensorFlow ``SAME`` padding for any input size, without padding the input.

    ``[B, C, H, W] -> [B, C, ceil(H / s), ceil(W / s)]``, equal to timm's ``MaxPool2dSame`` (``-inf``
    padding): ``padding = before`` with ``ceil_mode`` covers the extra ``after`` pixel with a window that
    is clipped at the edge.
    """

    def __init__(self, kernel_size: tuple[int, int], stride: tuple[int, int]) -> None:
        super().__init__()
        self.kernel_size = tuple(kernel_size)
        self.stride = tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        ph = same_padding(int(x.shape[-2]), kh, sh)[0]
        pw = same_padding(int(x.shape[-1]), kw, sw)[0]
        return F.max_pool2d(x, self.kernel_size, self.stride, (ph, pw), 1, True)


_PLAIN_CONVS = (nn.Conv2d, Conv2dSame, TfSameConv2d)
"""Convolutions whose forward is a plain convolution of their weight (not e.g. weight-standardised)."""


def is_foldable_conv(module: nn.Module) -> bool:
    """A plain zero-padded convolution (its exact type, so that e.g. weight-standardised convs are not folded)."""
    return type(module) in _PLAIN_CONVS and module.padding_mode == "zeros"


def is_foldable_norm(module: nn.Module | None) -> bool:
    """An eval-mode BatchNorm with running statistics (timm's ``BatchNormAct2d`` included)."""
    from torchvision.ops import FrozenBatchNorm2d

    if isinstance(module, FrozenBatchNorm2d):
        return True
    if not isinstance(module, (nn.BatchNorm2d, nn.SyncBatchNorm)) or module.training:
        return False
    return module.running_mean is not None and module.running_var is not None


def can_fold(conv: nn.Module | None, norm: nn.Module | None) -> bool:
    """Whether :func:`fold_conv_norm` applies: a plain or :class:`SeparableConv2d` conv and a foldable norm."""
    return is_foldable_norm(norm) and (isinstance(conv, SeparableConv2d) or is_foldable_conv(conv))


def fold_conv_norm(conv: nn.Module, norm: nn.Module) -> nn.Module:
    """A new module computing ``norm(conv(x))`` (``norm`` in eval mode, without its activation) in one conv.

    ``conv`` is a plain conv or a :class:`SeparableConv2d` (the norm folds into its pointwise part; the
    depthwise part is shared, not copied). ``conv`` itself is not changed.
    """
    if isinstance(conv, SeparableConv2d):
        return nn.Sequential(conv.dw, fuse_conv_bn_eval(conv.pw, norm))
    return fuse_conv_bn_eval(conv, norm)


def after_norm(norm: nn.Module, inplace: bool = True) -> nn.Module:
    """What is left of ``norm`` once its affine map is folded away: timm's dropout + activation, or nothing.

    ``inplace=False`` makes an in-place activation write a new tensor (needed after a :class:`TfSameConv2d`,
    whose output may be a view: in place, exporters record a scatter back into the unsliced tensor).
    """
    if not isinstance(norm, BatchNormAct2d):
        return nn.Identity()
    parts = [m for m in (norm.drop, norm.act) if not isinstance(m, nn.Identity)]
    if not inplace:
        parts = [_out_of_place(m) for m in parts]
    if not parts:
        return nn.Identity()
    return parts[0] if len(parts) == 1 else nn.Sequential(*parts)


def _out_of_place(module: nn.Module) -> nn.Module:
    if getattr(module, "inplace", False):
        module = copy.deepcopy(module)
        module.inplace = False
    return module


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
