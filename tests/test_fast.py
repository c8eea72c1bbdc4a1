"""The inference copy of :func:`efficientdet.fast.optimize_for_inference`: same outputs, norms really folded.

The references are the unoptimised model (same weights) and timm's own TF-SAME layers; BN statistics and
affine parameters are randomised so that a fold that ignored any of them would show.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from timm.layers import Conv2dSame
from timm.layers.pool2d_same import MaxPool2dSame

from efficientdet import create_model
from efficientdet.config import NormConfig
from efficientdet.fast import (
    FoldedHead,
    TfSameConv2d,
    TfSameMaxPool2d,
    conv_norm_pairs,
    optimize_for_inference,
    replace_same_padding,
    same_padding,
)
from efficientdet.modeling.layers import SeparableConv2d
from efficientdet.predict import Predictor
from tests.modeling.effdet_oracle import calibrate_bn
from tests.predict.helpers import photo, tiny_model


def assert_same_outputs(model: nn.Module, fast: nn.Module, sizes, batch: int = 2, seed: int = 0, rtol: float = 1e-4):
    """Raw class and box outputs of ``fast`` equal ``model``'s, relative to the outputs' scale."""
    g = torch.Generator().manual_seed(seed)
    for size in sizes:
        x = torch.randn(batch, 3, *size, generator=g)
        with torch.no_grad():
            ref = model(x)
            out = fast(x.contiguous(memory_format=torch.channels_last))
        for a, b in ((ref.cls_logits, out.cls_logits), (ref.box_deltas, out.box_deltas)):
            assert a.shape == b.shape
            scale = a.abs().max().item()
            assert (a - b).abs().max().item() <= rtol * max(scale, 1.0), size


def batchnorms(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"fpn__weight_method": "attn"},
        {"fpn__weight_method": "sum", "fpn__separable_conv": False, "head__separable_conv": False},
        {"fpn__topology": "pan"},
        {"fpn__topology": "qufpn"},
        {"fpn__pad_type": "", "head__pad_type": "", "fpn__downsample": "avg", "fpn__upsample": "bilinear"},
        {"fpn__conv_bn_act": True, "head__survival_prob": 0.8, "head__act": "relu"},
        {"fpn__norm": NormConfig(kind="frozenbatchnorm")},
    ],
    ids=["fastattn", "attn", "sum-plain-convs", "pan", "qufpn", "symmetric-avg-bilinear", "bn-act-residual", "frozenbn"],
)
def test_optimized_model_gives_the_same_outputs_for_every_layout(changes):
    model = tiny_model(**changes)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = optimize_for_inference(model)
    assert_same_outputs(model, fast, [(128, 128), (96, 160), (121, 77)])
    assert batchnorms(fast) == []  # every BatchNorm folded: backbone, pyramid and heads
    assert isinstance(fast.class_head, FoldedHead) and isinstance(fast.box_head, FoldedHead)
    # separable prediction layers (the EfficientDet heads) run their pointwise conv as a matmul in NHWC
    separable = isinstance(model.class_head.predict, SeparableConv2d)
    assert fast.class_head.pointwise_as_linear == fast.box_head.pointwise_as_linear == separable
    assert not any(p.requires_grad for p in fast.parameters())
    # the original is left as it was: same weights, same modules, still trainable
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert len(batchnorms(model)) > 0 and all(p.requires_grad for p in model.parameters())


def test_group_norm_heads_are_kept_and_still_agree():
    model = tiny_model(head__norm=NormConfig(kind="groupnorm", groups=4))
    fast = optimize_for_inference(model)
    assert not isinstance(fast.class_head, FoldedHead)  # GroupNorm has no running statistics to fold
    assert any(isinstance(m, nn.GroupNorm) for m in fast.class_head.modules())
    assert_same_outputs(model, fast, [(128, 128), (100, 140)])


@pytest.mark.parametrize("name", ["tf_efficientdet_d0", "tf_efficientdet_lite0", "efficientdet_d0"])
def test_real_configs_fold_every_batchnorm_and_agree(name):
    """TF-ported (SAME padding, BatchNormAct2d, SE) and PyTorch-native backbones, any input size."""
    size = (128, 128)
    model = create_model(name, pretrained=False, pretrained_backbone=False, image_size=size)
    calibrate_bn(model, size, batch=4, iterations=1)  # activations of order 1, so rounding stays small
    fast = optimize_for_inference(model)
    assert batchnorms(fast) == []
    assert not any(isinstance(m, Conv2dSame) for m in fast.modules())
    assert_same_outputs(model, fast, [size, (96, 160)], batch=1, rtol=1e-3)


@pytest.mark.parametrize("name", ["resdet50", "cspresdext50pan", "efficientdet_q0", "mixdet_m", "efficientdetv2_dt"])
def test_other_backbone_families_agree(name):
    size = (128, 128)
    model = create_model(name, pretrained=False, pretrained_backbone=False, image_size=size)
    calibrate_bn(model, size, batch=4, iterations=1)
    fast = optimize_for_inference(model)
    assert len(batchnorms(fast)) < len(batchnorms(model))
    assert_same_outputs(model, fast, [size, (96, 160)], batch=1, rtol=1e-3)


def test_untraceable_backbone_is_left_unfolded_not_broken():
    class Branchy(nn.Module):  # data-dependent control flow: torch.fx cannot trace it
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)

        def forward(self, x):
            if x.sum() > 0:
                return self.bn(self.conv(x))
            return self.bn(self.conv(-x))

    assert conv_norm_pairs(Branchy().eval()) == []


def test_conv_feeding_two_consumers_is_not_folded():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y  # folding would change the second use

    assert conv_norm_pairs(Shared().eval()) == []


@pytest.mark.parametrize("pad_input", [False, True])
@pytest.mark.parametrize("kernel,stride,dilation", [(1, 1, 1), (3, 1, 1), (3, 2, 1), (5, 2, 1), (2, 2, 1), (3, 1, 2), (3, 2, 2)])
def test_copy_free_same_conv_equals_timm_conv2d_same(kernel, stride, dilation, pad_input):
    torch.manual_seed(0)
    ref = Conv2dSame(6, 5, kernel, stride=stride, dilation=dilation, groups=1, bias=True)
    new = TfSameConv2d.from_conv(ref, pad_input=pad_input)
    assert new.weight is ref.weight  # parameters shared, not copied
    for size in [(16, 16), (17, 17), (15, 22), (1, 1), (2, 5)]:
        x = torch.randn(2, 6, *size)
        out = new(x)
        torch.testing.assert_close(out, ref(x), rtol=1e-5, atol=1e-5)
        assert out.shape[-2:] == (-(-size[0] // stride), -(-size[1] // stride))


@pytest.mark.parametrize("kernel,stride", [(3, 2), (2, 2), (3, 1), (5, 2)])
def test_copy_free_same_max_pool_equals_timm(kernel, stride):
    ref = MaxPool2dSame(kernel, stride)
    new = TfSameMaxPool2d((kernel, kernel), (stride, stride))
    for size in [(16, 16), (17, 13), (3, 3), (1, 2)]:
        x = torch.randn(1, 4, *size) - 5.0  # all negative: a zero-padded pool would differ at the edges
        torch.testing.assert_close(new(x), ref(x), rtol=0, atol=0)


def test_replace_same_padding_swaps_every_timm_same_layer():
    model = create_model("tf_efficientdet_lite0", pretrained=False, pretrained_backbone=False)
    count = sum(type(m) in (Conv2dSame, MaxPool2dSame) for m in model.modules())
    assert count > 0
    assert replace_same_padding(model) == count
    assert not any(type(m) in (Conv2dSame, MaxPool2dSame) for m in model.modules())


def test_exported_same_conv_pads_inside_the_onnx_conv(tmp_path):
    """``pad_input`` (what ``for_onnx`` uses): the asymmetric padding becomes the ONNX ``Conv``'s own ``pads``,
    with no ``Slice`` of the output (onnxruntime would copy it out of its blocked layout and back)."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = create_model("tf_efficientdet_lite0", pretrained=False, pretrained_backbone=False)
    fast = optimize_for_inference(model, channels_last=False, for_onnx=True)
    same = [m for m in fast.modules() if isinstance(m, TfSameConv2d)]
    assert same and all(m.pad_input for m in same)
    conv = same[0]  # the stem: 3 x 3, stride 2
    x = torch.randn(1, conv.in_channels, 32, 32)
    path = tmp_path / "conv.onnx"
    torch.onnx.export(conv, (x,), str(path), dynamo=True, opset_version=18)
    graph = onnx.load(str(path)).graph
    assert [n.op_type for n in graph.node] == ["Conv"]
    pads = next(a.ints for a in graph.node[0].attribute if a.name == "pads")
    assert list(pads) == [0, 0, 1, 1]  # TF SAME: the extra row / column at the bottom / right
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {graph.input[0].name: x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(out), conv(x), rtol=1e-5, atol=1e-5)


