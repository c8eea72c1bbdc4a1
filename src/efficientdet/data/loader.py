"""Batches for training and evaluation: worker processes, pinned memory, sharding, exact resumption.

``create_loader`` returns a :class:`DetectionLoader`; iterating it yields :class:`Batch` objects:
``images [B, 3, H, W]`` (uint8 for training, float32 0..255 for evaluation: the letterbox of
:class:`~efficientdet.predict.Predictor`), one :class:`~efficientdet.structures.Targets` and
:class:`~efficientdet.structures.ImageMeta` per image, and the record indices. Normalise on the device with
:class:`~efficientdet.data.preprocess.Normalizer`.

Determinism: :class:`DetectionSampler` shuffles with ``seed + epoch`` and hands each worker
``(index, epoch)`` pairs; the dataset seeds every sample from ``(seed, epoch, index)``. So
``loader.set_epoch(e)`` gives the same batches, with the same augmentations, in every run, with any
number of workers; ``set_epoch(e, start_batch=k)`` resumes in the middle of an epoch.

Broken images: each batch carries the files its workers had to skip (``Batch.skipped``) and the number of
unusable boxes it left out (``Batch.dropped_boxes``). The loader logs each skipped file once (``logging``
warning of ``efficientdet.data.loader``, visible under ``PYTHONWARNINGS=ignore``) and keeps the epoch's list
in ``loader.skipped``. The counts travel inside the batches, so they are right for any number of worker
processes. A batch whose images were all skipped is still yielded, empty (``len(batch) == 0``), so that batch
positions stay those of the sampler (exact resumption); consumers skip it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from efficientdet.config import IMAGENET_MEAN, AugmentConfig
from efficientdet.data.dataset import Item, Skipped, TorchDataset
from efficientdet.data.records import DetectionDataset
from efficientdet.data.transforms import Transform, train_transforms
from efficientdet.errors import DataError
from efficientdet.structures import ImageMeta, Targets

log = logging.getLogger(__name__)

RANDAUGMENT = (2, 9.0)
"""RandAugment's ``(num_ops, magnitude)`` when ``AugmentConfig.randaugment`` is on."""


@dataclass
class Batch:
    """A collated batch.

    ``images``: ``[B, 3, H, W]``, uint8 (training) or float32 0..255 (evaluation, Predictor's letterbox). ``targets`` / ``metas``: one per image. ``indices``: ``int64 [B]``
    record indices. ``skipped``: ``(path, reason)`` of the images of this batch that could not be loaded.
    ``dropped_boxes``: unusable boxes (not finite, empty) of this batch's records that were left out.
    """

    images: Tensor
    targets: list[Targets]
    metas: list[ImageMeta]
    indices: Tensor
    skipped: list[tuple[str, str]] = field(default_factory=list)
    dropped_boxes: int = 0

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def pin_memory(self) -> Batch:
        """Called by the DataLoader's pinning thread when ``pin_memory=True``."""
        return Batch(
            self.images.pin_memory(),
            [Targets(t.boxes.pin_memory(), t.labels.pin_memory(), t.ignore.pin_memory())  # type: ignore[union-attr]
             for t in self.targets],
            self.metas,
            self.indices,
            self.skipped,
            self.dropped_boxes,
        )

    def to(self, device: torch.device | str, non_blocking: bool = True) -> Batch:
        """The batch on ``device`` (asynchronous copies from pinned memory)."""
        return Batch(
            self.images.to(device, non_blocking=non_blocking),
            [Targets(t.boxes.to(device, non_blocking=non_blocking), t.labels.to(device, non_blocking=non_blocking),
                     t.ignore.to(device, non_blocking=non_blocking))  # type: ignore[union-attr]
             for t in self.targets],
            self.metas,
            self.indices,
            self.skipped,
            self.dropped_boxes,
        )


def collate(items: Sequence[Item | Skipped]) -> Batch:
    """Stack :class:`Item` images into a batch; :class:`Skipped` entries are dropped and listed in ``skipped``."""
    good = [it for it in items if isinstance(it, Item)]
    skipped = [(it.path, it.reason) for it in items if isinstance(it, Skipped)]
    if good:
        images = torch.stack([it.image for it in good])
    else:
        images = torch.zeros((0, 3, 0, 0), dtype=torch.uint8)
    return Batch(
        images=images,
        targets=[it.targets for it in good],
        metas=[it.meta for it in good],
        indices=torch.tensor([it.index for it in good], dtype=torch.int64),
        skipped=skipped,
        dropped_boxes=sum(it.dropped_boxes for it in good),
    )


class DetectionSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, epoch)`` for one process's share of an epoch.

    ``shuffle``: a permutation seeded with ``seed + epoch``. With ``num_replicas > 1`` the index list is padded
    by wrapping around to a multiple of ``num_replicas`` (as ``DistributedSampler``) and rank ``rank`` takes every
    ``num_replicas``-th entry, so all ranks run the same number of steps.
    """

    def __init__(self, size: int, *, shuffle: bool, seed: int = 0, num_replicas: int = 1, rank: int = 0) -> None:
        if not 0 <= rank < num_replicas:
            raise DataError(f"rank {rank} outside 0..{num_replicas - 1}")
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch (its permutation and sample seeds) and skip its first ``start`` samples of this rank."""
        self.epoch, self.start = int(epoch), int(start)

    def indices(self) -> list[int]:
        """This rank's record indices for the current epoch (before ``start`` is applied)."""
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        else:
            order = list(range(self.size))
        if self.num_replicas > 1 and order:
            total = math.ceil(len(order) / self.num_replicas) * self.num_replicas
            order = (order * math.ceil(total / len(order)))[:total]
            order = order[self.rank::self.num_replicas]
        return order

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in self.indices()[self.start:]:
            yield (index, self.epoch)

    def __len__(self) -> int:
        return max(0, math.ceil(self.size / self.num_replicas) - self.start) if self.num_replicas > 1 else \
            max(0, self.size - self.start)


