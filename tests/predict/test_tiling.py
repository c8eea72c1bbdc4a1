"""Sliced inference: tile geometry, mapping tile boxes back to the image, merging duplicates at tile borders.

The detector is a stub with a real geometric behaviour: it shrinks its input to 128 pixels like a network
does and finds bright squares with scikit-image's connected components, but only those at least
``MIN_SIDE`` input pixels wide. Small squares in a large image vanish in one shrunk pass and are found on
tiles; the test checks that each comes back once, at its exact place.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from efficientdet.config import PostprocessConfig, PreprocessConfig
from efficientdet.predict import Backend, Predictor
from efficientdet.structures import Detections
from efficientdet.tiling import sliced_predict, tile_windows

INPUT = 128
MIN_SIDE = 4


class SquareFinder(Backend):
    name, label_names, num_classes = "squares", ("square",), 1
    preprocess = PreprocessConfig(image_size=(INPUT, INPUT))
    postprocess = PostprocessConfig()

    def detect(self, images, postprocess, classes=None):
        from skimage.measure import label, regionprops

        out = []
        for image in images:
            h, w = image.shape[-2:]
            scale = min(INPUT / h, INPUT / w)
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
            small = F.interpolate(image.float()[None], size=size, mode="bilinear", antialias=True)[0]
            mask = (small.mean(0) > 127).numpy()
            boxes = [(r.bbox[1], r.bbox[0], r.bbox[3], r.bbox[2]) for r in regionprops(label(mask))
                     if min(r.bbox[2] - r.bbox[0], r.bbox[3] - r.bbox[1]) >= MIN_SIDE]
            b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4) / scale
            scores = torch.linspace(0.9, 0.8, len(b))
            out.append(Detections(b, scores, torch.zeros(len(b), dtype=torch.int64), self.label_names))
        return out


def test_windows_overlap_and_end_at_the_image_edge():
    windows = tile_windows((400, 700), 128, overlap=0.25)  # stride 128 - 32 = 96
    xs = sorted({int(x) for x in windows[:, 0]})
    ys = sorted({int(y) for y in windows[:, 1]})
    assert xs == [0, 96, 192, 288, 384, 480, 572] and ys == [0, 96, 192, 272]
    assert ((windows[:, 2:] - windows[:, :2]) == 128).all() and len(windows) == 28
    assert tile_windows((100, 90), 128).tolist() == [[0, 0, 90, 100]]  # smaller than a tile: the whole image
    assert tile_windows((300, 300), (300, 150), overlap=0.0).tolist() == [[0, 0, 150, 300], [150, 0, 300, 300]]


SMALL = [  # (x1, y1) of 10 x 10 squares
    (20, 20),     # inside one tile
    (122, 40),    # across the vertical border of tiles 0 and 1 (x = 128)
    (100, 60),    # inside the overlap of tiles 0 and 1: found whole twice
    (124, 124),   # across a corner: cut in three tiles, whole in one
    (690, 380),   # at the image's bottom-right corner (an image edge is no cut)
    (600, 100),
]
LARGE = (300, 150, 450, 300)  # 150 x 150: larger than the overlap, found by the whole-image pass


def scene() -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.zeros(3, 400, 700, dtype=torch.uint8)
    boxes = []
    for x, y in SMALL:
        image[:, y:y + 10, x:x + 10] = 255
        boxes.append((x, y, x + 10, y + 10))
    x1, y1, x2, y2 = LARGE
    image[:, y1:y2, x1:x2] = 255
    return image, torch.tensor(boxes, dtype=torch.float32)


def test_tiled_inference_finds_small_objects_once_at_their_place():
    image, small = scene()
    predictor = Predictor(SquareFinder(), batch_size=8)
    single = predictor(image)[0]
    assert len(single) == 1  # one shrunk pass: only the large square is big enough
    tiled = predictor.predict_tiled(image, 128, overlap=0.25)
    assert len(tiled) == len(SMALL) + 1
    found = tiled.boxes[tiled.boxes[:, 2] - tiled.boxes[:, 0] < 50]
    order = torch.argsort(found[:, 0] * 1000 + found[:, 1])
    expected = small[torch.argsort(small[:, 0] * 1000 + small[:, 1])]
    torch.testing.assert_close(found[order], expected, atol=1e-3, rtol=0)
    large = tiled.boxes[tiled.boxes[:, 2] - tiled.boxes[:, 0] >= 50]
    torch.testing.assert_close(large[0], torch.tensor(LARGE, dtype=torch.float32), atol=6.0, rtol=0)
    assert (tiled.scores[:-1] >= tiled.scores[1:]).all() and tiled.names == ["square"] * len(tiled)


def test_without_the_whole_image_pass_only_cut_copies_of_small_objects_go():
    image, small = scene()
    image[:, LARGE[1]:LARGE[3], LARGE[0]:LARGE[2]] = 0
    finder = SquareFinder()
    merged = sliced_predict(lambda crops: finder.detect(crops, finder.postprocess), image, 128, overlap=0.25,
                            full_image=False)
    got = merged.boxes[torch.argsort(merged.boxes[:, 0] * 1000 + merged.boxes[:, 1])]
    torch.testing.assert_close(got, small[torch.argsort(small[:, 0] * 1000 + small[:, 1])], atol=1e-3, rtol=0)
    capped = sliced_predict(lambda crops: finder.detect(crops, finder.postprocess), image, 128, overlap=0.25,
                            full_image=False, max_detections=2)
    assert len(capped) == 2 and np.allclose(capped.scores.numpy(), merged.scores[:2].numpy())
