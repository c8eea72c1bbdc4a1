"""LiteRT (TFLite) and MediaPipe exports run by their own runtimes give :class:`~efficientdet.predict.Predictor`'s
detections.

The ``.tflite`` files run in ``ai_edge_litert``'s interpreter (XNNPACK on the CPU), the MediaPipe file in
``mediapipe.tasks.vision.ObjectDetector``. The tests skip when ``litert-torch`` / ``ai-edge-litert`` (and
``mediapipe``) are not installed (``pip install 'efficientdet[tflite]'``). A conversion takes a minute or more
even for the tiny detector (litert-torch runs three decomposition passes over the unrolled NMS loop), so
every test that converts is ``slow``; the tiny detector keeps ``max_detections`` and the candidates small.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from efficientdet.data.preprocess import fill_values, letterbox
from efficientdet.errors import ConfigError
from efficientdet.export import export_model, read_metadata
from efficientdet.predict import Predictor
from tests.predict.helpers import TINY_NAMES, TINY_SIZE, photo, tiny_model

pytest.importorskip("litert_torch", reason="litert-torch is not installed (pip install 'efficientdet[tflite]')")
pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed (pip install 'efficientdet[tflite]')")

PHOTOS = ("coffee.png", "chelsea.png", "astronaut.png", "rocket.jpg")
SMALL = dict(fpn__repeats=1, head__repeats=1, postprocess__max_detection_points=1000,
             postprocess__max_detections=20)


@pytest.fixture(scope="module")
def model():
    return tiny_model(**SMALL)


def canvases(model) -> list[np.ndarray]:
    """Each photo letterboxed into the input as the library does it: ``uint8 [H_in, W_in, 3]``."""
    pre = model.config.preprocess
    out = []
    for name in PHOTOS:
        image = torch.from_numpy(np.array(Image.open(photo(name)).convert("RGB"))).permute(2, 0, 1)
        canvas, _ = letterbox(image, TINY_SIZE, fill_values(pre.fill, pre.mean), uint8=True)
        out.append(canvas.permute(1, 2, 0).contiguous().numpy())
    return out


def run_tflite(path, image: np.ndarray) -> list[np.ndarray]:
    """The outputs of a ``.tflite`` file on one input, in output order (the input is resized to fit)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(path))
    (inp,) = interpreter.get_input_details()
    if list(inp["shape"]) != list(image.shape):
        interpreter.resize_tensor_input(inp["index"], image.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], image)
    interpreter.invoke()
    return [interpreter.get_tensor(o["index"]) for o in interpreter.get_output_details()]


def assert_equals_predictor(got, expected, box_atol: float, score_atol: float, top: int | None = None) -> None:
    """``got = (boxes, scores, labels, count)`` of one image equals ``expected`` (a Detections) row by row."""
    boxes, scores, labels, count = got
    n = int(count)
    assert n == len(expected) > 0
    top = n if top is None else min(top, n)
    assert labels[:top].tolist() == expected.labels[:top].tolist()  # same classes, same order
    np.testing.assert_allclose(boxes[:top], expected.boxes[:top].numpy(), atol=box_atol, rtol=0)
    np.testing.assert_allclose(scores[:top], expected.scores[:top].numpy(), atol=score_atol, rtol=0)
    assert (labels[n:] == -1).all() and (scores[n:] == 0).all()


@pytest.fixture(scope="module")
def tflite_file(model, tmp_path_factory):
    return export_model(model, tmp_path_factory.mktemp("tflite") / "tiny.tflite", "tflite")


@pytest.mark.slow  # ~1-3 min: one litert-torch conversion of the tiny detector
def test_tflite_equals_predictor(model, tflite_file):
    """float32: the batch-1 letterboxed graph, on the pixels Predictor sees (an input-sized canvas is not resized
    again), same classes in the same order, boxes within 1e-2 px."""
    predictor = Predictor(model, device="cpu")
    for canvas in canvases(model):
        boxes, scores, labels, count = run_tflite(tflite_file, canvas.transpose(2, 0, 1)[None].copy())
        assert labels.dtype == np.int32 and boxes.shape == (1, 20, 4)
        assert_equals_predictor((boxes[0], scores[0], labels[0], count[0]), predictor(canvas)[0],
                                box_atol=1e-2, score_atol=1e-4)
    meta = read_metadata(tflite_file)
    assert meta["format"] == "efficientdet-tflite" and meta["label_names"] == list(TINY_NAMES)
    assert meta["weights"] == "float32" and "int32 [1, D]" in meta["outputs"]["labels"]


@pytest.mark.slow  # ~1-3 min: one conversion
def test_tflite_half_weights(model, tflite_file, tmp_path):
    """float16 weights: the weights take half the bytes; the best detections keep their classes, order and boxes."""
    path = export_model(model, tmp_path / "tiny-fp16.tflite", "tflite", half=True)
    weight_bytes = 4 * sum(p.numel() for p in model.parameters())  # the tiny model's graph is a large share of
    assert tflite_file.stat().st_size - path.stat().st_size > 0.4 * weight_bytes  # its file: compare the saving
    assert read_metadata(path)["weights"] == "float16"
    predictor = Predictor(model, device="cpu")
    for canvas in canvases(model)[:2]:
        boxes, scores, labels, count = run_tflite(path, canvas.transpose(2, 0, 1)[None].copy())
        assert_equals_predictor((boxes[0], scores[0], labels[0], count[0]), predictor(canvas)[0],
                                box_atol=0.5, score_atol=2e-2, top=5)


