"""Parsers: real third-party files (labelme examples), hand-built files of every layout, pycocotools as the COCO
oracle, and a parse -> write -> parse round trip for every format."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from efficientdet.data.parsers import (
    VOC_CLASSES,
    detect_format,
    has_splits,
    load_coco,
    load_csv,
    load_dataset,
    load_openimages,
    load_voc,
    load_yolo,
    save_dataset,
    write_coco,
    write_csv,
    write_openimages,
    write_voc,
    write_yolo,
)
from efficientdet.errors import DataError

from .conftest import assert_same_dataset, write_image

# --- COCO ----------------------------------------------------------------------------------------------------


def test_coco_labelme_file_matches_pycocotools(labelme_examples: Path) -> None:
    from pycocotools.coco import COCO

    ann = labelme_examples / "instance_segmentation" / "data_dataset_coco" / "annotations.json"
    ds = load_coco(ann)
    oracle = COCO(str(ann))
    # category 0 is "_background_" with no annotation: dropped, the 20 VOC classes remain with their ids
    assert "_background_" in {c["name"] for c in oracle.loadCats(oracle.getCatIds())}
    assert ds.num_classes == 20 and "_background_" not in ds.label_names
    assert ds.category_ids == tuple(range(1, 21))
    assert ds.label_names[ds.category_ids.index(15)] == "person"
    assert len(ds.records) == len(oracle.getImgIds())
    for rec in ds.records:
        info = oracle.loadImgs(rec.image_id)[0]
        assert rec.path == ann.parent / info["file_name"] and rec.path.is_file()
        assert rec.size == (info["height"], info["width"])
        anns = oracle.loadAnns(oracle.getAnnIds(imgIds=rec.image_id))
        expected = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                             for a in anns], dtype=np.float32)
        np.testing.assert_array_equal(rec.boxes, expected)
        names = [oracle.loadCats(a["category_id"])[0]["name"] for a in anns]
        assert [ds.label_names[i] for i in rec.labels] == names


def test_coco_keeps_background_when_asked(labelme_examples: Path) -> None:
    ann = labelme_examples / "instance_segmentation" / "data_dataset_coco" / "annotations.json"
    ds = load_coco(ann, drop_background=False)
    assert ds.num_classes == 21 and ds.label_names[0] == "_background_" and ds.category_ids[0] == 0
    person = ds.label_names.index("person")
    assert person == 15  # label == category id when ids run 0..20


def test_coco_round_trip_on_labelme_file(labelme_examples: Path, tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    src = load_coco(labelme_examples / "instance_segmentation" / "data_dataset_coco" / "annotations.json")
    out = write_coco(src, tmp_path / "out.json")
    again = load_coco(out, image_dir=src.root)
    assert_same_dataset(src, again, atol=0)
    written = COCO(str(out))  # a valid COCO file for the official tools, with w*h areas
    for a in written.loadAnns(written.getAnnIds()):
        assert a["area"] == pytest.approx(a["bbox"][2] * a["bbox"][3])


def _coco_file(tmp_path: Path, content: dict) -> Path:
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(content))
    return path


def test_coco_sparse_ids_crowd_and_empty_images(tmp_path: Path) -> None:
    content = {
        "images": [{"id": 10, "file_name": "a.jpg", "height": 40, "width": 60},
                   {"id": 11, "file_name": "b.jpg", "height": 30, "width": 30}],
        "categories": [{"id": 42, "name": "zebra"}, {"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 42, "bbox": [1.5, 2, 10, 20], "area": -5, "iscrowd": 0},
            {"id": 2, "image_id": 10, "category_id": 3, "bbox": [0, 0, 60, 40], "iscrowd": 1},
        ],
    }
    ds = load_coco(_coco_file(tmp_path, content))
    assert ds.label_names == ("cat", "dog", "zebra") and ds.category_ids == (3, 7, 42)
    a, b = ds.records
    np.testing.assert_array_equal(a.boxes, [[1.5, 2, 11.5, 22], [0, 0, 60, 40]])
    np.testing.assert_array_equal(a.labels, [2, 0])
    np.testing.assert_array_equal(a.ignore, [False, True])
    assert b.image_id == 11 and len(b.labels) == 0  # an image without annotations is kept
    out = json.loads(write_coco(ds, tmp_path / "w.json").read_text())
    assert [x["area"] for x in out["annotations"]] == [200.0, 2400.0]  # wrong / missing areas recomputed
    assert [x["category_id"] for x in out["annotations"]] == [42, 3]
    assert [x["iscrowd"] for x in out["annotations"]] == [0, 1]
    assert_same_dataset(ds, load_coco(tmp_path / "w.json"), atol=0)


def test_coco_image_info_only_file(tmp_path: Path) -> None:
    # test-dev style: images (and categories) but no annotations at all
    content = {"images": [{"id": 1, "file_name": "x.jpg", "height": 5, "width": 6}],
               "categories": [{"id": 1, "name": "person"}]}
    ds = load_coco(_coco_file(tmp_path, content))
    assert len(ds) == 1 and len(ds.records[0].labels) == 0 and ds.label_names == ("person",)
    ds2 = load_coco(_coco_file(tmp_path, {"images": content["images"]}))
    assert ds2.num_classes == 0 and len(ds2) == 1


def test_coco_unknown_category_is_reported(tmp_path: Path) -> None:
    content = {"images": [{"id": 1, "file_name": "x.jpg", "height": 5, "width": 6}],
               "categories": [{"id": 1, "name": "person"}],
               "annotations": [{"id": 9, "image_id": 1, "category_id": 2, "bbox": [0, 0, 1, 1]}]}
    path = _coco_file(tmp_path, content)
    with pytest.raises(DataError, match=r"ann\.json.*category_id 2"):
        load_coco(path)
    problems: list = []
    ds = load_coco(path, problems=problems)
    assert len(ds.records[0].labels) == 0
    assert [(p.kind, p.ids) for p in problems] == [("unknown_class", (2,))]


def test_coco_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json"):
        load_coco(bad)
    with pytest.raises(DataError, match="images"):
        load_coco(_coco_file(tmp_path, {"annotations": []}))


# --- Pascal VOC ----------------------------------------------------------------------------------------------


def test_voc_labelme_files(labelme_examples: Path) -> None:
    root = labelme_examples / "bbox_detection" / "data_dataset_voc"
    ds = load_voc(root)
    # class_names.txt: "_background_" then the 20 VOC classes (labelme spelling)
    assert ds.num_classes == 20 and ds.label_names[14] == "person" and ds.label_names[-1] == "tv/monitor"
    rec = next(r for r in ds.records if r.path.name == "2011_000003.jpg")
    assert rec.path.is_file() and rec.size == (338, 500)
    # <bndbox> 191.0 107.369... 313.0 329.369... and 365 83 500 333, read as 1-based: min corner - 1
    np.testing.assert_allclose(rec.boxes, [[190.0, 106.36900369003689, 313.0, 329.36900369003695],
                                           [364.0, 82.0, 500.0, 333.0]], rtol=0, atol=6e-5)  # float32 resolution
    assert rec.labels.tolist() == [14, 14] and rec.ignore.tolist() == [False, False]  # <difficult/> is empty
    zero_based = load_voc(root, one_based=False)
    r0 = next(r for r in zero_based.records if r.path.name == "2011_000003.jpg")
    np.testing.assert_allclose(r0.boxes[1], [365.0, 83.0, 500.0, 333.0])


def test_voc_round_trip_on_labelme_files(labelme_examples: Path, tmp_path: Path) -> None:
    src = load_voc(labelme_examples / "bbox_detection" / "data_dataset_voc")
    write_voc(src, tmp_path / "VOC", split="trainval", images="symlink")
    again = load_voc(tmp_path / "VOC", "trainval")
    assert_same_dataset(src, again, atol=0)


def _voc_xml(filename: str, objects: list[tuple[str, tuple[int, int, int, int], int]], size=(40, 60)) -> str:
    objs = "".join(f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
                   f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for n, b, d in objects)
    return (f"<annotation><filename>{filename}</filename><size><width>{size[1]}</width><height>{size[0]}</height>"
            f"<depth>3</depth></size>{objs}</annotation>")


def _make_vocdevkit(root: Path) -> None:
    data = {
        "VOC2007": {"000001": [("dog", (1, 1, 10, 20), 0), ("person", (5, 6, 30, 40), 1)],
                    "000002": [("cat", (2, 3, 4, 5), 0)], "000003": [("car", (1, 1, 2, 2), 0)]},
        "VOC2012": {"2008_000001": [("bus", (10, 10, 50, 30), 0)]},
    }
    for year, images in data.items():
        d = root / "VOCdevkit" / year
        (d / "Annotations").mkdir(parents=True)
        (d / "ImageSets" / "Main").mkdir(parents=True)
        for stem, objs in images.items():
            (d / "Annotations" / f"{stem}.xml").write_text(_voc_xml(f"{stem}.jpg", objs))
        ids = sorted(images)
        (d / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(i for i in ids if i != "000003") + "\n")
        (d / "ImageSets" / "Main" / "test.txt").write_text("000003\n" if year == "VOC2007" else "")


def test_voc_07_12_layout_and_difficult(tmp_path: Path) -> None:
    _make_vocdevkit(tmp_path)
    both = load_voc(tmp_path / "VOCdevkit", "trainval", "07+12")
    assert both.label_names == VOC_CLASSES
    assert [r.path.name for r in both.records] == ["000001.jpg", "000002.jpg", "2008_000001.jpg"]
    r = both.records[0]
    np.testing.assert_array_equal(r.boxes, [[0, 0, 10, 20], [4, 5, 30, 40]])
    assert [VOC_CLASSES[i] for i in r.labels] == ["dog", "person"]
    assert r.ignore.tolist() == [False, True]  # difficult
    assert r.path == tmp_path / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000001.jpg"
    only07 = load_voc(tmp_path, "trainval", years="2007")
    assert len(only07) == 2
    assert [r.path.name for r in load_voc(tmp_path / "VOCdevkit" / "VOC2007", "test").records] == ["000003.jpg"]
    with pytest.raises(DataError, match="available splits: test, trainval"):
        load_voc(tmp_path / "VOCdevkit" / "VOC2007", "val")
    with pytest.raises(DataError, match="VOC2010"):
        load_voc(tmp_path, years="2010")


def test_voc_unknown_class_with_explicit_class_list(tmp_path: Path) -> None:
    _make_vocdevkit(tmp_path)
    with pytest.raises(DataError, match="'person'"):
        load_voc(tmp_path / "VOCdevkit" / "VOC2007", class_names=("dog", "cat", "car"))


# --- YOLO ----------------------------------------------------------------------------------------------------


def _make_yolo(root: Path, names: object = None) -> Path:
    write_image(root / "images" / "train" / "a.jpg", (40, 80))
    write_image(root / "images" / "train" / "b.png", (50, 50), fmt="PNG")
    write_image(root / "images" / "val" / "c.jpg", (20, 20))
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text(
        "0 0.5 0.5 0.25 0.5\n"  # cx cy w h
        "1 0.1 0.1 0.3 0.1 0.2 0.6\n")  # a polygon (segment): its bounding box
    # b.png has no label file: an image without objects
    data = {"path": ".", "train": "images/train", "val": "images/val",
            "names": names if names is not None else {0: "cat", 1: "dog"}}
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    return root / "data.yaml"


def test_yolo_ultralytics_layout(tmp_path: Path) -> None:
    ds = load_yolo(_make_yolo(tmp_path), "train")
    assert ds.label_names == ("cat", "dog") and ds.category_ids == (0, 1)
    a, b = ds.records
    assert a.size == (40, 80) and b.size is None and len(b.labels) == 0
    np.testing.assert_allclose(a.boxes, [[30, 10, 50, 30], [8, 4, 24, 24]], atol=1e-5)
    assert a.labels.tolist() == [0, 1]
    assert len(load_yolo(tmp_path / "data.yaml", "val")) == 1
    ds_list = load_yolo(_make_yolo(tmp_path / "list", names=["cat", "dog"]), "train")
    assert_same_dataset(ds, ds_list)


def test_yolo_one_based_ids_are_reported(tmp_path: Path) -> None:
    yaml_file = _make_yolo(tmp_path)
    (tmp_path / "labels" / "train" / "a.txt").write_text("2 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DataError, match="class id 2"):
        load_yolo(yaml_file)
    problems: list = []
    load_yolo(yaml_file, problems=problems)
    assert problems[0].kind == "unknown_class" and problems[0].ids == (2,)


def test_yolo_round_trip(tmp_path: Path) -> None:
    src = load_yolo(_make_yolo(tmp_path / "src"), "train")
    write_yolo(src, tmp_path / "dst", "train")
    again = load_yolo(tmp_path / "dst" / "data.yaml", "train")
    assert_same_dataset(src, again, atol=1e-4)


# --- OpenImages ----------------------------------------------------------------------------------------------


def _write_rows(path: Path, rows: list[list[object]]) -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def test_openimages_v6_layout(tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "img1.jpg", (100, 200))
    write_image(tmp_path / "images" / "img2.jpg", (50, 50))
    _write_rows(tmp_path / "class-descriptions-boxable.csv", [["/m/01", "Cat"], ["/m/02", "Dog"]])
    _write_rows(tmp_path / "train-annotations-bbox.csv", [
        ["ImageID", "Source", "LabelName", "Confidence", "XMin", "XMax", "YMin", "YMax", "IsOccluded", "IsTruncated",
         "IsGroupOf", "IsDepiction", "IsInside"],
        ["img1", "xclick", "/m/02", 1, 0.1, 0.5, 0.2, 0.9, 0, 0, 1, 0, 0],
        ["img1", "xclick", "/m/01", 1, 0.0, 1.0, 0.0, 1.0, 0, 0, 0, 0, 0],
    ])
    _write_rows(tmp_path / "train-annotations-human-imagelabels-boxable.csv", [
        ["ImageID", "Source", "LabelName", "Confidence"],
        ["img1", "verification", "/m/02", 1], ["img1", "verification", "/m/01", 0],
        ["img2", "verification", "/m/01", 0], ["img2", "verification", "/m/99", 1]])
    ds = load_openimages(tmp_path)
    assert ds.label_names == ("Cat", "Dog") and ds.format == "openimages"
    r1, r2 = ds.records
    np.testing.assert_allclose(r1.boxes, [[20, 20, 100, 90], [0, 0, 200, 100]], atol=1e-4)
    assert r1.labels.tolist() == [1, 0] and r1.group_of.tolist() == [True, False]
    assert r1.image_labels.tolist() == [1] and r1.negative_labels.tolist() == [0]
    assert len(r2.labels) == 0 and r2.negative_labels.tolist() == [0]  # listed only in the image-level file
    write_openimages(ds, tmp_path / "out", mids=("/m/01", "/m/02"))
    assert_same_dataset(ds, load_openimages(tmp_path / "out"))
    again = load_openimages(tmp_path / "out")
    assert again.records[0].group_of.tolist() == [True, False]
    assert again.records[1].negative_labels.tolist() == [0]


def test_openimages_challenge_2019_layout(tmp_path: Path) -> None:
    write_image(tmp_path / "validation" / "abc.jpg", (30, 40))
    _write_rows(tmp_path / "challenge-2019-classes-description-500.csv", [["/m/a", "Apple"], ["/m/b", "Boat"]])
    _write_rows(tmp_path / "challenge-2019-validation-detection-bbox.csv", [
        ["ImageID", "Source", "LabelName", "Confidence", "XMin", "XMax", "YMin", "YMax", "IsGroupOf"],
        ["abc", "freeform", "/m/b", 1, 0.25, 0.75, 0.5, 1.0, 0]])
    ds = load_dataset(tmp_path)
    assert ds.format == "openimages" and ds.label_names == ("Apple", "Boat")
    np.testing.assert_allclose(ds.records[0].boxes, [[10, 15, 30, 30]], atol=1e-5)
    assert ds.records[0].image_labels is None


# --- plain CSV -----------------------------------------------------------------------------------------------


def test_plain_csv_with_and_without_header(tmp_path: Path) -> None:
    (tmp_path / "with.csv").write_text("filename,x1,y1,x2,y2,class\na.jpg,1,2,3,4,dog\na.jpg,0,0,5,5,cat\nb.jpg,,,,,\n")
    (tmp_path / "without.csv").write_text("a.jpg,1,2,3,4,dog\na.jpg,0,0,5,5,cat\nb.jpg,,,,,\n")
    for name in ("with.csv", "without.csv"):
        ds = load_csv(tmp_path / name)
        assert ds.label_names == ("cat", "dog")
        assert [r.path.name for r in ds.records] == ["a.jpg", "b.jpg"]
        np.testing.assert_array_equal(ds.records[0].boxes, [[1, 2, 3, 4], [0, 0, 5, 5]])
        assert ds.records[0].labels.tolist() == [1, 0] and len(ds.records[1].labels) == 0
        write_csv(ds, tmp_path / "out.csv")
        assert_same_dataset(ds, load_csv(tmp_path / "out.csv"), atol=0)


def test_plain_csv_integer_labels_are_ids(tmp_path: Path) -> None:
    (tmp_path / "ids.csv").write_text("image,xmin,ymin,xmax,ymax,label\na.jpg,1,2,3,4,7\na.jpg,1,2,3,4,3\n")
    ds = load_csv(tmp_path / "ids.csv")
    assert ds.category_ids == (3, 7) and ds.records[0].labels.tolist() == [1, 0]


# --- detection and conversion ------------------------------------------------------------------------------


def test_detect_format_of_each_layout(tmp_path: Path, labelme_examples: Path, sample_root: Path) -> None:
    voc = labelme_examples / "bbox_detection" / "data_dataset_voc"
    assert detect_format(voc)[0] == "voc"
    assert detect_format(sample_root / "train")[0] == "coco"
    assert detect_format(sample_root / "train" / "annotations.json")[0] == "coco"
    assert detect_format(sample_root, split="val") == ("coco", sample_root / "val" / "annotations.json")
    assert detect_format(_make_yolo(tmp_path / "y"))[0] == "yolo"
    assert detect_format(tmp_path / "y")[0] == "yolo"
    (tmp_path / "c.csv").write_text("a.jpg,1,2,3,4,dog\n")
    assert detect_format(tmp_path / "c.csv")[0] == "csv"
    with pytest.raises(DataError, match="no known dataset layout"):
        detect_format(tmp_path / "y" / "images")
    with pytest.raises(DataError, match="not found"):
        detect_format(tmp_path / "missing")


def test_convert_between_all_formats(sample_root: Path, tmp_path: Path) -> None:
    src = load_dataset(sample_root / "val")
    for fmt, target in (("coco", tmp_path / "c.json"), ("voc", tmp_path / "voc"), ("yolo", tmp_path / "yolo"),
                        ("openimages", tmp_path / "oi"), ("csv", tmp_path / "x.csv")):
        out = save_dataset(src, target, fmt, split="val")
        kwargs = {"one_based": True} if fmt == "voc" else {}
        again = load_dataset(out, fmt, default_split="val", **kwargs)  # the VOC image set / YOLO split written
        # OpenImages has no row for an image without boxes or image-level labels
        keep = [i for i, r in enumerate(src.records) if fmt != "openimages" or len(r.labels)]
        assert [len(r.labels) for r in again.records] == [len(src.records[i].labels) for i in keep], fmt
        for i, r in zip(keep, again.records, strict=True):
            np.testing.assert_allclose(r.boxes, src.records[i].boxes, atol=1e-3)
            assert [again.label_names[x] for x in r.labels] == [src.label_names[x] for x in src.records[i].labels]


def test_split_applies_only_to_datasets_with_splits(sample_root: Path, tmp_path: Path) -> None:
    yaml_file = _make_yolo(tmp_path / "yolo")
    coco_file = sample_root / "val" / "annotations.json"
    oi = save_dataset(load_dataset(coco_file), tmp_path / "oi", "openimages", images="symlink")
    assert has_splits(yaml_file) and has_splits(tmp_path / "yolo") and has_splits(sample_root)
    assert not has_splits(coco_file) and not has_splits(oi)
    # a split picks the part; default_split only when none is given
    assert (len(load_dataset(yaml_file, split="val")), len(load_dataset(yaml_file, default_split="val"))) == (1, 1)
    assert len(load_dataset(yaml_file, split="train", default_split="val")) == 2
    assert len(load_dataset(sample_root, split="val")) == 4 and len(load_dataset(sample_root, split="train")) == 12
    # a single file is one split: default_split is ignored, an explicit split is an error naming the file
    assert len(load_dataset(coco_file, default_split="train")) == 4
    with pytest.raises(DataError, match=f"{coco_file} has no splits.*'trainval'"):
        load_dataset(coco_file, split="trainval")
    with pytest.raises(DataError, match="has no splits"):
        load_dataset(oi, split="train")
