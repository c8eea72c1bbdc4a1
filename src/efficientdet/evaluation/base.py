"""What every evaluator shares: collecting detections per image, and gathering them across processes.

An evaluator follows the detectron2 pattern::

    evaluator.reset()
    for images, detections in ...:          # images: dataset indices or ImageRecords
        evaluator.update(images, detections)
    metrics = evaluator.compute()           # dict[str, float]

Detections arrive in original-image pixels (``xyxy``) with labels ``0 .. K-1``, exactly as
:class:`~efficientdet.structures.Detections` holds them. The evaluator stores them as numpy arrays on the
CPU (one device-to-host copy per ``update``), so a long evaluation does not hold GPU memory.

Only the images passed to ``update`` are evaluated: their ground truth counts (misses included), the rest of
the dataset is left out. This lets a partial run (``--max-images``) report meaningful numbers.

Distributed evaluation: when a ``torch.distributed`` process group with more than one process is
initialised, ``compute`` first gathers every rank's detections with ``all_gather_object`` (each rank then
computes the same metrics). An image seen by several ranks (``DistributedSampler`` pads the last batch by
repeating images) is counted once. A single process never touches ``torch.distributed``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from efficientdet.data.records import DetectionDataset, ImageRecord
from efficientdet.errors import ConfigError, DataError
from efficientdet.structures import Detections


@dataclass
class ImageDetections:
    """The detections of one dataset image, as numpy arrays on the CPU.

    ``boxes``: ``[N, 4]`` float32 ``xyxy`` original-image pixels. ``scores``: ``[N]`` float32.
    ``labels``: ``[N]`` int64 ``0 .. K-1``.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


ImageRefs = Sequence[int] | Sequence[ImageRecord] | torch.Tensor | np.ndarray


class DetectionEvaluator(ABC):
    """Collects :class:`Detections` per dataset image; subclasses turn them into metrics in :meth:`compute`.

    ``primary_metric``: the key of :meth:`compute`'s result that ranks models (training keeps the checkpoint
    with its highest value as ``best.pth``).
    """

    primary_metric = "mAP"

    def __init__(self, dataset: DetectionDataset) -> None:
        if not isinstance(dataset, DetectionDataset):
            raise ConfigError(
                f"evaluators are built from a DetectionDataset, got {type(dataset).__name__}; "
                "parse the annotations first (efficientdet.data)"
            )
        if dataset.num_classes == 0:
            raise DataError("the dataset has no classes; an evaluator needs at least one class name")
        self.dataset = dataset
        self._index_of_id: dict[int, int] | None = None
        self._seen: list[tuple[int, ImageDetections]] = []

    # ------------------------------------------------------------------ collecting
    def reset(self) -> None:
        """Forget every detection collected so far (call before each evaluation run)."""
        self._seen = []

    def update(self, images: ImageRefs, detections: Sequence[Detections]) -> None:
        """Add the detections of a batch.

        ``images``: one entry per image, either its index in ``dataset.records`` or its
        :class:`ImageRecord`. ``detections``: one :class:`Detections` per image (``xyxy`` original-image
        pixels, labels ``0 .. K-1``).
        """
        indices = self._resolve_indices(images)
        if len(indices) != len(detections):
            raise ConfigError(
                f"update() got {len(indices)} images but {len(detections)} Detections; pass one Detections per image"
            )
        if not indices:
            return
        for index, dets in zip(indices, _to_numpy(detections, self.dataset.num_classes), strict=True):
            self._seen.append((index, dets))

    @property
    def num_images(self) -> int:
        """Number of distinct images collected by this process so far."""
        return len({index for index, _ in self._seen})

    def _resolve_indices(self, images: ImageRefs) -> list[int]:
        if isinstance(images, (torch.Tensor, np.ndarray)):
            raw: list[Any] = (
                np.asarray(images.cpu() if isinstance(images, torch.Tensor) else images).reshape(-1).tolist()
            )
        else:
            raw = list(images)
        n = len(self.dataset.records)
        out = []
        for item in raw:
            if isinstance(item, ImageRecord):
                out.append(self._index_of_record(item))
                continue
            if isinstance(item, bool) or not isinstance(item, (int, np.integer)):
                raise ConfigError(
                    f"update() images must be dataset indices (int) or ImageRecords, got {type(item).__name__}"
                )
            if not 0 <= int(item) < n:
                raise ConfigError(f"image index {int(item)} is out of range for a dataset of {n} images")
            out.append(int(item))
        return out

    def _index_of_record(self, record: ImageRecord) -> int:
        if self._index_of_id is None:
            mapping = {r.image_id: i for i, r in enumerate(self.dataset.records)}
            if len(mapping) != len(self.dataset.records):
                raise DataError(
                    "the dataset has repeated image ids, so an ImageRecord does not identify one image; "
                    "pass dataset indices to update() instead"
                )
            self._index_of_id = mapping
        index = self._index_of_id.get(record.image_id)
        if index is None:
            raise ConfigError(f"image id {record.image_id} ({record.path}) is not in the evaluator's dataset")
        return index

    # ------------------------------------------------------------------ computing
    def collected(self) -> tuple[list[int], list[ImageDetections]]:
        """Every image collected on every process, each once, in first-seen order.

        Returns ``(indices, detections)``: dataset indices and the matching :class:`ImageDetections`.
        Gathers across processes when a process group of more than one process is initialised.
        """
        per_rank = [self._seen]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, self._seen)
            per_rank = gathered
        indices: list[int] = []
        dets: list[ImageDetections] = []
        done: set[int] = set()
        for seen in per_rank:
            for index, d in seen:
                if index not in done:
                    done.add(index)
                    indices.append(index)
                    dets.append(d)
        return indices, dets

    @abstractmethod
    def compute(self) -> dict[str, float]:
        """The metrics of every image collected so far (on all processes)."""


