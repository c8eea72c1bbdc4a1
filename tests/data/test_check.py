"""The dataset checker flags each common mistake on deliberately broken copies of a dataset."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from efficientdet.data.check import check_dataset
from efficientdet.data.parsers import load_dataset
from efficientdet.data.records import DetectionDataset, ImageRecord

from .conftest import write_image


def _dataset(boxes_per_image: list[list[list[float]]], size=(100, 300), labels=None, names=("a", "b")):
    records = [ImageRecord(Path(f"/nonexistent/{i}.jpg"), i, np.array(b, np.float32).reshape(-1, 4),
                           np.array(labels[i] if labels else [0] * len(b)), size=size)
               for i, b in enumerate(boxes_per_image)]
    return DetectionDataset(records, names)


GOOD = [[[10, 10, 60, 50], [100, 20, 280, 90]], [[5, 5, 40, 95], [150, 30, 200, 60]], [[0, 0, 300, 100]]]


def codes(report) -> set[str]:
    return {i.code for i in report.issues}


def test_clean_dataset_has_no_issues() -> None:
    report = check_dataset(_dataset(GOOD, labels=[[0, 1], [1, 0], [1]]), images="none")
    assert report.issues == [] and report.exit_code() == 0
    assert report.boxes_per_class == [2, 3] and report.images_per_class == [2, 3]


def test_statistics_match_pycocotools(sample_root: Path) -> None:
    from pycocotools.coco import COCO

    ann = sample_root / "train" / "annotations.json"
    oracle = COCO(str(ann))
    report = check_dataset(ann)
    cats = sorted(oracle.getCatIds())
    assert report.boxes_per_class == [len(oracle.getAnnIds(catIds=[c])) for c in cats]
    assert report.images_per_class == [len(oracle.getImgIds(catIds=[c])) for c in cats]
    assert report.images_without_boxes == sum(1 for i in oracle.getImgIds() if not oracle.getAnnIds(imgIds=[i]))
    assert sum(c for _, c in report.size_histogram) == len(oracle.getAnnIds())
    assert report.exit_code() == 0, report.render()


def test_boxes_outside_and_zero_area() -> None:
    broken = copy.deepcopy(GOOD)
    broken[0][1] = [250, 20, 340, 90]  # beyond the right edge (W = 300)
    broken[1][0] = [40, 5, 40, 95]  # zero width
    broken[1][1] = [200, 60, 150, 30]  # corners swapped: negative size
    report = check_dataset(_dataset(broken), images="none")
    assert {"box_outside_image", "zero_area"} <= codes(report)
    assert report.issue("zero_area").count == 2 and report.issue("box_outside_image").count == 1
    assert "340" in report.issue("box_outside_image").examples[0]
    assert report.exit_code() == 0 and report.exit_code(strict=True) == 1  # warnings only


def test_yxyx_given_as_xyxy() -> None:
    yxyx = [[[b[1], b[0], b[3], b[2]] for b in img] for img in GOOD]
    report = check_dataset(_dataset(yxyx), images="none")
    assert "looks_like_yxyx" in codes(report)
    assert "looks_like_yxyx" not in codes(check_dataset(_dataset(GOOD), images="none"))


def test_xywh_given_as_xyxy() -> None:
    xywh = [[[b[0], b[1], b[2] - b[0], b[3] - b[1]] for b in img] for img in GOOD]
    report = check_dataset(_dataset(xywh), images="none")
    assert "looks_like_xywh" in codes(report)
    assert "x + w" in report.issue("looks_like_xywh").fix


def test_normalised_coordinates_given_as_pixels() -> None:
    norm = [[[b[0] / 300, b[1] / 100, b[2] / 300, b[3] / 100] for b in img] for img in GOOD]
    report = check_dataset(_dataset(norm), images="none")
    assert "normalized_coordinates" in codes(report)


def test_labels_out_of_range_and_one_based() -> None:
    report = check_dataset(_dataset(GOOD, labels=[[1, 2], [2, 1], [1]]), images="none")  # 1..K for K = 2
    assert {"unknown_class", "one_based_labels"} <= codes(report)
    assert report.exit_code() == 1  # unknown classes are errors


def test_yolo_one_based_ids_get_a_hint(tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "train" / "a.jpg", (20, 20))
    (tmp_path / "labels" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train" / "a.txt").write_text("1 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.4 0.4\n")
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"train": "images/train", "names": ["cat", "dog"]}))
    report = check_dataset(tmp_path)
    issue = report.issue("unknown_class")
    assert issue is not None and issue.severity == "error" and "1-based" in issue.fix
    assert report.exit_code() == 1


def test_coco_zero_based_annotation_ids_get_a_hint(tmp_path: Path) -> None:
    write_image(tmp_path / "a.jpg", (20, 20))
    content = {"images": [{"id": 1, "file_name": "a.jpg", "height": 20, "width": 20}],
               "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
               "annotations": [{"id": 1, "image_id": 1, "category_id": 0, "bbox": [1, 1, 5, 5]},
                               {"id": 2, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}]}
    (tmp_path / "ann.json").write_text(json.dumps(content))
    issue = check_dataset(tmp_path / "ann.json").issue("unknown_class")
    assert issue is not None and "0-based" in issue.fix and issue.count == 1


def test_background_and_empty_classes() -> None:
    report = check_dataset(_dataset(GOOD, labels=[[1, 1], [1, 1], [1]], names=("_background_", "a", "b")),
                           images="none")
    assert {"background_class", "empty_class"} <= codes(report)


def test_duplicates_and_unreadable_images(sample_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(sample_root / "val", root)
    ann = json.loads((root / "annotations.json").read_text())
    first = ann["images"][0]
    shutil.copy(root / first["file_name"], root / "images" / "dup.jpg")  # the same file twice
    ann["images"].append({**first, "id": 999, "file_name": "images/dup.jpg"})
    a0 = ann["annotations"][0]
    ann["annotations"].append({**a0, "id": 9999, "bbox": [v + 0.01 for v in a0["bbox"]]})  # annotated twice
    (root / "annotations.json").write_text(json.dumps(ann))
    broken = root / ann["images"][2]["file_name"]
    broken.write_bytes(broken.read_bytes()[:300])  # truncated JPEG
    report = check_dataset(root / "annotations.json")
    assert {"duplicate_images", "duplicate_boxes", "unreadable_image"} <= codes(report)
    assert broken.name in report.issue("unreadable_image").examples[0]
    assert report.exit_code() == 1
    os.remove(broken)
    missing = check_dataset(root / "annotations.json", images="header").issue("unreadable_image")
    assert missing is not None and "not found" in missing.examples[0]


def test_size_mismatch_is_reported(tmp_path: Path) -> None:
    write_image(tmp_path / "a.jpg", (30, 50))
    rec = ImageRecord(tmp_path / "a.jpg", 0, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), size=(50, 30))
    report = check_dataset(DetectionDataset([rec], ("x",)), images="header")
    assert "swapped" in report.issue("size_mismatch").examples[0]


def test_anchor_coverage_against_effdet_anchors() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from effdet.anchors import Anchors
    from effdet.config import get_efficientdet_config
    from torchvision.ops import box_iou

    from efficientdet.registry import get_config

    rng = np.random.default_rng(0)
    size = (640, 480)  # letterboxed into 320 x 320 at scale 0.5
    centres = rng.uniform(40, 440, size=(60, 2))
    sides = np.exp(rng.uniform(np.log(4), np.log(300), size=(60, 2)))
    boxes = np.concatenate([centres - sides / 2, centres + sides / 2], 1).clip(0, 480)
    ds = _dataset([boxes.tolist()], size=size, names=("x",))
    report = check_dataset(ds, "tf_efficientdet_lite0", images="none")
    assert report.model == "tf_efficientdet_lite0" and report.input_size == (320, 320)
    # oracle: effdet's own anchors for the same model (yxyx), IoU by torchvision
    effdet_anchors = Anchors.from_config(get_efficientdet_config("tf_efficientdet_lite0")).boxes[:, [1, 0, 3, 2]]
    scale = min(320 / 640, 320 / 480)
    best = box_iou(torch.tensor(boxes * scale, dtype=torch.float32), effdet_anchors.float()).max(1).values
    assert report.anchor_coverage == pytest.approx(float((best >= 0.5).float().mean()))
    assert 0.0 < report.anchor_coverage < 1.0 and "low_anchor_coverage" in codes(report)
    assert get_config("tf_efficientdet_lite0").preprocess.image_size == (320, 320)


def test_xyxy_written_into_coco_bbox(tmp_path: Path) -> None:
    """Corners [x1, y1, x2, y2] in COCO's [x, y, w, h] field: named as that format mistake."""
    write_image(tmp_path / "a.jpg", (100, 300))
    corners = [[10, 10, 60, 50], [100, 20, 280, 90], [150, 30, 200, 60]]
    content = {"images": [{"id": 1, "file_name": "a.jpg", "height": 100, "width": 300}],
               "categories": [{"id": 1, "name": "a"}],
               "annotations": [{"id": i, "image_id": 1, "category_id": 1, "bbox": b} for i, b in enumerate(corners)]}
    (tmp_path / "ann.json").write_text(json.dumps(content))
    report = check_dataset(tmp_path / "ann.json", images="none")
    issue = report.issue("looks_like_xyxy_in_coco")
    assert issue is not None and "x2 - x1" in issue.fix and issue.count == 2  # two end beyond the image
    assert "box_outside_image" in codes(report)
    # the same boxes written correctly as xywh: no such warning
    for a, (x1, y1, x2, y2) in zip(content["annotations"], corners, strict=True):
        a["bbox"] = [x1, y1, x2 - x1, y2 - y1]
    (tmp_path / "ann.json").write_text(json.dumps(content))
    assert check_dataset(tmp_path / "ann.json", images="none").issues == []


