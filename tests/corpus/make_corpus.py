"""A corpus of broken and unusual inputs, generated into a folder (nothing binary is committed).

``make_corpus(root)`` writes one small dataset (or weight file) per :class:`Case` under ``root`` and returns
the cases; each says what every command must do with it: the exit code, the words the message must contain
(the file and the entry: annotation id, line, XML object, key) and how many good items next to the bad one
must still be processed. ``tests/corpus/test_corpus.py`` runs ``data check``, ``train``, ``validate`` and
``predict`` on every case through the CLI.

Run as a script to look at the files: ``python tests/corpus/make_corpus.py OUT_DIR``.

Every dataset has the classes ``cat`` and ``dog`` and small random-pixel images (48 x 64 unless a case needs
another), so one tiny 2-class checkpoint evaluates all of them.
"""

from __future__ import annotations

import io
import json
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

H, W = 48, 64
NAMES = ("cat", "dog")
BOX = [8, 6, 30, 20]  # COCO xywh of every good box (inside 64 x 48)

# what each command must do: (exit code, count) where the count is
#   check:    boxes read (good annotations next to the bad one are still read); check_header: the same with
#             --images header
#   train:    images skipped in the epoch (all others are trained on)
#   validate: images that get results (all readable images are evaluated)
#   predict:  images predicted (all readable images)
Expect = dict[str, tuple[int, int | None]]


@dataclass
class Case:
    """One corpus item: ``path`` is the dataset (annotation file or folder) or the weight file."""

    name: str
    group: str  # image | coco | voc | yolo | csv | openimages | weights
    path: Path
    expect: Expect
    names: tuple[str, ...] = ()  # words the message must contain: data check's report, failing commands' errors
    refusal: tuple[str, ...] = ()  # more words a refusing train / validate must say (the reason)
    issue: str | None = None  # issue code data check must report
    fmt: str | None = None  # --format to pass
    split: str | None = None  # --split for validate
    images: Path | None = None  # folder to predict on (image cases)
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# --- files -------------------------------------------------------------------------------------------------------


def pixels(size: tuple[int, int] = (H, W), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)


