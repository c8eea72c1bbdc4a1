"""A built-in detection dataset, drawn procedurally: the default data of the demo, the tests and the benchmarks.

``make_sample_dataset(root, seed=0)`` writes a COCO-format dataset::

    root/train/images/000000.jpg ...    root/train/annotations.json
    root/val/images/000000.jpg ...      root/val/annotations.json

Six object classes (circle, square, triangle, star, ring, cross) in random colours, sizes (log-uniform,
small objects included), aspect ratios and rotations, partly occluding each other, on textured,
cluttered backgrounds (colour gradients, low-frequency blotches, stripes, lines and irregular blobs,
sensor noise, JPEG compression). Boxes are the extent of each object's *visible* pixels, as in COCO.
Everything derives from ``seed`` through numpy's PCG64 (one stream per image), so the same seed gives
byte-identical files on the same Pillow / libjpeg build.
"""

from __future__ import annotations

import colorsys
import io
import json
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from efficientdet.errors import DataError

SAMPLE_CLASSES = ("circle", "square", "triangle", "star", "ring", "cross")
"""Class names of the sample dataset; COCO category ids are 1..6 in this order."""

_SPLIT_CODES = {"train": 1, "val": 2}
_MANIFEST = "sample.json"
_JPEG_QUALITY = 90
_MIN_OBJECT = 16  # pixels, shortest object side before rotation
_MAX_OBJECT_FRACTION = 0.5  # of the shorter image side


def _shape_points(kind: str, rng: np.random.Generator) -> np.ndarray | None:
    """Outline of a polygonal class shape in unit coordinates ``[K, 2]`` (None for the round shapes)."""
    if kind == "square":
        pts = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    elif kind == "triangle":
        a = np.deg2rad([-90.0, 30.0, 150.0])
        pts = np.stack([np.cos(a), np.sin(a)], 1)
    elif kind == "star":
        a = np.deg2rad(np.arange(10) * 36.0 - 90.0)
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        pts = np.stack([r * np.cos(a), r * np.sin(a)], 1)
    elif kind == "cross":
        t = 0.34
        pts = np.array([[-t, -1], [t, -1], [t, -t], [1, -t], [1, t], [t, t], [t, 1], [-t, 1], [-t, t], [-1, t],
                        [-1, -t], [-t, -t]], dtype=np.float64)
    else:
        return None
    angle = rng.uniform(0, 2 * math.pi)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return pts @ rot.T