def test_empty_dataset_is_an_error_and_training_refuses_it(tmp_path: Path) -> None:
    from efficientdet.data.check import require_usable
    from efficientdet.errors import DataError

    write_image(tmp_path / "a.jpg")
    content = {"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 1, "name": "a"}]}
    (tmp_path / "ann.json").write_text(json.dumps(content))
    report = check_dataset(tmp_path / "ann.json")
    assert "no_boxes" in codes(report) and report.exit_code() == 1 and "no problems found" not in report.render()
    ds = load_dataset(tmp_path / "ann.json")
    with pytest.raises(DataError, match="no usable box"):
        require_usable(ds, "ann.json")
    require_usable(ds, "ann.json", boxes=False)  # evaluation (results only) may have no boxes
    ds.records[0].path = tmp_path / "elsewhere" / "a.jpg"
    with pytest.raises(DataError, match="none of the 1 images"):
        require_usable(ds, "ann.json", boxes=False)


def test_duplicate_image_ids_never_share_boxes(tmp_path: Path) -> None:
    write_image(tmp_path / "a.jpg")
    write_image(tmp_path / "b.jpg", seed=1)
    content = {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 1, "file_name": "b.jpg"}],
               "categories": [{"id": 1, "name": "a"}],
               "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}]}
    (tmp_path / "ann.json").write_text(json.dumps(content))
    report = check_dataset(tmp_path / "ann.json")
    issue = report.issue("duplicate_image_id")
    assert issue is not None and "a.jpg" in issue.examples[0] and "b.jpg" in issue.examples[0]
    assert report.num_boxes == 0  # the annotation is not given to either image
    from efficientdet.errors import DataError

    with pytest.raises(DataError, match="image id 1"):
        load_dataset(tmp_path / "ann.json")


def test_image_folder_guess_takes_the_folder_with_most_images(tmp_path: Path, caplog) -> None:
    """The json in annotations/, images in images/ except the first two: images/ is used, the two are named."""
    names = [f"{i}.jpg" for i in range(6)]
    for name in names[2:]:
        write_image(tmp_path / "images" / name)
    content = {"images": [{"id": i, "file_name": n} for i, n in enumerate(names)],
               "categories": [{"id": 1, "name": "a"}], "annotations": []}
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_x.json").write_text(json.dumps(content))
    with caplog.at_level("WARNING", logger="efficientdet.data"):
        ds = load_dataset(tmp_path / "annotations" / "instances_x.json")
    assert ds.root == tmp_path / "images"
    assert "0.jpg" in caplog.text and "1.jpg" in caplog.text and "4 of 6" in caplog.text
