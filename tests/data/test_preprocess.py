"""Inference preprocessing against the official TF input pipeline (fixtures in ../shared/reference)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from efficientdet.config import PreprocessConfig
from efficientdet.data.preprocess import Normalizer, letterbox, letterbox_scale, normalize, preprocess
from efficientdet.errors import DataError

LITE_MEAN = (127.0 / 255,) * 3  # the official Lite models: mean 127, std 128 on 0..255
LITE_STD = (128.0 / 255,) * 3


@pytest.mark.parametrize(
    ("folder", "file", "native", "mean", "std"),
    [("tf-official", "d0-inputs.npz", 512, None, None),
     ("tf-official-lite0", "lite0-inputs.npz", 320, LITE_MEAN, LITE_STD)],
)
def test_matches_official_tf_input(reference_dir: Path, folder: str, file: str, native: int, mean, std) -> None:
    data = np.load(reference_dir / folder / file)
    norm = {} if mean is None else {"mean": mean, "std": std}
    for key, scale_key, size in (("input", "image_scale", native), ("input_small", "image_scale_small", 128)):
        batch = preprocess(data["raw_image_uint8"], PreprocessConfig(image_size=(size, size), **norm))
        expected = torch.from_numpy(data[key]).permute(0, 3, 1, 2)  # NHWC -> NCHW
        assert batch.pixels.shape == expected.shape
        torch.testing.assert_close(batch.pixels, expected, atol=1e-5, rtol=0)
        meta = batch.metas[0]
        assert meta.orig_size == (480, 640) and meta.input_size == (size, size)
        assert 1.0 / meta.scale == pytest.approx(float(data[scale_key][0]), rel=1e-6)  # official image_scale


def test_every_input_type_gives_the_same_pixels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 256, size=(30, 50, 3), dtype=np.uint8)
    path = tmp_path / "img.png"
    Image.fromarray(hwc).save(path)
    cfg = PreprocessConfig(image_size=(64, 64))
    ref = preprocess(hwc, cfg).pixels
    chw = torch.from_numpy(hwc).permute(2, 0, 1)
    inputs = [str(path), path, Image.fromarray(hwc), chw, chw.float() / 255, hwc.astype(np.float32) / 255]
    for item in inputs:
        torch.testing.assert_close(preprocess(item, cfg).pixels, ref, atol=2e-5, rtol=0)
    rgba = Image.fromarray(np.concatenate([hwc, np.full((30, 50, 1), 7, np.uint8)], 2), "RGBA")
    torch.testing.assert_close(preprocess(rgba, cfg).pixels, ref)
    gray = hwc[:, :, 0]
    g = preprocess(gray, cfg).pixels
    torch.testing.assert_close(g, preprocess(np.repeat(gray[:, :, None], 3, 2), cfg).pixels)


def test_mixed_sizes_batch_and_padding() -> None:
    cfg = PreprocessConfig(image_size=(32, 48), fill=0)
    tall = np.full((64, 16, 3), 255, np.uint8)
    wide = np.full((10, 100, 3), 255, np.uint8)
    batch = preprocess([tall, wide], cfg)
    assert batch.pixels.shape == (2, 3, 32, 48)
    m_tall, m_wide = batch.metas
    assert m_tall.scale == pytest.approx(0.5) and m_tall.valid_size == (32, 8)
    assert m_wide.scale == pytest.approx(0.48, rel=1e-6)  # resized to (int(10 * 0.48), 48) = (4, 48)
    white = normalize(torch.full((3, 1, 1), 255.0), cfg.mean, cfg.std).view(3)
    black = normalize(torch.zeros(3, 1, 1), cfg.mean, cfg.std).view(3)
    px = batch.pixels
    torch.testing.assert_close(px[0, :, :, :8], white.view(3, 1, 1).expand(3, 32, 8))
    torch.testing.assert_close(px[0, :, :, 8:], black.view(3, 1, 1).expand(3, 32, 40))  # fill 0 -> black
    torch.testing.assert_close(px[1, :, 4:, :], black.view(3, 1, 1).expand(3, 28, 48))
    mean_fill = preprocess([tall], PreprocessConfig(image_size=(32, 48))).pixels
    assert mean_fill[0, :, :, 8:].abs().max() < 1e-6  # "mean" fill is 0 after normalisation (official padding)


def test_letterbox_scale_is_the_official_float32_rule() -> None:
    assert letterbox_scale((480, 640), (512, 512)) == (pytest.approx(0.8), (384, 512))
    assert letterbox_scale((480, 640), (320, 320)) == (0.5, (240, 320))
    assert letterbox_scale((1, 1000), (64, 64))[1] == (1, 64)


def test_normalizer_matches_preprocess() -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    cfg = PreprocessConfig(image_size=(64, 64))
    uint8_batch = torch.from_numpy(img).permute(2, 0, 1)[None]
    out = Normalizer.from_config(cfg)(uint8_batch)
    torch.testing.assert_close(out, preprocess(img, cfg).pixels, atol=1e-6, rtol=0)
    half = Normalizer(cfg.mean, cfg.std, dtype=torch.bfloat16, channels_last=True)(uint8_batch)
    assert half.dtype == torch.bfloat16 and half.is_contiguous(memory_format=torch.channels_last)


def test_bad_inputs_raise_clear_errors(tmp_path: Path) -> None:
    cfg = PreprocessConfig(image_size=(32, 32))
    with pytest.raises(DataError, match="0..1"):
        preprocess(torch.full((3, 4, 4), 200.0), cfg)
    with pytest.raises(DataError, match="not found"):
        preprocess(tmp_path / "missing.jpg", cfg)
    with pytest.raises(DataError, match=r"\[3, H, W\]"):
        preprocess(torch.zeros(5, 4, 4, dtype=torch.uint8), cfg)
    with pytest.raises(DataError, match="unsupported image type"):
        preprocess(3.0, cfg)  # type: ignore[arg-type]


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
@pytest.mark.parametrize("shape", [(3, 97, 131), (3, 64, 64)])
def test_uint8_letterbox_is_the_float_letterbox_rounded(interpolation, shape) -> None:
    """The exported graphs' uint8 input: rounding only the resized part and the fill gives the same canvas."""
    image = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    fill = (123.675, 116.28, 103.53)
    ref, ref_scale = letterbox(image.float(), (64, 80), fill, interpolation)
    out, scale = letterbox(image, (64, 80), fill, interpolation, uint8=True)
    assert out.dtype == torch.uint8 and scale == ref_scale
    assert torch.equal(out, ref.round().clamp(0, 255).to(torch.uint8))
    assert torch.equal(out[:, -1, -1], torch.tensor([124, 116, 104], dtype=torch.uint8))  # the fill, rounded
