"""Reading image files into one form: ``uint8`` RGB arrays ``[H, W, 3]``, upright.

Everything that takes an image (the training loader, ``Predictor`` / ``preprocess``, ``draw_detections``,
``efficientdet predict``, the dataset checker, the parsers that need an image size) goes through
:func:`upright` (decoded PIL images, files via :func:`open_image` / :func:`read_image`) or :func:`image_size`
(headers), so every part of the library sees the same pixels and the same size for a file, whether it is
given as a path or as ``PIL.Image.open(path)``:

- EXIF orientation is applied (phone photos stored sideways come out upright; their annotations are
  normally made on the upright image, as every labelling tool shows it that way);
- grayscale, palette, alpha, CMYK, 16-bit and float images are converted to 8-bit RGB (alpha dropped,
  16-bit scaled by 255 / 65535);
- a truncated or corrupt file raises :class:`~efficientdet.errors.DataError` naming the file, never a
  half-decoded image.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from efficientdet.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
"""File name endings treated as images when a folder is scanned."""

_EXIF_ORIENTATION = 0x0112
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that rotate by 90 degrees


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB copy of a decoded PIL image of any mode (``L``, ``P``, ``RGBA``, ``CMYK``, ``I;16``, ``F`` ...)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(image, dtype=np.float64)
        # 16-bit data: scale the full 0..65535 range to 0..255; mode "I" holding 8-bit values stays as is.
        if mode.startswith("I;16") or arr.max(initial=0) > 255:
            arr = arr * (255.0 / 65535.0)
        gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2), "RGB")
    if mode == "F":
        arr = np.asarray(image, dtype=np.float64)
        if arr.max(initial=0) <= 1.0:
            arr = arr * 255.0
        gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2), "RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def upright(image: Image.Image) -> Image.Image:
    """The upright 8-bit RGB form of a PIL image: its EXIF orientation applied (once), then :func:`to_rgb`.

    A file opened with ``PIL.Image.open`` keeps the orientation tag, so ``upright(Image.open(p))`` gives the
    same pixels as ``open_image(p)``. The result carries no orientation tag, so applying it again changes
    nothing. Raises ``OSError`` / ``ValueError`` from Pillow for undecodable data (see :func:`open_image`).
    """
    if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image)
    return to_rgb(image)


def open_image(source: str | os.PathLike[str] | bytes, name: str | None = None) -> Image.Image:
    """Decode a file (or its bytes) fully into an upright 8-bit RGB PIL image.

    Raises :class:`DataError` naming the file (``name`` for bytes) when it is missing, truncated or corrupt.
    """
    label = name or (str(source) if not isinstance(source, bytes) else "<bytes>")
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else Path(source)) as img:
            img.load()  # decode now, so truncated / corrupt data fails here and not later
            return upright(img)
    except FileNotFoundError as err:
        raise DataError(f"image file not found: {label}; check the image folder given to the dataset") from err
    except Image.DecompressionBombError as err:
        raise DataError(_too_large(label, err)) from err
    except Exception as err:  # noqa: BLE001 - PIL's decoders raise many types on bad bytes; all mean "unusable"
        raise DataError(f"cannot decode image {label}: {err or type(err).__name__}; re-export or remove this "
                        "file") from err


def _too_large(label: str, err: Exception) -> str:
    return (f"image {label} is too large to decode safely ({err}); it may be a decompression bomb. Downscale it, or "
            "raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file")


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode a file into an upright ``uint8`` RGB array ``[H, W, 3]``; :class:`DataError` naming the file on failure."""
    return np.asarray(open_image(path))


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(H, W)`` of the upright image, from the file header only (no decoding); :class:`DataError` on failure."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            w, h = img.size
            orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    except FileNotFoundError as err:
        raise DataError(f"image file not found: {path}; check the image folder given to the dataset") from err
    except Image.DecompressionBombError as err:
        raise DataError(_too_large(str(path), err)) from err
    except Exception as err:  # noqa: BLE001 - as in open_image
        raise DataError(f"cannot read image header of {path}: {err or type(err).__name__}; re-export or remove "
                        "this file") from err
    if orientation in _SWAPPING_ORIENTATIONS:
        w, h = h, w
    return (h, w)


__all__ = ["IMAGE_EXTENSIONS", "upright", "open_image", "read_image", "image_size", "to_rgb"]
