"""Predictor: raw images of any kind in, detections in original-image pixels out, checked against effdet."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from efficientdet import Predictor, create_model
from efficientdet.data.preprocess import preprocess
from efficientdet.errors import ConfigError
from efficientdet.predict import Backend, predict, resolve_classes, resolve_device, resolve_dtype
from efficientdet.weights.effdet import convert_effdet_state_dict
from tests.modeling.effdet_oracle import calibrate_bn, effdet_model

from .helpers import TINY_NAMES, photo, save_tiny_checkpoint, tiny_config, tiny_model

SIZE = (128, 128)


def mixed_images() -> list:
    """A path (PNG), a PIL image, a numpy array, a float tensor (0..1) and a uint8 tensor: all real photos."""
    chelsea = Image.open(photo("chelsea.png"))
    astronaut = np.asarray(Image.open(photo("astronaut.png")).resize((200, 150)))
    rocket = torch.from_numpy(np.array(Image.open(photo("rocket.jpg")))).permute(2, 0, 1)
    return [photo("coffee.png"), chelsea, astronaut, rocket.float() / 255, rocket[:, :100, :300]]


@pytest.fixture(scope="module")
def effdet_pair():
    """effdet's Lite0 (random weights, calibrated BN) and ours with the same weights, both at 128 x 128."""
    torch.manual_seed(0)  # effdet initialises from the global generator
    ref = effdet_model("tf_efficientdet_lite0", SIZE)
    calibrate_bn(ref, SIZE)
    ours = create_model("tf_efficientdet_lite0", image_size=SIZE).eval()
    ours.load_state_dict(convert_effdet_state_dict(ref.state_dict(), ours))
    return ref.eval(), ours


