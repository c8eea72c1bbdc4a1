"""Pascal VOC XML (``VOCdevkit/VOC2007``, ``VOC2012``, ``07+12``) into a :class:`DetectionDataset` and back.

Coordinates: VOC ``<bndbox>`` values are 1-based pixel indices, ``xmax`` / ``ymax`` inclusive. With
``one_based=True`` (default) they become continuous 0-based pixel coordinates as detectron2 does:
``(xmin - 1, ymin - 1, xmax, ymax)``, so a box covering pixels 1..10 is 10 pixels wide. The writer applies
the inverse, so files round-trip. Tools that write 0-based VOC (labelme, CVAT exports) want
``one_based=False``.

Layouts read:

- ``VOCdevkit/`` holding ``VOC2007`` and/or ``VOC2012`` (``years`` picks, default all; ``07+12`` = both);
- one year folder (``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``);
- a flat folder with ``Annotations/`` and ``JPEGImages/`` but no ``ImageSets`` (every XML is used).

Classes: ``class_names.txt`` / ``labels.txt`` when present (one name a line, background lines skipped),
else the 20 VOC classes when every name is one of them, else the sorted names found. ``difficult``
becomes ``ignore``.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from efficientdet.data.parsers._common import (
    BACKGROUND_NAMES,
    EntryError,
    ParseProblem,
    Problems,
    as_coordinate,
    as_number,
    check_writable,
    fmt_number,
    make_record,
    place_image,
    read_text,
)
from efficientdet.data.parsers.formats import register_dataset_format
from efficientdet.data.records import DetectionDataset, ImageRecord
from efficientdet.errors import DataError

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
"""The 20 Pascal VOC classes in the official order (label ``i`` <-> VOC class index ``i``)."""

_CLASS_FILES = ("class_names.txt", "labels.txt", "classes.txt")


def _year_dirs(root: Path, years: tuple[str, ...] | None) -> list[Path]:
    if (root / "Annotations").is_dir():
        return [root]
    found = sorted(p for p in root.glob("VOC*") if (p / "Annotations").is_dir())
    if not found and (root / "VOCdevkit").is_dir():
        found = sorted(p for p in (root / "VOCdevkit").glob("VOC*") if (p / "Annotations").is_dir())
    if years:
        wanted = {f"VOC{y}" if not str(y).startswith("VOC") else str(y) for y in years}
        missing = wanted - {p.name for p in found}
        if missing:
            raise DataError(f"{root}: no {', '.join(sorted(missing))} folder with Annotations/; found "
                            f"{', '.join(p.name for p in found) or 'none'}")
        found = [p for p in found if p.name in wanted]
    if not found:
        raise DataError(f"{root} is not a VOC dataset: expected Annotations/ here, or VOC2007/ / VOC2012/ "
                        "(optionally under VOCdevkit/)")
    return found


def _text(node: ET.Element | None, tag: str, default: str = "") -> str:
    child = node.find(tag) if node is not None else None
    return (child.text or "").strip() if child is not None and child.text is not None else default


def _read_xml(xml: Path, report: Problems) -> tuple[str, tuple[int, int] | None, list[tuple[str, list[float], bool]]]:
    """``(image file name, (H, W) or None, [(class name, [xmin, ymin, xmax, ymax] as written, difficult)])`` of one
    XML file; objects that cannot be used are reported (naming the object) and left out."""
    if not xml.is_file():
        raise EntryError("listed in the image set but missing; restore it or remove its id from the image set")
    try:
        tree = ET.parse(xml).getroot()
    except ET.ParseError as err:
        raise EntryError(f"not valid XML ({err}); fix or re-export it") from err
    except (OSError, ValueError) as err:
        raise EntryError(f"cannot be read ({err})") from err
    if tree.tag != "annotation":
        raise EntryError(f"the root element is <{tree.tag}>, not <annotation>; is this a Pascal VOC file?")
    filename = _text(tree, "filename") or f"{xml.stem}.jpg"
    size = None
    size_node = tree.find("size")
    if size_node is not None:
        with report.entry(xml, "<size>", kind="bad_size"):
            h, w = (as_number(_text(size_node, t), f"<{t}>", text=True) for t in ("height", "width"))
            if min(h, w) > 0 and h.is_integer() and w.is_integer():  # 0 x 0: tools that leave the size unset
                size = (int(h), int(w))
            elif not (h == 0 and w == 0):
                raise EntryError(f"height x width is {h:g} x {w:g}, not a positive size; the image's own size is used")
    objects = []
    for n, obj in enumerate(tree.findall("object"), 1):
        name = _text(obj, "name")
        with report.entry(xml, f"object {n} ({name!r})" if name else f"object {n}"):
            if not name:
                raise EntryError("has no <name>; give the class name")
            bb = obj.find("bndbox")
            if bb is None:
                raise EntryError("has no <bndbox>; give xmin, ymin, xmax, ymax")
            coords = [as_coordinate(_text(bb, t), f"<{t}>", text=True) for t in ("xmin", "ymin", "xmax", "ymax")]
            difficult = _text(obj, "difficult", "0") or "0"
            objects.append((name, coords, difficult not in ("0", "false", "False")))
    return filename, size, objects


def _class_names_file(dirs: list[Path]) -> tuple[str, ...] | None:
    for d in dirs:
        for cand in (d, d.parent):
            for name in _CLASS_FILES:
                f = cand / name
                if f.is_file():
                    lines = [ln.strip() for ln in read_text(f, "class list").splitlines()]
                    return tuple(ln for ln in lines if ln and ln.lower() not in BACKGROUND_NAMES)
    return None


def load_voc(
    root: str | os.PathLike[str],
    split: str | None = "trainval",
    years: tuple[str, ...] | str | None = None,
    *,
    one_based: bool = True,
    class_names: tuple[str, ...] | None = None,
    problems: list[ParseProblem] | None = None,
) -> DetectionDataset:
    """Read Pascal VOC annotations.

    Args:
        root: ``VOCdevkit``, a ``VOC20xx`` folder, or a folder with ``Annotations/`` and ``JPEGImages/``.
        split: image-set name in ``ImageSets/Main`` (``train``, ``val``, ``trainval``, ``test``); ``None`` or a
            missing ``ImageSets`` folder uses every XML file.
        years: ``"2007"``, ``"2012"``, ``("2007", "2012")`` or ``"07+12"``; default every year found.
        one_based: VOC's 1-based inclusive pixel indices (see the module docstring); ``False`` for 0-based files.
        class_names: the label order; default from a class file, the VOC classes, or the sorted names found.
        problems: collect unknown classes and malformed objects here instead of raising.

    Returns:
        A :class:`DetectionDataset` (``format="voc"``), ``root`` = the first year folder; ``category_ids`` are
        the class indices ``0 .. K-1``; ``image_id`` counts records from 0.
    """
    root = Path(root)
    if isinstance(years, str):
        years = tuple({"07": "2007", "12": "2012"}.get(y, y) for y in years.replace(" ", "").split("+"))
    dirs = _year_dirs(root, years)
    report = Problems(problems)

    xml_files: list[tuple[Path, Path]] = []  # (year dir, xml)
    for d in dirs:
        listing = d / "ImageSets" / "Main" / f"{split}.txt" if split else None
        if listing is not None and listing.is_file():
            ids = [ln.split()[0] for ln in read_text(listing, "VOC image set").splitlines() if ln.strip()]
            xml_files += [(d, d / "Annotations" / f"{i}.xml") for i in ids]
        elif listing is not None and (d / "ImageSets" / "Main").is_dir():
            raise DataError(f"{listing} not found; available splits: "
                            f"{', '.join(sorted(p.stem for p in (d / 'ImageSets' / 'Main').glob('*.txt') if '_' not in p.stem))}")
        else:
            xml_files += [(d, f) for f in sorted((d / "Annotations").glob("*.xml"))]

    parsed = []
    for d, xml in xml_files:
        with report.entry(xml, "annotation file"):
            parsed.append((d, xml, *_read_xml(xml, report)))
    names = class_names or _class_names_file(dirs)
    if names is None:
        found = {name for *_, objs in parsed for name, _, _ in objs}
        names = VOC_CLASSES if found <= set(VOC_CLASSES) else tuple(sorted(found))
    label_of = {n: i for i, n in enumerate(names)}
    shift = 1.0 if one_based else 0.0

    records = []
    for image_id, (d, xml, filename, size, objects) in enumerate(parsed):
        path = d / "JPEGImages" / filename
        boxes, labels, ignore = [], [], []
        for name, (x1, y1, x2, y2), difficult in objects:
            if name not in label_of:
                report.add("unknown_class", xml, f"object class {name!r} is not in the class list "
                           f"({', '.join(names)}); add it to class_names.txt or fix the name", ids=(name,))
                continue
            boxes.append([x1 - shift, y1 - shift, x2, y2])
            labels.append(label_of[name])
            ignore.append(difficult)
        records.append(make_record(path, image_id, boxes, labels, ignore, size))
    return DetectionDataset(records, tuple(names), root=dirs[0], format="voc")


def _voc_xml(rec: ImageRecord, names: tuple[str, ...], filename: str, size: tuple[int, int], shift: float) -> str:
    h, w = size
    parts = ["<annotation>", "  <folder>JPEGImages</folder>", f"  <filename>{filename}</filename>",
             f"  <size><width>{w}</width><height>{h}</height><depth>3</depth></size>"]
    assert rec.ignore is not None
    for (x1, y1, x2, y2), label, ign in zip(rec.boxes.tolist(), rec.labels.tolist(), rec.ignore.tolist(), strict=True):
        name = names[label].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        parts += ["  <object>", f"    <name>{name}</name>", f"    <difficult>{int(ign)}</difficult>",
                  "    <bndbox>",
                  f"      <xmin>{fmt_number(x1 + shift)}</xmin>", f"      <ymin>{fmt_number(y1 + shift)}</ymin>",
                  f"      <xmax>{fmt_number(x2)}</xmax>", f"      <ymax>{fmt_number(y2)}</ymax>",
                  "    </bndbox>", "  </object>"]
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


def write_voc(
    dataset: DetectionDataset,
    root: str | os.PathLike[str],
    split: str = "trainval",
    *,
    one_based: bool = True,
    images: str = "copy",
) -> Path:
    """Write ``dataset`` as a VOC year folder: ``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``
    and ``class_names.txt`` (the label order). ``images``: ``copy`` | ``symlink`` | ``none``. Returns ``root``.
    """
    from efficientdet.data.images import image_size

    check_writable(dataset, "VOC XML")
    root = Path(root)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    shift = 1.0 if one_based else 0.0
    ids: list[str] = []
    seen: set[str] = set()
    for rec in dataset.records:
        stem = rec.path.stem
        if stem in seen:
            stem = f"{stem}_{rec.image_id}"
        filename = stem + rec.path.suffix
        size = rec.size if rec.size is not None else image_size(rec.path)
        (root / "Annotations" / f"{stem}.xml").write_text(
            _voc_xml(rec, dataset.label_names, filename, size, shift), encoding="utf-8")
        place_image(rec.path, root / "JPEGImages" / filename, images)
        ids.append(stem)
        seen.add(stem)
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    (root / "class_names.txt").write_text("".join(f"{n}\n" for n in dataset.label_names), encoding="utf-8")
    return root


# --- registration ----------------------------------------------------------------------------------------


def _detect(path: Path, split: str | None) -> Path | None:
    if path.is_dir() and ((path / "Annotations").is_dir() or any(path.glob("VOC20*")) or (path / "VOCdevkit").is_dir()):
        return path
    return None


def _load(target: Path, split: str | None, *, problems: list[ParseProblem] | None, **kwargs: Any) -> DetectionDataset:
    return load_voc(target, split or "trainval", problems=problems, **kwargs)


def _save(dataset: DetectionDataset, path: Path, split: str, **kwargs: Any) -> Path:
    return write_voc(dataset, path, split, **kwargs)


register_dataset_format("voc", detect=_detect, load=_load, save=_save, description="a VOC folder", splits=True,
                        priority=2)


__all__ = ["VOC_CLASSES", "load_voc", "write_voc"]
