"""Target assignment against effdet's AnchorLabeler and hand-built cases."""

from __future__ import annotations

import pytest
import torch

from efficientdet.config import AnchorConfig, LossConfig
from efficientdet.errors import ConfigError, DataError
from efficientdet.modeling.anchors import generate_anchors
from efficientdet.ops.box_coder import encode
from efficientdet.structures import Targets
from efficientdet.training import assigner
from efficientdet.training.assigner import BACKGROUND, IGNORE, assign_targets
from tests.training.effdet_targets import effdet_labeler, effdet_labels, flatten_levels, random_targets

SIZE = (128, 192)
K = 11


@pytest.mark.parametrize("chunk", [1 << 20, 1000])  # one block, and one box per block
def test_matches_effdet_labeler(monkeypatch, chunk):
    monkeypatch.setattr(assigner, "CHUNK_ELEMENTS", chunk)
    cfg = AnchorConfig()
    anchors = generate_anchors(cfg, SIZE)
    targets = random_targets([0, 4, 60, 1], SIZE, K, seed=1) + random_targets(
        [25], SIZE, K, seed=2, min_side=2, max_side=190
    )
    ours = assign_targets(anchors, targets, LossConfig(), K)
    cls, box, num_pos = effdet_labels(effdet_labeler(cfg, SIZE, K), targets)
    assert torch.equal(ours.cls_targets, flatten_levels(cls, 1))
    assert torch.equal(ours.box_targets, flatten_levels(box, 4))
    assert torch.equal(ours.num_positives, num_pos)
    assert ours.num_positives[0] == 0 and (ours.cls_targets[0] == BACKGROUND).all()


def test_thresholds_forcing_and_ignore_band():
    anchors = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 20], [100, 100, 110, 110], [0, 0, 10, 13]])
    targets = [Targets(torch.tensor([[0.0, 0, 10, 10], [100.0, 100, 120, 130]]), torch.tensor([3, 5]))]
    # IoUs with box 0: 1, 0.5, 0, 10/13; box 1 overlaps only anchor 2 (IoU 100/600), which it is forced onto.
    out = assign_targets(anchors, targets, LossConfig(match_threshold=0.6, unmatched_threshold=0.4))
    assert out.cls_targets[0].tolist() == [3, IGNORE, 5, 3]
    assert out.num_positives.tolist() == [3.0]
    torch.testing.assert_close(out.box_targets[0, 2], encode(targets[0].boxes[1], anchors[2]))
    assert (out.box_targets[0, 1] == 0).all()


def test_ignore_regions_and_degenerate_boxes():
    anchors = torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60], [60, 60, 80, 80], [200, 200, 210, 210]])
    boxes = torch.tensor([[0.0, 0, 10, 10], [40.0, 40, 70, 70], [300.0, 300, 300, 300]])
    targets = [Targets(boxes, torch.tensor([1, 2, 4]), ignore=torch.tensor([False, True, False]))]
    out = assign_targets(anchors, targets, LossConfig())
    # anchor 1 lies inside the crowd region, anchor 2 only a quarter; the empty box is not forced anywhere
    assert out.cls_targets[0].tolist() == [1, IGNORE, BACKGROUND, BACKGROUND]
    assert out.num_positives.tolist() == [1.0]


def test_shared_best_anchor_goes_to_the_first_box():
    anchors = torch.tensor([[0.0, 0, 10, 10], [30, 30, 40, 40]])
    boxes = torch.tensor([[0.0, 0, 9, 9], [1.0, 1, 10, 10]])  # both match anchor 0 best, equally
    out = assign_targets(anchors, [Targets(boxes, torch.tensor([7, 8]))], LossConfig())
    assert out.cls_targets[0].tolist() == [7, BACKGROUND]


def test_bad_input():
    anchors = generate_anchors(AnchorConfig(), (64, 64))
    with pytest.raises(DataError, match="0..4"):
        assign_targets(anchors, [Targets(torch.tensor([[0.0, 0, 5, 5]]), torch.tensor([5]))], LossConfig(), 5)
    with pytest.raises(DataError, match="targets\\[0\\]"):
        assign_targets(anchors, [Targets(torch.zeros(2, 4), torch.zeros(3, dtype=torch.long))], LossConfig())
    with pytest.raises(ConfigError, match="unmatched_threshold"):
        assign_targets(
            anchors,
            [Targets(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))],
            LossConfig(match_threshold=0.4, unmatched_threshold=0.5),
        )
