"""EXIF orientation is applied once, the same way, for every input type and every entry point; drawn
predictions put the best label on top."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from efficientdet import Predictor
from efficientdet.data.dataset import TorchDataset
from efficientdet.data.images import open_image, read_image, upright
from efficientdet.data.records import DetectionDataset, ImageRecord
from efficientdet.structures import Detections
from efficientdet.visualize import class_color, draw_detections

from .helpers import photo, tiny_model

# EXIF orientation -> what a viewer does to the stored pixels to show them upright
ORIENTATIONS = {3: lambda a: np.rot90(a, 2), 6: lambda a: np.rot90(a, -1), 8: lambda a: np.rot90(a, 1)}


def _sideways_jpeg(path, orientation: int) -> np.ndarray:
    """Write chelsea.png stored so that EXIF ``orientation`` turns it upright; returns the upright pixels
    (decoded from the written file, so JPEG loss is included)."""
    stored = np.asarray(Image.open(photo("chelsea.png")).convert("RGB"))[:200, :280]
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.ascontiguousarray(stored)).save(path, quality=95, exif=exif)
    with Image.open(path) as raw:  # the stored pixels as decoded, without the rotation
        decoded = np.asarray(raw.convert("RGB"))
    return np.ascontiguousarray(ORIENTATIONS[orientation](decoded))


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_exif_orientation_is_applied_for_paths_and_pil_images_alike(orientation, tmp_path):
    path = tmp_path / "sideways.jpg"
    want = _sideways_jpeg(path, orientation)
    assert want.shape[:2] != (200, 280) or orientation == 3
    np.testing.assert_array_equal(read_image(path), want)
    np.testing.assert_array_equal(np.asarray(upright(Image.open(path))), want)
    np.testing.assert_array_equal(np.asarray(upright(upright(Image.open(path)))), want)  # applied once only
    # training decodes through the same function
    record = ImageRecord(path, 0, np.array([[10.0, 10.0, 50.0, 60.0]], np.float32), np.array([0]))
    sample = TorchDataset(DetectionDataset([record], ("cat",)), 64).load_sample(0)
    np.testing.assert_array_equal(sample.image.permute(1, 2, 0).numpy(), want)


def test_predictor_and_drawing_agree_on_exif_rotated_files(tmp_path):
    path = tmp_path / "sideways.jpg"
    want = _sideways_jpeg(path, 6)
    predictor = Predictor(tiny_model(), device="cpu", score_threshold=0.2)
    by_path, by_pil, by_array = predictor([path, Image.open(path), want])
    assert len(by_array) > 0
    for det in (by_path, by_pil):
        assert det.names == by_array.names
        torch.testing.assert_close(det.boxes, by_array.boxes, rtol=0, atol=0)
        torch.testing.assert_close(det.scores, by_array.scores, rtol=0, atol=0)
    drawn = np.asarray(draw_detections(want, by_array))
    np.testing.assert_array_equal(np.asarray(draw_detections(path, by_array)), drawn)
    np.testing.assert_array_equal(np.asarray(draw_detections(str(path), by_array)), drawn)
    np.testing.assert_array_equal(np.asarray(draw_detections(Image.open(path), by_array)), drawn)
    np.testing.assert_array_equal(np.asarray(open_image(path)), want)


def _tag_colour_at(image: Image.Image, xy: tuple[int, int]) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.asarray(image)[xy[1], xy[0]])


@pytest.mark.parametrize("order", ["best_first", "best_last"])
def test_the_best_label_is_drawn_on_top_of_the_same_box(order):
    """One box with two classes (per-class NMS keeps both): the best class's tag sits in the usual place,
    just above the box, and the other one moves to a free slot; the input order does not matter."""
    canvas = np.full((200, 200, 3), 255, np.uint8)
    box = [40.0, 80.0, 160.0, 180.0]
    scores = [0.42, 0.31] if order == "best_first" else [0.31, 0.42]
    labels = [1, 0] if order == "best_first" else [0, 1]
    det = Detections(torch.tensor([box, box]), torch.tensor(scores), torch.tensor(labels), ("circle", "ring"))
    drawn = draw_detections(canvas, det, line_width=2)
    ring, circle = class_color(1), class_color(0)
    # the usual tag place: just above the box top-left corner (x 40, y 80); the pixel is in its padding
    assert _tag_colour_at(drawn, (41, 78)) == ring
    # the lower-scored tag is still visible, stacked above the best one
    column = [_tag_colour_at(drawn, (41, y)) for y in range(0, 80)]
    assert circle in column
    # the box outline itself is the best class's colour (drawn last)
    assert _tag_colour_at(drawn, (100, 179)) == ring


def test_lower_scores_never_cover_a_better_box_or_tag():
    canvas = np.zeros((120, 160, 3), np.uint8)
    boxes = torch.tensor([[20.0, 40.0, 100.0, 110.0], [22.0, 42.0, 102.0, 112.0], [60.0, 30.0, 150.0, 100.0]])
    det = Detections(boxes, torch.tensor([0.2, 0.9, 0.5]), torch.tensor([2, 3, 4]), None)
    drawn = draw_detections(canvas, det, line_width=2)
    assert _tag_colour_at(drawn, (23, 41)) == class_color(3)  # the 0.9 tag (its padding), where it belongs
    assert _tag_colour_at(drawn, (60, 111)) == class_color(3)  # its bottom edge over the 0.2 box's
