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
import logging
import math
import os
from pathlib import Path
from typing import Any

from efficientdet.data.parsers._common import (
    BACKGROUND_NAMES,
    EntryError,
    ParseProblem,
    Problems,
    as_coordinate,
    as_int,
    as_number,
    check_writable,
    get_field,
    make_record,
    read_text,
    relative_name,
    short_repr,
)
from efficientdet.data.parsers.formats import register_dataset_format
from efficientdet.data.records import DetectionDataset
from efficientdet.errors import DataError

_log = logging.getLogger("efficientdet.data")


def _image_dir_candidates(ann_file: Path) -> list[Path]:
    """Where the images of a COCO json usually are: next to it, or ``<root>/{images,}/{split}`` for ``annotations/``."""
    parent = ann_file.parent
    split = ann_file.stem.split("_", 1)[-1]  # instances_val2017 -> val2017
    out = [parent, parent / "images", parent / split, parent / "images" / split]
    if parent.name == "annotations":
        root = parent.parent
        out += [root, root / "images", root / split, root / "images" / split]
    return out


_PROBE = 200  # file names sampled (evenly) when guessing the image folder


def _guess_image_dir(ann_file: Path, file_names: list[str]) -> Path:
    """The candidate folder holding the most images (an even sample of ``file_names`` is probed; the first
    candidate wins ties). The sampled names missing there are logged, so one missing file does not send every
    image to the wrong folder, and the ones that are missing are named."""
    candidates = list(dict.fromkeys(_image_dir_candidates(ann_file)))
    if not file_names:
        return ann_file.parent
    step = max(1, len(file_names) // _PROBE)
    probe = file_names[::step][:_PROBE]
    found = [sum((cand / name).is_file() for name in probe) for cand in candidates]
    best = max(range(len(candidates)), key=lambda i: (found[i], -i))
    root = candidates[best] if found[best] else ann_file.parent
    missing = [name for name in probe if not (root / name).is_file()]
    if missing:
        _log.warning("%s: images are read from %s (%d of %d sampled file_names found there); missing: %s%s. When "
                     "the images are elsewhere, put them next to the json (or in images/) or pass image_dir= to "
                     "load_dataset", ann_file, root,
                     len(probe) - len(missing), len(probe), ", ".join(missing[:5]),
                     f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    return root


def _read_json(ann_file: Path) -> Any:
    text = read_text(ann_file, "COCO annotation file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{ann_file} is not valid JSON ({err}); is it a COCO annotation file?") from err
    except RecursionError as err:
        raise DataError(f"{ann_file} is nested too deeply to be a COCO annotation file") from err


def _list_of(data: dict[str, Any], key: str, ann_file: Path) -> list[Any]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise DataError(f"{ann_file}: {key!r} is a {type(value).__name__}, not a list; a COCO json has lists "
                        "'images', 'annotations' and 'categories'")
    return value


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
        image_dir: folder that ``file_name`` is relative to; guessed when ``None``: of the json's folder and the
            usual ``annotations/`` sibling layouts (``images/``, ``<split>/``, ``images/<split>/``), the one
            holding the most of the images.
        drop_background: drop background-named categories that no annotation uses.
        problems: when a list is given, entries that cannot be used (annotations with unknown category ids or
            malformed boxes, images or categories without a valid ``id``, duplicate image ids) are dropped and
            described there (the dataset checker uses this); otherwise the first raises :class:`DataError`.

    Returns:
        A :class:`DetectionDataset` with ``format="coco"``, ``root`` = the image folder, and ``image_id`` of each
        record equal to the json image id.
    """
    ann_file = Path(ann_file)
    data = _read_json(ann_file)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{ann_file} has no 'images' list; a COCO json needs 'images' (and usually 'annotations', "
                        "'categories')")
    report = Problems(problems)
    images = _list_of(data, "images", ann_file)
    annotations = _list_of(data, "annotations", ann_file)

    categories: dict[int, str] = {}
    for n, cat in enumerate(_list_of(data, "categories", ann_file)):
        with report.entry(ann_file, f"categories[{n}]"):
            cid = as_int(get_field(cat, "id", "every category needs an integer id"), "its id")
            if cid in categories:
                raise EntryError(f"id {cid} is already used by category {categories[cid]!r}; give each category "
                                 "its own id")
            categories[cid] = str(cat.get("name", cid))

    # images: unique integer ids and a file name
    kept: dict[int, tuple[str, tuple[int, int] | None]] = {}
    first_of: dict[int, str] = {}
    shared: set[int] = set()
    for n, im in enumerate(images):
        name = im.get("file_name") if isinstance(im, dict) else None
        where = f"images[{n}]" + (f" ({name!r})" if isinstance(name, str) else "")
        with report.entry(ann_file, where):
            image_id = as_int(get_field(im, "id", "every image needs an integer id"), "its id")
            file_name = get_field(im, "file_name", "every image needs the file name of its picture")
            if not isinstance(file_name, str) or not file_name.strip():
                raise EntryError(f"file_name is {file_name!r}; give the image file's path relative to the image "
                                 "folder")
            if image_id in first_of:
                shared.add(image_id)
                report.add("duplicate_id", ann_file, f"{where}: image id {image_id} is also the id of "
                           f"{first_of[image_id]!r} ({file_name!r} here); annotations with image_id {image_id} "
                           "cannot be told apart and are not used. Give every image a unique id",
                           ids=(image_id,))
                continue
            first_of[image_id] = file_name
            kept[image_id] = (file_name, _size(im, where, ann_file, report))

    # annotations: validated first, so the category filter below sees only usable ones
    parsed: list[tuple[int, int, list[float], bool, Any]] = []
    for n, ann in enumerate(annotations):
        where = (f"annotation {short_repr(ann['id'])} (annotations[{n}])" if isinstance(ann, dict) and "id" in ann
                 else f"annotations[{n}]")
        with report.entry(ann_file, where):
            image_id = as_int(get_field(ann, "image_id", "each annotation names its image"), "image_id")
            if image_id in shared:
                raise EntryError(f"image id {image_id} belongs to several images (see the duplicate_id problem); "
                                 "the annotation is not used")
            if image_id not in kept:
                raise EntryError(f"image id {image_id} is not in 'images'; add the image or remove the annotation")
            cat = as_int(get_field(ann, "category_id", "each annotation names its category"), "category_id")
            bbox = get_field(ann, "bbox", "COCO boxes are [x, y, width, height]")
            if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
                raise EntryError(f"bbox is {short_repr(bbox)}; COCO boxes are [x, y, width, height]")
            x, y, w, h = (as_coordinate(v, f"bbox[{i}]") for i, v in enumerate(bbox))
            crowd = ann.get("iscrowd", 0)
            if crowd not in (0, 1, None):  # True/False compare equal to 1/0
                raise EntryError(f"iscrowd is {short_repr(crowd)}; use 0 or 1")
            parsed.append((image_id, cat, [x, y, x + w, y + h], bool(crowd), f"{where}, image {image_id}"))

    used = {cat for _, cat, _, _, _ in parsed}
    ordered = sorted(categories.items())
    if drop_background:
        ordered = [(cid, name) for cid, name in ordered if not (name.lower() in BACKGROUND_NAMES and cid not in used)]
    label_of = {cid: i for i, (cid, _) in enumerate(ordered)}
    names = tuple(name for _, name in ordered)

    root = Path(image_dir) if image_dir is not None else _guess_image_dir(
        ann_file, [name for name, _ in kept.values()])

    per_image: dict[int, tuple[list[list[float]], list[int], list[bool]]] = {i: ([], [], []) for i in kept}
    for image_id, cat, box, crowd, where in parsed:
        if cat not in label_of:
            report.add("unknown_class", ann_file, f"{where}: category_id {cat!r} is not in 'categories'", ids=(cat,))
            continue
        boxes, labels, ignore = per_image[image_id]
        boxes.append(box)
        labels.append(label_of[cat])
        ignore.append(crowd)

    records = [make_record(root / file_name, image_id, *per_image[image_id], size)
               for image_id, (file_name, size) in kept.items()]
    return DetectionDataset(records, names, tuple(label_of), root=root, format="coco")


def _size(im: dict[str, Any], where: str, ann_file: Path, report: Problems) -> tuple[int, int] | None:
    """``(height, width)`` of an image entry, ``None`` when absent; an unusable size is noted (the image's own
    size is used instead)."""
    h, w = im.get("height"), im.get("width")
    if h is None or w is None:
        return None
    with report.entry(ann_file, where, kind="bad_size"):
        hw = (as_number(h, "height"), as_number(w, "width"))
        if not all(math.isfinite(v) and v >= 1 and v.is_integer() for v in hw):
            raise EntryError(f"height x width is {h!r} x {w!r}, not a positive whole number of pixels; the size "
                             "is read from the image file instead")
        return int(hw[0]), int(hw[1])
    return None


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


# --- registration ----------------------------------------------------------------------------------------


def find_coco_json(folder: Path, split: str | None) -> Path | None:
    """The COCO json of ``split`` in ``folder`` (or ``folder/annotations``), or the only json when no split."""
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


def _detect(path: Path, split: str | None) -> Path | None:
    if path.is_file():
        return path if path.suffix.lower() == ".json" else None
    return find_coco_json(path, split)


def _load(target: Path, split: str | None, *, problems: list[ParseProblem] | None, **kwargs: Any) -> DetectionDataset:
    if target.is_dir():
        found = find_coco_json(target, split)
        if found is None:
            raise DataError(f"{target}: no COCO json found{f' for split {split!r}' if split else ''}")
        target = found
    return load_coco(target, problems=problems, **kwargs)


def _save(dataset: DetectionDataset, path: Path, split: str, **kwargs: Any) -> Path:
    return write_coco(dataset, path, **kwargs)


register_dataset_format("coco", detect=_detect, load=_load, save=_save, description="a COCO .json", priority=-1)


__all__ = ["load_coco", "write_coco", "coco_dict", "find_coco_json"]
