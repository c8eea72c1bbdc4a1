"""The raw-image graph (``--input raw``): a decoded ``uint8 [H, W, 3]`` photo of any size in, detections in its
pixels out, equal to :class:`~efficientdet.predict.Predictor` on the same photo; and the TensorRT operator check.

One export serves every test here: the tiny detector with ``max_detection_points=3000``, which keeps the
graph's TopK within TensorRT's limit (the official 5000 exceeds it, see :mod:`efficientdet.exporters.tensorrt`).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from efficientdet.data.preprocess import fill_values, letterbox
from efficientdet.errors import ConfigError
from efficientdet.export import DetectionGraph, export_config, export_model, read_metadata
from efficientdet.exporters.raw import RawImageGraph
from efficientdet.exporters.tensorrt import MAX_TOPK, tensorrt_problems
from efficientdet.predict import Predictor
from tests.predict.helpers import TINY_NAMES, TINY_SIZE, photo, tiny_model

PHOTOS = ("coffee.png", "chelsea.png", "astronaut.png", "rocket.jpg")
SMALL = dict(fpn__repeats=1, head__repeats=1, postprocess__max_detection_points=3000)


def photos() -> list[np.ndarray]:
    """Real photos, whole and cropped to odd sizes (wide, tall, smaller than the input, one pixel row of 3)."""
    images = [np.array(Image.open(photo(name)).convert("RGB")) for name in PHOTOS]
    return images + [np.ascontiguousarray(images[0][:57, :91]), np.ascontiguousarray(images[1][:, :40]),
                     np.ascontiguousarray(images[2][:3, :300])]


@pytest.fixture(scope="module")
def model():
    return tiny_model(**SMALL)


@pytest.fixture(scope="module")
def raw_onnx(model, tmp_path_factory):
    return export_model(model, tmp_path_factory.mktemp("raw") / "tiny-raw.onnx", input="raw")


def test_letterbox_inside_the_graph_equals_predictors(model):
    graph = RawImageGraph(DetectionGraph(model, TINY_SIZE, export_config(model.config)))
    fill = fill_values(model.config.preprocess.fill, model.config.preprocess.mean)
    for image in photos():
        canvas, scale = graph.letterbox(torch.from_numpy(image))
        expected, expected_scale = letterbox(torch.from_numpy(image).permute(2, 0, 1).float(), TINY_SIZE, fill)
        assert float(scale) == pytest.approx(expected_scale, rel=1e-7)
        torch.testing.assert_close(canvas[0], expected, atol=2e-3, rtol=0)  # 0..255 pixel values


def test_raw_onnx_equals_predictor_on_photos_of_any_size(model, raw_onnx):
    import onnxruntime as ort

    session = ort.InferenceSession(str(raw_onnx), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in session.get_inputs()] == [("image", "tensor(uint8)")]
    predictor = Predictor(model, device="cpu")
    for image in photos():
        boxes, scores, labels, count = session.run(None, {"image": image})
        expected = predictor(image)[0]
        assert count.shape == () and int(count) == len(expected) > 0
        assert labels[:count].tolist() == expected.labels.tolist() and (labels[count:] == -1).all()
        np.testing.assert_allclose(boxes[:count], expected.boxes.numpy(), atol=2e-3, rtol=0)  # image pixels
        np.testing.assert_allclose(scores[:count], expected.scores.numpy(), atol=1e-5, rtol=0)
        h, w = image.shape[:2]
        assert (boxes[:count, 2] <= w).all() and (boxes[:count, 3] <= h).all()
    meta = read_metadata(raw_onnx)
    assert meta["input"] == "raw" and meta["label_names"] == list(TINY_NAMES) and "image" in meta["inputs"]


def test_raw_graph_rejects_a_batch():
    with pytest.raises(ConfigError, match="no batch dimension"):
        export_model(tiny_model(**SMALL), "unused.onnx", input="raw", batch=2)
    with pytest.raises(ConfigError, match="input 'rgb' is unknown"):
        export_model(tiny_model(**SMALL), "unused.onnx", input="rgb")


def test_tensorrt_parses_every_operator_of_the_exported_graph(raw_onnx, tmp_path):
    """The CPU-side stand-in for a TensorRT build (no GPU here): only operators TensorRT's ONNX parser takes,
    TopK within its limit, NMS as the ONNX operator TensorRT maps to its own NMS layer."""
    import onnx

    assert tensorrt_problems(raw_onnx) == []
    proto = onnx.load(str(raw_onnx))
    assert "NonMaxSuppression" in {node.op_type for node in proto.graph.node}
    # the check does flag what TensorRT rejects: an unknown operator and a TopK over its limit
    k = onnx.helper.make_tensor("k", onnx.TensorProto.INT64, [1], [MAX_TOPK + 1])
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("TopK", ["x", "k"], ["v", "i"], name="big"),
         onnx.helper.make_node("Unique", ["x"], ["u"], name="uniq")], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 5000])],
        [onnx.helper.make_tensor_value_info("v", onnx.TensorProto.FLOAT, None)], [k])
    onnx.save(onnx.helper.make_model(graph), str(tmp_path / "bad.onnx"))
    problems = tensorrt_problems(tmp_path / "bad.onnx")
    assert len(problems) == 2 and "K = 3841" in problems[0] and "Unique" in problems[1]


def test_cli_exports_a_raw_torchscript_graph(tmp_path, monkeypatch, capsys):
    """``efficientdet export --input raw`` (TorchScript: the quickest to write); the graph takes any image size."""
    import warnings

    import torchvision  # noqa: F401  (registers torchvision::nms for the loaded graph)

    from efficientdet.cli.main import main
    from tests.predict.helpers import save_tiny_checkpoint

    ckpt = save_tiny_checkpoint(tmp_path / "tiny.safetensors", **SMALL)
    monkeypatch.chdir(tmp_path)  # the default output name, <model>.torchscript, lands here
    assert main(["export", "--checkpoint", str(ckpt), "--format", "torchscript", "--input", "raw"]) == 0
    printed = capsys.readouterr().out
    assert "image uint8 [H, W, 3]" in printed and "xyxy image pixels" in printed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice
        graph = torch.jit.load(str(tmp_path / "tiny_det.torchscript"))
    predictor = Predictor(tiny_model(**SMALL), device="cpu")
    for image in photos()[:2] + photos()[-1:]:
        boxes, scores, labels, count = graph(torch.from_numpy(image))
        expected = predictor(image)[0]
        assert int(count) == len(expected) and labels[:count].tolist() == expected.labels.tolist()
        torch.testing.assert_close(boxes[:count], expected.boxes, atol=2e-3, rtol=0)