class DetectionLoader:
    """Iterable of :class:`Batch` over a :class:`TorchDataset` (see the module docstring).

    ``skipped``: ``(path, reason)`` of every image skipped so far in the current epoch.
    """

    def __init__(self, loader: DataLoader, sampler: DetectionSampler) -> None:
        self.loader = loader
        self.sampler = sampler
        self.skipped: list[tuple[str, str]] = []
        self._warned: set[str] = set()

    @property
    def dataset(self) -> TorchDataset:
        return self.loader.dataset  # type: ignore[return-value]

    @property
    def batch_size(self) -> int:
        return int(self.loader.batch_size or 1)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch; ``start_batch`` skips the batches of this epoch already trained on (resume)."""
        self.sampler.set_epoch(epoch, start_batch * self.batch_size)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        self.skipped = []
        for batch in self.loader:
            for path, reason in batch.skipped:
                self.skipped.append((path, reason))
                if path not in self._warned:
                    self._warned.add(path)
                    log.warning("skipping image %s: %s", path, reason)
            yield batch


def _dist_info(distributed: bool | tuple[int, int]) -> tuple[int, int]:
    if isinstance(distributed, tuple):
        return int(distributed[0]), int(distributed[1])
    if distributed and torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    if distributed:
        raise DataError("distributed=True but torch.distributed is not initialised; call init_process_group first "
                        "or pass distributed=(world_size, rank)")
    return 1, 0


def create_loader(
    dataset: DetectionDataset | TorchDataset,
    batch_size: int,
    train: bool,
    image_size: int | tuple[int, int],
    transforms: Transform | None = None,
    *,
    num_workers: int = 0,
    distributed: bool | tuple[int, int] = False,
    pin_memory: bool = False,
    seed: int = 0,
    strict: bool = False,
    drop_last: bool | None = None,
    augment: AugmentConfig | None = None,
    fill: str | float | Sequence[float] = "mean",
    mean: Sequence[float] = IMAGENET_MEAN,
    prefetch_factor: int = 2,
    persistent_workers: bool = True,
) -> DetectionLoader:
    """A loader of image batches (uint8 for training, float32 0..255 for evaluation) at ``image_size`` for training (``train=True``) or evaluation.

    Args:
        dataset: parsed records, or a ready :class:`TorchDataset` (then ``transforms`` ... ``mean`` are unused).
        batch_size: images per batch and per process.
        train: shuffle, drop the last partial batch (unless ``drop_last`` says otherwise) and augment (``augment``
            unless ``transforms`` is given); else letterbox only, in order.
        image_size: network input ``(H, W)`` or one int.
        transforms: a custom ``(Sample, Generator) -> Sample`` pipeline that ends at ``image_size``.
        num_workers: worker processes (0: load in this process).
        distributed: ``True`` to shard by the initialised ``torch.distributed`` group, or ``(world_size, rank)``.
        pin_memory: page-locked batches for asynchronous copies to the GPU.
        seed: run seed; with the epoch it fixes order and augmentation (see the module docstring).
        strict: raise :class:`DataError` naming a broken image instead of skipping it.
        augment: the training augmentation, the run's :class:`~efficientdet.config.AugmentConfig` slice
            (default: the official one, :func:`train_transforms`, padding with ``fill``); unused for evaluation.
    """
    if batch_size < 1:
        raise DataError(f"batch_size={batch_size}: must be at least 1")
    if isinstance(dataset, TorchDataset):
        torch_ds = dataset
    else:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        aug = augment if augment is not None else AugmentConfig()
        if transforms is None and train:
            transforms = train_transforms(size, scale_range=(aug.scale_min, aug.scale_max), hflip=aug.hflip,  # type: ignore[arg-type]
                                          fill=fill, mean=mean, autoaugment=aug.autoaugment,
                                          randaugment=RANDAUGMENT if aug.randaugment else None,
                                          random_erasing=aug.random_erasing)
        torch_ds = TorchDataset(dataset, size, transforms, mosaic=aug.mosaic if train else 0.0, seed=seed,  # type: ignore[arg-type]
                                strict=strict, fill=fill, mean=mean)
    world, rank = _dist_info(distributed)
    sampler = DetectionSampler(len(torch_ds), shuffle=train, seed=seed, num_replicas=world, rank=rank)
    kwargs = {}
    if num_workers > 0:
        kwargs = {"prefetch_factor": prefetch_factor, "persistent_workers": persistent_workers}
    loader = DataLoader(
        torch_ds,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        drop_last=train if drop_last is None else drop_last,
        generator=torch.Generator().manual_seed(seed),
        **kwargs,  # type: ignore[arg-type]
    )
    return DetectionLoader(loader, sampler)


__all__ = ["Batch", "collate", "DetectionSampler", "DetectionLoader", "create_loader"]
