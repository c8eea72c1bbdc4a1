"""The box coder against effdet's coder, the official decoded boxes and a round trip."""

from __future__ import annotations

import warnings

import pytest
import torch

from efficientdet.modeling.anchors import generate_anchors
from efficientdet.ops.box_coder import decode, encode
from efficientdet.ops.boxes import swap_xy
from tests.ops.test_boxes import random_boxes
from tests.ops.tf_reference import anchor_config, load_case


def test_round_trip():
    anchors, boxes = random_boxes(500, 0), random_boxes(500, 1)
    codes = encode(boxes, anchors)
    torch.testing.assert_close(decode(codes, anchors), boxes, rtol=1e-5, atol=1e-4)


def test_hand_computed():
    anchor = torch.tensor([10.0, 20.0, 30.0, 60.0])  # centre (y 40, x 20), h 40, w 20
    box = torch.tensor([15.0, 30.0, 55.0, 50.0])  # centre (y 40, x 35), h 20, w 40
    expected = torch.tensor([0.0, 15 / 20, torch.log(torch.tensor(0.5)), torch.log(torch.tensor(2.0))])
    torch.testing.assert_close(encode(box, anchor), expected)
    torch.testing.assert_close(decode(expected, anchor), box)


def test_matches_effdet_coder():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from effdet.anchors import decode_box_outputs
        from effdet.object_detection import BoxList, FasterRcnnBoxCoder
    anchors, boxes = random_boxes(300, 2), random_boxes(300, 3)
    ref = FasterRcnnBoxCoder().encode(BoxList(swap_xy(boxes)), BoxList(swap_xy(anchors)))
    assert torch.equal(encode(boxes, anchors), ref)
    deltas = torch.randn(300, 4)
    assert torch.equal(decode(deltas, anchors), decode_box_outputs(deltas, swap_xy(anchors), output_xyxy=True))


def test_matches_official_decoding(reference_dir):
    data = load_case(reference_dir, "d0-native")
    anchors = generate_anchors(anchor_config("d0-native"), (512, 512))
    ours = decode(data["box"], anchors)
    ref = swap_xy(data["prenms_boxes"])
    size = (ref[..., 2:] - ref[..., :2]).amax(dim=-1, keepdim=True)  # some random-weight boxes are huge
    assert ((ours - ref).abs() <= 1e-4 + 2e-6 * size).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_give_float32(dtype):
    anchors, boxes = random_boxes(100, 4), random_boxes(100, 5)
    codes = encode(boxes.to(dtype), anchors.to(dtype))
    assert codes.dtype == torch.float32 and codes.isfinite().all()
    out = decode(torch.full((100, 4), 12.0, dtype=dtype), anchors.to(dtype))  # exp(12) overflows fp16
    assert out.dtype == torch.float32 and out.isfinite().all()
    # tiny boxes stay finite thanks to the encoder's epsilon
    assert encode(torch.zeros(3, 4), torch.zeros(3, 4)).isfinite().all()


def test_max_log_scale_clamps():
    anchor = torch.tensor([0.0, 0.0, 10.0, 10.0])
    out = decode(torch.tensor([0.0, 0.0, 50.0, 50.0]), anchor, max_log_scale=2.0)
    torch.testing.assert_close(out[2] - out[0], torch.tensor(10.0) * torch.exp(torch.tensor(2.0)))
