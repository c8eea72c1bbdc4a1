"""Data structures passed between the parts of the library.

Box format everywhere inside the library: ``xyxy``, float32, absolute pixels of the image or tensor the
boxes belong to. Image sizes are ``(height, width)``. Labels are int64 ``0 .. num_classes - 1``.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor

from efficientdet.errors import ConfigError


class HeadOutputs(NamedTuple):
    """Raw network outputs, flattened once in anchor order.

    ``cls_logits``: ``[B, N, K]`` class logits (before sigmoid).
    ``box_deltas``: ``[B, N, 4]`` box regression ``(ty, tx, th, tw)`` of the official box coder.

    ``N`` enumerates levels ``P_min .. P_max``, then row ``y``, column ``x``, then anchor
    ``a = scale * n_ratios + ratio`` (the official and effdet order).
    """

    cls_logits: Tensor
    box_deltas: Tensor


@dataclass(frozen=True)
class ImageMeta:
    """How one original image was placed in the network input.

    The image was resized by ``scale`` (input pixels per original pixel) and placed at the top-left of
    an ``input_size`` canvas; the rest is padding. ``orig_size`` and ``input_size`` are ``(H, W)``.
    """

    orig_size: tuple[int, int]
    input_size: tuple[int, int]
    scale: float

    @property
    def valid_size(self) -> tuple[int, int]:
        """``(H, W)`` of the part of the input covered by the image (not padding).

        The letterbox truncates ``size * scale`` computed in float32, as the official code does.
        """
        import numpy as np

        h, w = self.orig_size
        s = np.float32(self.scale)
        return (min(self.input_size[0], int(np.float32(h) * s)), min(self.input_size[1], int(np.float32(w) * s)))


@dataclass
class ImageBatch:
    """A preprocessed batch: ``pixels [B, 3, H, W]`` (float, normalised) and one :class:`ImageMeta` per image."""

    pixels: Tensor
    metas: list[ImageMeta]

    def to(self, *args: Any, **kwargs: Any) -> ImageBatch:
        return ImageBatch(self.pixels.to(*args, **kwargs), self.metas)


@dataclass
class Targets:
    """Ground truth of one image, in network-input pixels.

    ``boxes``: ``[M, 4]`` float32 xyxy. ``labels``: ``[M]`` int64 in ``0 .. K-1``.
    ``ignore``: ``[M]`` bool, regions (crowd, difficult) whose anchors count neither as positive nor
    negative. ``M`` may be 0.
    """

    boxes: Tensor
    labels: Tensor
    ignore: Tensor | None = None

    def __post_init__(self) -> None:
        if self.ignore is None:
            self.ignore = torch.zeros(self.labels.shape, dtype=torch.bool, device=self.labels.device)

    def to(self, device: torch.device | str) -> Targets:
        ignore = None if self.ignore is None else self.ignore.to(device)
        return Targets(self.boxes.to(device), self.labels.to(device), ignore)


class Detection(NamedTuple):
    """One row of :class:`Detections`: ``box`` ``(x1, y1, x2, y2)`` in original-image pixels, ``score``,
    ``label`` (class index ``0 .. K-1``) and ``name`` (the class name, or the index as text)."""

    box: tuple[float, float, float, float]
    score: float
    label: int
    name: str


@dataclass
class Detections:
    """Detections of one image.

    ``boxes``: ``[N, 4]`` float32 xyxy in original-image pixels. ``scores``: ``[N]`` float32 in ``[0, 1]``,
    sorted descending. ``labels``: ``[N]`` int64 in ``0 .. K-1``. ``label_names``: the name of every
    class index, when known.

    A sequence of detections, as ``supervision.Detections``: ``len(det)``; ``det[i]``, ``det[a:b]``,
    ``det[det.scores > 0.5]`` and ``det[index_tensor]`` select rows (a new ``Detections``; an int keeps one);
    ``for row in det`` yields :class:`Detection` rows. Converters: :meth:`to_torchvision` /
    :meth:`from_torchvision` (``{"boxes", "labels", "scores"}`` dicts), :meth:`to_supervision` /
    :meth:`from_supervision` (the optional ``supervision`` package), :meth:`to_coco`, :meth:`to_dict`.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    label_names: tuple[str, ...] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def __getitem__(self, index: int | slice | Tensor | Any) -> Detections:
        """The rows ``index`` selects (int, slice, bool mask, index tensor / list / array) as ``Detections``."""
        if isinstance(index, Tensor) and index.ndim == 0 and index.dtype != torch.bool:
            index = int(index)
        if isinstance(index, numbers.Integral) and not isinstance(index, bool):  # numpy integers too
            if not -len(self) <= index < len(self):
                raise IndexError(f"detection index {index} is out of range for {len(self)} detections")
            index = slice(int(index) % len(self), int(index) % len(self) + 1)
        if isinstance(index, slice):  # as Python's (tensors take no negative steps)
            index = torch.tensor(list(range(len(self))[index]), dtype=torch.int64)
        return self.filter(index)

    def __iter__(self) -> Iterator[Detection]:
        names = self.names
        for i, (box, score, label) in enumerate(zip(self.boxes.tolist(), self.scores.tolist(), self.labels.tolist())):
            yield Detection(tuple(box), score, label, names[i])  # type: ignore[arg-type]

    @property
    def names(self) -> list[str]:
        """Class name of each detection (the label index as text when names are unknown)."""
        if self.label_names is None:
            return [str(int(i)) for i in self.labels]
        return [self.label_names[int(i)] for i in self.labels]

    def to(self, device: torch.device | str) -> Detections:
        return Detections(self.boxes.to(device), self.scores.to(device), self.labels.to(device), self.label_names)

    def filter(self, keep: Tensor) -> Detections:
        """A new ``Detections`` with the rows selected by the bool mask or index tensor ``keep``."""
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep], self.label_names)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python lists: ``{"boxes": [[x1, y1, x2, y2], ...], "scores": [...], "labels": [...], "names": [...]}``."""
        return {
            "boxes": self.boxes.tolist(),
            "scores": self.scores.tolist(),
            "labels": self.labels.tolist(),
            "names": self.names,
        }

    def to_torchvision(self, label_offset: int = 0) -> dict[str, Tensor]:
        """A torchvision-style dict ``{"boxes": [N, 4] float32 xyxy, "labels": [N] int64, "scores": [N] float32}``
        (the output format of torchvision's detection models, and what torchmetrics' mAP takes).

        ``label_offset``: added to the labels; torchvision's own detectors reserve label 0 for the background,
        so their class ``c`` is ``label + 1``.
        """
        return {"boxes": self.boxes, "labels": self.labels + label_offset, "scores": self.scores}

    @classmethod
    def from_torchvision(cls, target: Mapping[str, Any], label_names: Sequence[str] | None = None,
                         label_offset: int = 0) -> Detections:
        """``Detections`` from a torchvision-style dict (``boxes`` xyxy pixels, ``labels``, optional ``scores``:
        1 for ground-truth targets); rows are sorted by score. ``label_offset`` is subtracted from the labels
        (1 for the outputs of torchvision's detectors, whose label 0 is the background)."""
        missing = [k for k in ("boxes", "labels") if k not in target]
        if missing:
            raise ConfigError(f"a torchvision detection dict needs 'boxes' and 'labels'; this one lacks {missing}")
        boxes = torch.as_tensor(target["boxes"], dtype=torch.float32).reshape(-1, 4)
        labels = torch.as_tensor(target["labels"], dtype=torch.int64).reshape(-1) - label_offset
        scores = target.get("scores")
        scores = torch.ones(len(labels)) if scores is None else torch.as_tensor(scores, dtype=torch.float32).reshape(-1)
        return cls._sorted(boxes, scores, labels, label_names, "torchvision dict")

    def to_supervision(self) -> Any:
        """A ``supervision.Detections`` (``xyxy``, ``confidence``, ``class_id``, and ``data["class_name"]``).

        Needs the optional ``supervision`` package: ``pip install 'efficientdet[supervision]'``.
        """
        import numpy as np

        sv = _import_supervision()
        return sv.Detections(xyxy=self.boxes.detach().cpu().numpy().astype(np.float32).reshape(-1, 4),
                             confidence=self.scores.detach().cpu().numpy().astype(np.float32),
                             class_id=self.labels.detach().cpu().numpy().astype(np.int64),
                             data={"class_name": np.array(self.names, dtype=str)})

    @classmethod
    def from_supervision(cls, detections: Any, label_names: Sequence[str] | None = None) -> Detections:
        """``Detections`` from a ``supervision.Detections`` (rows sorted by confidence; confidence 1 when it
        has none). ``label_names`` defaults to the names in its ``data["class_name"]``, when present."""
        if detections.class_id is None:
            raise ConfigError("the supervision Detections have no class_id; set class_id before converting")
        boxes = torch.as_tensor(detections.xyxy, dtype=torch.float32).reshape(-1, 4)
        labels = torch.as_tensor(detections.class_id, dtype=torch.int64).reshape(-1)
        conf = detections.confidence
        scores = torch.ones(len(labels)) if conf is None else torch.as_tensor(conf, dtype=torch.float32).reshape(-1)
        names = detections.data.get("class_name") if isinstance(detections.data, Mapping) else None
        if label_names is None and names is not None and len(labels):
            by_label = dict(zip(labels.tolist(), (str(n) for n in names)))
            label_names = tuple(by_label.get(i, str(i)) for i in range(max(by_label) + 1))
        return cls._sorted(boxes, scores, labels, label_names, "supervision Detections")

    @classmethod
    def _sorted(cls, boxes: Tensor, scores: Tensor, labels: Tensor, label_names: Sequence[str] | None,
                source: str) -> Detections:
        if not len(boxes) == len(scores) == len(labels):
            raise ConfigError(f"the {source} has {len(boxes)} boxes, {len(scores)} scores and {len(labels)} labels; "
                              "give one of each per detection")
        names = None if label_names is None else tuple(str(n) for n in label_names)
        if len(labels) and (int(labels.min()) < 0 or (names is not None and int(labels.max()) >= len(names))):
            raise ConfigError(f"the {source} has labels {int(labels.min())}..{int(labels.max())}; labels are class "
                              f"indices 0..{'K-1' if names is None else len(names) - 1} (set label_offset for "
                              "1-based labels)")
        order = torch.argsort(scores, descending=True, stable=True)
        return cls(boxes[order], scores[order], labels[order], names)

    def to_coco(self, image_id: int, category_ids: list[int] | None = None) -> list[dict[str, Any]]:
        """COCO results rows (``bbox`` as ``[x, y, w, h]``); ``category_ids[label]`` maps labels to dataset ids."""
        rows = []
        for box, score, label in zip(self.boxes.tolist(), self.scores.tolist(), self.labels.tolist()):
            x1, y1, x2, y2 = box
            cat = category_ids[label] if category_ids is not None else label
            rows.append(
                {
                    "image_id": image_id,
                    "category_id": int(cat),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": float(score),
                }
            )
        return rows


def _import_supervision() -> Any:
    try:
        import supervision
    except ImportError as err:
        raise ConfigError("converting to supervision needs the supervision package: pip install supervision "
                          "(or pip install 'efficientdet[supervision]')") from err
    return supervision


__all__ = ["HeadOutputs", "ImageMeta", "ImageBatch", "Targets", "Detection", "Detections"]
