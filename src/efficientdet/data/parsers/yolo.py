"""YOLO txt in the ultralytics layout into a :class:`DetectionDataset` and back.

Layout: a ``data.yaml`` with ``path`` (dataset root; relative paths are taken from the yaml's folder),
``train`` / ``val`` / ``test`` (an image folder, a ``.txt`` list of images, or a list of either), and
``names`` (a list, or a dict ``{id: name}``). The labels of ``<root>/images/<...>/x.jpg`` are in
``<root>/labels/<...>/x.txt``, one object a line: ``class cx cy w h``, normalised to ``0..1`` by the image
width and height. Lines with more than five numbers are polygons (``class x1 y1 x2 y2 ...``, ultralytics
segments) and give their bounding box. A missing label file means an image without objects.

Class ids are the indices (or dict keys) of ``names``; ``category_ids[label]`` is that id. Image sizes are
read from the image headers, since the labels are normalised.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from efficientdet.data.images import IMAGE_EXTENSIONS, image_size
from efficientdet.data.parsers._common import (
    EntryError,
    ParseProblem,
    Problems,
    as_coordinate,
    as_int,
    check_writable,
    make_record,
    place_image,
    read_text,
)
from efficientdet.data.parsers.formats import register_dataset_format
from efficientdet.data.records import DetectionDataset
from efficientdet.errors import DataError

MAX_CLASSES = 100_000
"""Largest ``nc`` read without class names (a guard against a mistyped count)."""


def label_path(image: Path) -> Path:
    """The label file of an image: the last ``/images/`` folder of its path becomes ``/labels/``, suffix ``.txt``."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _names(data: dict[str, Any], yaml_file: Path) -> tuple[tuple[str, ...], tuple[int, ...]]:
    names = data.get("names")
    try:
        if isinstance(names, dict):
            items = sorted((as_int(k, f"class id {k!r}", text=True), str(v)) for k, v in names.items())
            return tuple(n for _, n in items), tuple(k for k, _ in items)
        if isinstance(names, (list, tuple)):
            return tuple(str(n) for n in names), tuple(range(len(names)))
        if "nc" in data:
            n = as_int(data["nc"], "nc", text=True)
            if not 0 < n <= MAX_CLASSES:
                raise EntryError(f"nc is {n}; give the number of classes (1..{MAX_CLASSES})")
            return tuple(str(i) for i in range(n)), tuple(range(n))
    except EntryError as err:
        raise DataError(f"{yaml_file}: 'names': {err}; give names as a list, or a dict of integer id: name") from err
    raise DataError(f"{yaml_file}: no 'names' (a list, or a dict id: name); add the class names")


def _list_images(entry: Any, root: Path, yaml_file: Path) -> list[Path]:
    entries = entry if isinstance(entry, (list, tuple)) else [entry]
    out: list[Path] = []
    for e in entries:
        if not isinstance(e, (str, int, float)):
            raise DataError(f"{yaml_file}: image location {e!r} is not a folder or file path")
        p = Path(str(e))
        p = p if p.is_absolute() else root / p
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.is_file() and p.suffix == ".txt":
            for line in read_text(p, "YOLO image list").splitlines():
                line = line.strip()
                if line:
                    q = Path(line)
                    out.append(q if q.is_absolute() else (p.parent / q if line.startswith(".") else root / q))
        else:
            raise DataError(f"{yaml_file}: image location {e!r} ({p}) is neither a folder nor a .txt list of images")
    return out


def _root(data: dict[str, Any], yaml_file: Path) -> Path:
    path = data.get("path")
    if not path:
        return yaml_file.parent
    p = Path(str(path))
    if p.is_absolute():
        return p
    return (yaml_file.parent / p) if (yaml_file.parent / p).exists() else p


