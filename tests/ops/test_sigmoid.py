"""TF's float32 sigmoid (Eigen's logistic) bit for bit, saturation included, in eager, traced and ONNX graphs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from efficientdet.ops.sigmoid import TF_SIGMOID_CLAMP, rounded_sigmoid, tf_sigmoid
from tests.ops.tf_reference import load_case


def _floats(lo: float, hi: float) -> torch.Tensor:
    """Every float32 in ``[lo, hi)`` (both positive)."""
    a, b = np.array([lo, hi], np.float32).view(np.int32)
    return torch.from_numpy(np.arange(a, b, dtype=np.int32).view(np.float32))


@pytest.mark.parametrize("case", ["d0-native", "lite0-native"])
def test_tf_sigmoid_is_tfs_prenms_scores_bit_for_bit(reference_dir, case):
    """TF's pre-NMS scores are its float32 sigmoid of the best logit: every anchor equal, including Lite0's last
    6 (19206 = 8 * 2400 + 6), which take Eigen's scalar path. The correctly rounded sigmoid misses most."""
    data = load_case(reference_dir, case)
    best = data["cls"].amax(dim=-1)
    assert torch.equal(tf_sigmoid(best), data["prenms_scores"])
    assert (rounded_sigmoid(best) != data["prenms_scores"]).float().mean() > 0.2


def test_saturation_follows_eigens_clamp():
    """Eigen clamps logits at 16.6355324 where its formula gives exactly 1.0: every float32 from there up is
    1.0, the one below is not; the correctly rounded sigmoid reaches 1.0 only at 17.33 (1 - 2^-24 before)."""
    x = _floats(15.0, 20.0)
    tf, exact = tf_sigmoid(x), rounded_sigmoid(x)
    first = int((tf == 1.0).nonzero()[0])
    assert float(x[first]) == np.float32(TF_SIGMOID_CLAMP) and bool((tf[first:] == 1.0).all())
    between = (x >= TF_SIGMOID_CLAMP) & (exact < 1.0)
    assert bool((exact[between] == 1 - 2**-24).all())
    assert 17.32 < float(x[between].max()) < 17.33 and int(between.sum()) > 300_000
    # off the saturated range the two stay within an ulp of 1 (2^-24 below 1)
    assert float((tf - exact).abs().max()) <= 2**-24


def test_saturated_scores_of_the_raw_d0_fixture(reference_dir):
    """TF's raw-weight D0 at 128 px has 3 best logits above the clamp, one of them below 17.33: TF scores all
    three 1.0 (its top hard-NMS detections), the correctly rounded sigmoid only two."""
    data = load_case(reference_dir, "d0-small-raw")
    best = data["cls"].amax(dim=-1)[0]
    assert int((data["hard"][0, :, 5] == 1.0).sum()) == 3
    assert int((tf_sigmoid(best) == 1.0).sum()) == 3
    assert int((rounded_sigmoid(best) == 1.0).sum()) == 2


def test_scalar_tail_and_batches():
    """The last ``numel % 8`` elements take the scalar path (``exp`` then ``e / (1 + e)``): within an ulp of the
    packets' values; a tensor's result depends on its total size, as in TF."""
    x = torch.linspace(-20, 20, 8 * 5 + 3)
    whole = tf_sigmoid(x)
    packets = tf_sigmoid(x[:40])
    assert torch.equal(whole[:40], packets)
    tail = x[40:]
    e = torch.exp(tail.clamp(max=TF_SIGMOID_CLAMP))
    assert torch.equal(whole[40:], e / (e + 1))
    torch.testing.assert_close(whole, rounded_sigmoid(x), rtol=0, atol=2.5e-7)
    assert tf_sigmoid(x[None].expand(2, -1)).shape == (2, 43) and tf_sigmoid(x[:0]).numel() == 0
    assert tf_sigmoid(torch.tensor([-200.0] * 9)).tolist() == [0.0] * 9  # both paths underflow to 0


def test_traced_and_onnx_graphs_compute_the_same(tmp_path):
    """Exported graphs keep every float32 op (no fused multiply-add) and the batch-dependent tail."""
    import onnxruntime as ort

    g = torch.Generator().manual_seed(0)
    logits = torch.cat([torch.randn(3, 101, generator=g) * 8, torch.full((3, 2), 16.7)], dim=1)  # 309 % 8 = 5
    other = torch.randn(2, 103, generator=g) * 12  # another batch: 206 % 8 = 6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(tf_sigmoid, (logits,))
        path = tmp_path / "sigmoid.onnx"
        torch.onnx.export(torch.jit.trace(tf_sigmoid, (logits,)), (logits,), str(path), dynamo=False,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for x in (logits, other):
        expected = tf_sigmoid(x)
        assert torch.equal(traced(x), expected)
        assert torch.equal(torch.from_numpy(session.run(None, {"x": x.numpy()})[0]), expected)
