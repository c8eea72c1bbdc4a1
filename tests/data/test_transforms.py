"""Transforms keep image and boxes together: draw a filled box, transform, find where its pixels went."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from efficientdet.data.transforms import (
    AUGMENT_OPS,
    POLICIES,
    AutoAugment,
    HorizontalFlip,
    Letterbox,
    Mosaic,
    RandAugment,
    RandomErasing,
    Sample,
    ScaleJitter,
    apply_op,
    clip_and_filter,
    resolve_fill,
    train_transforms,
)
from efficientdet.errors import ConfigError

WHITE = 255
THRESHOLD = 200  # above every fill used here (mean colour ~124, AutoAugment grey 128, black 0)


def box_sample(size: tuple[int, int], box: tuple[int, int, int, int], colour: int = WHITE) -> Sample:
    """A black image of ``size`` (H, W) with one filled box (integer pixel edges, xyxy)."""
    image = torch.zeros(3, *size, dtype=torch.uint8)
    x1, y1, x2, y2 = box
    image[:, y1:y2, x1:x2] = colour
    return Sample(image, torch.tensor([box], dtype=torch.float32), torch.tensor([3]), torch.tensor([False]),
                  orig_size=size)


def pixel_box(image: torch.Tensor, channel_value: int | None = None) -> list[float] | None:
    """xyxy extent of the bright pixels (continuous coordinates: pixel i spans [i, i + 1])."""
    mask = (image.min(0).values > THRESHOLD) if channel_value is None else (image == channel_value).all(0)
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if len(xs) == 0:
        return None
    return [float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1]


def assert_box_on_pixels(sample: Sample, tol: float = 1.5) -> None:
    found = pixel_box(sample.image)
    assert found is not None, "the box pixels disappeared"
    assert len(sample.boxes) == 1
    np.testing.assert_allclose(sample.boxes[0].tolist(), found, atol=tol)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_horizontal_flip() -> None:
    s = HorizontalFlip(1.0)(box_sample((40, 60), (5, 10, 20, 30)), gen(0))
    assert s.boxes.tolist() == [[40.0, 10.0, 55.0, 30.0]]
    assert_box_on_pixels(s, tol=0)
    unchanged = HorizontalFlip(0.0)(box_sample((40, 60), (5, 10, 20, 30)), gen(0))
    assert unchanged.boxes.tolist() == [[5.0, 10.0, 20.0, 30.0]]


def test_letterbox_pixels_and_effdet_oracle() -> None:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from effdet.data.transforms import ResizePad
    from PIL import Image

    sample = box_sample((120, 200), (30, 20, 130, 100))
    fill = resolve_fill("mean")
    out = Letterbox((64, 80), fill)(sample)
    assert out.image.shape == (3, 64, 80) and out.scale == pytest.approx(0.4)
    assert_box_on_pixels(out, tol=1.0)
    assert out.image[:, 48:, :].eq(torch.tensor(fill, dtype=torch.uint8).view(3, 1, 1)).all()  # padded bottom
    # effdet's ResizePad (boxes yxyx) as an independent oracle of the box arithmetic
    pil = Image.fromarray(sample.image.permute(1, 2, 0).numpy())
    _, anno = ResizePad((64, 80))(pil, {"bbox": np.array([[20, 30, 100, 130]], dtype=np.float32), "cls": np.array([3])})
    y1, x1, y2, x2 = anno["bbox"][0]
    np.testing.assert_allclose(out.boxes[0].tolist(), [x1, y1, x2, y2], atol=1e-4)


@pytest.mark.parametrize("seed", range(6))
def test_scale_jitter_pixels_line_up(seed: int) -> None:
    t = ScaleJitter((96, 128), (0.5, 2.0), fill=(0, 0, 0))
    out = t(box_sample((90, 160), (40, 20, 110, 70)), gen(seed))
    assert out.image.shape == (3, 96, 128)
    if len(out.boxes):
        assert_box_on_pixels(out)  # also when the crop cuts the box: the clipped box matches what is visible
        assert (out.boxes[:, 2:] <= torch.tensor([128.0, 96.0])).all() and (out.boxes >= 0).all()
    else:
        assert pixel_box(out.image) is None or min(np.diff(np.reshape(pixel_box(out.image), (2, 2)), axis=0)[0]) < 2


def test_scale_jitter_range_and_crop() -> None:
    t = ScaleJitter((100, 100), (0.1, 2.0))
    scales = [t(box_sample((100, 100), (10, 10, 90, 90)), gen(s)).scale for s in range(200)]
    assert 0.1 <= min(scales) < 0.25 and 1.8 < max(scales) <= 2.0  # official range 0.1..2.0 of the output size
    big = t(box_sample((100, 100), (0, 0, 10, 10)), gen(next(s for s in range(200) if scales[s] > 1.9)))
    assert big.image.shape == (3, 100, 100)  # cropped back to the output size


def test_boxes_leaving_the_image_are_clipped_and_dropped() -> None:
    s = box_sample((50, 50), (0, 0, 10, 10))
    s.boxes = torch.tensor([[-5.0, 10, 20, 30], [49.5, 0, 80, 10], [10, 10, 10.5, 30]])
    s.labels, s.ignore = torch.tensor([1, 2, 3]), torch.tensor([True, False, False])
    out = clip_and_filter(s)
    assert out.boxes.tolist() == [[0.0, 10.0, 20.0, 30.0]]  # the others are narrower than 1 px once clipped
    assert out.labels.tolist() == [1] and out.ignore.tolist() == [True]


def test_mosaic_places_each_image_with_its_boxes() -> None:
    samples = [box_sample((80, 100), (20, 20, 70, 60), colour=c) for c in (210, 230, 250, 220)]
    out = Mosaic((128, 128), fill=(0, 0, 0))(samples, gen(1))
    assert out.image.shape == (3, 128, 128) and len(out.boxes) >= 1
    colours = {210, 230, 250, 220}
    for box in out.boxes.tolist():
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        centre = out.image[0, (y1 + y2) // 2, (x1 + x2) // 2].item()
        assert min(abs(centre - c) for c in colours) <= 3
        # the boxes enclose exactly the pixels of their colour (nearest colour, bilinear edges aside)
        c = min(colours, key=lambda c: abs(c - centre))
        np.testing.assert_allclose(box, _extent_of_value(out.image, c), atol=1.5)


def _extent_of_value(image: torch.Tensor, value: int) -> list[float]:
    mask = (image[0].int() - value).abs() <= 2
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return [float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1]


@pytest.mark.parametrize("op", ["Rotate_BBox", "ShearX_BBox", "ShearY_BBox", "TranslateX_BBox", "TranslateY_BBox"])
@pytest.mark.parametrize("seed", range(3))
def test_box_aware_geometric_ops(op: str, seed: int) -> None:
    s = box_sample((400, 400), (170, 160, 230, 240))  # stays inside after the largest shift (150 px at level 6)
    out = apply_op(s, op, 1.0, 6, gen(seed))
    assert out.image.shape == s.image.shape
    # rotating / shearing a rectangle: its new box is the extent of the moved pixels (enclosing box)
    assert_box_on_pixels(out, tol=2.0)


def test_box_only_ops_keep_boxes_and_change_pixels_inside() -> None:
    s = box_sample((60, 60), (10, 10, 40, 40))
    s.image[:, 10:40, 10:25] = 60  # give the box content some structure
    for name in [n for n in AUGMENT_OPS if n.endswith("_Only_BBoxes")]:
        out = apply_op(s, name, 3.0, 8, gen(0))  # prob 3 -> per-box probability 1 (prob / 3)
        assert out.boxes.tolist() == s.boxes.tolist(), name
        changed = (out.image != s.image).any(0)
        assert not changed[:, 41:].any() and not changed[41:, :].any(), name  # outside the box: untouched
        if name != "Equalize_Only_BBoxes":
            assert changed.any(), name


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_autoaugment_policies_keep_samples_valid(policy: str) -> None:
    t = AutoAugment(policy)
    for seed in range(8):
        s = box_sample((64, 96), (10, 12, 50, 40))
        out = t(s, gen(seed))
        assert out.image.shape == (3, 64, 96) and out.image.dtype == torch.uint8
        assert len(out.boxes) == len(out.labels) == len(out.ignore)
        if len(out.boxes):
            assert (out.boxes[:, 2] > out.boxes[:, 0]).all() and (out.boxes[:, 2] <= 96).all()


def test_randaugment_and_determinism() -> None:
    pipeline = train_transforms((64, 64), randaugment=(2, 9), random_erasing=0.5, autoaugment="v0")
    a = pipeline(box_sample((80, 120), (10, 10, 60, 50)), gen(7))
    b = pipeline(box_sample((80, 120), (10, 10, 60, 50)), gen(7))
    assert torch.equal(a.image, b.image) and torch.equal(a.boxes, b.boxes)
    with pytest.raises(ConfigError, match="magnitude"):
        RandAugment(2, 30)
    with pytest.raises(ConfigError, match="policy"):
        AutoAugment("v9")


def test_solarize_follows_the_official_threshold_rule() -> None:
    s = box_sample((4, 4), (0, 0, 2, 2))  # pixels 255 and 0
    same = apply_op(s, "Solarize", 1.0, 10, gen(0))  # threshold 256: nothing is at or above it
    assert torch.equal(same.image, s.image)
    inverted = apply_op(s, "Solarize", 1.0, 5, gen(0))  # threshold 128: 255 -> 0, 0 stays
    assert inverted.image.max() == 0
    added = apply_op(s, "SolarizeAdd", 1.0, 10, gen(0))  # +110 below 128: 0 -> 110, 255 stays
    assert sorted(added.image.unique().tolist()) == [110, 255]


def test_random_erasing_changes_pixels_not_boxes() -> None:
    s = box_sample((50, 50), (5, 5, 20, 20))
    out = RandomErasing(1.0, value=(7, 7, 7))(s, gen(0))
    assert torch.equal(out.boxes, s.boxes)
    assert (out.image == 7).all(0).sum() > 0.02 * 50 * 50