def _read_yaml(yaml_file: Path) -> dict[str, Any]:
    text = read_text(yaml_file, "YOLO data file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise DataError(f"{yaml_file} is not valid YAML: {err}") from err
    if isinstance(data, dict) and "images" in data and ("annotations" in data or "categories" in data):
        raise DataError(f"{yaml_file} is a COCO json (it has 'images' and 'annotations' / 'categories'), not a YOLO "
                        "data.yaml: read it with --format coco (format='coco'), or leave the format out to detect it")
    if not isinstance(data, dict):
        raise DataError(f"{yaml_file} is not a YOLO data.yaml: expected a mapping with 'path', 'train' / 'val' and "
                        f"'names', found {type(data).__name__ if data is not None else 'an empty file'}")
    return data


def _box(values: list[str], size: tuple[int, int]) -> tuple[int, list[float]]:
    """``(class id, xyxy pixel box)`` of one label line ``class cx cy w h`` or ``class x1 y1 x2 y2 ...``."""
    cls = as_int(values[0], "the class id", text=True)
    nums = [as_coordinate(v, f"value {i}", text=True) for i, v in enumerate(values[1:], 2)]
    if len(nums) < 4 or (len(nums) > 4 and len(nums) % 2):
        raise EntryError(f"{len(nums)} coordinates; expected 4 (cx cy w h) or x y pairs")
    h, w = size
    if len(nums) == 4:
        cx, cy, bw, bh = nums
        return cls, [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h]
    xs, ys = nums[0::2], nums[1::2]
    return cls, [min(xs) * w, min(ys) * h, max(xs) * w, max(ys) * h]


def load_yolo(
    data_yaml: str | os.PathLike[str],
    split: str = "train",
    *,
    problems: list[ParseProblem] | None = None,
) -> DetectionDataset:
    """Read one split (``train`` | ``val`` | ``test``) of a YOLO dataset described by ``data_yaml``.

    With ``problems`` given, unknown class ids, malformed lines (named by file and line number), unreadable
    images and label files without an image are reported there (and skipped) instead of raising
    :class:`DataError`. Returns ``format="yolo"``, ``root`` = the dataset root.
    """
    yaml_file = Path(data_yaml)
    if yaml_file.is_dir():
        yaml_file = yaml_file / "data.yaml"
    data = _read_yaml(yaml_file)
    names, ids = _names(data, yaml_file)
    label_of = {cid: i for i, cid in enumerate(ids)}
    root = _root(data, yaml_file)
    if not data.get(split):
        splits = [k for k in ("train", "val", "test") if data.get(k)]
        raise DataError(f"{yaml_file} has no {split!r} split; it has: {', '.join(splits) or 'none'}")
    report = Problems(problems)
    records = []
    label_files: set[Path] = set()
    for image_id, img in enumerate(_list_images(data[split], root, yaml_file)):
        lbl = label_path(img)
        label_files.add(lbl)
        boxes, labels = [], []
        rows: list[tuple[int, list[str]]] = []
        if lbl.is_file():
            with report.entry(lbl, "label file"):
                try:
                    text = read_text(lbl, "YOLO label file")
                except DataError as err:
                    raise EntryError(str(err)) from err
                rows = [(n, r.split()) for n, r in enumerate(text.splitlines(), 1) if r.strip()]
        size = None
        if rows:
            try:
                size = image_size(img)
            except DataError as err:
                report.add("missing_image", img, f"{err}; its boxes in {lbl} cannot be converted to pixels")
                continue
        for n, values in rows:
            with report.entry(lbl, f"line {n} ({' '.join(values)[:60]!r})"):
                cls, box = _box(values, size)  # type: ignore[arg-type]
                if cls not in label_of:
                    report.add("unknown_class", lbl, f"line {n}: class id {cls} is not in names (ids "
                               f"{min(ids, default=0)}..{max(ids, default=-1)})", ids=(cls,))
                    continue
                boxes.append(box)
                labels.append(label_of[cls])
        records.append(make_record(img, image_id, boxes, labels, None, size))
    for lbl in _orphan_labels(label_files):
        report.add("orphan_label", lbl, "label file without an image in this split; its boxes are not used. "
                   "Restore the image or remove the label file")
    return DetectionDataset(records, names, ids, root=root, format="yolo")


def _orphan_labels(label_files: set[Path]) -> list[Path]:
    """Label files beside the split's labels whose image exists nowhere (no image of that name in the matching
    ``images/`` folder). ``classes.txt`` (written by labelImg) is not a label file."""
    folders = {p.parent for p in label_files if p.parent.is_dir()}
    out = []
    for folder in sorted(folders):
        images = image_folder(folder)
        for lbl in sorted(folder.glob("*.txt")):
            if lbl in label_files or lbl.name == "classes.txt":
                continue
            if not any((images / f"{lbl.stem}{ext}").exists() for ext in (*IMAGE_EXTENSIONS,
                                                                            *(e.upper() for e in IMAGE_EXTENSIONS))):
                out.append(lbl)
    return out


def image_folder(labels: Path) -> Path:
    """The image folder of a label folder: the last ``labels`` part of the path becomes ``images``."""
    parts = list(labels.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "labels":
            parts[i] = "images"
            break
    return Path(*parts)


def write_yolo(
    dataset: DetectionDataset,
    root: str | os.PathLike[str],
    split: str = "train",
    *,
    images: str = "copy",
) -> Path:
    """Write ``dataset`` as split ``split`` of a YOLO dataset at ``root`` (``images/<split>/``,
    ``labels/<split>/``, ``data.yaml``; an existing ``data.yaml`` keeps its other splits). Class ids are the
    0-based labels and ``names`` a list, as ultralytics requires (a COCO file's sparse or 1-based category ids
    are not kept). ``ignore`` flags are not representable in YOLO txt and are dropped. Returns the ``data.yaml``
    path.
    """
    check_writable(dataset, "YOLO labels")
    root = Path(root)
    yaml_file = root / "data.yaml"
    data: dict[str, Any] = {}
    if yaml_file.is_file():
        data = yaml.safe_load(yaml_file.read_text(encoding="utf-8")) or {}
    data["path"] = str(root.resolve())
    data[split] = f"images/{split}"
    data["names"] = list(dataset.label_names)  # class ids 0..K-1, as ultralytics requires
    seen: set[str] = set()
    for rec in dataset.records:
        name = rec.path.name
        if name in seen:
            name = f"{rec.path.stem}_{rec.image_id}{rec.path.suffix}"
        seen.add(name)
        img = root / "images" / split / name
        place_image(rec.path, img, images)
        h, w = rec.size if rec.size is not None else image_size(rec.path)
        lines = []
        for (x1, y1, x2, y2), label in zip(rec.boxes.tolist(), rec.labels.tolist(), strict=True):
            cx, cy, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
            lines.append(f"{label} {cx!r} {cy!r} {bw!r} {bh!r}\n")
        lbl = label_path(img)
        lbl.parent.mkdir(parents=True, exist_ok=True)
        lbl.write_text("".join(lines), encoding="utf-8")
    yaml_file.parent.mkdir(parents=True, exist_ok=True)
    yaml_file.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return yaml_file


# --- registration ----------------------------------------------------------------------------------------

DATA_YAML_NAMES = ("data.yaml", "dataset.yaml", "data.yml")
"""File names that mark a YOLO dataset folder."""


def _detect(path: Path, split: str | None) -> Path | None:
    if path.is_file():
        return path if path.suffix.lower() in (".yaml", ".yml") else None
    return next((path / name for name in DATA_YAML_NAMES if (path / name).is_file()), None)


def _load(target: Path, split: str | None, *, problems: list[ParseProblem] | None, **kwargs: Any) -> DetectionDataset:
    return load_yolo(target, split or "train", problems=problems)


def _save(dataset: DetectionDataset, path: Path, split: str, **kwargs: Any) -> Path:
    return write_yolo(dataset, path, split, **kwargs)


register_dataset_format("yolo", detect=_detect, load=_load, save=_save, description="a YOLO data.yaml", splits=True,
                        priority=3)


__all__ = ["load_yolo", "write_yolo", "label_path"]
