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

Gradients are off and the norms are gone: an optimised model is for inference only (train and save the
original). Norms that are not BatchNorm (GroupNorm, LayerNorm) are kept as they are.
"""

from __future__ import annotations

import copy
import logging
import math
from collections import Counter

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import BatchNormAct2d, Conv2dSame
from timm.layers._fx import get_notrace_functions, get_notrace_modules
from timm.layers.pool2d_same import MaxPool2dSame
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.ops import FrozenBatchNorm2d

from efficientdet.modeling.detector import EfficientDet
from efficientdet.modeling.fpn import FASTATTN_EPS, FusionNode, Resample
from efficientdet.modeling.heads import Head
from efficientdet.modeling.layers import SeparableConv2d

log = logging.getLogger(__name__)


# --- TF-SAME padding without a padded copy -------------------------------------------------------------


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


# --- BatchNorm folding ---------------------------------------------------------------------------------

_PLAIN_CONVS = (nn.Conv2d, Conv2dSame, TfSameConv2d)
"""Convolutions whose forward is a plain convolution of their weight (not e.g. weight-standardised)."""


def _is_foldable_conv(module: nn.Module) -> bool:
    return type(module) in _PLAIN_CONVS and module.padding_mode == "zeros"


def _is_foldable_norm(module: nn.Module) -> bool:
    """An eval-mode BatchNorm with running statistics (timm's ``BatchNormAct2d`` included)."""
    if isinstance(module, FrozenBatchNorm2d):
        return True
    if not isinstance(module, (nn.BatchNorm2d, nn.SyncBatchNorm)) or module.training:
        return False
    return module.running_mean is not None and module.running_var is not None


def _after_norm(norm: nn.Module, inplace: bool = True) -> nn.Module:
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


def fold_conv_norm(conv: nn.Module, norm: nn.Module) -> nn.Module:
    """A new module computing ``norm(conv(x))`` (``norm`` in eval mode, without its activation) in one conv.

    ``conv`` is a plain conv or a :class:`SeparableConv2d` (the norm folds into its pointwise part; the
    depthwise part is shared, not copied). ``conv`` itself is not changed.
    """
    if isinstance(conv, SeparableConv2d):
        return nn.Sequential(conv.dw, fuse_conv_bn_eval(conv.pw, norm))
    return fuse_conv_bn_eval(conv, norm)


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
        if len(node.users) != 1 or not _is_foldable_conv(module.get_submodule(node.target)):
            continue
        user = next(iter(node.users))
        if (user.op == "call_module" and user.args == (node,) and not user.kwargs
                and _is_foldable_norm(module.get_submodule(user.target))
                and uses[node.target] == 1 and uses[user.target] == 1):
            pairs.append((str(node.target), str(user.target)))
    return pairs


def fold_backbone_norms(backbone: nn.Module) -> int:
    """Fold every traced conv -> BatchNorm pair of ``backbone`` (eval mode) in place; returns the count."""
    pairs = conv_norm_pairs(backbone)
    for conv_name, norm_name in pairs:
        conv, norm = backbone.get_submodule(conv_name), backbone.get_submodule(norm_name)
        _set_submodule(backbone, conv_name, fuse_conv_bn_eval(conv, norm))
        _set_submodule(backbone, norm_name, _after_norm(norm, inplace=not isinstance(conv, TfSameConv2d)))
    return len(pairs)


class FastFusionNode(nn.Module):
    """A :class:`~efficientdet.modeling.fpn.FusionNode` with its norm folded and its fusion weights fixed.

    Same call and result as the node it replaces: ``(running features, level sizes, min_level) ->
    [B, C, H, W]``.
    """

    def __init__(self, node: FusionNode, weights_as_conv: bool = False) -> None:
        super().__init__()
        self.weights_as_conv = weights_as_conv
        self.inputs = node.inputs
        self.level = node.level
        self.resample = node.resample
        self.weights = _fusion_weights(node)
        self.pre_act = node.pre_act
        foldable = _is_foldable_norm(node.norm) and (
            isinstance(node.conv, SeparableConv2d) or _is_foldable_conv(node.conv))
        self.conv = fold_conv_norm(node.conv, node.norm) if foldable else nn.Sequential(node.conv, node.norm)
        self.post_act = node.post_act

    def forward(self, feats: list[torch.Tensor], sizes: list[tuple[int, int]], min_level: int) -> torch.Tensor:
        size = sizes[self.level - min_level]
        xs = [r(feats[i], size) for r, i in zip(self.resample, self.inputs)]
        if self.weights is None:
            x = xs[0] if len(xs) == 1 else xs[0] + xs[1]
            for other in xs[2:]:
                x = x.add_(other)
        elif self.weights_as_conv:
            # w * x as a 1 x 1 depthwise convolution (same products): exported graphs keep convolutions in
            # onnxruntime's blocked layout, where a Mul by a scalar costs two layout conversions
            c = int(xs[0].shape[1])
            x = sum(F.conv2d(xi, xi.new_full((c, 1, 1, 1), w), None, 1, 0, 1, c) for xi, w in zip(xs, self.weights))
        else:
            x = xs[0] * self.weights[0]
            for other, w in zip(xs[1:], self.weights[1:]):
                x = x.add_(other, alpha=w)  # x + w * other in one pass over a tensor this node owns
        if self.pre_act is not None:
            x = self.pre_act(x)
        x = self.conv(x)
        if self.post_act is not None:
            x = self.post_act(x)
        return x


def _fusion_weights(node: FusionNode) -> list[float] | None:
    """The node's normalised fusion weights as Python floats (``None``: a plain sum)."""
    if node.weight is None:
        return None
    w = node.weight.detach().float()
    w = torch.softmax(w, dim=0) if node.weight_method == "attn" else F.relu(w) / (F.relu(w).sum() + FASTATTN_EPS)
    return [float(v) for v in w]


class FoldedHead(nn.Module):
    """A :class:`~efficientdet.modeling.heads.Head` whose per-level norms are folded into per-level convs.

    Same input and output: ``L`` tensors ``[B, C, H_l, W_l]`` -> ``[B, N, num_outputs]`` in anchor order.
    When the prediction layer is separable with a plain ``1 x 1`` pointwise conv (the EfficientDet heads),
    that pointwise conv runs as a matrix product on the NHWC view of the depthwise output: the result comes
    out directly in anchor order ``(y, x, anchor, output)``. Same products (bitwise the same in PyTorch);
    in onnxruntime it replaces a single-threaded NCHWc -> NHWC reorder of the largest tensor of the network
    (D0: 810 x 64 x 64 class logits) with one of the 64-channel input.
    """

    def __init__(self, head: Head) -> None:
        super().__init__()
        self.levels = nn.ModuleList(
            nn.ModuleList(fold_conv_norm(conv, norm) for conv, norm in zip(head.convs, norms)) for norms in head.norms
        )
        self.act = head.act
        self.predict = head.predict
        self.num_outputs = head.num_outputs
        self.residual = head.survival_prob is not None
        pw = getattr(head.predict, "pw", None)
        self.pointwise_as_linear = (
            isinstance(head.predict, SeparableConv2d) and type(pw) is nn.Conv2d and pw.kernel_size == (1, 1)
            and pw.stride == (1, 1) and pw.padding == (0, 0) and pw.groups == 1 and pw.padding_mode == "zeros")

    def _predict_nhwc(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, H, W, A * K]``."""
        if self.pointwise_as_linear:
            pw = self.predict.pw
            y = self.predict.dw(x).permute(0, 2, 3, 1)
            b, h, w, c = y.shape
            # 2-D, so that exported graphs get one Gemm with its bias (a 4-D MatMul + Add is two passes)
            return F.linear(y.reshape(-1, c), pw.weight.flatten(1), pw.bias).reshape(b, h, w, -1)
        return self.predict(x).permute(0, 2, 3, 1)  # a view in NHWC for channels_last inputs

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        outs = []
        for x, convs in zip(feats, self.levels):
            for i, conv in enumerate(convs):
                y = self.act(conv(x))
                x = y + x if self.residual and i > 0 else y
            out = self._predict_nhwc(x)
            outs.append(out.reshape(out.shape[0], -1, self.num_outputs))
        return torch.cat(outs, dim=1)


def _head_is_foldable(head: Head) -> bool:
    convs_ok = all(isinstance(c, SeparableConv2d) or _is_foldable_conv(c) for c in head.convs)
    return convs_ok and all(_is_foldable_norm(n) for norms in head.norms for n in norms)


def fold_detector_norms(model: EfficientDet, weights_as_conv: bool = False) -> int:
    """Fold the BatchNorms of the pyramid and the heads of ``model`` (eval mode) in place; returns the count.

    ``weights_as_conv``: the pyramid's fusion weights as 1 x 1 depthwise convolutions (see
    :class:`FastFusionNode`), for export to onnxruntime.
    """
    count = 0
    for name, module in list(model.fpn.named_modules()):
        if isinstance(module, Resample) and module.conv is not None and module.norm is not None:
            if _is_foldable_conv(module.conv) and _is_foldable_norm(module.norm):
                module.conv = fold_conv_norm(module.conv, module.norm)
                module.norm = None
                count += 1
        elif isinstance(module, FusionNode):
            _set_submodule(model.fpn, name, FastFusionNode(module, weights_as_conv))
            count += 1
    for attr in ("class_head", "box_head"):
        head = getattr(model, attr)
        if isinstance(head, Head) and _head_is_foldable(head):
            setattr(model, attr, FoldedHead(head))
            count += sum(len(norms) for norms in head.norms)
    return count


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
    from timm.models._efficientnet_blocks import SqueezeExcite

    count = 0
    for name, module in list(model.named_modules()):
        if type(module) is SqueezeExcite and all(
                _is_foldable_conv(c) and c.kernel_size == (1, 1) and c.groups == 1
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
    convolutions, see :class:`FastFusionNode`); what :func:`~efficientdet.export.export_model` exports.
    """
    if not isinstance(model, EfficientDet):
        raise TypeError(f"optimize_for_inference expects an EfficientDet, got {type(model).__name__}")
    fast = copy.deepcopy(model).eval().requires_grad_(False)
    if static_padding:
        replace_same_padding(fast, pad_input=for_onnx)
    if fold_norms:
        fold_backbone_norms(fast.backbone)
        fold_detector_norms(fast, weights_as_conv=for_onnx)
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
    "fold_detector_norms",
    "FastFusionNode",
    "FoldedHead",
    "FastSqueezeExcite",
    "replace_squeeze_excite",
    "optimize_for_inference",
]
