"""``efficientdet predict`` on files, folders, globs and a video: annotated copies, COCO json and JSON lines."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from efficientdet import Predictor
from efficientdet.cli.main import main
from efficientdet.data.images import open_image
from efficientdet.registry import COCO90_LABEL_NAMES
from efficientdet.video import VideoReader, VideoWriter
from efficientdet.visualize import draw_detections
from tests.predict.helpers import TINY_IDS, TINY_NAMES, photo, save_tiny_checkpoint

ENTRY_POINT = Path(sys.executable).with_name("efficientdet")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """A folder: a COCO-style numeric file name, a JPEG, a PNG and a 6-frame video at 10 fps."""
    root = tmp_path_factory.mktemp("sources")
    shutil.copy(photo("coffee.png"), root / "000000000042.png")
    shutil.copy(photo("rocket.jpg"), root / "rocket.jpg")
    shutil.copy(photo("chelsea.png"), root / "chelsea.png")
    base = np.asarray(Image.open(photo("astronaut.png")).convert("RGB"))
    with VideoWriter(root / "clip.mp4", fps=10, size=(96, 128)) as writer:
        for i in range(6):
            writer.write(np.ascontiguousarray(base[8 * i: 8 * i + 96, 100:228]))
    return root


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_folder_with_images_and_video(checkpoint, sources, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["predict", str(sources), "--checkpoint", str(checkpoint), "--output", str(out), "--score-threshold",
                 "0.3", "--batch-size", "2", "--device", "cpu", "--no-progress"]) == 0
    assert "3 images, 6 video frames" in capsys.readouterr().out

    lines = read_lines(out / "predictions.jsonl")
    assert [(r["source"].rsplit("/", 1)[1], r.get("frame")) for r in lines] == [
        ("000000000042.png", None), ("chelsea.png", None), ("rocket.jpg", None)] + [("clip.mp4", i) for i in range(6)]
    assert [r["image_id"] for r in lines] == list(range(1, 10))  # no dataset given: 1, 2, ... in reading order
    assert (lines[2]["height"], lines[2]["width"]) == (427, 640)
    dets = [d for r in lines for d in r["detections"]]
    assert dets and all(d["score"] > 0.3 and d["name"] == TINY_NAMES[d["label"]] for d in dets)

    # the JSON holds the detections of the library's Predictor, in original pixels
    expected = Predictor(checkpoint=checkpoint, device="cpu", score_threshold=0.3)(photo("chelsea.png"))[0]
    got = np.array([d["box"] for d in lines[1]["detections"]])
    np.testing.assert_allclose(got, expected.boxes.numpy(), atol=0.006)

    # COCO results: xywh boxes, labels mapped to the model's category ids
    coco = json.loads((out / "results.json").read_text())
    assert len(coco) == len(dets)
    first = next(row for row in coco if row["image_id"] == 2)
    x1, y1, x2, y2 = lines[1]["detections"][0]["box"]
    np.testing.assert_allclose(first["bbox"], [x1, y1, x2 - x1, y2 - y1], atol=0.01)
    assert first["category_id"] == TINY_IDS[lines[1]["detections"][0]["label"]]

    # annotated copies: same names and formats; a PNG is exactly the drawing of the detections
    assert Image.open(out / "rocket.jpg").format == "JPEG" and Image.open(out / "000000000042.png").format == "PNG"
    drawn = np.asarray(draw_detections(np.asarray(open_image(photo("chelsea.png"))), expected))
    assert np.array_equal(np.asarray(Image.open(out / "chelsea.png")), drawn)
    with VideoReader(out / "clip.mp4") as video:
        assert video.info.fps == pytest.approx(10) and video.info.size == (96, 128) and len(list(video)) == 6


def test_globs_classes_coco_ids_and_tiles(tmp_path, sources, capsys):
    """Weights with COCO's 90 names but no ids map label i to COCO category id i + 1; --classes keeps one class."""
    ckpt = save_tiny_checkpoint(tmp_path / "coco.safetensors", num_classes=90, label_names=COCO90_LABEL_NAMES,
                                category_ids=None)
    out = tmp_path / "out"
    assert main(["predict", str(sources / "*.png"), "--checkpoint", str(ckpt), "--output", str(out), "--classes", "dog",
                 "--score-threshold", "0.05", "--no-images", "--no-progress", "--device", "cpu"]) == 0
    lines = read_lines(out / "predictions.jsonl")
    assert len(lines) == 2 and not list(out.glob("*.png"))
    coco = json.loads((out / "results.json").read_text())
    assert coco and {row["category_id"] for row in coco} == {18}  # COCO's id of "dog" (label 17)
    assert {d["name"] for r in lines for d in r["detections"]} == {"dog"}

    big = tmp_path / "big.png"
    Image.open(photo("astronaut.png")).resize((900, 600)).save(big)
    tiled = tmp_path / "tiled"
    assert main(["predict", str(big), "--checkpoint", str(ckpt), "--output", str(tiled), "--tile", "256",
                 "--score-threshold", "0.05", "--max-detections", "30", "--no-progress", "--device", "cpu"]) == 0
    (row,) = read_lines(tiled / "predictions.jsonl")
    boxes = np.array([d["box"] for d in row["detections"]])
    assert 0 < len(boxes) <= 30 and boxes.min() >= 0 and boxes[:, 2].max() <= 900 and boxes[:, 3].max() <= 600


