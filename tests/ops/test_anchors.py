"""Anchors against effdet's ``Anchors`` and the official TF anchors."""

from __future__ import annotations

import warnings

import pytest
import torch

from efficientdet.config import AnchorConfig
from efficientdet.errors import ConfigError
from efficientdet.modeling.anchors import (
    AnchorGenerator,
    feature_sizes,
    generate_anchors,
    input_size_from_anchors,
    num_anchors,
)
from efficientdet.ops.boxes import swap_xy
from tests.ops.tf_reference import CASES, anchor_config, load_case


def effdet_anchors(cfg: AnchorConfig, size: tuple[int, int]) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from effdet.anchors import Anchors
    scale = list(cfg.anchor_scale) if isinstance(cfg.anchor_scale, tuple) else cfg.anchor_scale
    boxes = Anchors(cfg.min_level, cfg.max_level, cfg.num_scales, list(cfg.aspect_ratios), scale, size).boxes
    return swap_xy(boxes)


def test_feature_sizes_ceil_halving():
    assert feature_sizes((512, 512), 7)[3:] == [(64, 64), (32, 32), (16, 16), (8, 8), (4, 4)]
    assert [h for h, _ in feature_sizes((321, 100), 5)] == [321, 161, 81, 41, 21, 11]
    assert [w for _, w in feature_sizes((321, 100), 5)] == [100, 50, 25, 13, 7, 4]


@pytest.mark.parametrize(
    "cfg, size",
    [
        (AnchorConfig(), (512, 512)),
        (AnchorConfig(), (384, 640)),
        (AnchorConfig(anchor_scale=(3.0, 4.0, 5.0, 4.0, 3.0)), (321, 257)),  # fractional strides, per-level scale
        (AnchorConfig(min_level=2, max_level=6, num_scales=2, aspect_ratios=((1.0, 1.0), (2.0, 0.5))), (200, 96)),
    ],
)
def test_matches_effdet(cfg, size):
    ours = generate_anchors(cfg, size)
    ref = effdet_anchors(cfg, size)
    assert ours.dtype == torch.float32 and ours.shape == ref.shape == (num_anchors(cfg, size), 4)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("case", ["d0-native", "d0-small-ema", "lite0-native", "lite0-small-ema"])
def test_matches_official_anchors(reference_dir, case):
    data = load_case(reference_dir, case)
    ours = generate_anchors(anchor_config(case), (data["size"], data["size"]))
    assert torch.equal(ours, swap_xy(data["anchors"]))  # bit for bit (both float64, then float32)


def test_layout_hand_computed():
    # Level 3 of a 64x64 input, stride 8: the first location's 9 anchors, then the second column.
    cfg = AnchorConfig(max_level=3, aspect_ratios=((1.0, 1.0), (1.4, 0.7), (0.7, 1.4)), anchor_scale=4.0)
    a = generate_anchors(cfg, (64, 64)).view(8, 8, 9, 4)
    base = 4.0 * 8
    # octave 0, ratio 0: 32x32 box centred on (4, 4)
    torch.testing.assert_close(a[0, 0, 0], torch.tensor([4 - 16.0, 4 - 16.0, 4 + 16.0, 4 + 16.0]))
    # octave 1, ratio 1 (a = 1 * 3 + 1): width base * 2^(1/3) * 1.4, height * 0.7
    w, h = base * 2 ** (1 / 3) * 1.4, base * 2 ** (1 / 3) * 0.7
    torch.testing.assert_close(a[0, 1, 4], torch.tensor([12 - w / 2, 4 - h / 2, 12 + w / 2, 4 + h / 2]))


def test_generator_caches_per_size_and_device():
    gen = AnchorGenerator(AnchorConfig())
    a = gen((128, 128), torch.device("cpu"))
    assert gen((128, 128), "cpu") is a
    assert gen((128, 160), "cpu").shape[0] == num_anchors(AnchorConfig(), (128, 160))
    for s in range(20):  # bounded
        gen((64 + 8 * s, 64), "cpu")
    assert len(gen._cache) <= 8


@pytest.mark.parametrize("size", [(512, 512), (320, 448), (321, 257), (128, 128)])
def test_input_size_from_anchors(size):
    assert input_size_from_anchors(generate_anchors(AnchorConfig(), size)) == size


def test_bad_configs():
    with pytest.raises(ConfigError, match="one per level"):
        generate_anchors(AnchorConfig(anchor_scale=(4.0, 4.0)), (128, 128))
    with pytest.raises(ConfigError, match="positive"):
        feature_sizes((0, 128), 7)
    assert set(CASES) >= {"d0-native", "lite0-native"}
