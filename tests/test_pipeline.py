"""The one inference pipeline: ``validate`` and ``Predictor`` give the same detections for the same images,
and the pipeline is what its wrappers (post-processing function, class filter, backends registry) run."""

from __future__ import annotations

import json

import pytest
import torch

from efficientdet import Predictor
from efficientdet.backends import BACKENDS, Backend, BackendOptions, register_backend
from efficientdet.data.preprocess import letterbox_images, normalize
from efficientdet.data.sample import SAMPLE_CLASSES, make_sample_dataset
from efficientdet.errors import ConfigError
from efficientdet.pipeline import DetectionPipeline, clip_sizes
from efficientdet.postprocess import postprocess
from tests.predict.helpers import photo, save_tiny_checkpoint, tiny_model

SAMPLE = dict(num_classes=len(SAMPLE_CLASSES), label_names=SAMPLE_CLASSES, category_ids=tuple(range(1, 7)))


@pytest.fixture(scope="module")
def val_json(tmp_path_factory):
    """Six sample images of several sizes and aspect ratios (longest side 144..192: all resized into 128)."""
    return make_sample_dataset(tmp_path_factory.mktemp("sample"), seed=5, train=0, val=6, size=192)["val"]


def test_validate_and_predictor_give_identical_detections(val_json, tmp_path, monkeypatch):
    """issue 19: ``validate`` once scored uint8 letterboxes that ``Predictor`` never made (its top detections
    differed). Both now letterbox with one function and run one pipeline: the detections that ``validate``
    hands its evaluator are ``Predictor``'s for the same image files, to the bit, and so is its results json."""
    import efficientdet.evaluation as evaluation
    from efficientdet.data.parsers import load_dataset
    from efficientdet.engine.evaluate import validate

    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.safetensors", **SAMPLE)
    seen: dict[int, object] = {}
    real = evaluation.create_evaluator

    def recording(kind, dataset, **options):
        evaluator = real(kind, dataset, **options)
        update = evaluator.update

        def record(indices, dets):
            seen.update(zip(indices.tolist(), dets, strict=True))
            return update(indices, dets)

        evaluator.update = record
        return evaluator

    monkeypatch.setattr(evaluation, "create_evaluator", recording)
    report = validate(val_json, checkpoint=checkpoint, score_threshold=0.001, device="cpu", workers=0,
                      batch_size=4, output=tmp_path / "eval", pr_curves=False, progress=False)
    records = load_dataset(val_json).records
    assert sorted(seen) == list(range(len(records))) and "AP" in " ".join(report.metrics)
    # optimize=False: the network as validate runs it (the folded copy rounds differently, tests/test_fast.py)
    predictor = Predictor(checkpoint=checkpoint, score_threshold=0.001, device="cpu", batch_size=4, optimize=False)
    predicted = predictor([r.path for r in records])
    assert len({tuple(r.size) for r in records}) > 1  # several sizes: the letterbox and un-padding matter
    for i, det in enumerate(predicted):
        got = seen[i]
        assert len(det) == len(got) > 10
        assert torch.equal(det.labels, got.labels)
        torch.testing.assert_close(det.boxes, got.boxes, rtol=0, atol=1e-5)
        torch.testing.assert_close(det.scores, got.scores, rtol=0, atol=1e-6)
    # the results json of validate holds the same (COCO xywh, category ids, rounded to 0.01 px)
    rows = json.loads((tmp_path / "eval" / "results.json").read_text())
    first = [r for r in rows if r["image_id"] == records[0].image_id]
    x1, y1, x2, y2 = predicted[0].boxes[0].tolist()
    assert first[0]["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=0.006)
    assert first[0]["category_id"] == 1 + int(predicted[0].labels[0])


def test_pipeline_is_normalise_network_postprocess():
    """forward + detections() == normalize -> model -> postprocess() with the letterbox metadata."""
    model = tiny_model()
    images = [photo("coffee.png"), photo("rocket.jpg")]
    canvases, metas = letterbox_images(images, model.config.preprocess)
    pipeline = DetectionPipeline(model)
    with torch.no_grad():
        got = pipeline.detections(pipeline(canvases, clip_sizes(metas)), metas)
        outputs = model(normalize(canvases, model.config.preprocess.mean, model.config.preprocess.std))
        expected = postprocess(outputs, model.anchors(model.config.image_size), model.config.postprocess, metas)
    for a, b in zip(got, expected, strict=True):
        assert len(a) == len(b) > 0
        assert torch.equal(a.boxes, b.boxes) and torch.equal(a.scores, b.scores) and torch.equal(a.labels, b.labels)


def test_pipeline_class_filter_keeps_model_labels():
    model = tiny_model()
    canvases, metas = letterbox_images([photo("coffee.png")], model.config.preprocess)
    pipeline = DetectionPipeline(model)
    with torch.no_grad():
        boxes, scores, labels, counts = pipeline(canvases, clip_sizes(metas), torch.tensor([1, 3]))
    n = int(counts[0])
    assert n > 0 and set(labels[0, :n].tolist()) <= {1, 3} and (labels[0, n:] == -1).all()


def test_a_registered_backend_is_built_by_name():
    """``register_backend`` is where a new engine plugs in: ``Predictor(model, backend=name)`` builds it."""
    built = []

    class Recording(Backend):
        def __init__(self, model, options):
            built.append(options)
            self.inner = Predictor(model, device="cpu").backend
            self.name, self.label_names, self.num_classes = "rec", self.inner.label_names, self.inner.num_classes
            self.preprocess, self.postprocess = self.inner.preprocess, self.inner.postprocess

        def detect(self, images, postprocess, classes=None):
            return self.inner.detect(images, postprocess, classes)

    register_backend("recording", Recording)
    try:
        model = tiny_model()
        dets = Predictor(model, backend="recording", device="cpu", threads=2)(photo("coffee.png"))
        assert isinstance(built[0], BackendOptions) and built[0].threads == 2
        expected = Predictor(model, device="cpu")(photo("coffee.png"))
        assert torch.equal(dets[0].boxes, expected[0].boxes)
    finally:
        del BACKENDS["recording"]
    with pytest.raises(ConfigError, match="did you mean 'torch'"):
        Predictor(model, backend="torhc")
