"""Training and evaluation transforms on ``uint8`` images with their boxes.

A :class:`Sample` holds a ``uint8 [3, H, W]`` image (the evaluation :class:`Letterbox` ends with the float32
canvas that :class:`~efficientdet.predict.Predictor` feeds the network), ``xyxy`` float32 boxes in that image's pixels, labels
and ignore flags. Each transform is a callable ``(sample, generator) -> sample``; all randomness comes
from the ``torch.Generator`` passed in, so the loader can give every sample its own seed (derived from the
run seed, the epoch and the sample index) and a resumed run reproduces the same augmentations whatever
the number of workers.

What comes from torchvision transforms v2 and why: the geometric kernels of
``torchvision.transforms.v2.functional`` (``resize``, ``horizontal_flip``, ``affine``) applied to the image
and to ``tv_tensors.BoundingBoxes``. They keep image and boxes consistent by construction (one kernel per
operation for both), resize ``uint8`` images directly with a vectorised path, and the photometric kernels
(``equalize``, ``posterize``, ``adjust_*``, ``autocontrast``) are the PIL-equivalent
operations the AutoAugment policies name. The v2 *transform classes* are not used: they draw from the
global RNG (no per-sample seeding), ``RandomIoUCrop`` / ``ScaleJitter`` are not the official EfficientDet
scale jitter, and ``AutoAugment`` / ``RandAugment`` in torchvision reject bounding boxes. The official
scale jitter, letterbox, mosaic, random erasing and the box-aware AutoAugment (Zoph et al. 2019, policies
``v0``..``v3`` of google/automl) and RandAugment are written here on top of those kernels.

Boxes that leave the image are clipped to it; boxes whose clipped width or height is below ``min_size``
pixels (default 1) are dropped, with their labels and ignore flags.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
import torchvision.transforms.v2.functional as F
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms.v2 import InterpolationMode

from efficientdet.config import IMAGENET_MEAN
from efficientdet.data.preprocess import fill_values, letterbox, letterbox_scale
from efficientdet.errors import ConfigError

MIN_BOX_SIZE = 1.0
"""Boxes narrower or shorter than this many pixels after a transform are dropped."""

AUGMENT_FILL = 128
"""Grey value the AutoAugment / RandAugment operations fill uncovered pixels with (the official ``replace``)."""

_MAX_LEVEL = 10.0  # magnitudes of AutoAugment / RandAugment run 0..10


@dataclass
class Sample:
    """One training example on its way through the transforms.

    ``image``: ``uint8 [3, H, W]``. ``boxes``: ``float32 [M, 4]`` xyxy in pixels of ``image``.
    ``labels``: ``int64 [M]``. ``ignore``: ``bool [M]``. ``scale``: pixels of ``image`` per pixel of the
    original image (1.0 for mosaics, which mix images). ``orig_size``: ``(H, W)`` of the original image.
    """

    image: Tensor
    boxes: Tensor
    labels: Tensor
    ignore: Tensor
    scale: float = 1.0
    orig_size: tuple[int, int] = (0, 0)

    @property
    def size(self) -> tuple[int, int]:
        return (int(self.image.shape[-2]), int(self.image.shape[-1]))

    def keep(self, mask: Tensor) -> Sample:
        """The sample with only the boxes selected by ``mask``."""
        return replace(self, boxes=self.boxes[mask], labels=self.labels[mask], ignore=self.ignore[mask])


Transform = Callable[[Sample, torch.Generator], Sample]


# --- random helpers (all draws from the given generator) ----------------------------------------------------

def _uniform(gen: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * float(torch.rand((), generator=gen))


def _randint(gen: torch.Generator, low: int, high: int) -> int:
    """Uniform integer in ``[low, high)`` (``low`` when the range is empty)."""
    return low if high <= low else int(torch.randint(low, high, (), generator=gen))


def _coin(gen: torch.Generator, prob: float) -> bool:
    return prob > 0 and float(torch.rand((), generator=gen)) < prob


def _negate(gen: torch.Generator, value: float) -> float:
    return -value if _coin(gen, 0.5) else value


# --- box helpers --------------------------------------------------------------------------------------------

def clip_and_filter(sample: Sample, min_size: float = MIN_BOX_SIZE) -> Sample:
    """Clip boxes to the image and drop those narrower or shorter than ``min_size`` pixels."""
    if not len(sample.boxes):
        return sample
    h, w = sample.size
    boxes = sample.boxes.clone()
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    keep = ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)
    return replace(sample, boxes=boxes).keep(keep)


def _bb(sample: Sample) -> tv_tensors.BoundingBoxes:
    return tv_tensors.BoundingBoxes(sample.boxes, format="XYXY", canvas_size=sample.size)


def _plain(boxes: Tensor) -> Tensor:
    return boxes.as_subclass(Tensor).to(torch.float32)


def resolve_fill(fill: str | float | Sequence[float], mean: Sequence[float] = IMAGENET_MEAN) -> tuple[int, int, int]:
    """Padding colour for ``uint8`` images: ``"mean"`` (rounded ``255 * mean``), a 0..255 value, or three."""
    return tuple(int(round(min(max(v, 0.0), 255.0))) for v in fill_values(fill, mean))  # type: ignore[return-value]


def _canvas(size: tuple[int, int], fill: tuple[int, int, int], like: Tensor) -> Tensor:
    return torch.tensor(fill, dtype=torch.uint8, device=like.device).view(3, 1, 1).expand(3, *size).clone()


def _resize(sample: Sample, new_size: tuple[int, int], interpolation: InterpolationMode) -> Sample:
    h, w = sample.size
    if (h, w) == new_size:
        return sample
    image = F.resize(sample.image, list(new_size), interpolation=interpolation, antialias=False)
    boxes = sample.boxes * torch.tensor([new_size[1] / w, new_size[0] / h] * 2, dtype=torch.float32)
    return replace(sample, image=image, boxes=boxes)


def _interp(name: str) -> InterpolationMode:
    modes = {"bilinear": InterpolationMode.BILINEAR, "nearest": InterpolationMode.NEAREST,
             "bicubic": InterpolationMode.BICUBIC}
    if name not in modes:
        raise ConfigError(f"interpolation={name!r}: use one of {', '.join(modes)}")
    return modes[name]


# --- geometric transforms ------------------------------------------------------------------------------------

class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, gen: torch.Generator) -> Sample:
        for t in self.transforms:
            sample = t(sample, gen)
        return sample

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


class HorizontalFlip:
    """Mirror image and boxes left-right with probability ``prob``."""

    def __init__(self, prob: float = 0.5) -> None:
        self.prob = prob

    def __call__(self, sample: Sample, gen: torch.Generator) -> Sample:
        if not _coin(gen, self.prob):
            return sample
        boxes = _plain(F.horizontal_flip(_bb(sample)))
        return replace(sample, image=F.horizontal_flip(sample.image), boxes=boxes)

    def __repr__(self) -> str:
        return f"HorizontalFlip(prob={self.prob})"


class Letterbox:
    """Resize to fit ``output_size`` ``(H, W)`` keeping the aspect ratio (official scale rule), pad bottom/right.

    The evaluation step: the image becomes the float32 (0..255) canvas of
    :func:`~efficientdet.data.preprocess.letterbox`, the very function :class:`~efficientdet.predict.Predictor`
    letterboxes with, so ``validate`` scores the network input that ``Predictor`` produces for the same image.
    ``fill``: the padding colour in 0..255 (:func:`~efficientdet.data.preprocess.fill_values`).
    """

    def __init__(self, output_size: tuple[int, int], fill: Sequence[float] = (0, 0, 0),
                 interpolation: str = "bilinear", min_size: float = MIN_BOX_SIZE) -> None:
        _interp(interpolation)  # a clear error for an unknown name, now
        self.output_size = (int(output_size[0]), int(output_size[1]))
        self.fill = tuple(float(v) for v in fill)
        self.interpolation = interpolation
        self.min_size = min_size

    def __call__(self, sample: Sample, gen: torch.Generator | None = None) -> Sample:
        h, w = sample.size
        canvas, scale = letterbox(sample.image, self.output_size, self.fill, self.interpolation)  # type: ignore[arg-type]
        nh, nw = letterbox_scale((h, w), self.output_size)[1]
        boxes = sample.boxes * torch.tensor([nw / w, nh / h] * 2, dtype=torch.float32)
        out = replace(sample, image=canvas, boxes=boxes, scale=sample.scale * scale)
        return clip_and_filter(out, self.min_size)

    def __repr__(self) -> str:
        return f"Letterbox(output_size={self.output_size}, fill={self.fill})"


class ScaleJitter:
    """The official EfficientDet training resize: random scale, random crop, pad.

    Draw ``r ~ U(scale_range)``; resize so the image fits ``round(r * output_size)`` (aspect kept, float32
    rule as the official ``resize_and_crop_image``); crop an ``output_size`` window at a random offset when
    the resized image is larger; pad bottom / right with ``fill``. ``scale_range=(0.1, 2.0)`` is the
    official default.
    """

    def __init__(self, output_size: tuple[int, int], scale_range: tuple[float, float] = (0.1, 2.0),
                 fill: tuple[int, int, int] = (0, 0, 0), interpolation: str = "bilinear",
                 min_size: float = MIN_BOX_SIZE) -> None:
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ConfigError(f"scale_range={scale_range}: need 0 < low <= high")
        self.output_size = (int(output_size[0]), int(output_size[1]))
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.fill = fill
        self.interpolation = _interp(interpolation)
        self.min_size = min_size

    def __call__(self, sample: Sample, gen: torch.Generator) -> Sample:
        r = _uniform(gen, *self.scale_range)
        target = (max(1, round(r * self.output_size[0])), max(1, round(r * self.output_size[1])))
        scale, new_size = letterbox_scale(sample.size, target)
        resized = _resize(sample, new_size, self.interpolation)
        off_y = int(max(0, new_size[0] - self.output_size[0]) * _uniform(gen))
        off_x = int(max(0, new_size[1] - self.output_size[1]) * _uniform(gen))
        crop = resized.image[:, off_y: off_y + self.output_size[0], off_x: off_x + self.output_size[1]]
        canvas = _canvas(self.output_size, self.fill, crop)
        canvas[:, : crop.shape[1], : crop.shape[2]] = crop
        boxes = resized.boxes - torch.tensor([off_x, off_y, off_x, off_y], dtype=torch.float32)
        out = replace(resized, image=canvas, boxes=boxes, scale=sample.scale * scale)
        # boxes must also stay inside the part of the canvas that holds image content
        if len(out.boxes):
            out.boxes[:, 0::2] = out.boxes[:, 0::2].clamp(0, crop.shape[2])
            out.boxes[:, 1::2] = out.boxes[:, 1::2].clamp(0, crop.shape[1])
        return clip_and_filter(out, self.min_size)

    def __repr__(self) -> str:
        return f"ScaleJitter(output_size={self.output_size}, scale_range={self.scale_range}, fill={self.fill})"


class RandomErasing:
    """Erase one random rectangle (area ``area`` of the image, aspect ``ratio``) with probability ``prob``.

    ``value``: ``"random"`` (per-pixel uniform noise, as effdet's default) or a 0..255 fill colour.
    Boxes are unchanged (the erased region is occlusion).
    """

    def __init__(self, prob: float = 0.5, area: tuple[float, float] = (0.02, 1 / 3),
                 ratio: tuple[float, float] = (0.3, 3.3), value: str | tuple[int, int, int] = "random") -> None:
        self.prob, self.area, self.ratio, self.value = prob, area, ratio, value

    def __call__(self, sample: Sample, gen: torch.Generator) -> Sample:
        if not _coin(gen, self.prob):
            return sample
        h, w = sample.size
        for _ in range(10):
            target = h * w * _uniform(gen, *self.area)
            aspect = math.exp(_uniform(gen, math.log(self.ratio[0]), math.log(self.ratio[1])))
            eh, ew = int(round(math.sqrt(target / aspect))), int(round(math.sqrt(target * aspect)))
            if 0 < eh < h and 0 < ew < w:
                y, x = _randint(gen, 0, h - eh + 1), _randint(gen, 0, w - ew + 1)
                image = sample.image.clone()
                if self.value == "random":
                    image[:, y: y + eh, x: x + ew] = torch.randint(0, 256, (3, eh, ew), generator=gen,
                                                                   dtype=torch.uint8)
                else:
                    image[:, y: y + eh, x: x + ew] = torch.tensor(self.value, dtype=torch.uint8).view(3, 1, 1)
                return replace(sample, image=image)
        return sample

    def __repr__(self) -> str:
        return f"RandomErasing(prob={self.prob}, area={self.area}, value={self.value!r})"


class Mosaic:
    """Four samples in a 2 x 2 grid around a random centre, on an ``output_size`` canvas.

    The centre is drawn in ``center_range`` of each side; each image is scaled by ``r * fit`` (``fit``: the
    scale that fits it into its quadrant, ``r ~ U(scale_range)``), placed with its inner corner at the
    centre, and cropped to its quadrant. Boxes follow and are clipped / dropped. Called by the dataset
    with four samples (the one asked for and three random others).
    """

    def __init__(self, output_size: tuple[int, int], fill: tuple[int, int, int] = (0, 0, 0),
                 center_range: tuple[float, float] = (0.25, 0.75), scale_range: tuple[float, float] = (0.75, 1.5),
                 interpolation: str = "bilinear", min_size: float = MIN_BOX_SIZE) -> None:
        self.output_size = (int(output_size[0]), int(output_size[1]))
        self.fill, self.center_range, self.scale_range = fill, center_range, scale_range
        self.interpolation = _interp(interpolation)
        self.min_size = min_size

    def __call__(self, samples: Sequence[Sample], gen: torch.Generator) -> Sample:
        if len(samples) != 4:
            raise ConfigError(f"Mosaic needs 4 samples, got {len(samples)}")
        out_h, out_w = self.output_size
        cy = int(out_h * _uniform(gen, *self.center_range))
        cx = int(out_w * _uniform(gen, *self.center_range))
        canvas = _canvas(self.output_size, self.fill, samples[0].image)
        regions = [(0, 0, cy, cx), (0, cx, cy, out_w), (cy, 0, out_h, cx), (cy, cx, out_h, out_w)]
        all_boxes, all_labels, all_ignore = [], [], []
        for i, (s, (y0, x0, y1, x1)) in enumerate(zip(samples, regions, strict=True)):
            qh, qw = y1 - y0, x1 - x0
            if qh <= 0 or qw <= 0:
                continue
            h, w = s.size
            r = _uniform(gen, *self.scale_range) * min(qh / h, qw / w)
            new_size = (max(1, int(h * r)), max(1, int(w * r)))
            s = _resize(s, new_size, self.interpolation)
            # inner corner at the centre: top images end at cy, left images end at cx
            top = cy - new_size[0] if i < 2 else cy
            left = cx - new_size[1] if i % 2 == 0 else cx
            # visible part of the placed image, inside its quadrant
            vy0, vx0 = max(top, y0), max(left, x0)
            vy1, vx1 = min(top + new_size[0], y1), min(left + new_size[1], x1)
            if vy1 <= vy0 or vx1 <= vx0:
                continue
            canvas[:, vy0:vy1, vx0:vx1] = s.image[:, vy0 - top: vy1 - top, vx0 - left: vx1 - left]
            boxes = s.boxes + torch.tensor([left, top, left, top], dtype=torch.float32)
            boxes[:, 0::2] = boxes[:, 0::2].clamp(vx0, vx1)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(vy0, vy1)
            all_boxes.append(boxes)
            all_labels.append(s.labels)
            all_ignore.append(s.ignore)
        out = Sample(
            image=canvas,
            boxes=torch.cat(all_boxes) if all_boxes else torch.zeros(0, 4),
            labels=torch.cat(all_labels) if all_labels else torch.zeros(0, dtype=torch.int64),
            ignore=torch.cat(all_ignore) if all_ignore else torch.zeros(0, dtype=torch.bool),
            scale=1.0,
            orig_size=self.output_size,
        )
        return clip_and_filter(out, self.min_size)

    def __repr__(self) -> str:
        return f"Mosaic(output_size={self.output_size})"


# --- box-aware AutoAugment / RandAugment ---------------------------------------------------------------------

def _affine(sample: Sample, angle: float = 0.0, translate: tuple[float, float] = (0.0, 0.0),
            shear: tuple[float, float] = (0.0, 0.0), center: list[float] | None = None) -> Sample:
    kwargs = dict(angle=angle, translate=list(translate), scale=1.0, shear=list(shear),
                  interpolation=InterpolationMode.NEAREST, center=center)
    image = F.affine(sample.image, fill=[AUGMENT_FILL] * 3, **kwargs)  # type: ignore[arg-type]
    if not len(sample.boxes):
        return replace(sample, image=image)
    boxes = _plain(F.affine(_bb(sample), **kwargs))  # type: ignore[arg-type]
    return clip_and_filter(replace(sample, image=image, boxes=boxes))


def _with_image(sample: Sample, image: Tensor) -> Sample:
    return replace(sample, image=image)


def _cutout(image: Tensor, pad: int, gen: torch.Generator, cy: int | None = None, cx: int | None = None,
            pad_hw: tuple[int, int] | None = None) -> Tensor:
    """Fill a ``2 pad x 2 pad`` square (``pad_hw`` for a rectangle) centred at a random pixel with grey."""
    h, w = image.shape[-2:]
    cy = _randint(gen, 0, h) if cy is None else cy
    cx = _randint(gen, 0, w) if cx is None else cx
    ph, pw = pad_hw if pad_hw is not None else (pad, pad)
    out = image.clone()
    out[:, max(0, cy - ph): min(h, cy + ph), max(0, cx - pw): min(w, cx + pw)] = AUGMENT_FILL
    return out


def _solarize(image: Tensor, threshold: int) -> Tensor:
    """Invert pixels at or above ``threshold`` (0..256; 256 leaves the image unchanged, as the official op)."""
    return torch.where(image.to(torch.int16) < threshold, image, 255 - image)


def _solarize_add(image: Tensor, addition: int, threshold: int = 128) -> Tensor:
    added = (image.to(torch.int16) + addition).clamp(0, 255).to(torch.uint8)
    return torch.where(image.to(torch.int16) < threshold, added, image)


def _box_pixels(box: Sequence[float], h: int, w: int) -> tuple[int, int, int, int]:
    """Inclusive integer pixel range ``(y0, x0, y1, x1)`` covered by a box, inside the image."""
    x0, y0, x1, y1 = box
    y0i, x0i = min(max(int(y0), 0), h - 1), min(max(int(x0), 0), w - 1)
    y1i, x1i = min(max(int(y1), y0i), h - 1), min(max(int(x1), x0i), w - 1)
    return y0i, x0i, y1i, x1i


def _in_boxes(sample: Sample, prob: float, gen: torch.Generator, fn: Callable[[Tensor], Tensor]) -> Sample:
    """Apply ``fn`` to the pixels of each box (in random order) with probability ``prob / 3`` (the official
    reduction for box-only operations); boxes are unchanged."""
    if not len(sample.boxes):
        return sample
    h, w = sample.size
    image = sample.image.clone()
    order = torch.randperm(len(sample.boxes), generator=gen).tolist()
    for i in order:
        if _coin(gen, prob / 3.0):
            y0, x0, y1, x1 = _box_pixels(sample.boxes[i].tolist(), h, w)
            image[:, y0: y1 + 1, x0: x1 + 1] = fn(image[:, y0: y1 + 1, x0: x1 + 1])
    return replace(sample, image=image)


def _crop_affine(crop: Tensor, **kwargs: object) -> Tensor:
    return F.affine(crop, scale=1.0, interpolation=InterpolationMode.NEAREST, fill=[AUGMENT_FILL] * 3,
                    **kwargs)  # type: ignore[arg-type]


def _enhance(level: float) -> float:
    return level / _MAX_LEVEL * 1.8 + 0.1


def _shear_arg(level: float, gen: torch.Generator) -> float:
    """Shear as an angle in degrees for ``F.affine``: the official shear factor ``level / 10 * 0.3``."""
    return math.degrees(math.atan(_negate(gen, level / _MAX_LEVEL * 0.3)))


# An operation: (sample, level, prob, generator) -> sample. ``prob`` is used by the box-only operations,
# which decide per box; the others are applied with probability ``prob`` by the caller.
AugmentOp = Callable[[Sample, float, float, torch.Generator], Sample]

TRANSLATE_CONST = 250.0
TRANSLATE_BBOX_CONST = 120.0
CUTOUT_CONST = 100
CUTOUT_BBOX_CONST = 50
CUTOUT_MAX_PAD_FRACTION = 0.75


def _bbox_cutout(s: Sample, level: float, prob: float, gen: torch.Generator) -> Sample:
    if not len(s.boxes):
        return s
    h, w = s.size
    i = _randint(gen, 0, len(s.boxes))
    y0, x0, y1, x1 = _box_pixels(s.boxes[i].tolist(), h, w)
    frac = level / _MAX_LEVEL * CUTOUT_MAX_PAD_FRACTION
    pad_hw = (int(frac * (y1 - y0 + 1) / 2), int(frac * (x1 - x0 + 1) / 2))
    return _with_image(s, _cutout(s.image, 0, gen, _randint(gen, y0, y1 + 1), _randint(gen, x0, x1 + 1), pad_hw))


AUGMENT_OPS: dict[str, AugmentOp] = {
    "AutoContrast": lambda s, lv, p, g: _with_image(s, F.autocontrast(s.image)),
    "Equalize": lambda s, lv, p, g: _with_image(s, F.equalize(s.image)),
    "Posterize": lambda s, lv, p, g: _with_image(s, F.posterize(s.image, int(lv / _MAX_LEVEL * 4))),
    "Solarize": lambda s, lv, p, g: _with_image(s, _solarize(s.image, int(lv / _MAX_LEVEL * 256))),
    "SolarizeAdd": lambda s, lv, p, g: _with_image(s, _solarize_add(s.image, int(lv / _MAX_LEVEL * 110))),
    "Color": lambda s, lv, p, g: _with_image(s, F.adjust_saturation(s.image, _enhance(lv))),
    "Contrast": lambda s, lv, p, g: _with_image(s, F.adjust_contrast(s.image, _enhance(lv))),
    "Brightness": lambda s, lv, p, g: _with_image(s, F.adjust_brightness(s.image, _enhance(lv))),
    "Sharpness": lambda s, lv, p, g: _with_image(s, F.adjust_sharpness(s.image, _enhance(lv))),
    "Cutout": lambda s, lv, p, g: _with_image(s, _cutout(s.image, int(lv / _MAX_LEVEL * CUTOUT_CONST), g)),
    "BBox_Cutout": _bbox_cutout,
    "Rotate_BBox": lambda s, lv, p, g: _affine(s, angle=_negate(g, lv / _MAX_LEVEL * 30.0)),
    "TranslateX_BBox": lambda s, lv, p, g: _affine(s, translate=(_negate(g, lv / _MAX_LEVEL * TRANSLATE_CONST), 0)),
    "TranslateY_BBox": lambda s, lv, p, g: _affine(s, translate=(0, _negate(g, lv / _MAX_LEVEL * TRANSLATE_CONST))),
    "ShearX_BBox": lambda s, lv, p, g: _affine(s, shear=(_shear_arg(lv, g), 0.0), center=[0.0, 0.0]),
    "ShearY_BBox": lambda s, lv, p, g: _affine(s, shear=(0.0, _shear_arg(lv, g)), center=[0.0, 0.0]),
    "Rotate_Only_BBoxes": lambda s, lv, p, g: _in_boxes(
        s, p, g, lambda c: _crop_affine(c, angle=_negate(g, lv / _MAX_LEVEL * 30.0), translate=[0, 0], shear=[0.0])),
    "ShearX_Only_BBoxes": lambda s, lv, p, g: _in_boxes(
        s, p, g, lambda c: _crop_affine(c, angle=0.0, translate=[0, 0], shear=[_shear_arg(lv, g), 0.0],
                                        center=[0.0, 0.0])),
    "ShearY_Only_BBoxes": lambda s, lv, p, g: _in_boxes(
        s, p, g, lambda c: _crop_affine(c, angle=0.0, translate=[0, 0], shear=[0.0, _shear_arg(lv, g)],
                                        center=[0.0, 0.0])),
    "TranslateX_Only_BBoxes": lambda s, lv, p, g: _in_boxes(
        s, p, g, lambda c: _crop_affine(c, angle=0.0, translate=[_negate(g, lv / _MAX_LEVEL * TRANSLATE_BBOX_CONST), 0],
                                        shear=[0.0])),
    "TranslateY_Only_BBoxes": lambda s, lv, p, g: _in_boxes(
        s, p, g, lambda c: _crop_affine(c, angle=0.0, translate=[0, _negate(g, lv / _MAX_LEVEL * TRANSLATE_BBOX_CONST)],
                                        shear=[0.0])),
    "Flip_Only_BBoxes": lambda s, lv, p, g: _in_boxes(s, p, g, F.horizontal_flip),
    "Solarize_Only_BBoxes": lambda s, lv, p, g: _in_boxes(s, p, g, lambda c: _solarize(c, int(lv / _MAX_LEVEL * 256))),
    "Equalize_Only_BBoxes": lambda s, lv, p, g: _in_boxes(s, p, g, F.equalize),
    "Cutout_Only_BBoxes": lambda s, lv, p, g: _in_boxes(
        s, p, g, lambda c: _cutout(c, int(lv / _MAX_LEVEL * CUTOUT_BBOX_CONST), g)),
}
"""Every operation of the official detection AutoAugment, by its official name."""

_BOX_ONLY = {name for name in AUGMENT_OPS if name.endswith("_Only_BBoxes")}

# Policies of "Learning Data Augmentation Strategies for Object Detection" as the official code lists them:
# each sub-policy is a sequence of (operation, probability, magnitude).
POLICIES: dict[str, tuple[tuple[tuple[str, float, int], ...], ...]] = {
    "v0": (
        (("TranslateX_BBox", 0.6, 4), ("Equalize", 0.8, 10)),
        (("TranslateY_Only_BBoxes", 0.2, 2), ("Cutout", 0.8, 8)),
        (("Sharpness", 0.0, 8), ("ShearX_BBox", 0.4, 0)),
        (("ShearY_BBox", 1.0, 2), ("TranslateY_Only_BBoxes", 0.6, 6)),
        (("Rotate_BBox", 0.6, 10), ("Color", 1.0, 6)),
    ),
    "v1": (
        (("TranslateX_BBox", 0.6, 4), ("Equalize", 0.8, 10)),
        (("TranslateY_Only_BBoxes", 0.2, 2), ("Cutout", 0.8, 8)),
        (("Sharpness", 0.0, 8), ("ShearX_BBox", 0.4, 0)),
        (("ShearY_BBox", 1.0, 2), ("TranslateY_Only_BBoxes", 0.6, 6)),
        (("Rotate_BBox", 0.6, 10), ("Color", 1.0, 6)),
        (("Color", 0.0, 0), ("ShearX_Only_BBoxes", 0.8, 4)),
        (("ShearY_Only_BBoxes", 0.8, 2), ("Flip_Only_BBoxes", 0.0, 10)),
        (("Equalize", 0.6, 10), ("TranslateX_BBox", 0.2, 2)),
        (("Color", 1.0, 10), ("TranslateY_Only_BBoxes", 0.4, 6)),
        (("Rotate_BBox", 0.8, 10), ("Contrast", 0.0, 10)),
        (("Cutout", 0.2, 2), ("Brightness", 0.8, 10)),
        (("Color", 1.0, 6), ("Equalize", 1.0, 2)),
        (("Cutout_Only_BBoxes", 0.4, 6), ("TranslateY_Only_BBoxes", 0.8, 2)),
        (("Color", 0.2, 8), ("Rotate_BBox", 0.8, 10)),
        (("Sharpness", 0.4, 4), ("TranslateY_Only_BBoxes", 0.0, 4)),
        (("Sharpness", 1.0, 4), ("SolarizeAdd", 0.4, 4)),
        (("Rotate_BBox", 1.0, 8), ("Sharpness", 0.2, 8)),
        (("ShearY_BBox", 0.6, 10), ("Equalize_Only_BBoxes", 0.6, 8)),
        (("ShearX_BBox", 0.2, 6), ("TranslateY_Only_BBoxes", 0.2, 10)),
        (("SolarizeAdd", 0.6, 8), ("Brightness", 0.8, 10)),
    ),
    "v2": (
        (("Color", 0.0, 6), ("Cutout", 0.6, 8), ("Sharpness", 0.4, 8)),
        (("Rotate_BBox", 0.4, 8), ("Sharpness", 0.4, 2), ("Rotate_BBox", 0.8, 10)),
        (("TranslateY_BBox", 1.0, 8), ("AutoContrast", 0.8, 2)),
        (("AutoContrast", 0.4, 6), ("ShearX_BBox", 0.8, 8), ("Brightness", 0.0, 10)),
        (("SolarizeAdd", 0.2, 6), ("Contrast", 0.0, 10), ("AutoContrast", 0.6, 0)),
        (("Cutout", 0.2, 0), ("Solarize", 0.8, 8), ("Color", 1.0, 4)),
        (("TranslateY_BBox", 0.0, 4), ("Equalize", 0.6, 8), ("Solarize", 0.0, 10)),
        (("TranslateY_BBox", 0.2, 2), ("ShearY_BBox", 0.8, 8), ("Rotate_BBox", 0.8, 8)),
        (("Cutout", 0.8, 8), ("Brightness", 0.8, 8), ("Cutout", 0.2, 2)),
        (("Color", 0.8, 4), ("TranslateY_BBox", 1.0, 6), ("Rotate_BBox", 0.6, 6)),
        (("Rotate_BBox", 0.6, 10), ("BBox_Cutout", 1.0, 4), ("Cutout", 0.2, 8)),
        (("Rotate_BBox", 0.0, 0), ("Equalize", 0.6, 6), ("ShearY_BBox", 0.6, 8)),
        (("Brightness", 0.8, 8), ("AutoContrast", 0.4, 2), ("Brightness", 0.2, 2)),
        (("TranslateY_BBox", 0.4, 8), ("Solarize", 0.4, 6), ("SolarizeAdd", 0.2, 10)),
        (("Contrast", 1.0, 10), ("SolarizeAdd", 0.2, 8), ("Equalize", 0.2, 4)),
    ),
    "v3": (
        (("Posterize", 0.8, 2), ("TranslateX_BBox", 1.0, 8)),
        (("BBox_Cutout", 0.2, 10), ("Sharpness", 1.0, 8)),
        (("Rotate_BBox", 0.6, 8), ("Rotate_BBox", 0.8, 10)),
        (("Equalize", 0.8, 10), ("AutoContrast", 0.2, 10)),
        (("SolarizeAdd", 0.2, 2), ("TranslateY_BBox", 0.2, 8)),
        (("Sharpness", 0.0, 2), ("Color", 0.4, 8)),
        (("Equalize", 1.0, 8), ("TranslateY_BBox", 1.0, 8)),
        (("Posterize", 0.6, 2), ("Rotate_BBox", 0.0, 10)),
        (("AutoContrast", 0.6, 0), ("Rotate_BBox", 1.0, 6)),
        (("Equalize", 0.0, 4), ("Cutout", 0.8, 10)),
        (("Brightness", 1.0, 2), ("TranslateY_BBox", 1.0, 6)),
        (("Contrast", 0.0, 2), ("ShearY_BBox", 0.8, 0)),
        (("AutoContrast", 0.8, 10), ("Contrast", 0.2, 10)),
        (("Rotate_BBox", 1.0, 10), ("Cutout", 1.0, 10)),
        (("SolarizeAdd", 0.8, 6), ("Equalize", 0.8, 8)),
    ),
}


def apply_op(sample: Sample, name: str, prob: float, level: float, gen: torch.Generator) -> Sample:
    """Apply one named operation: with probability ``prob`` (box-only operations decide per box)."""
    op = AUGMENT_OPS[name]
    if name in _BOX_ONLY:
        return op(sample, level, prob, gen)
    if not _coin(gen, prob):
        return sample
    return op(sample, level, prob, gen)


class AutoAugment:
    """Box-aware AutoAugment for detection: pick one sub-policy of ``policy`` at random and apply its steps.

    ``policy``: ``v0`` (the paper's, used for its results), ``v1``, ``v2``, ``v3`` (see :data:`POLICIES`).
    Magnitude-to-argument rules and constants follow the official implementation (rotate up to 30 degrees,
    shear up to 0.3, translate up to 250 px, cutout up to 100 px, grey fill 128).
    """

    def __init__(self, policy: str = "v0") -> None:
        if policy not in POLICIES:
            raise ConfigError(f"AutoAugment policy {policy!r}: use one of {', '.join(POLICIES)}")
        self.policy = policy

    def __call__(self, sample: Sample, gen: torch.Generator) -> Sample:
        sub = POLICIES[self.policy][_randint(gen, 0, len(POLICIES[self.policy]))]
        for name, prob, level in sub:
            sample = apply_op(sample, name, prob, level, gen)
        return sample

    def __repr__(self) -> str:
        return f"AutoAugment(policy={self.policy!r})"


RANDAUGMENT_OPS = (
    "AutoContrast", "Equalize", "Posterize", "Solarize", "SolarizeAdd", "Color", "Contrast", "Brightness",
    "Sharpness", "Cutout", "Rotate_BBox", "TranslateX_BBox", "TranslateY_BBox", "ShearX_BBox", "ShearY_BBox",
)
"""Operations RandAugment draws from: the RandAugment set with its geometric operations in box-aware form."""


class RandAugment:
    """Box-aware RandAugment: ``num_ops`` operations drawn uniformly from :data:`RANDAUGMENT_OPS`, each applied
    with probability ``prob`` at magnitude ``magnitude`` (0..10, the AutoAugment scale)."""

    def __init__(self, num_ops: int = 2, magnitude: float = 9.0, prob: float = 1.0,
                 ops: Sequence[str] = RANDAUGMENT_OPS) -> None:
        unknown = [o for o in ops if o not in AUGMENT_OPS]
        if unknown:
            raise ConfigError(f"unknown RandAugment operations {unknown}; known: {', '.join(AUGMENT_OPS)}")
        if not 0 <= magnitude <= _MAX_LEVEL:
            raise ConfigError(f"RandAugment magnitude {magnitude}: use 0..{_MAX_LEVEL:g}")
        self.num_ops, self.magnitude, self.prob, self.ops = num_ops, float(magnitude), prob, tuple(ops)

    def __call__(self, sample: Sample, gen: torch.Generator) -> Sample:
        for _ in range(self.num_ops):
            name = self.ops[_randint(gen, 0, len(self.ops))]
            sample = apply_op(sample, name, self.prob, self.magnitude, gen)
        return sample

    def __repr__(self) -> str:
        return f"RandAugment(num_ops={self.num_ops}, magnitude={self.magnitude:g})"


# --- pipelines ---------------------------------------------------------------------------------------------------

def train_transforms(
    image_size: tuple[int, int],
    *,
    scale_range: tuple[float, float] = (0.1, 2.0),
    hflip: float = 0.5,
    fill: str | float | Sequence[float] = "mean",
    mean: Sequence[float] = IMAGENET_MEAN,
    autoaugment: str | None = None,
    randaugment: tuple[int, float] | None = None,
    random_erasing: float = 0.0,
    interpolation: str = "bilinear",
) -> Compose:
    """The official training pipeline: [AutoAugment / RandAugment] -> horizontal flip -> scale jitter and crop
    -> [random erasing]. ``autoaugment``: a policy name (applied first, on the original image, as the official
    input pipeline does); ``randaugment``: ``(num_ops, magnitude)``. ``fill`` pads the canvas (``"mean"`` =
    the mean colour, i.e. 0 after normalisation, as the official zero padding of normalised images)."""
    fill_rgb = resolve_fill(fill, mean)
    steps: list[Transform] = []
    if autoaugment:
        steps.append(AutoAugment(autoaugment))
    if randaugment:
        steps.append(RandAugment(int(randaugment[0]), float(randaugment[1])))
    if hflip > 0:
        steps.append(HorizontalFlip(hflip))
    steps.append(ScaleJitter(image_size, scale_range, fill_rgb, interpolation))
    if random_erasing > 0:
        steps.append(RandomErasing(random_erasing))
    return Compose(steps)


def eval_transforms(image_size: tuple[int, int], *, fill: str | float | Sequence[float] = "mean",
                    mean: Sequence[float] = IMAGENET_MEAN, interpolation: str = "bilinear") -> Compose:
    """Evaluation: letterbox resize and pad only (float32 canvases, exactly :class:`~efficientdet.predict.Predictor`'s
    network input for the same image and preprocessing)."""
    return Compose([Letterbox(image_size, fill_values(fill, mean), interpolation)])


__all__ = [
    "MIN_BOX_SIZE",
    "AUGMENT_FILL",
    "Sample",
    "Transform",
    "clip_and_filter",
    "resolve_fill",
    "Compose",
    "HorizontalFlip",
    "Letterbox",
    "ScaleJitter",
    "RandomErasing",
    "Mosaic",
    "AUGMENT_OPS",
    "POLICIES",
    "RANDAUGMENT_OPS",
    "apply_op",
    "AutoAugment",
    "RandAugment",
    "train_transforms",
    "eval_transforms",
]