def ignore_flags(record: ImageRecord) -> np.ndarray:
    """``[M]`` bool ``ignore`` flags of a record (all False when it has none)."""
    if record.ignore is None:
        return np.zeros(len(record.labels), dtype=bool)
    return np.asarray(record.ignore, dtype=bool)


def _to_numpy(detections: Sequence[Detections], num_classes: int) -> list[ImageDetections]:
    """Copy a batch of :class:`Detections` to the CPU with one transfer per field; check shapes and labels."""
    for i, d in enumerate(detections):
        if not isinstance(d, Detections):
            raise ConfigError(f"update() expects Detections objects, got {type(d).__name__} at position {i}")
        n = d.scores.shape[0] if d.scores.dim() == 1 else -1
        if d.boxes.dim() != 2 or d.boxes.shape[-1] != 4 or n < 0 or d.boxes.shape[0] != n or d.labels.shape != (n,):
            raise DataError(
                f"Detections at position {i} has boxes {tuple(d.boxes.shape)}, scores {tuple(d.scores.shape)} and "
                f"labels {tuple(d.labels.shape)}; expected [N, 4], [N] and [N]"
            )
    lengths = [len(d) for d in detections]
    boxes = torch.cat([d.boxes.detach().reshape(-1, 4) for d in detections]).to("cpu", torch.float32).numpy()
    scores = torch.cat([d.scores.detach() for d in detections]).to("cpu", torch.float32).numpy()
    labels = torch.cat([d.labels.detach() for d in detections]).to("cpu", torch.int64).numpy()
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"detection labels span {labels.min()}..{labels.max()} but the dataset has {num_classes} classes "
            f"(labels 0..{num_classes - 1}); evaluate with a model trained on this dataset's classes"
        )
    splits = np.cumsum(lengths)[:-1]
    return [
        ImageDetections(b, s, lab)
        for b, s, lab in zip(np.split(boxes, splits), np.split(scores, splits), np.split(labels, splits), strict=True)
    ]


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, digits: int = 3) -> str:
    """Plain-text table of ``rows`` (dicts); floats are printed with ``digits`` decimals, NaN as ``-``."""
    if not rows:
        return ""
    columns = list(columns) if columns is not None else list(rows[0])

    def cell(v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            return "-" if np.isnan(v) else f"{v:.{digits}f}"
        return str(v)

    body = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(line[j]) for line in body)) for j, c in enumerate(columns)]
    lines = [
        "  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(columns, widths, strict=True)))
    ]
    lines.append("  ".join("-" * w for w in widths))
    for line in body:
        lines.append(
            "  ".join(v.ljust(w) if j == 0 else v.rjust(w) for j, (v, w) in enumerate(zip(line, widths, strict=True)))
        )
    return "\n".join(lines)
