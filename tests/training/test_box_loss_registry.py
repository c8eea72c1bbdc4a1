"""The box-loss registry: toy losses added through :func:`register_box_loss` train a model.

One toy works on the encoded deltas (like ``huber``), one on decoded xyxy boxes (like ``giou``); each is
checked against the same sum written out by hand, with the normalisation and weight of its kind.
"""

from __future__ import annotations

import pytest
import torch

from efficientdet.config import AnchorConfig, LossConfig
from efficientdet.errors import ConfigError
from efficientdet.modeling.anchors import generate_anchors
from efficientdet.ops.box_coder import decode
from efficientdet.structures import HeadOutputs, Targets
from efficientdet.training.assigner import assign_targets
from efficientdet.training.losses import (
    MAX_LOG_SCALE,
    DetectionLoss,
    box_loss_names,
    detection_loss,
    register_box_loss,
    unregister_box_loss,
)
from tests.predict.helpers import tiny_config
from tests.training.effdet_targets import random_targets

SIZE = (96, 128)
K = 6
calls: list[str] = []


def toy_l1(pred: torch.Tensor, target: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    calls.append("toy_l1")
    return (pred - target).abs().sum()


@pytest.fixture
def toy_losses():
    register_box_loss("toy_l1", toy_l1)

    @register_box_loss("toy_box_l1", decoded=True)
    def toy_box_l1(pred, target, cfg):
        return (pred - target).abs().sum() / 10.0

    yield
    unregister_box_loss("toy_l1")
    unregister_box_loss("toy_box_l1")


def test_toy_losses_are_normalised_and_weighted_by_their_kind(toy_losses):
    anchors = generate_anchors(AnchorConfig(), SIZE)
    targets = random_targets([4, 1], SIZE, K, seed=2)
    g = torch.Generator().manual_seed(0)
    outputs = HeadOutputs(torch.randn(2, anchors.shape[0], K, generator=g),
                          torch.randn(2, anchors.shape[0], 4, generator=g) * 0.3)
    assigned = assign_targets(anchors, targets, LossConfig())
    positive = assigned.cls_targets >= 0
    normalizer = assigned.num_positives.sum() + 1.0
    pred, target = outputs.box_deltas[positive], assigned.box_targets[positive]

    cfg = LossConfig(box_loss="toy_l1", box_loss_weight=3.0)
    out = detection_loss(outputs, anchors, assigned, cfg)
    torch.testing.assert_close(out["box"], (pred - target).abs().sum() / (4 * normalizer))
    torch.testing.assert_close(out["total"], out["cls"] + 3.0 * out["box"])

    cfg = LossConfig(box_loss="toy_box_l1", iou_loss_weight=2.0)
    out = detection_loss(outputs, anchors, assigned, cfg)
    a = anchors.expand(2, -1, -1)[positive]
    boxes = decode(pred, a, max_log_scale=MAX_LOG_SCALE) - decode(target, a)
    torch.testing.assert_close(out["box"], boxes.abs().sum() / 10.0 / normalizer)
    torch.testing.assert_close(out["total"], out["cls"] + 2.0 * out["box"])


def test_toy_loss_drives_a_training_step(toy_losses):
    """The model's own config selects the toy loss; one optimiser step moves the box head and lowers the loss."""
    from efficientdet import create_model

    torch.manual_seed(0)
    model = create_model(tiny_config(loss__box_loss="toy_l1")).train()
    loss_fn = DetectionLoss(model.config.loss, model.num_classes)
    images = torch.randn(2, 3, 128, 128)
    targets = [Targets(torch.tensor([[10.0, 20.0, 60.0, 90.0], [70.0, 5.0, 120.0, 40.0]]), torch.tensor([0, 3])),
               Targets(torch.tensor([[30.0, 30.0, 100.0, 110.0]]), torch.tensor([2]))]
    anchors = model.anchors((128, 128))
    optimizer = torch.optim.SGD(model.box_head.parameters(), lr=0.05)
    calls.clear()
    before = model.box_head.predict_bias().detach().clone()
    losses = []
    for _ in range(2):
        out = loss_fn(model(images), anchors, targets)
        losses.append(float(out["box"].detach()))
        optimizer.zero_grad()
        out["total"].backward()
        optimizer.step()
    assert calls == ["toy_l1", "toy_l1"]  # the registered function computed the box loss
    assert not torch.equal(model.box_head.predict_bias().detach(), before)
    assert losses[1] < losses[0]


def test_registry_names_and_errors(toy_losses):
    assert {"huber", "smooth_l1", "iou", "giou", "diou", "ciou", "toy_l1", "toy_box_l1"} <= set(box_loss_names())
    with pytest.raises(ConfigError, match="already registered"):
        register_box_loss("huber", toy_l1)
    with pytest.raises(ConfigError, match="box_loss 'l2' is unknown.*toy_l1.*register_box_loss"):
        DetectionLoss(LossConfig(box_loss="l2"), K)
