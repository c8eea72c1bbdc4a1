"""A torch ``Dataset`` over a parsed :class:`~efficientdet.data.records.DetectionDataset`.

Each item is an :class:`Item`: the ``uint8 [3, H_in, W_in]`` network-input image, its
:class:`~efficientdet.structures.Targets` (boxes in input pixels, labels, ignore flags) and
:class:`~efficientdet.structures.ImageMeta`. Normalisation happens later, on the device
(:class:`~efficientdet.data.preprocess.Normalizer`), so workers ship 4x fewer bytes.

Randomness: an item is addressed as ``(index, epoch)``; its augmentations use a ``torch.Generator`` seeded
from ``(seed, epoch, index)``. The same seed and epoch therefore give the same images whatever the number
of workers, the order of loading, or an interruption in between.

Broken images (missing, corrupt or truncated files) do not stop an epoch: the item comes back as
:class:`Skipped` naming the file and the reason, and the collate function drops it and counts it
(``strict=True`` raises :class:`~efficientdet.errors.DataError` instead). Conversions (EXIF rotation,
grayscale, alpha, CMYK, 16-bit) are done by :mod:`efficientdet.data.images`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from efficientdet.config import IMAGENET_MEAN
from efficientdet.data.images import read_image
from efficientdet.data.records import DetectionDataset
from efficientdet.data.transforms import Mosaic, Sample, Transform, eval_transforms, resolve_fill
from efficientdet.errors import DataError
from efficientdet.structures import ImageMeta, Targets


@dataclass
class Item:
    """One loaded example: ``image uint8 [3, H_in, W_in]``, targets in input pixels, meta, record index.

    ``dropped_boxes``: boxes of the record that could not be trained on (not finite, zero or negative size)
    and were left out; counted in the epoch summary.
    """

    image: Tensor
    targets: Targets
    meta: ImageMeta
    index: int
    dropped_boxes: int = 0


@dataclass
class Skipped:
    """An example that could not be loaded: record ``index``, image ``path`` and the ``reason``."""

    index: int
    path: str
    reason: str


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one sample, well mixed from ``(seed, epoch, index)``."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFF, epoch & 0xFFFFFFFF, index & 0xFFFFFFFF]).generate_state(2)
    return int(((int(state[0]) << 32) | int(state[1])) & 0x7FFFFFFFFFFFFFFF)


def valid_box_mask(boxes: np.ndarray) -> np.ndarray:
    """``[M]`` bool: finite boxes with ``x2 > x1`` and ``y2 > y1`` (the others cannot be trained on)."""
    finite = np.isfinite(boxes).all(axis=1)
    return finite & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


class TorchDataset(Dataset):
    """Images and targets of a :class:`DetectionDataset` at the network input size.

    Args:
        dataset: the parsed records.
        image_size: network input ``(H, W)`` (or one int for a square).
        transforms: ``(Sample, Generator) -> Sample``, ending at ``image_size``; default: letterbox only
            (evaluation). Build training pipelines with :func:`~efficientdet.data.transforms.train_transforms`.
        mosaic: probability of building an item as a mosaic of four images (training); the mosaic is made
            at ``image_size`` and then goes through ``transforms``.
        seed: run seed for the per-sample generators.
        strict: raise :class:`DataError` for a broken image instead of returning :class:`Skipped`.
        fill / mean: canvas colour of the default letterbox and of mosaics.
    """

    def __init__(
        self,
        dataset: DetectionDataset,
        image_size: int | tuple[int, int],
        transforms: Transform | None = None,
        *,
        mosaic: float = 0.0,
        seed: int = 0,
        strict: bool = False,
        fill: str | float | Sequence[float] = "mean",
        mean: Sequence[float] = IMAGENET_MEAN,
    ) -> None:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if len(size) != 2 or min(size) <= 0:
            raise DataError(f"image_size={image_size!r}: give (height, width) or one positive int")
        self.dataset = dataset
        self.image_size: tuple[int, int] = (int(size[0]), int(size[1]))
        self.transforms = transforms if transforms is not None else eval_transforms(self.image_size, fill=fill,
                                                                                      mean=mean)
        self.mosaic_prob = float(mosaic)
        self.mosaic = Mosaic(self.image_size, resolve_fill(fill, mean)) if mosaic > 0 else None
        self.seed = int(seed)
        self.strict = strict

    def __len__(self) -> int:
        return len(self.dataset.records)

    def load_sample(self, index: int) -> Sample:
        """Decode record ``index`` into a :class:`Sample` in original-image pixels (invalid boxes dropped)."""
        rec = self.dataset.records[index]
        image = torch.from_numpy(np.ascontiguousarray(read_image(rec.path).transpose(2, 0, 1)))
        keep = valid_box_mask(rec.boxes)
        assert rec.ignore is not None
        h, w = int(image.shape[1]), int(image.shape[2])
        return Sample(
            image=image,
            boxes=torch.from_numpy(rec.boxes[keep].copy()),
            labels=torch.from_numpy(rec.labels[keep].copy()),
            ignore=torch.from_numpy(rec.ignore[keep].copy()),
            scale=1.0,
            orig_size=(h, w),
        )

    def _mosaic_partners(self, index: int, gen: torch.Generator) -> list[Sample] | None:
        others = torch.randint(0, len(self), (3,), generator=gen).tolist()
        try:
            return [self.load_sample(i) for i in others]
        except DataError:
            if self.strict:
                raise
            return None  # a partner is broken: it is reported when its own turn comes; use a plain sample

    def __getitem__(self, key: int | tuple[int, int]) -> Item | Skipped:
        index, epoch = (key, 0) if isinstance(key, int) else (int(key[0]), int(key[1]))
        gen = torch.Generator().manual_seed(sample_seed(self.seed, epoch, index))
        try:
            sample = self.load_sample(index)
        except DataError as err:
            if self.strict:
                raise
            return Skipped(index, str(self.dataset.records[index].path), str(err))
        if self.mosaic is not None and float(torch.rand((), generator=gen)) < self.mosaic_prob:
            partners = self._mosaic_partners(index, gen)
            if partners is not None:
                sample = self.mosaic([sample, *partners], gen)
        sample = self.transforms(sample, gen)
        if tuple(sample.image.shape[-2:]) != self.image_size:
            raise DataError(f"the transforms produced a {tuple(sample.image.shape[-2:])} image for input size "
                            f"{self.image_size}; end the pipeline with ScaleJitter or Letterbox at that size")
        targets = Targets(sample.boxes.float(), sample.labels.long(), sample.ignore.bool())
        meta = ImageMeta(orig_size=sample.orig_size, input_size=self.image_size, scale=float(sample.scale))
        dropped = int((~valid_box_mask(self.dataset.records[index].boxes)).sum())
        return Item(sample.image, targets, meta, index, dropped)


__all__ = ["TorchDataset", "Item", "Skipped", "sample_seed", "valid_box_mask"]