def effdet_detections(ref, preprocessing, images) -> list[torch.Tensor]:
    """effdet's DetBenchPredict rows ``[x1, y1, x2, y2, score, class + 1]`` in original pixels (padding dropped)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from effdet import DetBenchPredict

    batch = preprocess(images, preprocessing)  # letterbox + normalise, checked against the official code elsewhere
    scale = torch.tensor([1.0 / m.scale for m in batch.metas])
    size_wh = torch.tensor([(m.orig_size[1], m.orig_size[0]) for m in batch.metas], dtype=torch.float32)
    with torch.no_grad():
        rows = DetBenchPredict(ref)(batch.pixels, img_info={"img_scale": scale, "img_size": size_wh})
    return [r[r[:, 4] > 0] for r in rows]


def assert_same_rows(det, rows: torch.Tensor) -> None:
    """Our detections equal effdet's rows, in order except between near-tied scores.

    The two networks (same weights, separate implementations) agree to ~1e-5 in their outputs: scores within
    5e-5, and rows whose scores differ by less than that may come in either order. A box-size delta multiplies
    a large anchor (up to 600 input pixels here) and the original image is up to 5x the input, so boxes agree
    to 1e-2 px.
    """
    unmatched = list(range(len(rows)))
    for i in range(len(det)):
        candidates = [j for j in unmatched if abs(float(rows[j, 4]) - float(rows[i, 4])) < 5e-5]
        match = [j for j in candidates if int(rows[j, 5]) - 1 == int(det.labels[i])
                 and abs(float(rows[j, 4]) - float(det.scores[i])) < 5e-5
                 and torch.allclose(det.boxes[i], rows[j, :4], atol=1e-2, rtol=1e-5)]
        assert match, f"detection {i} ({det.boxes[i].tolist()}, {float(det.scores[i]):.6f}) is not effdet's"
        unmatched.remove(match[0])


def test_predictions_match_effdet_in_original_pixels_for_mixed_inputs(effdet_pair):
    ref, ours = effdet_pair
    images = mixed_images()
    # optimize=False: the plain network repeats effdet's float operations one for one (~1e-5 apart); the
    # optimised copy rounds differently (BatchNorm folded) and is checked against the plain one in tests/test_fast.py
    dets = Predictor(ours, device="cpu", batch_size=2, optimize=False)(images)
    expected = effdet_detections(ref, ours.config.preprocess, images)
    assert len(dets) == len(images)
    for det, rows in zip(dets, expected, strict=True):
        assert len(det) == len(rows) > 0
        assert_same_rows(det, rows)
        assert det.names[0] == ours.config.label_names[int(det.labels[0])]
    # original pixels: the rocket photo is 427 x 640 and its boxes span far beyond the 128-pixel input
    assert float(dets[3].boxes[:, 2].max()) > 300


def test_class_filter_equals_a_model_with_only_those_classes():
    """Detecting among classes {1, 3} equals a model whose class head holds just those two classes."""
    model = tiny_model()
    only = create_model(tiny_config(num_classes=2, label_names=("dog", "car"))).eval()
    state = model.state_dict()
    a, k = model.config.anchors.num_anchors, model.config.num_classes
    rows = torch.tensor([i * k + c for i in range(a) for c in (1, 3)])  # channel a * K + c of the class head
    for key in ("class_head.predict.pw.weight", "class_head.predict.pw.bias"):
        state[key] = state[key][rows]
    only.load_state_dict(state)
    images = [photo("coffee.png"), photo("chelsea.png")]
    filtered = Predictor(model, classes=["dog", 3], device="cpu")(images)
    reference = Predictor(only, device="cpu")(images)
    for det, ref in zip(filtered, reference, strict=True):
        assert len(det) == len(ref) > 0
        torch.testing.assert_close(det.boxes, ref.boxes)
        torch.testing.assert_close(det.scores, ref.scores)
        assert det.labels.tolist() == [(1, 3)[i] for i in ref.labels.tolist()]
        assert set(det.names) <= {"dog", "car"}


def test_threshold_and_max_detections_cut_the_same_ranking():
    model = tiny_model()
    image = photo("astronaut.png")
    full = Predictor(model, device="cpu")(image)[0]
    cut = Predictor(model, device="cpu", score_threshold=0.5, max_detections=3)(image)[0]
    expected = full.filter(full.scores > 0.5)
    n = min(3, len(expected))
    assert 0 < len(cut) == n
    torch.testing.assert_close(cut.boxes, expected.boxes[:n])
    torch.testing.assert_close(cut.scores, expected.scores[:n])


def test_streaming_reads_lazily_and_equals_one_call():
    model = tiny_model()
    predictor = Predictor(model, device="cpu", batch_size=2)
    files = [photo(n) for n in ("coffee.png", "chelsea.png", "astronaut.png", "rocket.jpg", "coffee.png")]
    pulled = []

    def source():
        for f in files:
            pulled.append(f)
            yield f

    stream = predictor.predict_batches(source())
    first_image, first = next(stream)
    assert first_image == files[0] and len(pulled) == 2  # one batch read, not the whole source
    rest = list(stream)
    at_once = predictor(files)
    assert [img for img, _ in rest] == files[1:]
    for det, ref in zip([first] + [d for _, d in rest], at_once, strict=True):
        torch.testing.assert_close(det.boxes, ref.boxes)
        torch.testing.assert_close(det.scores, ref.scores)
    # a [B, 3, H, W] tensor is B images; predict() is the one-call form
    batch = torch.randint(0, 256, (3, 3, 64, 96), dtype=torch.uint8)
    assert len(predict(batch, model=predictor)) == 3


def test_checkpoint_with_config_channels_last_and_bfloat16(tmp_path):
    path = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    predictor = Predictor(checkpoint=path, device="cpu")
    assert predictor.label_names == TINY_NAMES and predictor.input_size == (128, 128)
    image = np.asarray(Image.open(photo("chelsea.png")))
    fp32 = predictor(image)[0]
    reference = Predictor(tiny_model(), device="cpu")(image)[0]
    torch.testing.assert_close(fp32.boxes, reference.boxes)
    nhwc = Predictor(path, device="cpu", channels_last=True)(image)[0]  # a weights file in place of a name
    torch.testing.assert_close(nhwc.boxes, fp32.boxes, atol=1e-3, rtol=0)
    torch.testing.assert_close(nhwc.scores, fp32.scores, atol=1e-5, rtol=0)
    bf16 = Predictor(path, device="cpu", dtype="bfloat16")(image)[0]
    assert bf16.boxes.dtype == torch.float32 and bf16.scores.dtype == torch.float32
    h, w = image.shape[:2]
    assert len(bf16) > 0 and float(bf16.boxes[:, 2].max()) <= w and float(bf16.boxes[:, 3].max()) <= h


class _FixedBackend(Backend):
    """A backend that returns one fixed box per image: proves the Predictor talks to backends only."""

    name, label_names, num_classes = "fixed", ("thing",), 1

    def __init__(self) -> None:
        from efficientdet.config import PostprocessConfig, PreprocessConfig

        self.preprocess, self.postprocess = PreprocessConfig(image_size=(64, 64)), PostprocessConfig()
        self.seen: list[tuple[int, ...]] = []

    def detect(self, images, postprocess, classes=None):
        from efficientdet.structures import Detections

        self.seen += [tuple(i.shape) for i in images]
        return [Detections(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([0.9]), torch.tensor([0]), self.label_names)
                for _ in images]


def test_backend_seam():
    backend = _FixedBackend()
    dets = Predictor(backend, batch_size=2)([np.zeros((10, 20, 3), np.uint8), torch.zeros(3, 5, 6), photo("coffee.png")])
    assert [d.names for d in dets] == [["thing"]] * 3
    assert backend.seen == [(3, 10, 20), (3, 5, 6), (3, 400, 600)]


def test_errors_say_what_to_do(tmp_path):
    model = tiny_model()
    with pytest.raises(ConfigError, match="Did you mean: dog"):
        Predictor(model, classes=["dgo"], device="cpu")
    with pytest.raises(ConfigError, match="out of range"):
        resolve_classes([7], TINY_NAMES, 5)
    with pytest.raises(ConfigError, match="float32, float16 or bfloat16"):
        resolve_dtype("int8")
    with pytest.raises(ConfigError, match="not a device"):
        resolve_device("gpu0")
    with pytest.raises(ConfigError, match="model name"):
        Predictor()
    with pytest.raises(ConfigError, match="nms"):
        Predictor(model, nms="fast", device="cpu")
    plain = tmp_path / "plain.pth"
    torch.save(model.state_dict(), plain)
    with pytest.raises(ConfigError, match="--model NAME"):
        Predictor(checkpoint=plain, device="cpu")
