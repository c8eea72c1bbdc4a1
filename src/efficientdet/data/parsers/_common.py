"""Helpers shared by the dataset parsers and writers."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from efficientdet.data.records import DetectionDataset, ImageRecord
from efficientdet.errors import DataError

BACKGROUND_NAMES = frozenset({"_background_", "__background__", "background", "bg", "__bg__"})
"""Class names that mark a background slot (EfficientDet has none; parsers drop such empty classes)."""


@dataclass(frozen=True)
class ParseProblem:
    """An annotation a parser could not use as given (``kind``: ``unknown_class`` | ``bad_row`` | ``missing_image``).

    ``ids`` lists the offending dataset ids (class ids for ``unknown_class``) so the checker can tell a
    0- vs 1-based shift from other mistakes.
    """

    kind: str
    file: str
    message: str
    ids: tuple[int | str, ...] = ()


class Problems:
    """Collects :class:`ParseProblem` when a list is given, else raises them as :class:`DataError`."""

    def __init__(self, sink: list[ParseProblem] | None) -> None:
        self.sink = sink

    def add(self, kind: str, file: str | os.PathLike[str], message: str, ids: tuple[int | str, ...] = ()) -> None:
        if self.sink is None:
            raise DataError(f"{file}: {message}")
        self.sink.append(ParseProblem(kind, str(file), message, ids))


def make_record(
    path: Path,
    image_id: int,
    boxes: list[list[float]] | np.ndarray,
    labels: list[int],
    ignore: list[bool] | None = None,
    size: tuple[int, int] | None = None,
    **extra: object,
) -> ImageRecord:
    """An :class:`ImageRecord` from Python lists (float64 maths done by the caller, cast to float32 here)."""
    return ImageRecord(
        path=path,
        image_id=image_id,
        boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4).astype(np.float32),
        labels=np.asarray(labels, dtype=np.int64),
        ignore=None if ignore is None else np.asarray(ignore, dtype=bool),
        size=size,
        **extra,  # type: ignore[arg-type]
    )


def relative_name(record: ImageRecord, root: Path | None) -> str:
    """The image path relative to ``root`` (POSIX separators) when it lies below it, else the absolute path."""
    path = record.path
    if root is not None:
        try:
            return path.resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            pass
    return path.as_posix()


def place_image(src: Path, dst: Path, images: str) -> None:
    """Put an image where a writer's layout expects it: ``images`` = ``copy`` | ``symlink`` | ``none``."""
    if images == "none":
        return
    if images not in ("copy", "symlink"):
        raise DataError(f"images={images!r}: use 'copy', 'symlink' or 'none'")
    if dst.exists() or dst.is_symlink():
        if dst.resolve() == src.resolve():
            return
        dst.unlink()
    dst.parent.mkdir(parents=True, exist_ok=True)
    if images == "copy":
        shutil.copyfile(src, dst)
    else:
        dst.symlink_to(src.resolve())


def check_writable(dataset: DetectionDataset, what: str) -> None:
    """Fail early when a dataset's labels cannot be written (a label outside ``0 .. K-1``)."""
    k = dataset.num_classes
    for rec in dataset.records:
        if len(rec.labels) and (rec.labels.min() < 0 or rec.labels.max() >= k):
            raise DataError(
                f"{rec.path}: label {int(rec.labels.max())} outside 0..{k - 1}; cannot write {what}. "
                "Fix the labels or the class list first (efficientdet data check shows all such images)"
            )


def fmt_number(value: float) -> str:
    """Shortest text for a coordinate that reads back to the same float64 (integers without ``.0``)."""
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)