def test_results_load_in_pycocotools_against_the_dataset_they_were_predicted_on(tmp_path, capsys):
    """--annotations: the dataset's image ids (matched by file_name; the sample data's start at 1) and its
    category ids (matched by class name); COCO(ann).loadRes(results.json) loads and evaluates."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from efficientdet.data.sample import SAMPLE_CLASSES, make_sample_dataset

    ann = make_sample_dataset(tmp_path / "data", train=0, val=4, size=160)["val"]
    ckpt = save_tiny_checkpoint(tmp_path / "shapes.safetensors", num_classes=6, label_names=SAMPLE_CLASSES,
                                category_ids=None)
    out = tmp_path / "out"
    images = ann.parent / "images"
    assert main(["predict", str(images), "--annotations", str(ann), "--checkpoint", str(ckpt), "--out", str(out),
                 "--score-threshold", "0.05", "--no-images", "--no-progress", "--device", "cpu"]) == 0
    gt = COCO(str(ann))
    results = json.loads((out / "results.json").read_text())
    assert results and {r["image_id"] for r in results} <= set(gt.getImgIds())
    assert {r["category_id"] for r in results} <= set(gt.getCatIds())
    by_id = {i["id"]: i["file_name"] for i in gt.dataset["images"]}
    for line in read_lines(out / "predictions.jsonl"):
        assert Path(line["source"]).name == Path(by_id[line["image_id"]]).name
    evaluation = COCOeval(gt, gt.loadRes(str(out / "results.json")), "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert len(evaluation.stats) == 12 and evaluation.eval["precision"].shape[2] == 6

    # without --annotations: ids 1, 2, ... and an image-info json to load them against
    plain = tmp_path / "plain"
    assert main(["predict", str(images), "--checkpoint", str(ckpt), "--out", str(plain), "--score-threshold", "0.05",
                 "--no-images", "--no-progress", "--device", "cpu"]) == 0
    info = COCO(str(plain / "images.json"))
    assert sorted(info.getImgIds()) == [1, 2, 3, 4]
    assert [i["file_name"] for i in info.dataset["images"]] == [str(p) for p in sorted(images.iterdir())]
    assert len(info.loadRes(str(plain / "results.json")).getAnnIds()) == len(results)

    # an image that is not in the dataset: named, before any work
    capsys.readouterr()
    assert main(["predict", str(photo("coffee.png")), "--annotations", str(ann), "--checkpoint", str(ckpt),
                 "--out", str(tmp_path / "bad"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "coffee.png is not listed in --annotations" in err and str(ann) in err
    assert not (tmp_path / "bad").exists()


def test_errors_exit_2_with_a_message(checkpoint, tmp_path, capsys):
    assert main(["predict", str(tmp_path / "nope.jpg"), "--checkpoint", str(checkpoint)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["predict", str(photo("coffee.png"))]) == 2
    assert "--model NAME or --checkpoint FILE" in capsys.readouterr().err
    assert main(["predict", str(photo("coffee.png")), "--checkpoint", str(checkpoint), "--classes", "zebra"]) == 2
    assert "unknown class 'zebra'" in capsys.readouterr().err


def test_installed_entry_point_dispatches_every_command():
    for command in ("predict", "export", "convert", "benchmark"):
        result = subprocess.run([str(ENTRY_POINT), command, "--help"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and f"usage: efficientdet {command}" in result.stdout


@pytest.mark.slow  # ~6 s: a fresh interpreter importing torch and timm
def test_installed_entry_point_predicts(checkpoint, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run([str(ENTRY_POINT), "predict", str(photo("rocket.jpg")), "--checkpoint", str(checkpoint),
                             "--output", str(out), "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "1 images, 0 video frames" in result.stdout and (out / "rocket.jpg").is_file()
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 1
