"""Inference speed-ups that keep the results: :func:`optimize_for_inference`.

An optimised model is a copy of an :class:`~efficientdet.modeling.detector.EfficientDet` in eval mode whose
``forward`` returns the same :class:`~efficientdet.structures.HeadOutputs` (to float rounding, about 1e-6
relative) for any input size, faster. The original model is not changed. What changes:

- **BatchNorm folding.** An eval-mode BatchNorm after a convolution is an affine map per channel, so it
  moves into the convolution's weight and bias (``torch.nn.utils.fuse_conv_bn_eval``). In the backbone the
  conv -> BatchNorm pairs are found by tracing it with ``torch.fx`` (any timm backbone: EfficientNet,
  MobileNet, ResNet, CSP ...): a pair is folded only when the conv's single consumer is the norm; a
  timm ``BatchNormAct2d`` keeps its activation. In the feature pyramid the resample and node norms fold
  into their (pointwise) convs. The heads share their convolutions across levels but keep one norm per
  level, so each level gets its own folded copy of the pointwise conv (the depthwise conv stays shared).
- **Fixed fusion weights.** The normalised fusion weights of every pyramid node are computed once.
- **Static TF-SAME padding.** timm's ``Conv2dSame`` / ``MaxPool2dSame`` copy the whole input into a padded
  tensor (``F.pad``) at every call. The same result comes without the copy: a convolution whose SAME
  padding is asymmetric (``right = left + 1``, stride-2 layers on even sizes) runs with symmetric padding
  ``left + stride`` and drops its first output row / column; max pooling uses ``padding = left`` with
  ``ceil_mode`` (windows past the edge see only real pixels, as with ``-inf`` padding). The padding is
  computed from the input size at every call, so any size still works. For export (``for_onnx``) the
  convolution pads explicitly instead: the exporter folds the padding into the ONNX ``Conv``'s
  asymmetric ``pads``, where a sliced output would cost onnxruntime a copy and two layout conversions.
- **channels_last** memory format (NHWC), which the CPU (oneDNN) and GPU convolution kernels prefer.
- **Head outputs in anchor order.** The last (pointwise) conv of each separable prediction layer runs
  as a matrix product on the NHWC view of its input, so no layout conversion of the largest tensor
  (the class logits) is needed, in PyTorch or in exported graphs (see :class:`FoldedHead`).

Who does what: the library's own modules own their inference form. Each has a ``fuse(*, for_onnx=False)``
method that returns the module to use instead (itself, changed in place, or a new one), as timm's
``reparameterize_model`` does: :meth:`~efficientdet.modeling.fpn.Resample.fuse`,
:meth:`~efficientdet.modeling.fpn.FusionNode.fuse`, :meth:`~efficientdet.modeling.heads.Head.fuse` (which
gives a :class:`~efficientdet.modeling.heads.FoldedHead`). This module only walks the model and calls them
(:func:`fuse_modules`), and, in the timm backbone, folds the traced conv -> BatchNorm pairs and swaps timm's
layers for the faster equivalents above.

Gradients are off and the norms are gone: an optimised model is for inference only (train and save the
original). Norms that are not BatchNorm (GroupNorm, LayerNorm) are kept as they are.
"""

from __future__ import annotations

import copy
import logging
from collections import Counter

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Conv2dSame, get_notrace_functions, get_notrace_modules
from timm.layers.pool2d_same import MaxPool2dSame
from timm.models.efficientnet import SqueezeExcite
from torch.nn.utils.fusion import fuse_conv_bn_eval

from efficientdet.modeling.detector import EfficientDet
from efficientdet.modeling.heads import FoldedHead
from efficientdet.modeling.layers import (
    TfSameConv2d,
    TfSameMaxPool2d,
    after_norm,
    fold_conv_norm,
    is_foldable_conv,
    is_foldable_norm,
    same_padding,
)

log = logging.getLogger(__name__)


# --- the library's modules: each fuses itself ----------------------------------------------------------


def fuse_modules(module: nn.Module, *, for_onnx: bool = False, skip: tuple[nn.Module, ...] = ()) -> nn.Module:
    """Replace, depth first and in place, every submodule of ``module`` that has a ``fuse()`` by what it returns.

    ``module`` must be in eval mode (its norms fold with their running statistics). ``skip``: submodules left
    as they are (the timm backbone: a timm layer's ``fuse`` means the same but takes no arguments). Returns
    ``module``.
    """
    for name, child in module.named_children():
        if any(child is s for s in skip):
            continue
        fuse = getattr(child, "fuse", None)
        if callable(fuse):
            new = fuse(for_onnx=for_onnx)
            if new is not child:
                setattr(module, name, new)
            child = new
        fuse_modules(child, for_onnx=for_onnx, skip=skip)
    return module


# --- timm's layers in the backbone ---------------------------------------------------------------------


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def replace_same_padding(model: nn.Module, pad_input: bool = False) -> int:
    """Swap timm's ``Conv2dSame`` / ``MaxPool2dSame`` in ``model`` for the copy-free versions; returns the count.

    ``pad_input``: the convolutions pad explicitly (:class:`TfSameConv2d`), for export.
    """
    count = 0
    for name, module in list(model.named_modules()):
        new: nn.Module | None = None
        if type(module) is Conv2dSame:
            new = TfSameConv2d.from_conv(module, pad_input)
        elif type(module) is MaxPool2dSame and _pair(module.dilation) == (1, 1):
            new = TfSameMaxPool2d(_pair(module.kernel_size), _pair(module.stride)).train(module.training)
        if new is not None:
            _set_submodule(model, name, new)
            count += 1
    return count


