"""COCO json (``instances_*.json``, ``image_info_test-dev*.json``) into a :class:`DetectionDataset` and back.

- ``bbox`` ``[x, y, w, h]`` (pixels, continuous coordinates) becomes ``xyxy``;
- category ids may be sparse (COCO: 1..90 with gaps): label ``i`` is the ``i``-th category by ascending
  id, ``category_ids[i]`` maps it back;
- ``iscrowd: 1`` becomes ``ignore``;
- images without annotations are kept (with zero boxes), and files with no ``annotations`` key at all
  (test-dev image lists) give records with no boxes;
- a category named like a background slot (``_background_``, as labelme writes at id 0) that no annotation
  uses is dropped: EfficientDet has no background class;
- the writer computes ``area`` as ``w * h`` of the box, replacing missing or wrong areas.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from efficientdet.data.parsers._common import (
    BACKGROUND_NAMES,
    ParseProblem,
    Problems,
    check_writable,
    make_record,
    relative_name,
)
from efficientdet.data.records import DetectionDataset
from efficientdet.errors import DataError


def _image_dir_candidates(ann_file: Path) -> list[Path]:
    """Where the images of a COCO json usually are: next to it, or ``<root>/{images,}/{split}`` for ``annotations/``."""
    parent = ann_file.parent
    split = ann_file.stem.split("_", 1)[-1]  # instances_val2017 -> val2017
    out = [parent, parent / "images", parent / split, parent / "images" / split]
    if parent.name == "annotations":
        root = parent.parent
        out += [root, root / "images", root / split, root / "images" / split]
    return out


def _guess_image_dir(ann_file: Path, file_names: list[str]) -> Path:
    candidates = _image_dir_candidates(ann_file)
    probe = file_names[:5]
    for cand in candidates:
        if probe and all((cand / name).exists() for name in probe):
            return cand
    return ann_file.parent


def load_coco(
    ann_file: str | os.PathLike[str],
    image_dir: str | os.PathLike[str] | None = None,
    *,
    drop_background: bool = True,
    problems: list[ParseProblem] | None = None,
) -> DetectionDataset:
    """Read a COCO detection json.

    Args:
        ann_file: the json file.
        image_dir: folder that ``file_name`` is relative to; guessed when ``None`` (the json's folder, or the
            usual ``annotations/`` sibling layouts ``images/``, ``<split>/``, ``images/<split>/``).
        drop_background: drop background-named categories that no annotation uses.
        problems: when a list is given, annotations with unknown category ids or malformed boxes are dropped
            and described there (the dataset checker uses this); otherwise they raise :class:`DataError`.

    Returns:
        A :class:`DetectionDataset` with ``format="coco"``, ``root`` = the image folder, and ``image_id`` of each
        record equal to the json image id.
    """
    ann_file = Path(ann_file)
    try:
        with open(ann_file, encoding="utf-8") as f:
            data: dict[str, Any] = json.load(f)
    except FileNotFoundError as err:
        raise DataError(f"COCO annotation file not found: {ann_file}") from err
    except json.JSONDecodeError as err:
        raise DataError(f"{ann_file} is not valid JSON ({err}); is it a COCO annotation file?") from err
    if not isinstance(data, dict) or "images" not in data:
        raise DataError(f"{ann_file} has no 'images' list; a COCO json needs 'images' (and usually 'annotations', "
                        "'categories')")
    report = Problems(problems)
    images = data["images"]
    annotations = data.get("annotations") or []
    categories = sorted(data.get("categories") or [], key=lambda c: int(c["id"]))
    used = {a.get("category_id") for a in annotations}
    if drop_background:
        categories = [c for c in categories if not (str(c.get("name", "")).lower() in BACKGROUND_NAMES
                                                    and c["id"] not in used)]
    label_of = {int(c["id"]): i for i, c in enumerate(categories)}
    names = tuple(str(c.get("name", c["id"])) for c in categories)

    root = Path(image_dir) if image_dir is not None else _guess_image_dir(
        ann_file, [str(im.get("file_name", "")) for im in images])

    per_image: dict[int, tuple[list[list[float]], list[int], list[bool]]] = {int(im["id"]): ([], [], [])
                                                                           for im in images}
    for ann in annotations:
        image_id = int(ann.get("image_id", -1))
        if image_id not in per_image:
            report.add("bad_row", ann_file, f"annotation {ann.get('id')} refers to image id {image_id}, which is not "
                       "in 'images'; add the image or remove the annotation")
            continue
        cat = ann.get("category_id")
        if cat not in label_of:
            report.add("unknown_class", ann_file, f"annotation {ann.get('id')} (image {image_id}) has category_id "
                       f"{cat!r}, which is not in 'categories'", ids=(cat,))
            continue
        bbox = ann.get("bbox")
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
            report.add("bad_row", ann_file, f"annotation {ann.get('id')} (image {image_id}) has bbox {bbox!r}; "
                       "COCO boxes are [x, y, width, height]")
            continue
        x, y, w, h = (float(v) for v in bbox)
        boxes, labels, ignore = per_image[image_id]
        boxes.append([x, y, x + w, y + h])
        labels.append(label_of[cat])
        ignore.append(bool(ann.get("iscrowd", 0)))

    records = []
    for im in images:
        image_id = int(im["id"])
        boxes, labels, ignore = per_image[image_id]
        h, w = im.get("height"), im.get("width")
        size = (int(h), int(w)) if h and w else None
        records.append(make_record(root / str(im.get("file_name", "")), image_id, boxes, labels, ignore, size))
    return DetectionDataset(records, names, tuple(label_of), root=root, format="coco")


def coco_dict(dataset: DetectionDataset, root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The COCO json content of a dataset (``file_name`` relative to ``root``, default ``dataset.root``).

    Image sizes come from the records, or from the image file header when a record has none.
    """
    from efficientdet.data.images import image_size

    check_writable(dataset, "COCO json")
    root_path = Path(root) if root is not None else dataset.root
    images, annotations = [], []
    ann_id = 1
    for rec in dataset.records:
        h, w = rec.size if rec.size is not None else image_size(rec.path)
        images.append({"id": int(rec.image_id), "file_name": relative_name(rec, root_path), "height": int(h),
                       "width": int(w)})
        assert rec.ignore is not None
        for box, label, ign in zip(rec.boxes.tolist(), rec.labels.tolist(), rec.ignore.tolist(), strict=True):
            x1, y1, x2, y2 = box
            bw, bh = x2 - x1, y2 - y1
            annotations.append({
                "id": ann_id, "image_id": int(rec.image_id), "category_id": dataset.category_ids[label],
                "bbox": [x1, y1, bw, bh], "area": max(bw, 0.0) * max(bh, 0.0), "iscrowd": int(ign),
            })
            ann_id += 1
    categories = [{"id": cid, "name": name, "supercategory": ""}
                  for cid, name in zip(dataset.category_ids, dataset.label_names, strict=True)]
    return {"images": images, "annotations": annotations, "categories": categories}


def write_coco(dataset: DetectionDataset, ann_file: str | os.PathLike[str],
               root: str | os.PathLike[str] | None = None) -> Path:
    """Write ``dataset`` as a COCO json at ``ann_file`` (see :func:`coco_dict`); returns the path."""
    ann_file = Path(ann_file)
    ann_file.parent.mkdir(parents=True, exist_ok=True)
    content = coco_dict(dataset, root if root is not None else (dataset.root or ann_file.parent))
    with open(ann_file, "w", encoding="utf-8") as f:
        json.dump(content, f)
    return ann_file


__all__ = ["load_coco", "write_coco", "coco_dict"]
