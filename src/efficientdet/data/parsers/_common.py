"""Helpers shared by the dataset parsers and writers."""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from efficientdet.data.records import DetectionDataset, ImageRecord
from efficientdet.errors import DataError

BACKGROUND_NAMES = frozenset({"_background_", "__background__", "background", "bg", "__bg__"})
"""Class names that mark a background slot (EfficientDet has none; parsers drop such empty classes)."""


NOTE_KINDS = frozenset({"bad_size", "orphan_label"})
"""Problem kinds that lose nothing (a size read from the image instead, a label file without image): the checker
shows them as warnings, and a strict parse (no problem list) logs them instead of raising."""

FLOAT32_MAX = 3.4028234663852886e38
INT64_MAX = 2**63 - 1
_log = logging.getLogger("efficientdet.data")


@dataclass(frozen=True)
class ParseProblem:
    """An entry a parser could not use as given.

    ``kind``: ``unknown_class`` | ``bad_row`` | ``missing_image`` | ``duplicate_id`` (errors: the entry is
    dropped) or one of :data:`NOTE_KINDS` (warnings). ``message`` names the entry (annotation id, line, XML
    object, key) and says what is wrong. ``ids`` lists the offending dataset ids (class ids for
    ``unknown_class``) so the checker can tell a 0- vs 1-based shift from other mistakes.
    """

    kind: str
    file: str
    message: str
    ids: tuple[int | str, ...] = ()


class EntryError(DataError):
    """One field of one entry that cannot be used; :meth:`Problems.entry` adds the file and entry and reports it."""


class Problems:
    """Collects :class:`ParseProblem` when a list is given, else raises them as :class:`DataError` (except
    :data:`NOTE_KINDS` and ``missing_image``, which are logged: the image is left out, as the loader leaves out
    images it cannot decode).

    This is the one place where a parser's per-entry failures become problems: parsers convert fields with
    :func:`as_number` / :func:`as_int` / :func:`get_field` (which raise :class:`EntryError`) inside
    ``with problems.entry(file, where):``, so a bad entry is reported and skipped, and the next one is read.
    """

    def __init__(self, sink: list[ParseProblem] | None) -> None:
        self.sink = sink

    def add(self, kind: str, file: str | os.PathLike[str], message: str, ids: tuple[int | str, ...] = ()) -> None:
        if self.sink is not None:
            self.sink.append(ParseProblem(kind, str(file), message, ids))
        elif kind in NOTE_KINDS or kind == "missing_image":
            # nothing lost, or an unreadable image: left out as the loader leaves out images it cannot decode
            _log.warning("%s: %s", file, message)
        else:
            raise DataError(f"{file}: {message}. Run 'efficientdet data check' on the dataset to list every problem")

    @contextmanager
    def entry(self, file: str | os.PathLike[str], where: str, kind: str = "bad_row") -> Iterator[None]:
        """Report an :class:`EntryError` raised in the block as ``kind`` of ``file`` at ``where``; skip the rest of
        the block (the entry) and go on."""
        try:
            yield
        except EntryError as err:
            self.add(kind, file, f"{where}: {err}")


def short_repr(value: Any) -> str:
    """``repr(value)``, cut to 40 characters for messages."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def as_number(value: Any, what: str, *, text: bool = False) -> float:
    """``value`` as a float (NaN and infinities pass: see :func:`as_coordinate`); :class:`EntryError` naming
    ``what`` otherwise. JSON numbers must be numbers; ``text=True`` (CSV, XML, txt formats) also parses strings."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if text and isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    kind = "empty" if value in ("", None) else f"a {type(value).__name__}" if not isinstance(value, str) else "text"
    raise EntryError(f"{what} is {short_repr(value)} ({kind}), not a number")


def as_coordinate(value: Any, what: str, *, text: bool = False) -> float:
    """A box coordinate: :func:`as_number` that also refuses NaN, infinities and numbers beyond float32."""
    number = as_number(value, what, text=text)
    if not math.isfinite(number):
        raise EntryError(f"{what} is {short_repr(value)}, not a finite number")
    if abs(number) > FLOAT32_MAX:
        raise EntryError(f"{what} is {short_repr(value)}, beyond the float32 range boxes are stored in")
    return number


def as_int(value: Any, what: str, *, text: bool = False) -> int:
    """``value`` as an int (an integral float such as ``3.0`` too); :class:`EntryError` naming ``what`` otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        number: float | int = value
    else:
        number = as_number(value, what, text=text)
        if not math.isfinite(number) or not number.is_integer():
            raise EntryError(f"{what} is {short_repr(value)}, not an integer")
    if abs(number) > INT64_MAX:
        raise EntryError(f"{what} is {short_repr(value)}, beyond the int64 range ids are stored in")
    return int(number)


def get_field(mapping: Any, key: str, what: str) -> Any:
    """``mapping[key]``; :class:`EntryError` when ``mapping`` is not a dict or has no ``key``."""
    if not isinstance(mapping, dict):
        raise EntryError(f"is {short_repr(mapping)}, not an object with {key!r}; {what}")
    if key not in mapping:
        raise EntryError(f"has no {key!r} key; {what}")
    return mapping[key]


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of ``path``; :class:`DataError` naming the file when it is missing, unreadable or not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise DataError(f"{what} not found: {path}") from err
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}); is it the right file? "
                        f"Save the {what} as UTF-8") from err
    except OSError as err:
        raise DataError(f"cannot read {what} {path}: {err.strerror or err}") from err


def read_csv(path: Path, what: str) -> list[tuple[int, list[str]]]:
    """``(line number, cells)`` of the non-blank rows of a CSV file; :class:`DataError` naming the file when it
    cannot be read as CSV text."""
    text = read_text(path, what)
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        return [(reader.line_num, row) for row in reader if row and any(c.strip() for c in row)]
    except csv.Error as err:
        raise DataError(f"{path} is not a readable CSV file: {err}") from err


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