class _LeafTracer(torch.fx.Tracer):
    """``torch.fx`` tracer that keeps timm's untraceable layers (``Conv2dSame``, norm-act ...) as leaves."""

    def __init__(self) -> None:
        super().__init__(autowrap_functions=tuple(get_notrace_functions()))
        self.leaves = tuple(get_notrace_modules()) + (TfSameConv2d, TfSameMaxPool2d)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, self.leaves) or super().is_leaf_module(m, module_qualified_name)


def conv_norm_pairs(module: nn.Module) -> list[tuple[str, str]]:
    """Names ``(conv, norm)`` of the foldable pairs in ``module``, found by tracing it with ``torch.fx``.

    A pair qualifies when the conv's output feeds the norm and nothing else, and each module is called
    once. Returns ``[]`` (and logs why) when the module cannot be traced.
    """
    try:
        graph = _LeafTracer().trace(module)
    except Exception as err:  # noqa: BLE001 - any tracing failure means: leave the module as it is
        log.info("BatchNorm folding skipped for %s: not traceable (%s)", type(module).__name__, err)
        return []
    calls = [n for n in graph.nodes if n.op == "call_module"]
    uses = Counter(n.target for n in calls)
    pairs = []
    for node in calls:
        if len(node.users) != 1 or not is_foldable_conv(module.get_submodule(node.target)):
            continue
        user = next(iter(node.users))
        if (user.op == "call_module" and user.args == (node,) and not user.kwargs
                and is_foldable_norm(module.get_submodule(user.target))
                and uses[node.target] == 1 and uses[user.target] == 1):
            pairs.append((str(node.target), str(user.target)))
    return pairs


def fold_backbone_norms(backbone: nn.Module) -> int:
    """Fold every traced conv -> BatchNorm pair of ``backbone`` (eval mode) in place; returns the count."""
    pairs = conv_norm_pairs(backbone)
    for conv_name, norm_name in pairs:
        conv, norm = backbone.get_submodule(conv_name), backbone.get_submodule(norm_name)
        _set_submodule(backbone, conv_name, fuse_conv_bn_eval(conv, norm))
        _set_submodule(backbone, norm_name, after_norm(norm, inplace=not isinstance(conv, TfSameConv2d)))
    return len(pairs)


class FastSqueezeExcite(nn.Module):
    """timm's EfficientNet ``SqueezeExcite`` with its ``1 x 1`` convs on the pooled ``[B, C]`` run as linear layers.

    ``[B, C, H, W] -> [B, C, H, W]``: ``x * gate(expand(act(reduce(mean_hw(x)))))``. Convolutions of a
    ``1 x 1`` image take PyTorch's slow generic path; the same products as ``F.linear`` do not.
    """

    def __init__(self, se: nn.Module) -> None:
        super().__init__()
        self.conv_reduce, self.act1, self.conv_expand, self.gate = se.conv_reduce, se.act1, se.conv_expand, se.gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3))  # [B, C]
        s = self.act1(F.linear(s, self.conv_reduce.weight.flatten(1), self.conv_reduce.bias))
        s = self.gate(F.linear(s, self.conv_expand.weight.flatten(1), self.conv_expand.bias))
        return x * s[:, :, None, None]


def replace_squeeze_excite(model: nn.Module) -> int:
    """Swap timm's EfficientNet ``SqueezeExcite`` blocks in ``model`` for :class:`FastSqueezeExcite`; returns the count."""
    count = 0
    for name, module in list(model.named_modules()):
        if type(module) is SqueezeExcite and all(
                is_foldable_conv(c) and c.kernel_size == (1, 1) and c.groups == 1
                for c in (module.conv_reduce, module.conv_expand)):
            _set_submodule(model, name, FastSqueezeExcite(module))
            count += 1
    return count


# --- the whole model -----------------------------------------------------------------------------------


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


def optimize_for_inference(model: EfficientDet, *, fold_norms: bool = True, static_padding: bool = True,
                           channels_last: bool = True, for_onnx: bool = False) -> EfficientDet:
    """A faster inference copy of ``model`` (see the module docstring); ``model`` is not changed.

    ``forward(images [B, 3, H, W]) -> HeadOutputs`` as before, for any input size, in eval mode without
    gradients. Feed it ``channels_last`` inputs when ``channels_last`` is on (other inputs work, slower).
    ``for_onnx``: shape the graph for onnxruntime rather than eager PyTorch (fusion weights as
    convolutions, see :meth:`~efficientdet.modeling.fpn.FusionNode.fuse`); what
    :func:`~efficientdet.export.export_model` exports.
    """
    if not isinstance(model, EfficientDet):
        raise TypeError(f"optimize_for_inference expects an EfficientDet, got {type(model).__name__}")
    fast = copy.deepcopy(model).eval().requires_grad_(False)
    if static_padding:
        replace_same_padding(fast, pad_input=for_onnx)
    if fold_norms:
        fold_backbone_norms(fast.backbone)
        fuse_modules(fast, for_onnx=for_onnx, skip=(fast.backbone,))  # the pyramid and the heads
    replace_squeeze_excite(fast.backbone)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    return fast


__all__ = [
    "same_padding",
    "TfSameConv2d",
    "TfSameMaxPool2d",
    "replace_same_padding",
    "fold_conv_norm",
    "conv_norm_pairs",
    "fold_backbone_norms",
    "fuse_modules",
    "FoldedHead",
    "FastSqueezeExcite",
    "replace_squeeze_excite",
    "optimize_for_inference",
]