def _shape_mask(kind: str, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """Anti-aliased coverage ``[h, w]`` float32 in 0..1 of one object filling a ``w x h`` box."""
    ss = 3  # supersampling
    big = Image.new("L", (w * ss, h * ss), 0)
    draw = ImageDraw.Draw(big)
    box = [0, 0, w * ss - 1, h * ss - 1]
    pts = _shape_points(kind, rng)
    if pts is None:
        draw.ellipse(box, fill=255)
        if kind == "ring":
            inner = rng.uniform(0.45, 0.65)
            dx, dy = (1 - inner) * w * ss / 2, (1 - inner) * h * ss / 2
            draw.ellipse([dx, dy, w * ss - 1 - dx, h * ss - 1 - dy], fill=0)
    else:
        span = pts.max(0) - pts.min(0)
        unit = (pts - pts.min(0)) / span  # 0..1 in x and y: the rotated shape fills the box
        xy = [(float(x * (w * ss - 1)), float(y * (h * ss - 1))) for x, y in unit]
        draw.polygon(xy, fill=255)
    small = big.resize((w, h), Image.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def _random_colour(rng: np.random.Generator, sat: tuple[float, float] = (0.55, 1.0),
                   val: tuple[float, float] = (0.45, 1.0)) -> np.ndarray:
    """An RGB colour (float32, 0..255) of random hue with saturation and value in the given ranges."""
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(*sat), rng.uniform(*val))
    return np.array([r, g, b], dtype=np.float32) * 255.0


def _background(h: int, w: int, rng: np.random.Generator) -> Image.Image:
    """A textured RGB background: colour blotches on a gradient, faint stripes, fine grain."""
    # low-frequency colour blotches plus a linear colour gradient, both on a coarse grid (bicubic
    # upsampling reproduces the linear ramp exactly)
    gh, gw = int(rng.integers(2, 7)), int(rng.integers(2, 7))
    grey = rng.uniform(60, 190)
    grid = grey + rng.uniform(0.15, 0.5) * rng.uniform(-110, 110, size=(gh, gw, 3))  # muted colours
    angle = rng.uniform(0, 2 * math.pi)
    ramp = math.cos(angle) * np.linspace(0, 1, gw)[None, :] + math.sin(angle) * np.linspace(0, 1, gh)[:, None]
    grid += ramp[:, :, None] * rng.uniform(-60, 60, size=3)
    grid_img = Image.fromarray(np.clip(grid, 0, 255).astype(np.uint8), "RGB")
    img = np.asarray(grid_img.resize((w, h), Image.BICUBIC), dtype=np.float32)
    # grey-level texture shared by the channels: fine grain and, half of the time, faint stripes
    grain = rng.integers(0, 256, size=(h // 4 + 1, w // 4 + 1), dtype=np.uint8)
    texture = np.asarray(Image.fromarray(grain, "L").resize((w, h), Image.BILINEAR), dtype=np.float32)
    texture = (texture - 128.0) * np.float32(rng.uniform(0.05, 0.25))
    if rng.random() < 0.5:
        period = rng.uniform(6, 40)
        a2 = rng.uniform(0, math.pi)
        k = 2 * math.pi / period
        xx = np.arange(w, dtype=np.float32)[None, :] * np.float32(math.cos(a2) * k)
        yy = np.arange(h, dtype=np.float32)[:, None] * np.float32(math.sin(a2) * k)
        texture += np.sin(xx + yy) * np.float32(rng.uniform(5, 25))
    img += texture[:, :, None]
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def _clutter(img: Image.Image, rng: np.random.Generator) -> None:
    """Draw distractors that are no class (lines, arcs, irregular blobs) half-transparently into ``img``."""
    w, h = img.size
    layer = Image.new("RGB", (w, h))
    mask = Image.new("L", (w, h), 0)
    draw, mdraw = ImageDraw.Draw(layer), ImageDraw.Draw(mask)
    for _ in range(int(rng.integers(4, 16))):
        colour = tuple(int(c) for c in _random_colour(rng, (0.0, 0.8), (0.2, 0.9)))
        alpha = int(rng.uniform(50, 150))
        kind = rng.random()
        if kind < 0.45:
            pts = [(float(rng.uniform(0, w)), float(rng.uniform(0, h))) for _ in range(int(rng.integers(2, 5)))]
            width = int(rng.integers(1, 4))
            draw.line(pts, fill=colour, width=width)
            mdraw.line(pts, fill=alpha, width=width)
        elif kind < 0.65:
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(10, 60)
            start = float(rng.uniform(0, 360))
            end = start + float(rng.uniform(40, 200))
            box = [cx - r, cy - r, cx + r, cy + r]
            draw.arc(box, start, end, fill=colour, width=2)
            mdraw.arc(box, start, end, fill=alpha, width=2)
        else:  # irregular blob: many vertices at random radii
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            n = int(rng.integers(7, 13))
            base = rng.uniform(5, 30)
            angles = np.sort(rng.uniform(0, 2 * math.pi, n))
            radii = base * rng.uniform(0.3, 1.6, n)
            pts = [(float(cx + r * math.cos(a) * rng.uniform(0.6, 1.8)), float(cy + r * math.sin(a)))
                   for r, a in zip(radii, angles, strict=True)]
            draw.polygon(pts, fill=colour)
            mdraw.polygon(pts, fill=alpha)
    img.paste(layer, (0, 0), mask)


def draw_image(h: int, w: int, rng: np.random.Generator, empty_prob: float = 0.04
                ) -> tuple[bytes, list[tuple[list[int], int]]]:
    """One ``h x w`` JPEG (bytes) and its annotations ``[([x, y, w, h], class index), ...]`` (visible extents),
    drawn from ``rng``."""
    canvas = _background(h, w, rng)
    _clutter(canvas, rng)
    owner = np.full((h, w), -1, dtype=np.int32)
    placed: list[tuple[int, int, int, int]] = []  # x0, y0, x1, y1 of drawn objects
    kinds: list[int] = []
    n_objects = 0 if rng.random() < empty_prob else int(rng.integers(1, 8))
    max_side = max(_MIN_OBJECT + 1, int(_MAX_OBJECT_FRACTION * min(h, w)))
    for _ in range(n_objects):
        side = math.exp(rng.uniform(math.log(_MIN_OBJECT), math.log(max_side)))
        aspect = math.exp(rng.uniform(-0.45, 0.45))
        ow, oh = max(6, int(side * math.sqrt(aspect))), max(6, int(side / math.sqrt(aspect)))
        ow, oh = min(ow, w - 2), min(oh, h - 2)
        for _attempt in range(10):  # keep occlusion partial: cover at most half of an earlier object's box
            x0, y0 = int(rng.integers(0, w - ow)), int(rng.integers(0, h - oh))
            ok = True
            for px0, py0, px1, py1 in placed:
                iw = max(0, min(px1, x0 + ow) - max(px0, x0))
                ih = max(0, min(py1, y0 + oh) - max(py0, y0))
                if iw * ih > 0.5 * (px1 - px0) * (py1 - py0) or iw * ih > 0.5 * ow * oh:
                    ok = False
                    break
            if ok:
                break
        else:
            continue
        k = int(rng.integers(0, len(SAMPLE_CLASSES)))
        cov = _shape_mask(SAMPLE_CLASSES[k], ow, oh, rng)
        colour = _random_colour(rng)
        shade = np.linspace(rng.uniform(0.75, 1.0), rng.uniform(1.0, 1.2), oh, dtype=np.float32)[:, None, None]
        fill = np.broadcast_to(np.clip(colour * shade, 0, 255), (oh, ow, 3)).astype(np.uint8)
        alpha = Image.fromarray((cov * 255 + 0.5).astype(np.uint8), "L")
        canvas.paste(Image.fromarray(fill, "RGB"), (x0, y0), alpha)
        owner[y0: y0 + oh, x0: x0 + ow][cov > 0.5] = len(placed)
        placed.append((x0, y0, x0 + ow, y0 + oh))
        kinds.append(k)
    noise = int(rng.integers(2, 9))  # sensor noise, uniform in +-noise
    pixels = np.asarray(canvas).astype(np.int16)
    pixels += rng.integers(-noise, noise + 1, size=pixels.shape, dtype=np.int16)
    np.clip(pixels, 0, 255, out=pixels)
    pil = Image.fromarray(pixels.astype(np.uint8), "RGB")
    if rng.random() < 0.25:
        pil = pil.filter(ImageFilter.SMOOTH)  # mild defocus
    buf = io.BytesIO()
    pil.save(buf, "JPEG", quality=_JPEG_QUALITY)
    annotations = []
    for i, (k, (x0, y0, x1, y1)) in enumerate(zip(kinds, placed, strict=True)):
        ys, xs = np.nonzero(owner[y0:y1, x0:x1] == i)
        if len(xs) == 0:
            continue
        bx0, by0, bx1, by1 = x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1
        if bx1 - bx0 < 4 or by1 - by0 < 4:
            continue
        annotations.append(([bx0, by0, bx1 - bx0, by1 - by0], k))
    return buf.getvalue(), annotations


def _image_size(rng: np.random.Generator, size: int) -> tuple[int, int]:
    long_side = int(rng.integers(int(0.75 * size), size + 1))
    short_side = int(long_side * rng.uniform(0.62, 1.0))
    return (short_side, long_side) if rng.random() < 0.7 else (long_side, short_side)


def _write_split(root: Path, split: str, count: int, seed: int, size: int) -> Path:
    split_dir = root / split
    (split_dir / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(count):
        rng = np.random.Generator(np.random.PCG64([seed, _SPLIT_CODES[split], i]))
        h, w = _image_size(rng, size)
        data, anns = draw_image(h, w, rng)
        name = f"images/{i:06d}.jpg"
        (split_dir / name).write_bytes(data)
        images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
        for bbox, k in anns:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": k + 1,
                                "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0})
    categories = [{"id": k + 1, "name": name, "supercategory": "shape"} for k, name in enumerate(SAMPLE_CLASSES)]
    ann_file = split_dir / "annotations.json"
    content = {"info": {"description": f"efficientdet sample dataset, split {split}, seed {seed}"},
               "images": images, "annotations": annotations, "categories": categories}
    ann_file.write_text(json.dumps(content, separators=(",", ":")), encoding="utf-8")
    return ann_file


def make_sample_dataset(root: str | os.PathLike[str], *, seed: int = 0, train: int = 400, val: int = 80,
                        size: int = 384) -> dict[str, Path]:
    """Write the sample dataset under ``root`` and return ``{"train": json, "val": json}``.

    ``size``: the longest image side is drawn from ``[0.75 * size, size]``, the other side is 62-100 % of it.
    """
    if train < 0 or val < 0:
        raise DataError(f"train={train}, val={val}: image counts cannot be negative")
    if size < 64:
        raise DataError(f"size={size}: use at least 64 pixels")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    out = {split: _write_split(root, split, count, seed, size)
           for split, count in (("train", train), ("val", val)) if count > 0}
    manifest = {"seed": seed, "train": train, "val": val, "size": size, "classes": list(SAMPLE_CLASSES)}
    (root / _MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return out


def ensure_sample_dataset(root: str | os.PathLike[str], *, seed: int = 0, train: int = 400, val: int = 80,
                          size: int = 384) -> dict[str, Path]:
    """Like :func:`make_sample_dataset`, but reuse ``root`` when it already holds the same parameters."""
    root = Path(root)
    manifest = root / _MANIFEST
    wanted = {"seed": seed, "train": train, "val": val, "size": size, "classes": list(SAMPLE_CLASSES)}
    if manifest.is_file():
        try:
            current = json.loads(manifest.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            current = None
        splits = {s: root / s / "annotations.json" for s, n in (("train", train), ("val", val)) if n > 0}
        if current == wanted and all(p.is_file() for p in splits.values()):
            return splits
    return make_sample_dataset(root, seed=seed, train=train, val=val, size=size)


__all__ = ["SAMPLE_CLASSES", "make_sample_dataset", "ensure_sample_dataset", "draw_image"]
