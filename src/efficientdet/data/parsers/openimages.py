"""OpenImages CSV (V5 / V6 boxes and the Challenge 2019 layout) into a :class:`DetectionDataset` and back.

Files (found by name in a folder, or given one by one):

- boxes: ``*bbox*.csv`` with a header naming ``ImageID``, ``LabelName``, ``XMin``, ``XMax``, ``YMin``,
  ``YMax`` (normalised ``0..1``) and optionally ``IsGroupOf``, ``Confidence``; V5/V6
  (``...-annotations-bbox.csv``, 13 columns) and Challenge 2019 (``challenge-2019-*-detection-bbox.csv``,
  9 columns) both read by column name;
- classes: ``*class*descriptions*.csv`` / ``*classes-description*.csv``, rows ``MID,DisplayName``, with or without
  a header; the row order is the label order and ``category_ids[label]`` is the row index. Files with
  ``boxable`` or ``500`` in the name are preferred when several match;
- image-level labels (optional): ``*imagelabels*.csv`` (``ImageID,Source,LabelName,Confidence``):
  ``Confidence`` 1 = verified present (``image_labels``), 0 = verified absent (``negative_labels``). Images
  listed only here are kept with no boxes, as OpenImages evaluation needs them;
- images: ``<image_dir>/<ImageID>.jpg``; boxes are turned into pixels with the image size read from the
  file header, so the images must be present.

``IsGroupOf`` becomes ``group_of``; it is not ``ignore`` (OpenImages scores group boxes differently).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np

from efficientdet.data.images import IMAGE_EXTENSIONS, image_size
from efficientdet.data.parsers._common import (
    EntryError,
    ParseProblem,
    Problems,
    as_coordinate,
    as_number,
    check_writable,
    make_record,
    place_image,
    read_csv,
)
from efficientdet.data.parsers.formats import register_dataset_format
from efficientdet.data.records import DetectionDataset
from efficientdet.errors import DataError

_REQUIRED = ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax")


def _rows(path: Path, what: str, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """``(line number, {column: cell})`` of a csv with a header row; :class:`DataError` naming the file when a
    required column is missing. Short rows get empty cells."""
    rows = read_csv(path, what)
    if not rows:
        return []
    header = [h.strip() for h in rows[0][1]]
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"{path}: columns {', '.join(missing)} missing (header: {','.join(header)[:120]}); an "
                        f"OpenImages {what} has {', '.join(required)}")
    return [(n, dict(zip(header, row + [""] * (len(header) - len(row)), strict=False))) for n, row in rows[1:]]


def read_class_descriptions(path: str | os.PathLike[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(mids, display_names)`` from an OpenImages class-descriptions csv (header optional)."""
    path = Path(path)
    mids, names = [], []
    for n, row in read_csv(path, "class descriptions csv"):
        if not mids and row[0] == "LabelName":
            continue
        if len(row) < 2 or not row[0].strip():
            raise DataError(f"{path}: line {n} {','.join(row)[:60]!r} is not 'MID,DisplayName'")
        if row[0] in mids:
            raise DataError(f"{path}: line {n}: MID {row[0]!r} is listed twice; keep one line per class")
        mids.append(row[0])
        names.append(row[1])
    return tuple(mids), tuple(names)


def _pick(folder: Path, patterns: tuple[str, ...], prefer: tuple[str, ...] = ()) -> Path | None:
    found = sorted({p for pat in patterns for p in folder.glob(pat)})
    if not found:
        return None
    preferred = [p for p in found if any(k in p.name for k in prefer)]
    return (preferred or found)[0]


def find_openimages_files(folder: str | os.PathLike[str]) -> dict[str, Path | None]:
    """The boxes / classes / image-labels csv and image folder of an OpenImages folder (``None`` when absent)."""
    folder = Path(folder)
    images = next((d for d in (folder / "images", folder / "train", folder / "validation", folder / "test")
                   if d.is_dir()), folder)
    return {
        "boxes": _pick(folder, ("*bbox*.csv",)),
        "classes": _pick(folder, ("*class*descriptions*.csv", "*classes-description*.csv"), ("boxable", "500")),
        "image_labels": _pick(folder, ("*imagelabels*.csv", "*image-labels*.csv", "*image_labels*.csv")),
        "image_dir": images,
    }


def _image_file(image_dir: Path, image_id: str) -> Path:
    jpg = image_dir / f"{image_id}.jpg"
    if jpg.exists():
        return jpg
    for ext in IMAGE_EXTENSIONS:
        p = image_dir / f"{image_id}{ext}"
        if p.exists():
            return p
    return jpg


