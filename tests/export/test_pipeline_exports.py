"""Every exported graph is the inference pipeline: each format gives the detections of
:class:`~efficientdet.pipeline.DetectionPipeline` run eagerly on the same letterboxed ``uint8`` canvases (the
raw-image graph is checked against ``Predictor`` in test_deploy.py, ExecuTorch there too, behind ``slow``)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from efficientdet.data.preprocess import letterbox_images
from efficientdet.export import SUFFIXES, export_config, export_model
from efficientdet.pipeline import DetectionPipeline
from tests.predict.helpers import TINY_SIZE, photo, tiny_model

SMALL = dict(fpn__repeats=1, head__repeats=1)  # fewer graph nodes: faster exports
PHOTOS = ("coffee.png", "chelsea.png", "rocket.jpg")


@pytest.fixture(scope="module")
def model():
    return tiny_model(**SMALL)


@pytest.fixture(scope="module")
def canvases(model):
    """``uint8 [3, 3, H, W]``: the photos letterboxed as Predictor's onnxruntime backend does for a graph."""
    return letterbox_images([photo(n) for n in PHOTOS], model.config.preprocess, uint8=True)[0]


def run_exported(path, format: str, pixels: torch.Tensor) -> list[np.ndarray]:
    """The exported file at ``path`` run by its own runtime (onnxruntime, torch.jit, torch.export)."""
    if format == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {"images": pixels.numpy()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice
        graph = torch.jit.load(str(path)) if format == "torchscript" else torch.export.load(path).module()
    with torch.no_grad():
        return [t.numpy() for t in graph(pixels)]


@pytest.mark.parametrize(
    "format, nms, exporter",
    [
        ("onnx", "hard", "torchscript"),
        ("torchscript", "hard", "auto"),
        ("torchscript", "soft", "auto"),
        pytest.param("onnx", "soft", "torchscript", marks=pytest.mark.slow),  # ~20 s: the unrolled soft-NMS loop
        pytest.param("onnx", "hard", "dynamo", marks=pytest.mark.slow),  # ~20 s: the dynamo exporter
        pytest.param("pt2", "hard", "auto", marks=pytest.mark.slow),  # ~15 s: torch.export
    ],
)
def test_exported_graph_equals_the_pipeline(model, canvases, format, nms, exporter, tmp_path):
    path = export_model(model, tmp_path / f"tiny{SUFFIXES[format]}", format, nms=nms, exporter=exporter,
                        batch=len(PHOTOS) if format == "torchscript" else "dynamic")
    pipeline = DetectionPipeline(model, TINY_SIZE, export_config(model.config, nms=nms))
    with torch.no_grad():
        boxes, scores, labels, counts = pipeline(canvases)
    got = run_exported(path, format, canvases)
    assert got[3].tolist() == counts.tolist() and min(counts.tolist()) > 0
    assert got[2].tolist() == labels.tolist()
    # the export runs the BatchNorm-folded copy (fast.py): float rounding apart, the same numbers
    torch.testing.assert_close(torch.from_numpy(np.asarray(got[0])), boxes, atol=1e-3, rtol=0)
    torch.testing.assert_close(torch.from_numpy(np.asarray(got[1])), scores, atol=1e-5, rtol=0)
