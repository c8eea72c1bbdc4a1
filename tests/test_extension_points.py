"""Extension points a newcomer uses (docs/architecture.md): a backbone through the model registry and an
export format through the export registry, each added as a toy and used end to end.

(Dataset formats, box losses, evaluators, hooks and backends have their own toy tests: tests/data/test_formats.py,
tests/training/test_box_loss_registry.py, tests/engine/test_hooks.py, tests/test_pipeline.py.)
"""

import json

import numpy as np
import pytest
import torch

from efficientdet import create_model
from efficientdet.config import replace_nested
from efficientdet.errors import ConfigError
from efficientdet.export import EXPORT_FORMATS, SUFFIXES, ExportFormat, ExportJob, export_model, register_export_format
from efficientdet.pipeline import DetectionPipeline
from efficientdet.registry import _REGISTRY, get_config, list_models, register_model
from efficientdet.structures import Targets
from efficientdet.training.losses import DetectionLoss


@pytest.fixture
def toy_backbone_model():
    """A detector on a timm backbone no registered model uses (a tiny MobileNetV3), registered by name."""
    config = replace_nested(get_config("tf_efficientdet_d0"), name="toy_mobilenet_det",
                            backbone__name="mobilenetv3_small_050", fpn__channels=16, fpn__repeats=1,
                            head__repeats=1, num_classes=3, label_names=("a", "b", "c"),
                            preprocess__image_size=(128, 128))
    register_model(config)
    yield config
    _REGISTRY.pop(config.name, None)


def test_a_timm_backbone_registered_as_a_model_builds_trains_and_predicts(toy_backbone_model):
    assert "toy_mobilenet_det" in list_models("toy_*")
    model = create_model("toy_mobilenet_det")
    assert type(model.backbone).__module__.startswith("timm")
    # the levels come from the backbone's feature info: P3..P5 at strides 8, 16, 32
    x = torch.randn(2, 3, 128, 160)
    out = model(x)
    n = model.anchors((128, 160)).shape[0]
    assert out.cls_logits.shape == (2, n, 3) and out.box_deltas.shape == (2, n, 4)
    # one training step changes the backbone's weights (gradients flow through the new backbone)
    loss_fn = DetectionLoss(model.config.loss, num_classes=3)
    targets = [Targets(torch.tensor([[10.0, 20.0, 60.0, 90.0]]), torch.tensor([1])),
               Targets(torch.zeros((0, 4)), torch.zeros(0, dtype=torch.int64))]
    before = next(model.backbone.parameters()).detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = loss_fn(model(x), model.anchors((128, 160)), targets)["total"]
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and not torch.equal(before, next(model.backbone.parameters()))
    # and the one inference pipeline runs it
    pipeline = DetectionPipeline(model.eval())
    with torch.no_grad():
        boxes, scores, labels, counts = pipeline(torch.zeros(1, 3, 128, 128, dtype=torch.uint8))
    assert boxes.shape[:2] == scores.shape == labels.shape and counts.shape == (1,)


def _write_toy(job: ExportJob) -> None:
    """A toy format: the graph's outputs on the example input, plus the metadata, in one .npz."""
    boxes, scores, labels, counts = job.graph(job.example)
    np.savez(job.path, boxes=boxes.numpy(), scores=scores.numpy(), labels=labels.numpy(), counts=counts.numpy(),
             meta=json.dumps(job.meta))


def test_an_export_format_registered_with_a_writer_gets_the_pipeline(monkeypatch, tmp_path):
    monkeypatch.setattr("efficientdet.export.EXPORT_FORMATS", dict(EXPORT_FORMATS))
    monkeypatch.setattr("efficientdet.export.SUFFIXES", dict(SUFFIXES))
    register_export_format("toy", ExportFormat(".npz", _write_toy))
    model = create_model(replace_nested(get_config("tf_efficientdet_d0"), backbone__name="test_efficientnet",
                                        fpn__channels=16, fpn__repeats=1, head__repeats=1, num_classes=4,
                                        label_names=None, preprocess__image_size=(96, 128))).eval()
    path = export_model(model, tmp_path / "m.npz", "toy", batch=2, optimize=False)
    saved = np.load(path)
    assert json.loads(str(saved["meta"]))["image_size"] == "[96, 128]"
    # what the writer got is the pipeline: the same outputs as running it here on the same input
    with torch.no_grad():
        want = DetectionPipeline(model, (96, 128), model.config.postprocess)(torch.zeros(2, 3, 96, 128, dtype=torch.uint8))
    for name, value in zip(("boxes", "scores", "labels", "counts"), want, strict=True):
        np.testing.assert_array_equal(saved[name], value.numpy(), err_msg=name)
    with pytest.raises(ConfigError, match="ExportFormat"):
        register_export_format("bad", ".npz")  # type: ignore[arg-type]