def load_openimages(
    boxes_csv: str | os.PathLike[str],
    class_descriptions: str | os.PathLike[str] | None = None,
    image_dir: str | os.PathLike[str] | None = None,
    image_labels_csv: str | os.PathLike[str] | None = None,
    *,
    problems: list[ParseProblem] | None = None,
) -> DetectionDataset:
    """Read OpenImages boxes (and optionally image-level labels).

    ``boxes_csv`` may be a folder: the files are then found by name (:func:`find_openimages_files`).
    Without ``class_descriptions`` the classes are the MIDs found, sorted. ``image_dir`` defaults to the
    boxes csv's folder (or its ``images/`` subfolder). Returns ``format="openimages"``, ``label_names`` =
    display names, ``root`` = the image folder.
    """
    boxes_path = Path(boxes_csv)
    if boxes_path.is_dir():
        found = find_openimages_files(boxes_path)
        if found["boxes"] is None:
            raise DataError(f"{boxes_path}: no '*bbox*.csv' file; give the OpenImages boxes csv")
        class_descriptions = class_descriptions or found["classes"]
        image_labels_csv = image_labels_csv or found["image_labels"]
        image_dir = image_dir or found["image_dir"]
        boxes_path = found["boxes"]  # type: ignore[assignment]
    if image_dir is None:
        image_dir = boxes_path.parent / "images" if (boxes_path.parent / "images").is_dir() else boxes_path.parent
    image_dir = Path(image_dir)
    report = Problems(problems)

    if not boxes_path.is_file():
        raise DataError(f"OpenImages boxes csv not found: {boxes_path}")
    box_rows = _rows(boxes_path, "boxes csv", _REQUIRED)
    label_rows = _rows(Path(image_labels_csv), "image-labels csv", ("ImageID", "LabelName")) if image_labels_csv else []

    if class_descriptions is not None:
        mids, names = read_class_descriptions(class_descriptions)
    else:
        mids = tuple(sorted({r["LabelName"] for _, r in box_rows} | {r["LabelName"] for _, r in label_rows}))
        names = mids
    label_of = {m: i for i, m in enumerate(mids)}

    per_image: dict[str, dict[str, list]] = {}

    def entry(image_id: str) -> dict[str, list]:
        if not image_id:
            raise EntryError("ImageID is empty")
        if image_id not in per_image:
            per_image[image_id] = {"boxes": [], "labels": [], "group": [], "pos": [], "neg": []}
        return per_image[image_id]

    for n, row in box_rows:
        with report.entry(boxes_path, f"line {n}"):
            e = entry(row["ImageID"].strip())
            mid = row["LabelName"]
            if mid not in label_of:
                report.add("unknown_class", boxes_path, f"line {n}: LabelName {mid!r} is not in the class "
                           "descriptions", ids=(mid,))
                continue
            coords = [as_coordinate(row[k], k, text=True) for k in ("XMin", "YMin", "XMax", "YMax")]
            e["boxes"].append(coords)
            e["labels"].append(label_of[mid])
            e["group"].append(str(row.get("IsGroupOf", "0")).strip() in ("1", "True", "true"))
    for n, row in label_rows:
        with report.entry(image_labels_csv, f"line {n}"):  # type: ignore[arg-type]
            e = entry(row["ImageID"].strip())
            mid = row["LabelName"]
            if mid not in label_of:
                continue  # image-level labels cover many more classes than the boxable ones
            confidence = as_number(row.get("Confidence") or "1", "Confidence", text=True)
            (e["pos"] if confidence > 0 else e["neg"]).append(label_of[mid])

    records = []
    for image_id, (key, e) in enumerate(per_image.items()):
        path = _image_file(image_dir, key)
        try:
            h, w = image_size(path)
        except DataError as err:
            report.add("missing_image", path, f"{err}; needed to turn its normalised boxes into pixels")
            continue
        scale = np.array([w, h, w, h], dtype=np.float64)
        boxes = np.asarray(e["boxes"], dtype=np.float64).reshape(-1, 4) * scale
        records.append(make_record(
            path, image_id, boxes, e["labels"], None, (h, w),
            group_of=np.asarray(e["group"], dtype=bool),
            image_labels=np.asarray(sorted(set(e["pos"])), dtype=np.int64) if label_rows else None,
            negative_labels=np.asarray(sorted(set(e["neg"])), dtype=np.int64) if label_rows else None,
        ))
    return DetectionDataset(records, names, root=image_dir, format="openimages")


