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
