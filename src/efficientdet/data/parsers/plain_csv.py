"""A plain CSV, one box a row: ``image,xmin,ymin,xmax,ymax,label`` (pixels, xyxy), into a dataset and back.

- ``image`` is relative to ``image_dir`` (default: the csv's folder) or absolute;
- a header row is optional; with one, columns are found by name (``image``/``filename``/``path``,
  ``xmin``/``x1``, ``ymin``/``y1``, ``xmax``/``x2``, ``ymax``/``y2``, ``label``/``class``/``name``, and an
  optional ``ignore``/``difficult``/``iscrowd`` column);
- a row with the coordinates and label left empty lists an image without objects;
- labels are class names; when every label is an integer they are taken as class ids (label order =
  ascending id, ``category_ids`` = those ids); otherwise label order is the sorted names.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Any

from efficientdet.data.parsers._common import (
    EntryError,
    ParseProblem,
    Problems,
    as_coordinate,
    check_writable,
    fmt_number,
    make_record,
    read_csv,
    relative_name,
)
from efficientdet.data.parsers.formats import register_dataset_format
from efficientdet.data.parsers.openimages import is_openimages_csv
from efficientdet.data.records import DetectionDataset
from efficientdet.errors import DataError

_ALIASES = {
    "image": ("image", "filename", "file_name", "file", "path", "image_path", "img"),
    "xmin": ("xmin", "x1", "x_min", "left"),
    "ymin": ("ymin", "y1", "y_min", "top"),
    "xmax": ("xmax", "x2", "x_max", "right"),
    "ymax": ("ymax", "y2", "y_max", "bottom"),
    "label": ("label", "class", "class_name", "category", "name", "labelname"),
    "ignore": ("ignore", "difficult", "iscrowd", "crowd"),
}
_ORDER = ("image", "xmin", "ymin", "xmax", "ymax", "label")


def _columns(header: list[str], csv_file: Path) -> dict[str, int] | None:
    """Column positions when ``header`` is a header row (any cell is a known column name), else ``None``; a header
    missing a required column is a :class:`DataError` naming the missing ones."""
    lowered = [h.strip().lower() for h in header]
    known = {n for names in _ALIASES.values() for n in names}
    if not any(h in known for h in lowered):
        return None
    cols = {}
    for key, names in _ALIASES.items():
        for n in names:
            if n in lowered:
                cols[key] = lowered.index(n)
                break
    missing = [k for k in _ORDER if k not in cols]
    if missing:
        raise DataError(f"{csv_file}: the header row {','.join(header)!r} has no {', '.join(missing)} column; a box "
                        f"CSV needs {','.join(_ORDER)} (also accepted: {', '.join(_ALIASES[missing[0]][1:])} for "
                        f"{missing[0]}). Rename the columns, or drop the header and keep that column order")
    return cols


def load_csv(
    csv_file: str | os.PathLike[str],
    image_dir: str | os.PathLike[str] | None = None,
    *,
    class_names: tuple[str, ...] | None = None,
    problems: list[ParseProblem] | None = None,
) -> DetectionDataset:
    """Read a plain box CSV (see the module docstring). ``class_names`` fixes the label order; labels not in it
    and rows that cannot be read (named by line number) are reported (collected in ``problems`` when given, else
    :class:`DataError`)."""
    csv_file = Path(csv_file)
    root = Path(image_dir) if image_dir is not None else csv_file.parent
    report = Problems(problems)
    rows = read_csv(csv_file, "CSV file")
    if not rows:
        raise DataError(f"{csv_file} is empty; expected rows 'image,xmin,ymin,xmax,ymax,label'")
    cols = _columns(rows[0][1], csv_file)
    if cols is not None:
        rows = rows[1:]
    else:
        cols = {k: i for i, k in enumerate(_ORDER)}
        if len(rows[0][1]) > 6:
            cols["ignore"] = 6

    per_image: dict[str, list[tuple[list[float], str, bool, int]]] = {}
    for n, row in rows:
        row = row + [""] * (max(cols.values()) + 1 - len(row))
        with report.entry(csv_file, f"line {n}"):
            image = row[cols["image"]].strip()
            if not image:
                raise EntryError("the image column is empty; give the image file of the box")
            per_image.setdefault(image, [])
            coords = [row[cols[k]].strip() for k in ("xmin", "ymin", "xmax", "ymax")]
            label = row[cols["label"]].strip()
            if not any(coords) and not label:
                continue  # an image without objects
            box = [as_coordinate(c, k, text=True) for c, k in zip(coords, ("xmin", "ymin", "xmax", "ymax"), strict=True)]
            if not label:
                raise EntryError(f"image {image}: the label is empty; give the class of the box (or leave the "
                                 "coordinates empty too for an image without objects)")
            ign = "ignore" in cols and row[cols["ignore"]].strip().lower() in ("1", "true", "yes")
            per_image[image].append((box, label, ign, n))

    found = {lab for objs in per_image.values() for _, lab, _, _ in objs}
    if class_names is not None:
        names, ids = tuple(class_names), tuple(range(len(class_names)))
        key_of = {name: i for i, name in enumerate(names)}
    elif found and all(re.fullmatch(r"-?[0-9]{1,18}", lab) for lab in found):
        ids = tuple(sorted({int(lab) for lab in found}))
        names = tuple(str(i) for i in ids)
        key_of = {lab: ids.index(int(lab)) for lab in found}  # "007" and "7" are one class
    else:
        names = tuple(sorted(found))
        ids = tuple(range(len(names)))
        key_of = {name: i for i, name in enumerate(names)}

    records = []
    for image_id, (image, objs) in enumerate(per_image.items()):
        boxes, labels, ignore = [], [], []
        for box, lab, ign, n in objs:
            if lab not in key_of:
                report.add("unknown_class", csv_file, f"line {n} (image {image}): label {lab!r} is not in the "
                           "class list", ids=(lab,))
                continue
            boxes.append(box)
            labels.append(key_of[lab])
            ignore.append(ign)
        path = Path(image)
        records.append(make_record(path if path.is_absolute() else root / path, image_id, boxes, labels, ignore))
    return DetectionDataset(records, names, ids, root=root, format="csv")


def write_csv(dataset: DetectionDataset, csv_file: str | os.PathLike[str],
              root: str | os.PathLike[str] | None = None) -> Path:
    """Write ``dataset`` as a plain CSV with a header (``image,xmin,ymin,xmax,ymax,label,ignore``); image paths
    relative to ``root`` (default ``dataset.root``). Labels are written as names. Returns the path."""
    check_writable(dataset, "CSV")
    csv_file = Path(csv_file)
    csv_file.parent.mkdir(parents=True, exist_ok=True)
    root_path = Path(root) if root is not None else (dataset.root or csv_file.parent)
    with open(csv_file, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow([*_ORDER, "ignore"])
        for rec in dataset.records:
            name = relative_name(rec, root_path)
            if not len(rec.labels):
                out.writerow([name, "", "", "", "", "", ""])
            assert rec.ignore is not None
            for box, label, ign in zip(rec.boxes.tolist(), rec.labels.tolist(), rec.ignore.tolist(), strict=True):
                out.writerow([name, *(fmt_number(v) for v in box), dataset.label_names[label], int(ign)])
    return csv_file


# --- registration ----------------------------------------------------------------------------------------


def _detect(path: Path, split: str | None) -> Path | None:
    if path.is_file():
        return path if path.suffix.lower() == ".csv" and not is_openimages_csv(path) else None
    csvs = sorted(path.glob(f"{split}.csv" if split else "*.csv"))
    return csvs[0] if len(csvs) == 1 and not is_openimages_csv(csvs[0]) else None


def _load(target: Path, split: str | None, *, problems: list[ParseProblem] | None, **kwargs: Any) -> DetectionDataset:
    if target.is_dir():
        target = target / f"{split or 'annotations'}.csv"
    return load_csv(target, problems=problems, **kwargs)


def _save(dataset: DetectionDataset, path: Path, split: str, **kwargs: Any) -> Path:
    return write_csv(dataset, path, **kwargs)


register_dataset_format("csv", detect=_detect, load=_load, save=_save, description="a box .csv", priority=-2)


__all__ = ["load_csv", "write_csv"]
