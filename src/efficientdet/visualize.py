"""Drawing detections on images: boxes, class names and scores in readable colours."""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from efficientdet.structures import Detections


def class_color(label: int) -> tuple[int, int, int]:
    """A distinct, saturated RGB colour per class index (golden-ratio hue steps)."""
    hue = (label * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def _text_color(bg: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = 0.299 * bg[0] + 0.587 * bg[1] + 0.114 * bg[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def draw_detections(image: Image.Image | np.ndarray | str | Path, detections: Detections, *,
                    score_threshold: float = 0.0, line_width: int | None = None) -> Image.Image:
    """Return a copy of ``image`` (RGB) with ``detections`` drawn: a box, and ``name score`` on a filled tag.

    ``detections`` boxes are xyxy in pixels of ``image``.
    """
    if isinstance(image, (str, Path)):
        image = Image.open(image)
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    lw = line_width or max(2, round(min(w, h) / 250))
    font = _font(max(11, round(min(w, h) / 40)))
    keep = detections.scores >= score_threshold
    dets = detections.filter(keep)
    names = dets.names
    for box, score, label, name in zip(dets.boxes.tolist(), dets.scores.tolist(), dets.labels.tolist(), names):
        color = class_color(int(label))
        x1, y1, x2, y2 = box
        draw.rectangle((x1, y1, x2, y2), outline=color, width=lw)
        text = f"{name} {score:.2f}"
        tx1, ty1, tx2, ty2 = draw.textbbox((0, 0), text, font=font)
        tw, th = tx2 - tx1, ty2 - ty1
        top = y1 - th - 2 * lw if y1 - th - 2 * lw >= 0 else y1  # above the box, or inside when at the top edge
        draw.rectangle((x1, top, x1 + tw + 2 * lw, top + th + 2 * lw), fill=color)
        draw.text((x1 + lw, top + lw - ty1), text, fill=_text_color(color), font=font)
    return out
