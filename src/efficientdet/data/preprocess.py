"""Inference preprocessing: any image input -> letterboxed, normalised :class:`~efficientdet.structures.ImageBatch`.

The steps reproduce the official EfficientDet input pipeline (google/automl ``dataloader`` /
``inference``), checked to 1e-5 against official TF fixtures:

1. ``scale = min(H_in / H, W_in / W)`` computed in float32 as the official code does;
2. resize to ``(int(H * scale), int(W * scale))``, bilinear with half-pixel centres and no antialias
   (``tf.image.resize`` semantics == ``F.interpolate(..., align_corners=False, antialias=False)``), in float;
3. pad bottom / right to ``(H_in, W_in)`` with the fill (``"mean"``: the mean colour, which is 0 after
   normalisation, exactly the official zero padding of the normalised image);
4. normalise ``(x - 255 * mean) / (255 * std)`` with ``mean`` / ``std`` given in the 0..1 range.

The official code normalises before resizing; both are linear per channel, so the order changes only
float rounding. ``ImageMeta.scale`` is input pixels per original pixel (the official ``image_scale`` is
its inverse).

The training loader ships ``uint8`` batches; :class:`Normalizer` (or :func:`normalize`) turns them into the
normalised float batch on the device.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from efficientdet.config import PreprocessConfig
from efficientdet.data.images import read_image, upright
from efficientdet.errors import DataError
from efficientdet.structures import ImageBatch, ImageMeta

ImageInput = Union[str, "os.PathLike[str]", Image.Image, np.ndarray, Tensor]
"""One image: a file path, a PIL image (both turned upright by their EXIF orientation), an ``[H, W, 3]`` / ``[H, W]`` numpy array (``uint8``, or float in 0..1),
or a ``[3, H, W]`` / ``[1, H, W]`` tensor (``uint8``, or float in 0..1)."""

_INTERPOLATION = {"bilinear": "bilinear", "nearest": "nearest", "bicubic": "bicubic"}


def letterbox_scale(orig_size: tuple[int, int], input_size: tuple[int, int]) -> tuple[float, tuple[int, int]]:
    """``(scale, (h, w))``: the official letterbox scale (float32 maths) and the resized image size."""
    h, w = orig_size
    sy = np.float32(input_size[0]) / np.float32(h)
    sx = np.float32(input_size[1]) / np.float32(w)
    scale = np.minimum(sy, sx)
    new_h = max(1, int(np.float32(h) * scale))
    new_w = max(1, int(np.float32(w) * scale))
    return float(scale), (min(new_h, input_size[0]), min(new_w, input_size[1]))


def fill_values(fill: str | float | Sequence[float], mean: Sequence[float]) -> tuple[float, float, float]:
    """The padding colour in 0..255: ``"mean"`` -> ``255 * mean``; a number (0..255) or one per channel."""
    if isinstance(fill, str):
        if fill != "mean":
            raise DataError(f"fill={fill!r}: use 'mean', a number in 0..255, or three numbers")
        return tuple(255.0 * float(m) for m in mean)  # type: ignore[return-value]
    if isinstance(fill, (int, float)):
        return (float(fill),) * 3  # type: ignore[return-value]
    values = tuple(float(v) for v in fill)
    if len(values) != 3:
        raise DataError(f"fill={fill!r}: give one value or three (R, G, B) in 0..255")
    return values  # type: ignore[return-value]


def to_chw_tensor(image: ImageInput) -> Tensor:
    """One image as a ``[3, H, W]`` tensor: ``uint8`` (0..255) or float (0..1), RGB."""
    if isinstance(image, (str, os.PathLike)):
        image = read_image(image)
    elif isinstance(image, Image.Image):
        image = np.asarray(upright(image))  # EXIF orientation applied, as for a path
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
            raise DataError(f"numpy image of shape {image.shape}: expected [H, W, 3] (RGB), [H, W, 4] or [H, W]")
        arr = np.ascontiguousarray(arr)
        tensor = torch.from_numpy(arr if arr.flags.writeable else arr.copy()).permute(2, 0, 1)
    elif isinstance(image, Tensor):
        tensor = image if image.ndim == 3 else image[None] if image.ndim == 2 else image
        if tensor.ndim != 3 or tensor.shape[0] not in (1, 3, 4):
            raise DataError(f"image tensor of shape {tuple(image.shape)}: expected [3, H, W] (RGB, channels first)")
    else:
        raise DataError(f"unsupported image type {type(image).__name__}: give a path, a PIL image, a numpy array "
                        "[H, W, 3] or a tensor [3, H, W]")
    if tensor.shape[0] == 1:
        tensor = tensor.expand(3, -1, -1)
    elif tensor.shape[0] == 4:
        tensor = tensor[:3]
    if tensor.dtype != torch.uint8:
        if not tensor.is_floating_point():
            raise DataError(f"image of dtype {tensor.dtype}: use uint8 (0..255) or float (0..1)")
        if tensor.numel() and float(tensor.max()) > 1.5:
            raise DataError("float image with values above 1: float images must be in 0..1; pass uint8 pixels or "
                            "divide by 255")
    return tensor


def normalize(pixels: Tensor, mean: Sequence[float], std: Sequence[float], dtype: torch.dtype = torch.float32) -> Tensor:
    """``(pixels - 255 * mean) / (255 * std)`` per channel for 0..255 pixels ``[..., 3, H, W]`` (any dtype)."""
    m = torch.tensor([255.0 * float(v) for v in mean], dtype=torch.float32, device=pixels.device).view(3, 1, 1)
    s = torch.tensor([255.0 * float(v) for v in std], dtype=torch.float32, device=pixels.device).view(3, 1, 1)
    return ((pixels.float() - m) / s).to(dtype)


def letterbox(image: Tensor, input_size: tuple[int, int], fill: tuple[float, float, float],
              interpolation: str = "bilinear", uint8: bool = False) -> tuple[Tensor, float]:
    """Resize a ``[3, H, W]`` image (0..255, ``uint8`` or float) into an ``input_size`` canvas, top-left,
    padded with ``fill``.

    Returns ``(canvas [3, H_in, W_in], scale)``: float32, or with ``uint8`` the same values rounded to
    ``uint8`` (what exported graphs take; only the resized part and the fill are rounded, no float canvas).
    """
    mode = _INTERPOLATION.get(interpolation)
    if mode is None:
        raise DataError(f"interpolation={interpolation!r}: use one of {', '.join(_INTERPOLATION)}")
    h, w = image.shape[-2:]
    scale, (nh, nw) = letterbox_scale((h, w), input_size)
    x = image.float()[None]
    if (nh, nw) != (h, w):
        kwargs = {} if mode == "nearest" else {"align_corners": False, "antialias": False}
        x = F.interpolate(x, size=(nh, nw), mode=mode, **kwargs)
        if mode == "bicubic":
            x = x.clamp(0.0, 255.0)
    values = torch.tensor(fill, dtype=torch.float32, device=image.device)
    if uint8:
        x, values = x.round().clamp(0, 255).to(torch.uint8), values.round().clamp(0, 255).to(torch.uint8)
    canvas = values.view(1, 3, 1, 1).expand(1, 3, input_size[0], input_size[1]).clone()
    canvas[:, :, :nh, :nw] = x
    return canvas[0], scale


def letterbox_images(
    images: ImageInput | Sequence[ImageInput],
    cfg: PreprocessConfig,
    device: torch.device | str | None = None,
    uint8: bool = False,
) -> tuple[Tensor, list[ImageMeta]]:
    """Letterbox one image or a list (mixed types and sizes allowed) into the network input: what
    :class:`~efficientdet.predict.Predictor` feeds :class:`~efficientdet.pipeline.DetectionPipeline`.

    Args:
        images: see :data:`ImageInput`; a ``[B, 3, H, W]`` tensor counts as ``B`` images.
        cfg: input size ``(H_in, W_in)``, fill and interpolation (mean / std only for the ``"mean"`` fill).
        device: where to resize (the image is moved there first, as ``uint8`` when it is).
        uint8: round the canvases to ``uint8`` (the input of exported graphs).

    Returns:
        ``canvases [B, 3, H_in, W_in]`` (float32 0..255, or ``uint8``) and one :class:`ImageMeta` per image.
    """
    if isinstance(images, Tensor) and images.ndim == 4:
        items: list[ImageInput] = list(images.unbind(0))
    elif isinstance(images, (list, tuple)):
        items = list(images)
    else:
        items = [images]  # type: ignore[list-item]
    if not items:
        raise DataError("preprocess() got no images")
    size = (int(cfg.image_size[0]), int(cfg.image_size[1]))
    fill = fill_values(cfg.fill, cfg.mean)
    canvases, metas = [], []
    for item in items:
        chw = to_chw_tensor(item)
        if device is not None:
            chw = chw.to(device)
        raw = chw if chw.dtype == torch.uint8 else chw.float() * 255.0
        canvas, scale = letterbox(raw, size, fill, cfg.interpolation, uint8=uint8)
        canvases.append(canvas)
        metas.append(ImageMeta(orig_size=(int(chw.shape[-2]), int(chw.shape[-1])), input_size=size, scale=scale))
    return torch.stack(canvases), metas


def preprocess(
    images: ImageInput | Sequence[ImageInput],
    cfg: PreprocessConfig,
    device: torch.device | str | None = None,
) -> ImageBatch:
    """Turn one image or a list (mixed types and sizes allowed) into a normalised network batch:
    :func:`letterbox_images`, then :func:`normalize`.

    Returns:
        :class:`ImageBatch` with ``pixels [B, 3, H_in, W_in]`` float32 and one :class:`ImageMeta` per image.
    """
    canvases, metas = letterbox_images(images, cfg, device)
    return ImageBatch(normalize(canvases, cfg.mean, cfg.std), metas)


class Normalizer(nn.Module):
    """``uint8`` (0..255) batch ``[B, 3, H, W]`` on the device -> normalised float batch (see :func:`normalize`).

    ``dtype`` sets the output type (``torch.float16`` / ``bfloat16`` for mixed precision);
    ``channels_last`` returns the NHWC memory format.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], dtype: torch.dtype = torch.float32,
                 channels_last: bool = False) -> None:
        super().__init__()
        self.register_buffer("mean255", torch.tensor([255.0 * float(v) for v in mean]).view(1, 3, 1, 1), False)
        self.register_buffer("std255", torch.tensor([255.0 * float(v) for v in std]).view(1, 3, 1, 1), False)
        self.dtype = dtype
        self.channels_last = channels_last

    @classmethod
    def from_config(cls, cfg: PreprocessConfig, dtype: torch.dtype = torch.float32,
                    channels_last: bool = False) -> Normalizer:
        return cls(cfg.mean, cfg.std, dtype, channels_last)

    def forward(self, pixels: Tensor) -> Tensor:
        out = ((pixels.float() - self.mean255) / self.std255).to(self.dtype)
        return out.contiguous(memory_format=torch.channels_last) if self.channels_last else out


__all__ = ["ImageInput", "preprocess", "letterbox_images", "normalize", "Normalizer", "letterbox", "letterbox_scale", "fill_values",
           "to_chw_tensor"]
