"""Dataset parsers: every format into one :class:`~efficientdet.data.records.DetectionDataset`, and back.

``load_dataset(path)`` recognises the format from the path; ``save_dataset`` writes any dataset in any
format (``efficientdet data convert``).

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

from efficientdet.config import unknown_key_message
from efficientdet.data.parsers._common import ParseProblem, read_csv
from efficientdet.data.parsers.coco import coco_dict, load_coco, write_coco
from efficientdet.data.parsers.openimages import load_openimages, write_openimages
from efficientdet.data.parsers.plain_csv import load_csv, write_csv
from efficientdet.data.parsers.voc import VOC_CLASSES, load_voc, write_voc
from efficientdet.data.parsers.yolo import load_yolo, write_yolo
from efficientdet.data.records import DetectionDataset
from efficientdet.errors import DataError

FORMATS = ("coco", "voc", "yolo", "openimages", "csv")


def _csv_kind(path: Path) -> str:
    rows = read_csv(path, "CSV file")
    header = rows[0][1] if rows else []
    return "openimages" if {"ImageID", "LabelName", "XMin"} <= {h.strip() for h in header} else "csv"


_FORMAT_FILES = {"coco": "a COCO .json", "yolo": "a YOLO data.yaml", "csv": "a box .csv", "openimages":
                 "an OpenImages boxes .csv", "voc": "a VOC folder"}


def _check_format(format: str, path: Path) -> None:
    """:class:`DataError` when an annotation file is plainly of another format than the one asked for."""
    if not path.is_file() or path.suffix.lower() not in (".json", ".yaml", ".yml", ".csv"):
        return
    found, _ = detect_format(path)
    if found != format:
        raise DataError(f"{path} looks like {_FORMAT_FILES[found]} ({found} format), not {_FORMAT_FILES[format]}: "
                        f"use --format {found} (format={found!r}), or leave the format out to detect it")


def _coco_json(folder: Path, split: str | None) -> Path | None:
    jsons = sorted(folder.glob("*.json")) + sorted(folder.glob("annotations/*.json"))
    if split:
        for pattern in (f"instances_{split}.json", f"{split}.json", f"instances_{split}*.json", f"*{split}*.json"):
            hits = [p for p in jsons if p.match(pattern)]
            if hits:
                return hits[0]
        return None
    if len(jsons) == 1:
        return jsons[0]
    return None


def detect_format(path: str | os.PathLike[str], split: str | None = None) -> tuple[str, Path]:
    """``(format, file_or_folder_to_read)`` for a dataset path; :class:`DataError` naming the path otherwise."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"dataset path not found: {path}")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".json":
            return "coco", path
        if suffix in (".yaml", ".yml"):
            return "yolo", path
        if suffix == ".csv":
            return _csv_kind(path), path
        raise DataError(f"{path}: cannot tell the dataset format from a {suffix or 'suffix-less'} file; give a COCO "
                        ".json, a YOLO data.yaml, a .csv, or a VOC folder, or pass format=")
    for name in ("data.yaml", "dataset.yaml", "data.yml"):
        if (path / name).is_file():
            return "yolo", path / name
    if (path / "Annotations").is_dir() or any(path.glob("VOC20*")) or (path / "VOCdevkit").is_dir():
        return "voc", path
    if any(path.glob("*bbox*.csv")):
        return "openimages", path
    if split and (path / split).is_dir():  # one folder per split, e.g. the sample dataset's train/ and val/
        return detect_format(path / split)
    coco = _coco_json(path, split)
    if coco is not None:
        return "coco", coco
    csvs = sorted(path.glob(f"{split}.csv" if split else "*.csv"))
    if len(csvs) == 1:
        return _csv_kind(csvs[0]), csvs[0]
    jsons = sorted(p.name for p in list(path.glob("*.json")) + list(path.glob("annotations/*.json")))
    hint = f" (json files here: {', '.join(jsons)}; pick one with split=)" if jsons else ""
    raise DataError(f"{path}: no known dataset layout found{hint}. Expected a COCO json (or annotations/*.json), a "
                    "YOLO data.yaml, VOC Annotations/ or VOC20xx/ folders, an OpenImages *bbox*.csv, or one .csv")


def has_splits(path: str | os.PathLike[str], format: str | None = None) -> bool:
    """Whether the dataset at ``path`` is made of named parts that ``split=`` selects.

    VOC folders (image sets), YOLO ``data.yaml`` (``train`` / ``val`` / ``test``) and folders of COCO jsons,
    ``<split>.csv`` files or ``<split>/`` subfolders have parts; a single COCO json or csv file and an
    OpenImages folder do not.
    """
    path = Path(path)
    if format is None and path.is_file():
        format = detect_format(path)[0]
    if format in ("voc", "yolo"):
        return True
    if format == "openimages" or path.is_file():
        return False
    try:  # a folder
        return detect_format(path)[0] != "openimages"
    except DataError:
        return True  # e.g. train/ and val/ subfolders or several jsons: only a split picks one


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
        format: ``coco`` | ``voc`` | ``yolo`` | ``openimages`` | ``csv``; recognised from ``path`` when ``None``.
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
    if format is not None and format not in FORMATS:
        raise DataError(unknown_key_message(format, FORMATS, "dataset format"))
    if format is not None:
        _check_format(format, Path(path))
    if split is not None and not has_splits(path, format):
        raise DataError(f"{path} has no splits to choose from (a single annotation file or an OpenImages folder), so "
                        f"split {split!r} cannot apply; point at the file of that split instead, or drop the split. "
                        "Splits exist in VOC folders, YOLO data.yaml, and folders of per-split COCO jsons or csvs")
    if split is None:
        split = default_split
    detected, target = detect_format(path, split) if format is None else (format, Path(path))
    if detected == "coco":
        if target.is_dir():
            found = _coco_json(target, split)
            if found is None:
                raise DataError(f"{target}: no COCO json found{f' for split {split!r}' if split else ''}")
            target = found
        return load_coco(target, problems=problems, **kwargs)  # type: ignore[arg-type]
    if detected == "voc":
        return load_voc(target, split or "trainval", problems=problems, **kwargs)  # type: ignore[arg-type]
    if detected == "yolo":
        return load_yolo(target, split or "train", problems=problems)
    if detected == "openimages":
        return load_openimages(target, problems=problems, **kwargs)  # type: ignore[arg-type]
    if target.is_dir():
        target = target / f"{split or 'annotations'}.csv"
    return load_csv(target, problems=problems, **kwargs)  # type: ignore[arg-type]


def save_dataset(dataset: DetectionDataset, path: str | os.PathLike[str], format: str, split: str = "train",
                 **kwargs: object) -> Path:
    """Write ``dataset`` as ``format`` at ``path`` (a json / csv file for ``coco`` / ``csv``, a folder otherwise).

    ``split`` names the VOC image set / YOLO split. ``kwargs`` go to the writer (``images="symlink"`` ...).
    """
    path = Path(path)
    if format == "coco":
        return write_coco(dataset, path, **kwargs)  # type: ignore[arg-type]
    if format == "voc":
        return write_voc(dataset, path, split, **kwargs)  # type: ignore[arg-type]
    if format == "yolo":
        return write_yolo(dataset, path, split, **kwargs)  # type: ignore[arg-type]
    if format == "openimages":
        return write_openimages(dataset, path, **kwargs)  # type: ignore[arg-type]
    if format == "csv":
        return write_csv(dataset, path, **kwargs)  # type: ignore[arg-type]
    raise DataError(unknown_key_message(format, FORMATS, "dataset format"))


__all__ = [
    "FORMATS",
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