def write_openimages(
    dataset: DetectionDataset,
    folder: str | os.PathLike[str],
    *,
    mids: tuple[str, ...] | None = None,
    prefix: str = "",
    images: str = "copy",
) -> Path:
    """Write ``dataset`` in the OpenImages V6 layout into ``folder``: ``<prefix>annotations-bbox.csv``,
    ``class-descriptions-boxable.csv``, ``<prefix>annotations-human-imagelabels-boxable.csv`` (when any record
    has image-level labels) and ``images/<ImageID><ext>``. ``mids`` names each class (default
    ``/m/efficientdet_<category id>``); ``ImageID`` is the image file stem. Images with neither boxes nor
    image-level labels have no row in this format and are not written. Returns ``folder``.
    """
    from efficientdet.data.images import image_size as read_size

    check_writable(dataset, "OpenImages csv")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    mids = mids or tuple(f"/m/efficientdet_{c}" for c in dataset.category_ids)
    if len(mids) != dataset.num_classes:
        raise DataError(f"mids has {len(mids)} entries for {dataset.num_classes} classes; give one MID per class")
    with open(folder / "class-descriptions-boxable.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(zip(mids, dataset.label_names, strict=True))
    has_image_labels = any(r.image_labels is not None or r.negative_labels is not None for r in dataset.records)
    seen: set[str] = set()
    with open(folder / f"{prefix}annotations-bbox.csv", "w", newline="", encoding="utf-8") as fb, \
            open(folder / f"{prefix}annotations-human-imagelabels-boxable.csv", "w", newline="",
                 encoding="utf-8") as fl:
        boxes_out, labels_out = csv.writer(fb), csv.writer(fl)
        boxes_out.writerow(["ImageID", "Source", "LabelName", "Confidence", "XMin", "XMax", "YMin", "YMax",
                            "IsGroupOf"])
        labels_out.writerow(["ImageID", "Source", "LabelName", "Confidence"])
        for rec in dataset.records:
            key = rec.path.stem if rec.path.stem not in seen else f"{rec.path.stem}_{rec.image_id}"
            seen.add(key)
            place_image(rec.path, folder / "images" / f"{key}{rec.path.suffix}", images)
            h, w = rec.size if rec.size is not None else read_size(rec.path)
            group = rec.group_of if rec.group_of is not None else np.zeros(len(rec.labels), dtype=bool)
            for (x1, y1, x2, y2), label, g in zip(rec.boxes.tolist(), rec.labels.tolist(), group.tolist(), strict=True):
                boxes_out.writerow([key, "efficientdet", mids[label], 1, repr(x1 / w), repr(x2 / w), repr(y1 / h),
                                    repr(y2 / h), int(g)])
            for lab in (rec.image_labels if rec.image_labels is not None else []):
                labels_out.writerow([key, "verification", mids[int(lab)], 1])
            for lab in (rec.negative_labels if rec.negative_labels is not None else []):
                labels_out.writerow([key, "verification", mids[int(lab)], 0])
    if not has_image_labels:
        (folder / f"{prefix}annotations-human-imagelabels-boxable.csv").unlink()
    return folder


# --- registration ----------------------------------------------------------------------------------------

OPENIMAGES_COLUMNS = frozenset({"ImageID", "LabelName", "XMin"})
"""Header columns that mark an OpenImages boxes csv (a plain box csv has none of them)."""


def is_openimages_csv(path: Path) -> bool:
    """Whether the csv file ``path`` has the OpenImages boxes header."""
    rows = read_csv(path, "CSV file")
    header = rows[0][1] if rows else []
    return OPENIMAGES_COLUMNS <= {h.strip() for h in header}


def _detect(path: Path, split: str | None) -> Path | None:
    if path.is_file():
        return path if path.suffix.lower() == ".csv" and is_openimages_csv(path) else None
    if any(path.glob("*bbox*.csv")):
        return path
    csvs = sorted(path.glob(f"{split}.csv" if split else "*.csv"))  # a lone boxes csv under another name
    return csvs[0] if len(csvs) == 1 and is_openimages_csv(csvs[0]) else None


def _load(target: Path, split: str | None, *, problems: list[ParseProblem] | None, **kwargs: Any) -> DetectionDataset:
    return load_openimages(target, problems=problems, **kwargs)


def _save(dataset: DetectionDataset, path: Path, split: str, **kwargs: Any) -> Path:
    return write_openimages(dataset, path, **kwargs)


register_dataset_format("openimages", detect=_detect, load=_load, save=_save,
                        description="an OpenImages boxes .csv (or a folder with *bbox*.csv)", splits=False, priority=1)


__all__ = ["is_openimages_csv", "load_openimages", "write_openimages", "read_class_descriptions", "find_openimages_files"]
