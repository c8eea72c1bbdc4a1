"""The detection loss against effdet's DetectionLoss (+ AnchorLabeler) and hand-checked cases."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision

from efficientdet.config import AnchorConfig, LossConfig
from efficientdet.errors import ConfigError
from efficientdet.modeling.anchors import generate_anchors
from efficientdet.ops.box_coder import decode
from efficientdet.structures import HeadOutputs, Targets
from efficientdet.training.assigner import assign_targets
from efficientdet.training.losses import DetectionLoss, detection_loss, focal_loss, focal_loss_legacy, iou_loss
from tests.training.effdet_targets import (
    effdet_labeler,
    effdet_labels,
    effdet_loss,
    random_targets,
    unflatten_outputs,
)

SIZE = (96, 128)
K = 6
CFG = AnchorConfig()


def random_outputs(b: int, seed: int = 0) -> HeadOutputs:
    g = torch.Generator().manual_seed(seed)
    n = generate_anchors(CFG, SIZE).shape[0]
    return HeadOutputs(torch.randn(b, n, K, generator=g) * 2 - 2, torch.randn(b, n, 4, generator=g) * 0.3)


@pytest.mark.parametrize(
    "cfg",
    [
        LossConfig(),
        LossConfig(label_smoothing=0.1),
        LossConfig(legacy_focal=True),
        LossConfig(alpha=0.4, gamma=2.0, delta=0.2),
    ],
    ids=["official", "label-smoothing", "legacy-focal", "other-params"],
)
def test_matches_effdet(cfg):
    targets = random_targets([3, 0, 17], SIZE, K, seed=3)
    outputs = random_outputs(3)
    anchors = generate_anchors(CFG, SIZE)
    ours = DetectionLoss(cfg, K)(outputs, anchors, targets)
    cls_t, box_t, num_pos = effdet_labels(effdet_labeler(CFG, SIZE, K), targets)
    total, cls, box = effdet_loss(cfg, K)(
        unflatten_outputs(outputs.cls_logits, CFG, SIZE),
        unflatten_outputs(outputs.box_deltas, CFG, SIZE),
        cls_t,
        box_t,
        num_pos,
    )
    for key, ref in (("total", total), ("cls", cls), ("box", box)):
        assert ours[key].dtype == torch.float32
        torch.testing.assert_close(ours[key], ref, rtol=1e-5, atol=0)


def test_elementwise_focal_matches_effdet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from effdet.loss import focal_loss_legacy as ref_legacy
        from effdet.loss import new_focal_loss
    logits = torch.randn(500) * 4
    targets = (torch.rand(500) < 0.3).float()
    torch.testing.assert_close(
        focal_loss(logits, targets, 0.25, 1.5, 0.1), new_focal_loss(logits, targets, 0.25, 1.5, 1.0, 0.1)
    )
    torch.testing.assert_close(
        focal_loss_legacy(logits, targets, 0.25, 1.5), ref_legacy(logits, targets, 0.25, 1.5, 1.0)
    )
    # hand-computed: logit 0 (p = 0.5), positive: 0.25 * 0.5^1.5 * log(2)
    torch.testing.assert_close(
        focal_loss(torch.zeros(1), torch.ones(1), 0.25, 1.5), torch.tensor([0.25 * 0.5**1.5 * 0.6931472])
    )


def test_iou_losses():
    pred = torch.tensor([[0.0, 0, 2, 2], [0, 0, 1, 1]])
    target = torch.tensor([[1.0, 1, 3, 3], [0, 0, 1, 1]])
    torch.testing.assert_close(iou_loss(pred, target, "iou"), torch.tensor([1 - 1 / 7, 0.0]))
    # GIoU: enclosing box 3x3, union 7: 1 - (1/7 - 2/9)
    torch.testing.assert_close(iou_loss(pred, target, "giou"), torch.tensor([1 - (1 / 7 - 2 / 9), 0.0]))
    torch.testing.assert_close(iou_loss(pred, target, "ciou"), torchvision.ops.complete_box_iou_loss(pred, target))
    with pytest.raises(ConfigError):
        iou_loss(pred, target, "nope")


@pytest.mark.parametrize("box_loss", ["smooth_l1", "iou", "giou", "diou", "ciou"])
def test_alternative_box_losses(box_loss):
    anchors = generate_anchors(CFG, SIZE)
    targets = random_targets([5, 2], SIZE, K, seed=4)
    outputs = random_outputs(2, seed=1)
    cfg = LossConfig(box_loss=box_loss, iou_loss_weight=2.0)
    assigned = assign_targets(anchors, targets, cfg)
    out = detection_loss(outputs, anchors, assigned, cfg)
    positive = assigned.cls_targets >= 0
    normalizer = assigned.num_positives.sum() + 1
    if box_loss == "smooth_l1":
        expected = torch.nn.functional.smooth_l1_loss(
            outputs.box_deltas[positive], assigned.box_targets[positive], reduction="sum", beta=0.1
        ) / (4 * normalizer)
        torch.testing.assert_close(out["total"], out["cls"] + 50.0 * out["box"])
    else:
        a = anchors.expand(2, -1, -1)[positive]
        gt = torch.cat([t.boxes for t in targets])  # every decoded target is one of the boxes
        decoded = decode(assigned.box_targets[positive], a)
        assert (decoded[:, None] - gt[None]).abs().amax(-1).amin(-1).max() < 1e-3
        expected = iou_loss(
            decode(outputs.box_deltas[positive], a), decode(assigned.box_targets[positive], a), box_loss
        )
        expected = expected.sum() / normalizer
        torch.testing.assert_close(out["total"], out["cls"] + 2.0 * out["box"])
    torch.testing.assert_close(out["box"], expected)


def test_perfect_box_predictions_give_zero_box_loss():
    anchors = generate_anchors(CFG, SIZE)
    targets = random_targets([4], SIZE, K, seed=5)
    assigned = assign_targets(anchors, targets, LossConfig())
    outputs = HeadOutputs(random_outputs(1).cls_logits, assigned.box_targets.clone())
    for kind in ("huber", "giou"):
        cfg = LossConfig(box_loss=kind)
        assert detection_loss(outputs, anchors, assigned, cfg)["box"].abs() < 1e-5


def test_empty_images_tiny_boxes_and_gradients():
    anchors = generate_anchors(CFG, SIZE)
    outputs = random_outputs(2, seed=2)
    logits = outputs.cls_logits.clone().requires_grad_()
    deltas = outputs.box_deltas.clone().requires_grad_()
    targets = [
        Targets(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)),
        Targets(torch.tensor([[10.0, 10, 10.5, 10.2]]), torch.tensor([2])),
    ]
    for kind in ("huber", "ciou"):
        out = DetectionLoss(LossConfig(box_loss=kind), K)(HeadOutputs(logits, deltas), anchors, targets)
        assert all(v.isfinite() for v in out.values())
        out["total"].backward()
        assert logits.grad.isfinite().all() and deltas.grad.isfinite().all()
    no_objects = DetectionLoss(LossConfig(), K)(outputs, anchors, targets[:1] * 2)
    assert no_objects["box"] == 0 and no_objects["cls"] > 0


def test_autocast_bf16():
    anchors = generate_anchors(CFG, SIZE)
    targets = random_targets([6, 3], SIZE, K, seed=6)
    outputs = random_outputs(2, seed=3)
    ref = DetectionLoss(LossConfig(), K)(outputs, anchors, targets)
    half = HeadOutputs(outputs.cls_logits.bfloat16(), outputs.box_deltas.bfloat16())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = DetectionLoss(LossConfig(), K)(half, anchors, targets)
    for key in ref:
        assert out[key].dtype == torch.float32 and out[key].isfinite()
        torch.testing.assert_close(out[key], ref[key], rtol=2e-2, atol=0)  # only the bf16 rounding of the inputs


def test_bad_config_and_shapes():
    with pytest.raises(ConfigError, match="box_loss"):
        DetectionLoss(LossConfig(box_loss="l2"), K)
    with pytest.raises(ConfigError, match="legacy_focal"):
        DetectionLoss(LossConfig(legacy_focal=True, label_smoothing=0.1), K)
    anchors = generate_anchors(CFG, SIZE)
    with pytest.raises(ValueError, match="classes"):
        DetectionLoss(LossConfig(), K + 1)(random_outputs(1), anchors, random_targets([1], SIZE, K))