def test_tflite_raw_image_graph_is_refused_with_the_way_out(model, tmp_path):
    """litert-torch 0.10 cannot lower the raw-image graph's dynamic height and width (a JAX gather error after
    minutes of conversion): the export says so at once and names the batch graph instead."""
    with pytest.raises(ConfigError, match="drop --input raw"):
        export_model(model, tmp_path / "tiny-raw.tflite", "tflite", input="raw")


def test_tflite_options_are_checked(model, tmp_path):
    with pytest.raises(ConfigError, match="half .* is for tflite, mediapipe"):
        export_model(model, tmp_path / "m.onnx", "onnx", half=True)


@pytest.mark.xfail(strict=True, reason="litert-torch 0.10 writes the graph as 21 subgraphs; MediaPipe's "
                   "ObjectDetector loads only single-subgraph models ('Expected a model with a single subgraph')")
@pytest.mark.slow  # ~1-3 min: one conversion, and MediaPipe's task graph
def test_mediapipe_object_detector_equals_predictor(model, tmp_path):
    """MediaPipe's ObjectDetector reads the file's metadata (labels, input) and finds Predictor's detections on
    photos letterboxed to the input (MediaPipe itself stretches; an input-sized image is not resized again).
    MediaPipe gives integer pixel boxes: within 1 px."""
    pytest.importorskip("mediapipe", reason="mediapipe is not installed (pip install 'efficientdet[tflite]')")
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    path = export_model(model, tmp_path / "tiny-mediapipe.tflite", "mediapipe")
    with pytest.raises(ConfigError, match="batch input"):
        export_model(model, tmp_path / "raw.tflite", "mediapipe", input="raw")
    options = vision.ObjectDetectorOptions(base_options=BaseOptions(model_asset_path=str(path)),
                                           score_threshold=0.0, max_results=-1)
    predictor = Predictor(model, device="cpu")
    with vision.ObjectDetector.create_from_options(options) as detector:
        for canvas in canvases(model):
            result = detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=canvas))
            expected = predictor(canvas)[0]
            found = result.detections
            assert len(found) == len(expected) > 0
            assert [d.categories[0].category_name for d in found] == expected.names
            assert [d.categories[0].index for d in found] == expected.labels.tolist()
            np.testing.assert_allclose([d.categories[0].score for d in found], expected.scores.numpy(), atol=1e-4)
            xyxy = np.array([[b.origin_x, b.origin_y, b.origin_x + b.width, b.origin_y + b.height]
                             for b in (d.bounding_box for d in found)], np.float32)
            np.testing.assert_allclose(xyxy, expected.boxes.numpy(), atol=1.0 + 1e-3, rtol=0)


def readme_block(marker: str) -> str:
    """The python block of the README's "Export and deploy" section that contains ``marker``."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (block,) = [b for b in re.findall(r"^```python\n(.*?)^```", readme, flags=re.S | re.M)
                if marker in b]
    return block


@pytest.mark.xfail(strict=True, reason="litert-torch 0.10 writes the graph as 21 subgraphs; MediaPipe's "
                   "ObjectDetector loads only single-subgraph models ('Expected a model with a single subgraph')")
@pytest.mark.slow  # minutes: an ONNX export and two LiteRT conversions
def test_readme_tflite_and_mediapipe_examples(model, tflite_file, tmp_path, monkeypatch):
    """The README's LiteRT and MediaPipe examples, run after its onnxruntime example (which makes ``canvas`` and
    ``scale``) on the files they name: the interpreter gives the ONNX graph's detections; MediaPipe finds what
    ``Predictor`` finds above 0.3 (same names, boxes within MediaPipe's whole-pixel rounding)."""
    pytest.importorskip("mediapipe", reason="mediapipe is not installed (pip install 'efficientdet[tflite]')")
    import os

    onnx = export_model(model, tmp_path / "tiny.onnx", "onnx")
    mediapipe_file = export_model(model, tmp_path / "tiny-mediapipe.tflite", "mediapipe")
    links = {"runs/readme_deploy.onnx": onnx, "runs/readme.tflite": tflite_file,
             "runs/readme_mediapipe.tflite": mediapipe_file, "demo_output/data/val/images/000001.jpg": photo("rocket.jpg")}
    for link, target in links.items():
        (tmp_path / link).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, tmp_path / link)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(readme_block('InferenceSession("runs/readme_deploy.onnx"'), scope)
    onnx_out = [np.asarray(scope[k]) for k in ("boxes", "scores", "labels", "count")]
    exec(readme_block("runs/readme.tflite"), scope)
    n = int(onnx_out[3][0])  # the tiny model's max_detections is 20 in both files
    assert int(scope["count"][0]) == n > 0
    assert scope["labels"][0, :n].tolist() == onnx_out[2][0, :n].tolist()
    np.testing.assert_allclose(scope["boxes"][0, :n], onnx_out[0][0, :n], atol=1e-2)
    exec(readme_block("runs/readme_mediapipe.tflite"), scope)
    expected = Predictor.from_onnx(onnx, device="cpu", score_threshold=0.3)(photo("rocket.jpg"))[0]
    found = scope["result"].detections
    assert [d.categories[0].category_name for d in found] == expected.names
    for d, box in zip(found, expected.boxes.numpy()):
        b = d.bounding_box
        got = np.array([b.origin_x, b.origin_y, b.origin_x + b.width, b.origin_y + b.height]) / scope["scale"]
        np.testing.assert_allclose(got, box, atol=1.0 / scope["scale"] + 0.5)