def test_same_padding_matches_tensorflow_rule():
    # TF: out = ceil(n / s); total = max((out - 1) * s + k - n, 0); before = total // 2
    assert same_padding(512, 3, 2) == (0, 1)
    assert same_padding(511, 3, 2) == (1, 1)
    assert same_padding(7, 1, 1) == (0, 0)
    assert same_padding(10, 5, 1) == (2, 2)
    assert same_padding(4, 3, 1, dilation=2) == (2, 2)


def test_optimize_rejects_other_modules():
    with pytest.raises(TypeError, match="EfficientDet"):
        optimize_for_inference(nn.Conv2d(3, 3, 1))


def test_predictor_detections_do_not_change_with_optimize():
    model = tiny_model()
    images = [photo("coffee.png"), photo("chelsea.png")]
    plain = Predictor(model, device="cpu", optimize=False, score_threshold=0.05)(images)
    fast = Predictor(model, device="cpu", optimize=True, score_threshold=0.05)(images)
    for a, b in zip(plain, fast, strict=True):
        assert len(a) == len(b) > 0
        torch.testing.assert_close(b.scores, a.scores, rtol=0, atol=1e-4)
        torch.testing.assert_close(b.boxes, a.boxes, rtol=0, atol=1e-2)
        assert torch.equal(a.labels, b.labels)
    assert Predictor(model, device="cpu").backend.optimize  # on by default on the CPU


@pytest.mark.parametrize("method", ["fastattn", "attn"])
def test_onnx_shaped_copy_gives_the_same_outputs(method):
    """``for_onnx``: fusion weights as 1 x 1 depthwise convolutions (what export_model exports)."""
    model = tiny_model(fpn__weight_method=method)
    fast = optimize_for_inference(model, channels_last=False, for_onnx=True)
    assert all(node.weights_as_conv for node in fast.fpn.modules() if hasattr(node, "weights_as_conv"))
    assert_same_outputs(model, fast, [(128, 128), (96, 160)])
