"""The registry of dataset formats: how a format is recognised, read and written.

Every format, the built-in ones included (``coco``, ``voc``, ``yolo``, ``openimages``, ``csv``, each
registered at the end of its parser module), enters through :func:`register_dataset_format`;
:func:`~efficientdet.data.parsers.load_dataset`, :func:`~efficientdet.data.parsers.save_dataset`,
:func:`~efficientdet.data.parsers.detect_format` and ``efficientdet data check`` only look formats up here.

A format gives three functions:

- ``detect(path, split) -> Path | None``: the file or folder to read when ``path`` (an existing file or
  folder) holds this format, else ``None``. It must not raise for paths of other formats.
- ``load(target, split, *, problems, **kwargs) -> DetectionDataset``: read ``target`` (what ``detect``
  returned, or the path the user gave with ``format=``); ``split`` is ``None`` or the part to read;
  ``problems`` is ``None`` (raise on bad entries) or a list to collect
  :class:`~efficientdet.data.parsers.ParseProblem` into. Boxes xyxy float32 pixels, labels ``0 .. K-1``.
- ``save(dataset, path, split, **kwargs) -> Path`` (optional): write a dataset; returns what was written.

Detection tries the formats from the highest ``priority`` down (ties: registration order). In a folder,
the ``<split>/`` subfolder is looked into after the formats of priority ``>= 0`` (those recognised by a
marker: ``data.yaml``, ``Annotations/``, ``*bbox*.csv``) and before the negative ones (recognised only by a
loose ``.json`` / ``.csv``: COCO -1, CSV -2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from efficientdet.config import unknown_key_message
from efficientdet.data.records import DetectionDataset
from efficientdet.errors import DataError

Detect = Callable[[Path, str | None], Path | None]
Load = Callable[..., DetectionDataset]
Save = Callable[..., Path]


@dataclass(frozen=True)
class DatasetFormat:
    """One registered dataset format (see the module docstring for the three functions).

    ``description``: what a user points at, for messages (``"a COCO .json"``). ``splits``: whether the
    dataset is made of named parts that ``split=`` selects: ``True`` always (VOC image sets, YOLO splits),
    ``False`` never, ``None``: a folder has parts (one file per split), a single file has not.
    """

    name: str
    detect: Detect
    load: Load
    save: Save | None = None
    description: str = ""
    splits: bool | None = None
    priority: int = 0


_FORMATS: dict[str, DatasetFormat] = {}


def register_dataset_format(name: str, *, detect: Detect, load: Load, save: Save | None = None,
                            description: str | None = None, splits: bool | None = None, priority: int = 0,
                            replace: bool = False) -> DatasetFormat:
    """Add a dataset format under ``name`` (see the module docstring); returns its :class:`DatasetFormat`.

    Once registered, ``load_dataset(path)`` recognises it, ``load_dataset(path, format=name)`` and
    ``save_dataset(..., format=name)`` use it, and ``data check`` reads it. ``replace=True`` swaps an
    existing registration (e.g. a cell run again in a notebook); otherwise a taken name is a
    :class:`~efficientdet.errors.DataError`.
    """
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise DataError(f"dataset format name {name!r}: use letters, digits, '_' or '-'")
    if name in _FORMATS and not replace:
        raise DataError(f"dataset format {name!r} is already registered; pass replace=True to swap it")
    fmt = DatasetFormat(name, detect, load, save, description or f"a {name} dataset", splits, priority)
    _FORMATS[name] = fmt
    return fmt


def unregister_dataset_format(name: str) -> None:
    """Remove a registered format (for tests and plugins that clean up after themselves)."""
    _FORMATS.pop(name, None)


def dataset_formats() -> tuple[str, ...]:
    """The names of the registered formats, in detection order."""
    return tuple(f.name for f in _by_priority())


def get_dataset_format(name: str) -> DatasetFormat:
    """The format registered as ``name``; a :class:`~efficientdet.errors.DataError` with close matches otherwise."""
    fmt = _FORMATS.get(name)
    if fmt is None:
        raise DataError(unknown_key_message(name, _FORMATS, "dataset format"))
    return fmt


def _by_priority() -> list[DatasetFormat]:
    return sorted(_FORMATS.values(), key=lambda f: -f.priority)  # sorted() is stable: ties keep registration order


def detect_with(path: Path, split: str | None, marker: bool | None = None) -> tuple[str, Path] | None:
    """``(format, target)`` of the first format (in detection order) whose ``detect`` claims ``path``, else ``None``.

    ``marker``: only formats of priority ``>= 0`` (``True``) or ``< 0`` (``False``); ``None``: all.
    """
    for fmt in _by_priority():
        if marker is not None and (fmt.priority >= 0) != marker:
            continue
        target = fmt.detect(path, split)
        if target is not None:
            return fmt.name, target
    return None


def descriptions() -> str:
    """``"a YOLO data.yaml, a VOC folder, ..."``: what the registered formats read, for messages."""
    return ", ".join(f.description for f in _by_priority())


__all__ = [
    "DatasetFormat",
    "register_dataset_format",
    "unregister_dataset_format",
    "dataset_formats",
    "get_dataset_format",
    "detect_with",
    "descriptions",
]
