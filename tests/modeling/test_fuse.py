"""Each module's own ``fuse()``: same outputs, norms folded, fusion weights fixed from the one formula.

BatchNorm statistics and affine parameters are random, so a fold that ignored any of them would show.
The whole optimised model is tested in ``tests/test_fast.py``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from efficientdet.config import FpnConfig, FpnNode, HeadConfig, NormConfig
from efficientdet.fast import fuse_modules
from efficientdet.modeling.fpn import FASTATTN_EPS, FusionNode, Resample
from efficientdet.modeling.heads import FoldedHead, Head


def _randomise_norms(module: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return module.eval()


def _batchnorms(module: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def test_resample_folds_its_projection_norm():
    r = _randomise_norms(Resample(8, 16, 1, FpnConfig(channels=16)))
    x = torch.randn(2, 8, 15, 20)
    with torch.no_grad():
        ref = r(x, (8, 10))
        assert r.fuse() is r and r.norm is None
        torch.testing.assert_close(r(x, (8, 10)), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["fastattn", "attn", "sum"])
@pytest.mark.parametrize("for_onnx", [False, True])
def test_fusion_node_fixes_its_weights_and_folds_its_norm(method, for_onnx):
    cfg = FpnConfig(channels=8)
    node = FusionNode(FpnNode(3, (0, 1), method), [8, 8], [3, 4], cfg)
    with torch.no_grad():
        if node.weight is not None:
            node.weight.copy_(torch.tensor([0.3, 1.7]))
    _randomise_norms(node)
    feats = [torch.randn(2, 8, 12, 16), torch.randn(2, 8, 6, 8)]
    with torch.no_grad():
        ref = node(feats, [(12, 16), (6, 8)], 3)
        expected = node.fusion_weights()
        assert node.fuse(for_onnx=for_onnx) is node
        out = node(feats, [(12, 16), (6, 8)], 3)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert _batchnorms(node) == 0 and node.weights_as_conv == for_onnx
    if method == "sum":
        assert expected is None and node.fixed_weights is None
    else:
        w = torch.tensor([0.3, 1.7])
        formula = torch.softmax(w, 0) if method == "attn" else w.relu() / (w.relu().sum() + FASTATTN_EPS)
        torch.testing.assert_close(torch.tensor(node.fixed_weights), formula)


def test_fusion_node_refuses_to_fuse_in_training_mode():
    node = FusionNode(FpnNode(3, (0, 1), "fastattn"), [8, 8], [3, 4], FpnConfig(channels=8))
    with pytest.raises(RuntimeError, match="eval"):
        node.fuse()


@pytest.mark.parametrize("separable", [True, False])
def test_head_fuses_into_a_folded_head(separable):
    head = Head(HeadConfig(repeats=2, separable_conv=separable, survival_prob=0.8), channels=8, num_levels=3,
                num_anchors=2, num_outputs=3, act="swish", norm=NormConfig())
    _randomise_norms(head)
    feats = [torch.randn(1, 8, s, s) for s in (16, 8, 4)]
    with torch.no_grad():
        ref = head(feats)
        folded = head.fuse()
        out = folded(feats)
    assert isinstance(folded, FoldedHead) and _batchnorms(folded) == 0 and not folded.training
    assert folded.pointwise_as_linear == separable
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_head_with_group_norm_stays_as_it_is():
    head = Head(HeadConfig(repeats=1), channels=8, num_levels=2, num_anchors=1, num_outputs=2, act="relu",
                norm=NormConfig(kind="groupnorm", groups=4)).eval()
    assert head.fuse() is head


def test_fuse_modules_replaces_what_fuse_returns_and_skips_what_it_is_told_to():
    heads = nn.ModuleDict({
        name: _randomise_norms(Head(HeadConfig(repeats=1), channels=8, num_levels=2, num_anchors=1, num_outputs=2,
                                    act="relu", norm=NormConfig()))
        for name in ("a", "b")
    }).eval()
    skipped = heads["b"]
    fuse_modules(heads, skip=(skipped,))
    assert isinstance(heads["a"], FoldedHead) and heads["b"] is skipped
