"""Drawing detections on images: boxes, class names and scores in readable colours."""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from efficientdet.data.images import open_image, upright
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


def _tag_top(x1: float, y1: float, size: tuple[float, float], image_h: int,
             taken: list[tuple[float, float, float, float]]) -> float:
    """Top edge of a label tag ``size = (w, h)`` for a box with top-left ``(x1, y1)``: just above the box (or
    inside it at the image's top edge), else the nearest free slot stacked above / below, so that the tags of
    boxes on the same spot (one box with several classes, as per-class NMS gives) do not cover each other."""
    w, h = size
    above = [y1 - k * h for k in range(1, 5) if y1 - k * h >= 0]
    inside = [y1 + k * h for k in range(4) if y1 + (k + 1) * h <= image_h]
    candidates = above + inside or [max(0.0, y1 - h)]
    for top in candidates:
        if not any(x1 < tx2 and tx1 < x1 + w and top < ty2 and ty1 < top + h for tx1, ty1, tx2, ty2 in taken):
            return top
    return candidates[0]


def draw_detections(image: Image.Image | np.ndarray | str | Path, detections: Detections, *,
                    score_threshold: float = 0.0, line_width: int | None = None) -> Image.Image:
    """Return a copy of ``image`` (RGB) with ``detections`` drawn: a box, and ``name score`` on a filled tag.

    ``detections`` boxes are xyxy in pixels of ``image``: a path or a PIL image is turned upright by its EXIF
    orientation first, as :class:`~efficientdet.predict.Predictor` does, so the boxes land where it found them.
    Boxes are drawn first, then the tags, both in ascending score order: the best detection is on top. The
    best tag sits just above its box; lower-scored tags that would cover a better one (the same box with
    another class) move to the next free slot.
    """
    if isinstance(image, (str, Path)):
        image = open_image(image)
    elif isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    out = upright(image).copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    lw = line_width or max(2, round(min(w, h) / 250))
    font = _font(max(11, round(min(w, h) / 40)))
    dets = detections.filter(detections.scores >= score_threshold)
    best_first = dets.scores.argsort(descending=True, stable=True).tolist()
    rows = list(zip(dets.boxes.tolist(), dets.scores.tolist(), dets.labels.tolist(), dets.names, strict=True))
    tags: dict[int, tuple[float, float, float, float, str]] = {}  # row -> tag rectangle and text
    taken: list[tuple[float, float, float, float]] = []
    for i in best_first:  # the best detections choose their tag place first
        (x1, y1, _, _), score, _, name = rows[i]
        text = f"{name} {score:.2f}"
        tx1, ty1, tx2, ty2 = draw.textbbox((0, 0), text, font=font)
        size = (tx2 - tx1 + 2 * lw, ty2 - ty1 + 2 * lw)
        top = _tag_top(x1, y1, size, h, taken)
        taken.append((x1, top, x1 + size[0], top + size[1]))
        tags[i] = (*taken[-1], text)
    for i in reversed(best_first):  # ascending score: the best box is drawn last
        box, _, label, _ = rows[i]
        draw.rectangle(box, outline=class_color(int(label)), width=lw)
    for i in reversed(best_first):  # tags over every box, the best tag last
        color = class_color(int(rows[i][2]))
        x1, top, x2, bottom, text = tags[i]
        draw.rectangle((x1, top, x2, bottom), fill=color)
        ty1 = draw.textbbox((0, 0), text, font=font)[1]
        draw.text((x1 + lw, top + lw - ty1), text, fill=_text_color(color), font=font)
    return out
