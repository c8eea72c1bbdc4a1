"""Dataset parsers: every format into one :class:`~efficientdet.data.records.DetectionDataset`, and back.

``load_dataset(path)`` recognises the format from the path; ``save_dataset`` writes any dataset in any
format (``efficientdet data convert``). Formats come from one registry (:mod:`.formats`): a new format is
one :func:`register_dataset_format` call, after which detection, reading, writing and ``data check`` know it.

| format | reader | writer |
|---|---|---|
| ``coco`` | :func:`load_coco` | :func:`write_coco` |
| ``voc`` | :func:`load_voc` | :func:`write_voc` |
| ``yolo`` | :func:`load_yolo` | :func:`write_yolo` |
| ``openimages`` | :func:`load_openimages` | :func:`write_openimages` |
| ``csv`` | :func:`load_csv` | :func:`write_csv` |
"""

from __future__ import annotations

import os
from pathlib import Path

from efficientdet.data.parsers._common import ParseProblem
from efficientdet.data.parsers.coco import coco_dict, load_coco, write_coco
from efficientdet.data.parsers.formats import (
    DatasetFormat,
    dataset_formats,
    descriptions,
    detect_with,
    get_dataset_format,
    register_dataset_format,
    unregister_dataset_format,
)
from efficientdet.data.parsers.openimages import load_openimages, write_openimages
from efficientdet.data.parsers.plain_csv import load_csv, write_csv
from efficientdet.data.parsers.voc import VOC_CLASSES, load_voc, write_voc
from efficientdet.data.parsers.yolo import load_yolo, write_yolo
from efficientdet.data.records import DetectionDataset
from efficientdet.errors import DataError


def _check_format(fmt: DatasetFormat, path: Path) -> None:
    """:class:`DataError` when an annotation file is plainly of another format than the one asked for."""
    if not path.is_file() or fmt.detect(path, None) is not None:
        return
    found = detect_with(path, None)
    if found is not None:
        other = get_dataset_format(found[0])
        raise DataError(f"{path} looks like {other.description} ({other.name} format), not {fmt.description}: use "
                        f"--format {other.name} (format={other.name!r}), or leave the format out to detect it")


def detect_format(path: str | os.PathLike[str], split: str | None = None) -> tuple[str, Path]:
    """``(format, file_or_folder_to_read)`` for a dataset path; :class:`DataError` naming the path otherwise.

    The registered formats are asked in detection order (see :mod:`.formats`); in a folder, the ``<split>/``
    subfolder (e.g. the sample dataset's ``train/`` and ``val/``) is looked into before the formats that
    only recognise a loose ``.json`` / ``.csv``.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"dataset path not found: {path}")
    if path.is_file():
        found = detect_with(path, split)
        if found is None:
            raise DataError(f"{path}: cannot tell the dataset format from a {path.suffix or 'suffix-less'} file; "
                            f"give {descriptions()}, or pass format=")
        return found
    found = detect_with(path, split, marker=True)
    if found is None and split and (path / split).is_dir():
        return detect_format(path / split)
    found = found or detect_with(path, split, marker=False)
    if found is not None:
        return found
    jsons = sorted(p.name for p in list(path.glob("*.json")) + list(path.glob("annotations/*.json")))
    hint = f" (json files here: {', '.join(jsons)}; pick one with split=)" if jsons else ""
    raise DataError(f"{path}: no known dataset layout found{hint}. Expected {descriptions()}")


def has_splits(path: str | os.PathLike[str], format: str | None = None) -> bool:
    """Whether the dataset at ``path`` is made of named parts that ``split=`` selects.

    VOC folders (image sets), YOLO ``data.yaml`` (``train`` / ``val`` / ``test``) and folders of COCO jsons,
    ``<split>.csv`` files or ``<split>/`` subfolders have parts; a single COCO json or csv file and an
    OpenImages folder do not.
    """
    path = Path(path)
    if format is None and path.is_file():
        format = detect_format(path)[0]
    splits = get_dataset_format(format).splits if format is not None else None
    if splits is not None:
        return splits
    if path.is_file():
        return False
    try:  # a folder
        found = get_dataset_format(detect_format(path)[0]).splits
    except DataError:
        return True  # e.g. train/ and val/ subfolders or several jsons: only a split picks one
    return True if found is None else found


def load_dataset(
    path: str | os.PathLike[str],
    format: str | None = None,
    split: str | None = None,
    *,
    default_split: str | None = None,
    problems: list[ParseProblem] | None = None,
    **kwargs: object,
) -> DetectionDataset:
    """Read a dataset in any supported format.

    Args:
        path: an annotation file or a dataset folder.
        format: a registered format (:func:`dataset_formats`: ``coco`` | ``voc`` | ``yolo`` | ``openimages`` |
            ``csv`` and any added with :func:`register_dataset_format`); recognised from ``path`` when ``None``.
        split: which part to read, for datasets made of parts: the VOC image set (default ``trainval``), the
            YOLO ``data.yaml`` split (default ``train``), in a folder the COCO json (``val2017`` ->
            ``instances_val2017.json``), the ``<split>/`` subfolder or ``<split>.csv``. A :class:`DataError`
            when the dataset has no parts (a COCO json or csv file, OpenImages): the whole file is one split.
        default_split: the part to read when ``split`` is ``None`` and the dataset has parts (e.g. ``"train"``
            for training); ignored for datasets without parts.
        problems: when a list is given, annotations that cannot be used (unknown class ids, malformed rows,
            unreadable images that are needed for the size) are described there and skipped instead of raising.
        kwargs: passed to the format's reader (e.g. ``one_based=False`` for VOC, ``image_dir=`` for COCO).
    """
    fmt = get_dataset_format(format) if format is not None else None
    if fmt is not None:
        _check_format(fmt, Path(path))
    if split is not None and not has_splits(path, format):
        raise DataError(f"{path} has no splits to choose from (a single annotation file or an OpenImages folder), so "
                        f"split {split!r} cannot apply; point at the file of that split instead, or drop the split. "
                        "Splits exist in VOC folders, YOLO data.yaml, and folders of per-split COCO jsons or csvs")
    if split is None:
        split = default_split
    if fmt is None:
        name, target = detect_format(path, split)
        fmt = get_dataset_format(name)
    else:
        target = Path(path)
    return fmt.load(target, split, problems=problems, **kwargs)


def save_dataset(dataset: DetectionDataset, path: str | os.PathLike[str], format: str, split: str = "train",
                 **kwargs: object) -> Path:
    """Write ``dataset`` as ``format`` at ``path`` (a json / csv file for ``coco`` / ``csv``, a folder otherwise).

    ``split`` names the VOC image set / YOLO split. ``kwargs`` go to the writer (``images="symlink"`` ...).
    """
    fmt = get_dataset_format(format)
    if fmt.save is None:
        writable = [name for name in dataset_formats() if get_dataset_format(name).save is not None]
        raise DataError(f"dataset format {format!r} can be read but not written; write one of {', '.join(writable)}")
    return fmt.save(dataset, Path(path), split, **kwargs)


__all__ = [
    "DatasetFormat",
    "register_dataset_format",
    "unregister_dataset_format",
    "dataset_formats",
    "get_dataset_format",
    "VOC_CLASSES",
    "ParseProblem",
    "detect_format",
    "has_splits",
    "load_dataset",
    "save_dataset",
    "load_coco",
    "write_coco",
    "coco_dict",
    "load_voc",
    "write_voc",
    "load_yolo",
    "write_yolo",
    "load_openimages",
    "write_openimages",
    "load_csv",
    "write_csv",
]
