"""``efficientdet data check | sample | convert`` through the command-line entry point."""

from __future__ import annotations

import json
from pathlib import Path

from efficientdet.cli.main import main
from efficientdet.data.parsers import load_dataset


def test_sample_check_convert(tmp_path: Path, capsys) -> None:
    root = tmp_path / "ds"
    assert main(["data", "sample", str(root), "--train", "3", "--val", "2", "--size", "128", "--seed", "4"]) == 0
    ann = root / "train" / "annotations.json"
    assert ann.is_file() and (root / "val" / "annotations.json").is_file()
    assert main(["data", "check", str(root / "train")]) == 0
    out = capsys.readouterr().out
    assert "3 images" in out and "circle" in out
    assert main(["data", "check", str(ann), "--json", "--images", "header"]) == 0
    assert json.loads(capsys.readouterr().out)["num_images"] == 3
    assert main(["data", "convert", str(ann), str(tmp_path / "yolo"), "--to", "yolo", "--images", "symlink"]) == 0
    assert len(load_dataset(tmp_path / "yolo", split="train")) == 3


def test_check_exit_codes(tmp_path: Path, capsys) -> None:
    content = {"images": [{"id": 1, "file_name": "missing.jpg", "height": 10, "width": 10}],
               "categories": [{"id": 1, "name": "a"}],
               "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 5]}]}
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(content))
    assert main(["data", "check", str(ann)]) == 1  # the image is missing: an error
    assert "unreadable_image" in capsys.readouterr().out
    assert main(["data", "check", str(ann), "--images", "none"]) == 0  # the box overflow alone is a warning
    assert main(["data", "check", str(ann), "--images", "none", "--strict"]) == 1
    assert main(["data", "check", str(tmp_path / "nothing")]) == 2  # a usage error names the path
    assert "nothing" in capsys.readouterr().err


def test_convert_to_yolo_writes_zero_based_class_ids(tmp_path: Path) -> None:
    """The sample's COCO category ids are 1..6; ultralytics needs class ids 0..nc-1 and names in that order."""
    import yaml

    root = tmp_path / "ds"
    assert main(["data", "sample", str(root), "--train", "4", "--val", "1", "--size", "96", "--seed", "2"]) == 0
    src = load_dataset(root / "train" / "annotations.json")
    assert src.category_ids[0] == 1
    assert main(["data", "convert", str(root / "train" / "annotations.json"), str(tmp_path / "yolo"), "--to", "yolo",
                 "--images", "symlink"]) == 0
    spec = yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())
    assert spec["names"] == list(src.label_names)
    ids = [int(line.split()[0]) for f in sorted((tmp_path / "yolo" / "labels" / "train").glob("*.txt"))
           for line in f.read_text().splitlines()]
    assert len(ids) == sum(len(r.labels) for r in src.records)
    assert ids == [int(x) for r in src.records for x in r.labels]  # the 0-based labels, not the category ids
    assert min(ids) >= 0 and max(ids) < len(src.label_names)


def test_format_mismatch_and_image_size(tmp_path: Path, capsys) -> None:
    root = tmp_path / "ds"
    assert main(["data", "sample", str(root), "--train", "3", "--val", "1", "--size", "96", "--seed", "1"]) == 0
    ann = root / "train" / "annotations.json"
    assert main(["data", "check", str(ann), "--format", "yolo"]) == 2
    err = capsys.readouterr().err
    assert "COCO" in err and "--format coco" in err and "add the class names" not in err
    sizes = {}
    for size in ("32", "512"):
        assert main(["data", "check", str(ann), "--images", "none", "--json", "--image-size", size]) == 0
        report = json.loads(capsys.readouterr().out)
        sizes[size] = report
        assert report["input_size"] == [int(size), int(size)] and report["model"] == "tf_efficientdet_lite0"
    assert main(["data", "check", str(ann), "--images", "none", "--json", "--image-size", "96", "160"]) == 0
    assert json.loads(capsys.readouterr().out)["input_size"] == [96, 160]
    # at 32 x 32 the small objects shrink below the smallest anchor (32 px); at 512 they are covered
    assert sizes["32"]["anchor_coverage"] < sizes["512"]["anchor_coverage"]