def save_image(path: Path, size: tuple[int, int] = (H, W), seed: int = 0, mode: str = "RGB", fmt: str | None = None,
               **kwargs: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(pixels(size, seed), "RGB")
    if mode == "I;16":
        img = Image.fromarray((np.asarray(img.convert("L"), dtype=np.uint16) * 257).astype(np.uint16))
    elif mode != "RGB":
        img = img.convert(mode)
    img.save(path, fmt, **kwargs)
    return path


def jpeg_bytes(size: tuple[int, int] = (H, W), seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels(size, seed), "RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(side: int = 40000) -> bytes:
    """A PNG whose header says ``side x side`` pixels (1.6 G) while the file is a few hundred bytes."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _png_chunk(b"IEND", b""))


def bad_crc_png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels(), "RGB").save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[29] ^= 0xFF  # IHDR's CRC
    return bytes(data)


def exif_rotated_jpeg() -> bytes:
    img = Image.fromarray(pixels((W, H)), "RGB")  # stored sideways (64 x 48 as H x W), shown upright as 48 x 64
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes())
    return buf.getvalue()


# --- the good datasets each case breaks ----------------------------------------------------------------------------


def coco_content(n: int = 3, size: tuple[int, int] = (H, W)) -> dict[str, Any]:
    """``n`` images ``img0.jpg ...`` (ids 1..n), one box each (annotation ids 10..), classes cat (1) and dog (2)."""
    return {
        "images": [{"id": i + 1, "file_name": f"img{i}.jpg", "height": size[0], "width": size[1]} for i in range(n)],
        "annotations": [{"id": 10 + i, "image_id": i + 1, "category_id": 1 + i % 2, "bbox": list(BOX), "area": 600.0,
                         "iscrowd": 0} for i in range(n)],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }


def write_coco(folder: Path, content: dict[str, Any] | None = None, *, n: int = 3, text: str | bytes | None = None,
               images: bool = True) -> Path:
    """``folder/annotations.json`` and its images beside it; ``text`` replaces the json's content as written."""
    folder.mkdir(parents=True, exist_ok=True)
    content = coco_content(n) if content is None else content
    if images:
        for i in range(n):
            save_image(folder / f"img{i}.jpg", seed=i)
    ann = folder / "annotations.json"
    if text is None:
        ann.write_text(json.dumps(content))
    elif isinstance(text, bytes):
        ann.write_bytes(text)
    else:
        ann.write_text(text)
    return ann


def voc_xml(name: str = "cat", box: tuple[Any, ...] = (9, 7, 38, 26), size: tuple[Any, Any] = (H, W),
            filename: str = "img0.jpg", objects: str | None = None) -> str:
    obj = objects if objects is not None else (
        f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin>"
        f"<xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object>")
    return (f"<annotation><filename>{filename}</filename><size><width>{size[1]}</width><height>{size[0]}</height>"
            f"<depth>3</depth></size>{obj}</annotation>")


def write_voc(folder: Path, n: int = 3, xml: dict[int, str | bytes] | None = None,
              image_sets: list[str] | None = None) -> Path:
    """A flat VOC folder (Annotations/, JPEGImages/, class_names.txt); ``xml`` replaces the XML of image ``i``."""
    (folder / "Annotations").mkdir(parents=True, exist_ok=True)
    (folder / "class_names.txt").write_text("cat\ndog\n")
    for i in range(n):
        save_image(folder / "JPEGImages" / f"img{i}.jpg", seed=i)
        content = (xml or {}).get(i, voc_xml(NAMES[i % 2], filename=f"img{i}.jpg"))
        path = folder / "Annotations" / f"img{i}.xml"
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    if image_sets is not None:
        (folder / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
        for split in ("train", "val"):
            (folder / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in image_sets))
    return folder


def write_yolo(folder: Path, n: int = 3, labels: dict[int, str | bytes] | None = None,
               yaml_text: str | None = None) -> Path:
    """``folder/data.yaml`` (train = val = images/train, names [cat, dog]) with one box per image."""
    for i in range(n):
        save_image(folder / "images" / "train" / f"img{i}.jpg", seed=i)
        lbl = folder / "labels" / "train" / f"img{i}.txt"
        lbl.parent.mkdir(parents=True, exist_ok=True)
        content = (labels or {}).get(i, f"{i % 2} 0.3 0.3 0.25 0.3\n")
        lbl.write_bytes(content) if isinstance(content, bytes) else lbl.write_text(content)
    data = folder / "data.yaml"
    data.write_text(yaml_text if yaml_text is not None else
                    "path: .\ntrain: images/train\nval: images/train\nnames: [cat, dog]\n")
    return data


def write_csv(folder: Path, rows: list[str] | None = None, n: int = 3, header: str = "image,xmin,ymin,xmax,ymax,label",
              text: bytes | None = None) -> Path:
    """``folder/boxes.csv`` with one box per image (line 2.. for images 0..)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        save_image(folder / f"img{i}.jpg", seed=i)
    path = folder / "boxes.csv"
    if text is not None:
        path.write_bytes(text)
        return path
    body = rows if rows is not None else [f"img{i}.jpg,8,6,38,26,{NAMES[i % 2]}" for i in range(n)]
    path.write_text("\n".join(([header] if header else []) + body) + "\n")
    return path


OI_HEADER = "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsGroupOf"


def write_openimages(folder: Path, rows: list[str] | None = None, n: int = 3, header: str = OI_HEADER,
                     classes: str = "/m/cat,cat\n/m/dog,dog\n") -> Path:
    """An OpenImages folder: ``train-annotations-bbox.csv``, ``class-descriptions-boxable.csv``, ``images/``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        save_image(folder / "images" / f"img{i}.jpg", seed=i)
    body = rows if rows is not None else [f"img{i},human,/m/{NAMES[i % 2]},1,0.1,0.5,0.1,0.5,0" for i in range(n)]
    (folder / "train-annotations-bbox.csv").write_text("\n".join([header, *body]) + "\n")
    (folder / "class-descriptions-boxable.csv").write_text(classes)
    return folder


# --- the cases -----------------------------------------------------------------------------------------------------


def _ok(check: int, train: int = 0, validate: int | None = None, predict: int | None = None) -> Expect:
    """A dataset every command accepts: ``check`` boxes, ``train`` images skipped, ``validate`` images evaluated."""
    out: Expect = {"check": (0, check), "train": (0, train)}
    if validate is not None:
        out["validate"] = (0, validate)
    if predict is not None:
        out["predict"] = (0, predict)
    return out


def _bad_entry(check_boxes: int, validate: bool = True) -> Expect:
    """A dataset with an unusable entry: data check lists it (exit 1, the good entries still counted), training
    and evaluation refuse to start (exit 2) naming it."""
    out: Expect = {"check": (1, check_boxes), "train": (2, None)}
    if validate:
        out["validate"] = (2, None)
    return out


def _unreadable() -> Expect:
    """A file that cannot be read at all: every command stops (exit 2) naming it."""
    return {"check": (2, None), "train": (2, None), "validate": (2, None)}


def image_cases(root: Path) -> list[Case]:
    """A COCO set of three good images plus one unusual (valid) or broken image ``x.<ext>`` with one box."""
    cases = []
    valid: list[tuple[str, Path, tuple[int, int], list[float]]] = []

    def add(name: str, writer: Callable[[Path], Any] | bytes | None, suffix: str = ".jpg", *, ok: bool,
            size: tuple[int, int] = (H, W), box: list[float] | None = None, words: tuple[str, ...] = ()) -> None:
        folder = root / name
        content = coco_content(3)
        file_name = f"x{suffix}"
        content["images"].append({"id": 4, "file_name": file_name, "height": size[0], "width": size[1]})
        content["annotations"].append({"id": 13, "image_id": 4, "category_id": 1, "bbox": box or list(BOX),
                                       "area": 1.0, "iscrowd": 0})
        ann = write_coco(folder, content)
        target = folder / file_name
        if isinstance(writer, bytes):
            target.write_bytes(writer)
        elif writer is not None:
            writer(target)
        # a broken image: data check lists it (exit 1) and still counts every box; train skips it, validate and
        # predict give results for the three others. The valid ones are trained on together (img_valid_all below:
        # one training run instead of one each keeps the suite fast)
        expect = ({"check": (0, 4), "validate": (0, 4), "predict": (0, 4)} if ok else
                  {"check": (1, 4), "train": (0, 1), "validate": (0, 3), "predict": (0, 3)})
        if ok:
            valid.append((name, target, size, box or list(BOX)))
        cases.append(Case(name, "image", ann, expect, (file_name, *words), issue=None if ok else "unreadable_image",
                          images=folder, note=f"{'valid' if ok else 'broken'} image {file_name}"))

    jpg = jpeg_bytes(seed=9)
    add("img_truncated_jpeg", jpg[: len(jpg) // 2], ok=False)
    add("img_zero_bytes", b"", ok=False)
    add("img_text_named_jpg", b"<html><body>404 Not Found</body></html>\n", ok=False)
    add("img_random_bytes", np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes(), ok=False)
    add("img_decompression_bomb", bomb_png(), ".png", ok=False, size=(40000, 40000), words=("too large",))
    cases[-1].expect["check_header"] = (1, 4)  # data check --images header reads only the header: refused too
    add("img_png_bad_crc", bad_crc_png(), ".png", ok=False)
    add("img_jpeg_header_only", jpg[:200], ok=False)
    add("img_directory", lambda p: p.mkdir(), ok=False)
    # valid but unusual files: every command takes them
    add("img_png_named_jpg", lambda p: save_image(p, seed=4, fmt="PNG"), ok=True)
    add("img_cmyk_jpeg", lambda p: save_image(p, mode="CMYK", fmt="JPEG"), ok=True)
    add("img_16bit_png", lambda p: save_image(p, mode="I;16", fmt="PNG"), ".png", ok=True)
    add("img_palette_png", lambda p: save_image(p, mode="P", fmt="PNG"), ".png", ok=True)
    add("img_rgba_png", lambda p: save_image(p, mode="RGBA", fmt="PNG"), ".png", ok=True)
    add("img_grayscale_jpeg", lambda p: save_image(p, mode="L", fmt="JPEG"), ok=True)
    add("img_1x1", lambda p: save_image(p, size=(1, 1)), ".png", ok=True, size=(1, 1), box=[0, 0, 1, 1])
    add("img_10000x50", lambda p: save_image(p, size=(50, 10000)), ".png", ok=True, size=(50, 10000),
        box=[100, 10, 900, 30])
    add("img_bmp", lambda p: save_image(p, fmt="BMP"), ".bmp", ok=True)
    add("img_tiff", lambda p: save_image(p, fmt="TIFF"), ".tiff", ok=True)
    add("img_webp", lambda p: save_image(p, fmt="WEBP"), ".webp", ok=True)
    add("img_gif", lambda p: save_image(p, mode="P", fmt="GIF"), ".gif", ok=True)
    add("img_exif_rotated", exif_rotated_jpeg(), ok=True)
    # every valid unusual image in one set: trained on without a skip, next to three plain images
    folder = root / "img_valid_all"
    content = coco_content(3)
    for i, (name, src, size, box) in enumerate(valid):
        file_name = f"{name}{src.suffix}"
        content["images"].append({"id": 4 + i, "file_name": file_name, "height": size[0], "width": size[1]})
        content["annotations"].append({"id": 13 + i, "image_id": 4 + i, "category_id": 1 + i % 2, "bbox": box,
                                       "area": 1.0, "iscrowd": 0})
        folder.mkdir(parents=True, exist_ok=True)
        (folder / file_name).write_bytes(src.read_bytes())
    n = 3 + len(valid)
    cases.append(Case("img_valid_all", "image", write_coco(folder, content), _ok(check=n, validate=n, predict=n),
                      images=folder, note="CMYK, 16-bit, palette, RGBA, gray, 1x1, 10000x50, BMP, TIFF, WebP, GIF, "
                      "EXIF-rotated, PNG named .jpg"))
    # every image file exists but none can be decoded: training stops after an epoch without a batch
    folder = root / "img_all_broken"
    ann = write_coco(folder, coco_content(3))
    for i in range(3):
        (folder / f"img{i}.jpg").write_bytes(jpg[:300])
    cases.append(Case("img_all_broken", "image", ann, {"check": (1, 3), "train": (2, None), "validate": (2, None),
                                                       "predict": (2, None)},
                      ("img0.jpg",), ("could", "data check"), issue="unreadable_image", images=folder,
                      note="three truncated files: nothing to train on"))
    # listed but absent: predict sees only the three files there
    folder = root / "img_missing_file"
    content = coco_content(3)
    content["images"].append({"id": 4, "file_name": "gone.jpg", "height": H, "width": W})
    cases.append(Case("img_missing_file", "image", write_coco(folder, content),
                      {"check": (1, 3), "train": (0, 1), "validate": (0, 3), "predict": (0, 3)}, ("gone.jpg",),
                      issue="unreadable_image", images=folder, note="an image listed in the annotations is absent"))
    return cases


def coco_cases(root: Path) -> list[Case]:
    cases = []

    def add(name: str, mutate: Callable[[dict[str, Any]], Any] | None, expect: Expect, words: tuple[str, ...],
            issue: str | None = None, n: int = 3, text: str | bytes | None = None, fmt: str | None = None,
            note: str = "", refusal: tuple[str, ...] = ()) -> None:
        content = coco_content(n)
        if mutate is not None:
            mutate(content)
        ann = write_coco(root / name, content, n=n, text=text)
        if expect["check"][0] != 0:
            words = ("annotations.json", *words)
        cases.append(Case(name, "coco", ann, expect, words, refusal, issue=issue, fmt=fmt, note=note))

    def ann(i: int, **changes: Any) -> Callable[[dict[str, Any]], None]:
        def mutate(c: dict[str, Any]) -> None:
            c["annotations"][i].update(changes)
        return mutate

    def bbox(i: int, j: int, value: Any) -> Callable[[dict[str, Any]], None]:
        def mutate(c: dict[str, Any]) -> None:
            c["annotations"][i]["bbox"][j] = value
        return mutate

    bad = _bad_entry(2)
    add("coco_bbox_string", bbox(1, 2, "30"), bad, ("annotation 11", "bbox[2]"), "bad_annotation")
    add("coco_bbox_word", bbox(1, 0, "left"), bad, ("annotation 11", "bbox[0]"), "bad_annotation")
    add("coco_bbox_null", bbox(1, 3, None), bad, ("annotation 11", "bbox[3]"), "bad_annotation")
    add("coco_bbox_bool", bbox(1, 1, True), bad, ("annotation 11", "bbox[1]"), "bad_annotation")
    add("coco_bbox_three_values", ann(1, bbox=[1, 2, 3]), bad, ("annotation 11", "bbox"), "bad_annotation")
    add("coco_bbox_not_list", ann(1, bbox="1,2,3,4"), bad, ("annotation 11", "bbox"), "bad_annotation")
    add("coco_bbox_missing", lambda c: c["annotations"][1].pop("bbox"), bad, ("annotation 11", "'bbox'"),
        "bad_annotation")
    add("coco_bbox_nan", bbox(1, 0, float("nan")), bad, ("annotation 11", "bbox[0]"), "bad_annotation")
    add("coco_bbox_inf", bbox(1, 2, float("inf")), bad, ("annotation 11", "bbox[2]"), "bad_annotation")
    add("coco_bbox_huge", bbox(1, 2, 1e30), _ok(check=3, validate=3), ("img1.jpg",), "box_outside_image",
        note="a 1e30-wide box: outside the image (a warning), clipped by the loader")
    add("coco_bbox_negative_size", bbox(1, 2, -20), _ok(check=3, validate=3), ("img1.jpg",), "zero_area",
        note="negative width: a warning; the loader drops the box")
    add("coco_image_without_id", lambda c: c["images"][1].pop("id"), _bad_entry(2), ("images[1]", "'id'"),
        "bad_annotation")
    add("coco_image_id_word", lambda c: c["images"][1].update(id="two"), _bad_entry(2), ("images[1]", "'two'"),
        "bad_annotation")
    add("coco_image_id_fraction", lambda c: c["images"][1].update(id=1.5), _bad_entry(2), ("images[1]", "1.5"),
        "bad_annotation")
    add("coco_image_not_object", lambda c: c["images"].insert(1, 7), _bad_entry(3), ("images[1]",), "bad_annotation")
    add("coco_image_without_file_name", lambda c: c["images"][1].pop("file_name"), _bad_entry(2),
        ("images[1]", "file_name"), "bad_annotation")
    add("coco_duplicate_image_ids", lambda c: c["images"][1].update(id=1), _bad_entry(1),
        ("image id 1", "img0.jpg", "img1.jpg"), "duplicate_image_id",
        note="two images share id 1: neither gets the other's boxes")
    add("coco_category_without_id", lambda c: c["categories"][1].pop("id"), _bad_entry(2),
        ("categories[1]", "'id'"), "bad_annotation")
    add("coco_category_id_word", lambda c: c["categories"][1].update(id="dog"), _bad_entry(2),
        ("categories[1]", "'dog'"), "bad_annotation")
    add("coco_duplicate_category_ids", lambda c: c["categories"][1].update(id=1), _bad_entry(2),
        ("categories[1]", "id 1"), "bad_annotation")
    add("coco_unknown_category", ann(1, category_id=7), _bad_entry(2), ("annotation 11", "category_id 7"),
        "unknown_class")
    add("coco_category_id_string", ann(1, category_id="1"), _bad_entry(2), ("annotation 11", "category_id"),
        "bad_annotation")
    add("coco_unknown_image_id", ann(1, image_id=99), _bad_entry(2), ("annotation 11", "image id 99"),
        "bad_annotation")
    add("coco_annotation_not_object", lambda c: c["annotations"].insert(1, "box"), _bad_entry(3),
        ("annotations[1]",), "bad_annotation")
    add("coco_annotation_without_image_id", lambda c: c["annotations"][1].pop("image_id"), _bad_entry(2),
        ("annotation 11", "image_id"), "bad_annotation")
    add("coco_iscrowd_word", ann(1, iscrowd="yes"), _bad_entry(2), ("annotation 11", "iscrowd"), "bad_annotation")
    add("coco_width_word", lambda c: c["images"][1].update(width="wide"), _ok(check=3, validate=3),
        ("images[1]", "width"), "bad_image_size", note="an unreadable size is a warning; the file's size is used")
    add("coco_size_zero", lambda c: c["images"][1].update(width=0, height=0), _ok(check=3, validate=3),
        ("images[1]",), "bad_image_size")
    add("coco_xyxy_in_bbox", lambda c: [a.update(bbox=[30, 20, 60, 44]) for a in c["annotations"]],
        _ok(check=3, validate=3), (), "looks_like_xyxy_in_coco", note="corners written into COCO's x, y, w, h")
    add("coco_zero_based_categories", lambda c: [a.update(category_id=a["category_id"] - 1) for a in
                                                 c["annotations"]],
        _bad_entry(1), ("category_id 0",), "unknown_class", note="annotation ids 0-based, categories 1-based")
    add("coco_no_annotations", lambda c: c.pop("annotations"),
        {"check": (1, 0), "train": (2, None), "validate": (0, 3)}, (), "no_boxes", refusal=("no usable box",),
        note="an image list without boxes: nothing to train on (evaluation writes results only)")
    add("coco_empty_annotations", lambda c: c.update(annotations=[]),
        {"check": (1, 0), "train": (2, None), "validate": (0, 3)}, (), "no_boxes", refusal=("no usable box",))
    add("coco_only_crowd_boxes", lambda c: [a.update(iscrowd=1) for a in c["annotations"]],
        {"check": (0, 3), "train": (2, None), "validate": (0, 3)}, ("annotations.json",),
        refusal=("no usable box",))
    add("coco_no_images", lambda c: c.update(images=[], annotations=[]), {"check": (1, 0), "train": (2, None),
                                                                         "validate": (2, None)},
        (), "no_images", refusal=("lists no images",))
    add("coco_annotations_not_list", lambda c: c.update(annotations={"a": 1}), _unreadable(),
        ("'annotations'", "not a list"))
    add("coco_no_images_key", lambda c: c.pop("images"), _unreadable(), ("'images'",))
    add("coco_top_level_list", None, _unreadable(), ("'images'",), text="[1, 2, 3]")
    add("coco_empty_file", None, _unreadable(), ("not valid JSON",), text="")
    add("coco_truncated_json", None, _unreadable(), ("not valid JSON",), text=json.dumps(coco_content())[:150])
    add("coco_not_utf8", None, _unreadable(), ("not UTF-8",),
        text=json.dumps(coco_content()).replace('"cat"', '"chat\\u00e9"').replace("\\u00e9", "\xe9").encode("latin-1"))
    add("coco_deeply_nested", None, _unreadable(), ("annotations.json",), text="[" * 100000 + "]" * 100000)
    add("coco_given_as_yolo", None, {"check": (2, None), "train": (2, None), "validate": (2, None)},
        ("COCO", "--format coco"), fmt="yolo", note="--format yolo on a COCO json names the mismatch")

    # the image folder guess: the first two of five files missing from the json's folder
    folder = root / "coco_first_files_missing"
    write_coco(folder, coco_content(5), n=5)
    (folder / "img0.jpg").unlink()
    (folder / "img1.jpg").unlink()
    cases.append(Case("coco_first_files_missing", "coco", folder / "annotations.json",
                      {"check": (1, 5), "train": (0, 2), "validate": (0, 3)}, ("img0.jpg", "img1.jpg"),
                      issue="unreadable_image", note="the folder holding most images is used; the missing are named"))
    # the images in images/ next to annotations/instances_train.json: found by the guess
    folder = root / "coco_images_subfolder"
    (folder / "annotations").mkdir(parents=True)
    ann_file = write_coco(folder / "images", coco_content(3))
    ann_file.rename(folder / "annotations" / "instances_train.json")
    cases.append(Case("coco_images_subfolder", "coco", folder / "annotations" / "instances_train.json",
                      _ok(check=3, validate=3), note="annotations/ + images/ layout"))
    # no image exists where the json says: nothing to train on
    folder = root / "coco_all_images_missing"
    write_coco(folder, coco_content(3), images=False)
    cases.append(Case("coco_all_images_missing", "coco", folder / "annotations.json",
                      {"check": (1, 3), "train": (2, None), "validate": (2, None)}, ("img0.jpg",),
                      ("none of the 3",), issue="unreadable_image"))
    return cases


def voc_cases(root: Path) -> list[Case]:
    cases = []

    def add(name: str, xml: dict[int, str | bytes] | None, expect: Expect, words: tuple[str, ...],
            issue: str | None = None, image_sets: list[str] | None = None, split: str | None = None) -> None:
        folder = write_voc(root / name, xml=xml, image_sets=image_sets)
        cases.append(Case(name, "voc", folder, expect, words, issue=issue, split=split))

    add("voc_width_word", {1: voc_xml("dog", size=(H, "sixty"), filename="img1.jpg")}, _ok(check=3, validate=3),
        ("img1.xml", "<width>"), "bad_image_size")
    add("voc_bndbox_word", {1: voc_xml("dog", box=(9, "seven", 38, 26), filename="img1.jpg")}, _bad_entry(2),
        ("img1.xml", "object 1", "<ymin>"), "bad_annotation")
    add("voc_bndbox_empty", {1: voc_xml("dog", box=(9, 7, "", 26), filename="img1.jpg")}, _bad_entry(2),
        ("img1.xml", "<xmax>"), "bad_annotation")
    add("voc_bndbox_nan", {1: voc_xml("dog", box=(9, 7, "nan", 26), filename="img1.jpg")}, _bad_entry(2),
        ("img1.xml", "<xmax>"), "bad_annotation")
    add("voc_no_bndbox", {1: voc_xml(objects="<object><name>dog</name></object>", filename="img1.jpg")},
        _bad_entry(2), ("img1.xml", "bndbox"), "bad_annotation")
    add("voc_no_name", {1: voc_xml(objects="<object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax>"
                                           "</bndbox></object>", filename="img1.jpg")},
        _bad_entry(2), ("img1.xml", "<name>"), "bad_annotation")
    add("voc_unknown_class", {1: voc_xml("horse", filename="img1.jpg")}, _bad_entry(2), ("img1.xml", "horse"),
        "unknown_class")
    add("voc_truncated_xml", {1: voc_xml("dog", filename="img1.jpg")[:60]}, _bad_entry(2), ("img1.xml", "XML"),
        "bad_annotation")
    add("voc_empty_xml", {1: ""}, _bad_entry(2), ("img1.xml",), "bad_annotation")
    add("voc_not_utf8", {1: voc_xml("dog", filename="img1.jpg").replace("dog", "d\xf6g").encode("latin-1")},
        _bad_entry(2), ("img1.xml",), "bad_annotation")
    add("voc_wrong_root", {1: "<foo><bar/></foo>"}, _bad_entry(2), ("img1.xml", "<foo>"), "bad_annotation")
    add("voc_listed_xml_missing", None, _bad_entry(3), ("img7.xml",), "bad_annotation",
        image_sets=["img0", "img1", "img2", "img7"], split="val")
    folder = write_voc(root / "voc_image_missing")
    (folder / "JPEGImages" / "img1.jpg").unlink()
    cases.append(Case("voc_image_missing", "voc", folder, {"check": (1, 3), "train": (0, 1), "validate": (0, 2)},
                      ("img1.jpg",), issue="unreadable_image"))
    return cases


def yolo_cases(root: Path) -> list[Case]:
    cases = []

    def add(name: str, labels: dict[int, str | bytes] | None, expect: Expect, words: tuple[str, ...],
            issue: str | None = None, yaml_text: str | None = None) -> Case:
        case = Case(name, "yolo", write_yolo(root / name, labels=labels, yaml_text=yaml_text), expect, words,
                    issue=issue)
        cases.append(case)
        return case

    add("yolo_word_in_line", {1: "1 0.3 abc 0.2 0.2\n"}, _bad_entry(2), ("img1.txt", "line 1"), "bad_annotation")
    add("yolo_fractional_class", {1: "1.5 0.3 0.3 0.2 0.2\n"}, _bad_entry(2), ("img1.txt", "line 1", "class id"),
        "bad_annotation")
    add("yolo_inf_class", {1: "inf 0.3 0.3 0.2 0.2\n"}, _bad_entry(2), ("img1.txt", "line 1"), "bad_annotation")
    add("yolo_unknown_class", {1: "0 0.3 0.3 0.2 0.2\n5 0.3 0.3 0.2 0.2\n"}, _bad_entry(3), ("img1.txt", "line 2"),
        "unknown_class")
    add("yolo_too_few_values", {1: "1 0.3 0.3\n"}, _bad_entry(2), ("img1.txt", "line 1"), "bad_annotation")
    add("yolo_odd_polygon", {1: "1 0.1 0.1 0.3 0.1 0.2\n"}, _bad_entry(2), ("img1.txt", "line 1"), "bad_annotation")
    add("yolo_nan_value", {1: "1 nan 0.3 0.2 0.2\n"}, _bad_entry(2), ("img1.txt", "line 1"), "bad_annotation")
    add("yolo_label_not_utf8", {1: b"1 0.3 0.3 0.2 0.2 \xff\xfe\n"}, _bad_entry(2), ("img1.txt", "UTF-8"),
        "bad_annotation")
    add("yolo_blank_lines", {1: "\n\n1 0.3 0.3 0.25 0.3\n\n"}, _ok(check=3, validate=3), ())
    case = add("yolo_empty_label_files", {0: "", 1: "", 2: ""},
               {"check": (1, 0), "train": (2, None), "validate": (0, 3)}, ("data.yaml",), "no_boxes")
    case.refusal = ("no usable box",)
    add("yolo_yaml_invalid", None, _unreadable(), ("data.yaml", "YAML"), yaml_text="train: [images/train\nnames: {")
    add("yolo_yaml_no_names", None, _unreadable(), ("data.yaml", "names"),
        yaml_text="path: .\ntrain: images/train\nval: images/train\n")
    add("yolo_yaml_bad_name_ids", None, _unreadable(), ("data.yaml", "'names'", "'first'"),
        yaml_text="path: .\ntrain: images/train\nval: images/train\nnames: {first: cat, second: dog}\n")
    add("yolo_yaml_is_list", None, _unreadable(), ("data.yaml", "mapping"), yaml_text="- cat\n- dog\n")
    add("yolo_yaml_empty", None, _unreadable(), ("data.yaml",), yaml_text="")
    add("yolo_yaml_missing_folder", None, _unreadable(), ("data.yaml", "images/nowhere"),
        yaml_text="path: .\ntrain: images/nowhere\nval: images/nowhere\nnames: [cat, dog]\n")
    # a label file without an image: reported (a warning), the others read
    case = add("yolo_label_without_image", None, _ok(check=3, validate=3), ("img9.txt",), "label_without_image")
    (case.path.parent / "labels" / "train" / "img9.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    # the image of a label file cannot be decoded (a decompression bomb): the image is left out, the others read
    case = add("yolo_bomb_image", None, {"check": (1, 3), "train": (0, 0), "validate": (0, 3)}, ("bomb.png",
                                                                                              "too large"),
               "unreadable_image")
    (case.path.parent / "images" / "train" / "bomb.png").write_bytes(bomb_png())
    (case.path.parent / "labels" / "train" / "bomb.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    return cases


def csv_cases(root: Path) -> list[Case]:
    cases = []

    def add(name: str, expect: Expect, words: tuple[str, ...], issue: str | None = None, **kwargs: Any) -> None:
        words = ("boxes.csv", *words) if expect["check"][0] != 0 else words
        cases.append(Case(name, "csv", write_csv(root / name, **kwargs), expect, words, issue=issue))

    good = [f"img{i}.jpg,8,6,38,26,{NAMES[i % 2]}" for i in range(3)]
    add("csv_header_missing_column", _unreadable(), ("ymax",), header="image,xmin,ymin,xmax,label",
        rows=[r.rsplit(",", 2)[0] + "," + r.rsplit(",", 1)[1] for r in good])
    add("csv_empty_label", _bad_entry(2), ("line 3", "label is empty"), "bad_annotation",
        rows=[good[0], "img1.jpg,8,6,38,26,", good[2]])
    add("csv_word_coordinate", _bad_entry(2), ("line 3", "ymin"), "bad_annotation",
        rows=[good[0], "img1.jpg,8,six,38,26,dog", good[2]])
    add("csv_nan_coordinate", _bad_entry(2), ("line 3", "xmax"), "bad_annotation",
        rows=[good[0], "img1.jpg,8,6,nan,26,dog", good[2]])
    add("csv_short_row", _bad_entry(2), ("line 3",), "bad_annotation", rows=[good[0], "img1.jpg,8,6", good[2]])
    add("csv_empty_image", _bad_entry(2), ("line 3", "image column"), "bad_annotation",
        rows=[good[0], ",8,6,38,26,dog", good[2]])
    add("csv_not_utf8", _unreadable(), ("UTF-8",), text="image,xmin,ymin,xmax,ymax,label\nimg0.jpg,1,1,9,9,\xe9t\xe9\n"
        .encode("latin-1"))
    add("csv_binary_file", _unreadable(), ("UTF-8",), text=b"\xff\xd8\xff\xe0" + bytes(range(256)))
    add("csv_empty_file", _unreadable(), ("empty",), text=b"")
    add("csv_no_header", _ok(check=3, validate=3), (), header="")
    add("csv_beyond_float32", _bad_entry(2), ("line 3", "float32"), "bad_annotation",
        rows=[good[0], "img1.jpg,8,6,1e300,26,dog", good[2]])
    add("csv_huge_coordinate", _ok(check=3, validate=3), ("img1.jpg",), "box_outside_image",
        rows=[good[0], "img1.jpg,8,6,1e30,26,dog", good[2]])
    folder = root / "csv_image_missing"
    write_csv(folder)
    (folder / "img2.jpg").unlink()
    cases.append(Case("csv_image_missing", "csv", folder / "boxes.csv",
                      {"check": (1, 3), "train": (0, 1), "validate": (0, 2)}, ("img2.jpg",), issue="unreadable_image"))
    return cases


def openimages_cases(root: Path) -> list[Case]:
    cases = []

    def add(name: str, expect: Expect, words: tuple[str, ...], issue: str | None = None, **kwargs: Any) -> None:
        cases.append(Case(name, "openimages", write_openimages(root / name, **kwargs), expect, words, issue=issue))

    good = [f"img{i},human,/m/{NAMES[i % 2]},1,0.1,0.5,0.1,0.5,0" for i in range(3)]
    add("oi_missing_column", _unreadable(), ("bbox.csv", "YMax"), header=OI_HEADER.replace(",YMax", ""),
        rows=[r.rsplit(",", 2)[0] + ",0" for r in good])
    add("oi_word_coordinate", _bad_entry(2), ("bbox.csv", "line 3", "XMax"), "bad_annotation",
        rows=[good[0], "img1,human,/m/dog,1,0.1,wide,0.1,0.5,0", good[2]])
    add("oi_short_row", _bad_entry(2), ("bbox.csv", "line 3"), "bad_annotation",
        rows=[good[0], "img1,human,/m/dog,1,0.1", good[2]])
    add("oi_unknown_mid", _bad_entry(2), ("bbox.csv", "line 3", "/m/horse"), "unknown_class",
        rows=[good[0], "img1,human,/m/horse,1,0.1,0.5,0.1,0.5,0", good[2]])
    add("oi_empty_image_id", _bad_entry(2), ("bbox.csv", "line 3", "ImageID"), "bad_annotation",
        rows=[good[0], ",human,/m/dog,1,0.1,0.5,0.1,0.5,0", good[2]])
    add("oi_duplicate_class", _unreadable(), ("class-descriptions", "/m/cat"),
        classes="/m/cat,cat\n/m/dog,dog\n/m/cat,kitty\n")
    add("oi_class_file_one_column", _unreadable(), ("class-descriptions", "line 2"), classes="/m/cat,cat\n/m/dog\n")
    folder = root / "oi_image_missing"
    write_openimages(folder)
    (folder / "images" / "img1.jpg").unlink()
    cases.append(Case("oi_image_missing", "openimages", folder, {"check": (1, 2), "train": (0, 0), "validate": (0, 2)},
                      ("img1.jpg",), issue="unreadable_image", note="the image is needed for its size: left out"))
    return cases


def weight_cases(root: Path, good_weights: Path) -> list[Case]:
    """Broken weight files, each given as ``predict --checkpoint``, ``validate --checkpoint``, ``train --checkpoint``
    and ``train --resume``: every command stops with exit 2 naming the file and what is wrong with it."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    root.mkdir(parents=True, exist_ok=True)
    cases = []
    every = {"predict": (2, None), "validate": (2, None), "train": (2, None), "resume": (2, None)}

    def add(name: str, filename: str, content: bytes | Callable[[Path], Any], words: tuple[str, ...],
            expect: Expect | None = None) -> None:
        path = root / name / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            content(path)
        cases.append(Case(name, "weights", path, expect or dict(every), (filename, *words)))

    good = good_weights.read_bytes()
    state = load_file(str(good_weights))
    with safe_open(str(good_weights), framework="pt") as f:
        meta = dict(f.metadata())

    def torch_file(obj: Any) -> Callable[[Path], None]:
        return lambda p: torch.save(obj, p)

    buf = io.BytesIO()
    torch.save(state, buf)
    pth = buf.getvalue()

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (print, ("this pickle would run code",))

    def with_meta(**changes: str) -> Callable[[Path], None]:
        return lambda p: save_file(state, str(p), metadata={**meta, **changes})

    cfg = json.loads(meta["config"])
    add("w_empty_pth", "empty.pth", b"", ("empty",))
    add("w_empty_safetensors", "empty.safetensors", b"", ("safetensors",))
    add("w_truncated_pth", "cut.pth", pth[: len(pth) // 2], ("truncated",))
    add("w_truncated_safetensors", "cut.safetensors", good[: len(good) // 2], ("safetensors",))
    add("w_json_given", "config.json", json.dumps(cfg).encode(), ("JSON",))
    add("w_onnx_given", "model.onnx", b"\x08\x08\x12\x07pytorch\x1a\x052.5.0:" + bytes(range(200)), ("ONNX",))
    add("w_empty_onnx", "empty.onnx", b"", ())
    add("w_text_given", "notes.pth", b"these are not weights\n", ("text file",))
    add("w_random_bytes", "noise.pth", np.random.default_rng(5).integers(0, 256, 4000, dtype=np.uint8).tobytes(),
        ("noise.pth",))
    add("w_hdf5_given", "keras.pth", b"\x89HDF\r\n\x1a\n" + bytes(200), ("HDF5",))
    add("w_tf_index_given", "model.ckpt.index", bytes(range(1, 120)), ("TensorFlow",))
    add("w_safetensors_as_pth", "weights.pth", good, ("safetensors",))
    add("w_malicious_pickle", "evil.pth", torch_file({"state_dict": state, "x": Payload()}), ("refused",))
    add("w_list_pth", "list.pth", torch_file([torch.zeros(1)]), ("list",))
    add("w_no_tensors", "numbers.pth", torch_file({"epoch": 3, "lr": 0.1}), ("no tensors",),
        expect={"predict": (2, None), "validate": (2, None), "train": (2, None)})
    add("w_config_bad_json", "badjson.safetensors", with_meta(config="{'num_classes': 2"), ("not valid JSON",),
        expect={"predict": (2, None), "validate": (2, None), "train": (2, None)})
    add("w_config_num_classes_word", "six.safetensors", with_meta(config=json.dumps({**cfg, "num_classes": "six"})),
        ("model config", "six"), expect={"predict": (2, None), "validate": (2, None), "train": (2, None)})
    add("w_config_unknown_key", "unknown.safetensors", with_meta(config=json.dumps({**cfg, "colour": "red"})),
        ("model config",), expect={"predict": (2, None), "validate": (2, None), "train": (2, None)})
    add("w_config_not_mapping", "listcfg.safetensors", with_meta(config="[1, 2]"), ("model config",),
        expect={"predict": (2, None), "validate": (2, None), "train": (2, None)})
    add("w_pth_config_wrong_type", "ckpt.pth", torch_file({"model": state, "config": {**cfg, "num_classes": "six"}}),
        ("model config",), expect={"predict": (2, None), "validate": (2, None), "train": (2, None)})
    add("w_resume_plain_weights", "plain.pth", torch_file(state), ("not a training checkpoint",),
        expect={"resume": (2, None)})
    add("w_resume_missing_optimizer", "damaged.pth", torch_file({
        "format": "efficientdet.checkpoint", "version": 1, "config": cfg, "model": state, "epoch": 1, "step": 2,
        "scheduler": {}, "scaler": {}, "rng": {}}), ("'optimizer'",), expect={"resume": (2, None)})
    add("w_missing", "nowhere.pth", lambda p: None, ("does not exist",))
    return cases


def make_corpus(root: str | Path, good_weights: Path | None = None) -> list[Case]:
    """Write every case under ``root``; ``good_weights`` (a 2-class tiny model's ``.safetensors``) is the base
    of the weight cases (left out when ``None``)."""
    root = Path(root)
    cases = (image_cases(root / "images") + coco_cases(root / "coco") + voc_cases(root / "voc")
             + yolo_cases(root / "yolo") + csv_cases(root / "csv") + openimages_cases(root / "openimages"))
    if good_weights is not None:
        cases += weight_cases(root / "weights", good_weights)
    names = [c.name for c in cases]
    duplicated = {n for n in names if names.count(n) > 1}
    if duplicated:
        raise ValueError(f"corpus case names used twice: {sorted(duplicated)}")
    return cases


def good_coco(root: Path, n: int = 4) -> Path:
    """A clean COCO set of ``n`` images (the weight cases' dataset)."""
    return write_coco(root, coco_content(n), n=n)


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "corpus")
    made = make_corpus(out)
    for c in made:
        print(f"{c.group:10s} {c.name:32s} {c.path}")
    print(f"{len(made)} cases in {out} (weight-file cases need a checkpoint; see tests/corpus/test_corpus.py)")


__all__ = ["Case", "make_corpus", "good_coco"]
