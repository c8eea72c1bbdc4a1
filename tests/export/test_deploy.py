"""Deployment graphs: the raw-image graph (``--input raw``: a decoded ``uint8 [H, W, 3]`` photo of any size in,
detections in its pixels out, equal to :class:`~efficientdet.predict.Predictor` on the same photo), its int8
copy (``--int8``) and the TensorRT operator check.

One export serves the ONNX tests here: the tiny detector with ``max_detection_points=3000``, which keeps the
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
from efficientdet.exporters.quantize import calibration_images, quantize_onnx
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
    with pytest.raises(ConfigError, match="raw-image graph"):
        Predictor.from_onnx(raw_onnx)


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


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """A folder of real photos (calibration data given as a plain image folder)."""
    folder = tmp_path_factory.mktemp("photos")
    for name in PHOTOS + ("motorcycle_left.png", "hubble_deep_field.jpg"):
        (folder / name).symlink_to(photo(name))
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_int8_copy_quantises_the_network_and_keeps_post_processing_float(raw_onnx, photo_folder, tmp_path):
    import onnx
    import onnxruntime as ort

    out = quantize_onnx(raw_onnx, tmp_path / "int8.onnx", photo_folder, 4)
    float_graph, int8_graph = onnx.load(str(raw_onnx)).graph, onnx.load(str(out)).graph
    ops = [node.op_type for node in int8_graph.node]
    producers = {o: node for node in int8_graph.node for o in node.output}
    convs = [node for node in int8_graph.node if node.op_type == "Conv"]
    quantised = [c for c in convs if producers.get(c.input[1]) is not None
                 and producers[c.input[1]].op_type == "DequantizeLinear"]
    float_convs = [c for c in convs if c not in quantised]
    # every convolution but the heads' prediction layers (one per pyramid level and head) reads int8 weights
    assert len(float_convs) == 2 * 5 and len(quantised) == len(convs) - 10 > 50
    # the post-processing is untouched: the same NMS, top-k and decoding nodes as the float graph
    for op in ("NonMaxSuppression", "TopK", "Exp", "GatherElements"):
        assert ops.count(op) == [n.op_type for n in float_graph.node].count(op) > 0
    meta = read_metadata(out)
    assert meta["input"] == "raw" and meta["label_names"] == list(TINY_NAMES)
    assert meta["quantization"]["calibration_images"] == 4 and len(meta["quantization"]["float_layers"]) == 10
    # same detections up to int8 rounding: the sorted scores of the 100 rows stay within 0.03
    reference = ort.InferenceSession(str(raw_onnx), providers=["CPUExecutionProvider"])
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for image in photos()[:4]:
        expected, got = reference.run(None, {"image": image}), session.run(None, {"image": image})
        assert int(got[3]) == int(expected[3]) > 0
        np.testing.assert_allclose(np.sort(got[1])[::-1], np.sort(expected[1])[::-1], atol=0.03)


def test_calibration_images_from_a_dataset_or_a_folder(photo_folder, tmp_path):
    from efficientdet.data.sample import make_sample_dataset
    from efficientdet.errors import DataError

    files = calibration_images(photo_folder, 3)
    assert len(files) == 3 and len(set(files)) == 3 and all(f.suffix in (".png", ".jpg") for f in files)
    assert len(calibration_images(photo_folder)) == 6  # fewer images than asked: all of them
    splits = make_sample_dataset(tmp_path / "sample", train=5, val=2)
    files = calibration_images(splits["val"], 10)  # a COCO json: its images
    assert len(files) == 2 and all(f.is_file() for f in files)
    with pytest.raises(DataError, match="does not exist"):
        calibration_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        calibration_images(tmp_path / "empty")
    with pytest.raises(ConfigError, match="must be >= 1"):
        calibration_images(photo_folder, 0)


def test_cli_int8_flags_need_onnx_and_calibration_data(tmp_path, capsys):
    from efficientdet.cli.main import main
    from tests.predict.helpers import save_tiny_checkpoint

    ckpt = save_tiny_checkpoint(tmp_path / "tiny.safetensors", **SMALL)
    assert main(["export", "--checkpoint", str(ckpt), "--int8"]) == 2
    assert "--calibration-data DATA" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(ckpt), "--format", "pt2", "--int8", "--calibration-data", "x"]) == 2
    assert "--format onnx" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(ckpt), "--calibration-images", "5"]) == 2
    assert "add --int8" in capsys.readouterr().err


@pytest.mark.slow  # ~30 s: an ONNX export and its quantisation
def test_cli_writes_an_int8_onnx_file(tmp_path, monkeypatch, photo_folder, capsys):
    from efficientdet.cli.main import main
    from tests.predict.helpers import save_tiny_checkpoint

    ckpt = save_tiny_checkpoint(tmp_path / "tiny.safetensors", **SMALL)
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--checkpoint", str(ckpt), "--int8", "--calibration-data", str(photo_folder),
                 "--calibration-images", "3"]) == 0
    assert "int8: int8 per-channel symmetric weights" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.glob("*.onnx")) == ["tiny_det.onnx"]  # the float32 copy is gone
    predictor = Predictor.from_onnx(tmp_path / "tiny_det.onnx", device="cpu")
    assert len(predictor(photos()[0])[0]) > 0
    import onnx

    assert "DequantizeLinear" in {n.op_type for n in onnx.load(str(tmp_path / "tiny_det.onnx")).graph.node}


@pytest.mark.slow  # ~2 minutes: lowering to XNNPACK
def test_executorch_program_runs_in_the_executorch_runtime(tmp_path):
    """``--format executorch``: the ``.pte`` runs in ExecuTorch's runtime with the same detections as
    PyTorch's hard NMS on the same letterboxed photos (greedy loop in the program, torchvision's NMS here)."""
    pytest.importorskip("executorch")
    from executorch.runtime import Runtime

    from efficientdet.data.preprocess import normalize
    from efficientdet.postprocess import postprocess_padded

    model = tiny_model(**SMALL)
    path = export_model(model, tmp_path / "tiny.pte", "executorch", max_detections=20)
    meta = read_metadata(path)
    assert meta["label_names"] == list(TINY_NAMES) and meta["postprocess"]["nms"] == "hard"
    method = Runtime.get().load_program(str(path)).load_method("forward")
    fill = fill_values(model.config.preprocess.fill, model.config.preprocess.mean)
    cfg = export_config(model.config, max_detections=20)
    for image in photos()[:3]:
        canvas, _ = letterbox(torch.from_numpy(image).permute(2, 0, 1), TINY_SIZE, fill, uint8=True)
        x = canvas[None]
        boxes, scores, labels, counts = method.execute([x])
        with torch.no_grad():
            outputs = model(normalize(x, model.config.preprocess.mean, model.config.preprocess.std))
        expected = postprocess_padded(outputs, model.anchors(TINY_SIZE), cfg, input_size=TINY_SIZE)
        assert counts.tolist() == expected[3].tolist() and labels.tolist() == expected[2].tolist()
        torch.testing.assert_close(boxes, expected[0], atol=2e-3, rtol=0)
        torch.testing.assert_close(scores, expected[1], atol=1e-5, rtol=0)


def test_greedy_hard_nms_graph_equals_the_nms_operator_graph(model):
    """The ExecuTorch graph's hard NMS (greedy loop, no NMS operator) selects what torchvision's NMS selects."""
    cfg = export_config(model.config, max_detections=30)
    fill = fill_values(model.config.preprocess.fill, model.config.preprocess.mean)
    x = torch.stack([letterbox(torch.from_numpy(im).permute(2, 0, 1), TINY_SIZE, fill, uint8=True)[0]
                     for im in photos()[:3]])
    with torch.no_grad():
        expected = DetectionGraph(model, TINY_SIZE, cfg)(x)
        got = DetectionGraph(model, TINY_SIZE, cfg, hard_nms="greedy")(x)
    assert got[3].tolist() == expected[3].tolist() and got[2].tolist() == expected[2].tolist()
    torch.testing.assert_close(got[0], expected[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(got[1], expected[1], atol=1e-6, rtol=0)
