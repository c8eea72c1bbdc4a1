"""Box helpers against torchvision and hand-computed numbers."""

from __future__ import annotations

import torch
import torchvision

from efficientdet.ops.boxes import box_coverage, clip_boxes, paired_box_iou, swap_xy


def random_boxes(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 100
    return torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 50 + 0.1], dim=1)


def test_paired_iou_matches_torchvision():
    a, b = random_boxes(200, 0), random_boxes(200, 1)
    torch.testing.assert_close(paired_box_iou(a, b), torchvision.ops.box_iou(a, b).diagonal())
    # broadcasting gives the full matrix
    torch.testing.assert_close(paired_box_iou(a[:, None], b[None]), torchvision.ops.box_iou(a, b))


def test_paired_iou_hand_computed_and_empty():
    a = torch.tensor([[0.0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 0, 0], [0, 0, 1, 1]])
    b = torch.tensor([[1.0, 1, 3, 3], [2, 2, 3, 3], [0, 0, 0, 0], [0, 0, 1, 1]])
    torch.testing.assert_close(paired_box_iou(a, b), torch.tensor([1 / 7, 0.0, 0.0, 1.0]))


def test_coverage_and_clip_and_swap():
    region = torch.tensor([0.0, 0, 10, 10])
    boxes = torch.tensor([[5.0, 5, 15, 15], [2, 2, 4, 4], [20, 20, 30, 30], [3, 3, 3, 3]])
    torch.testing.assert_close(box_coverage(region, boxes), torch.tensor([0.25, 1.0, 0.0, 0.0]))
    clipped = clip_boxes(
        torch.tensor([[[-5.0, -1, 50, 70]], [[1.0, 2, 3, 4]]]), torch.tensor([[[60.0, 40]], [[2.0, 2]]])
    )
    torch.testing.assert_close(clipped, torch.tensor([[[0.0, 0, 40, 60]], [[1.0, 2, 2, 2]]]))
    assert torch.equal(swap_xy(torch.tensor([1.0, 2, 3, 4])), torch.tensor([2.0, 1, 4, 3]))
