"""NMS against torchvision (hard) and a transcription of TF's NonMaxSuppressionV5 (soft and hard)."""

from __future__ import annotations

import heapq
import math

import numpy as np
import pytest
import torch
import torchvision

from efficientdet.ops import nms as nms_module
from efficientdet.ops.nms import batched_nms, greedy_nms, soft_nms


def tf_nms(boxes: np.ndarray, scores: np.ndarray, max_out: int, iou_thr: float, score_thr: float, tf_sigma: float):
    """TF's CPU kernel, step by step: a priority queue with lazy re-scoring, float32 arithmetic, boxes yxyx."""
    boxes, scores = boxes.astype(np.float32), scores.astype(np.float32)

    def iou(i, j):
        a, b = boxes[i], boxes[j]
        area_i = (max(a[0], a[2]) - min(a[0], a[2])) * (max(a[1], a[3]) - min(a[1], a[3]))
        area_j = (max(b[0], b[2]) - min(b[0], b[2])) * (max(b[1], b[3]) - min(b[1], b[3]))
        if area_i <= 0 or area_j <= 0:
            return np.float32(0)
        h = max(min(a[2], b[2]) - max(a[0], b[0]), np.float32(0))
        w = max(min(a[3], b[3]) - max(a[1], b[1]), np.float32(0))
        inter = np.float32(h * w)
        return np.float32(inter / np.float32(area_i + area_j - inter))

    scale = np.float32(-0.5 / tf_sigma) if tf_sigma > 0 else np.float32(0)
    queue = [(-s, i, 0, s) for i, s in enumerate(scores) if s > score_thr]  # (priority, index, begin, score)
    heapq.heapify(queue)
    selected, selected_scores = [], []
    while len(selected) < max_out and queue:
        _, i, begin, score = heapq.heappop(queue)
        original = score
        hard_suppressed = False
        for j in range(len(selected) - 1, begin - 1, -1):
            sim = iou(i, selected[j])
            score = np.float32(score * np.exp(np.float32(scale * sim * sim)))
            if tf_sigma == 0 and sim > iou_thr:
                hard_suppressed = True
                break
            if score <= score_thr:
                break
        if hard_suppressed:
            continue
        if score == original:
            selected.append(i)
            selected_scores.append(score)
        elif score > score_thr:
            heapq.heappush(queue, (-score, i, len(selected), score))
    return selected, selected_scores


def clustered_boxes(b: int, c: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes around a few centres (so that many overlap) and random scores: ``[B, C, 4]`` xyxy, ``[B, C]``."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(b, 6, 2, generator=g) * 100
    pick = torch.randint(0, 6, (b, c), generator=g)
    centre = centres.gather(1, pick[..., None].expand(b, c, 2)) + torch.randn(b, c, 2, generator=g) * 6
    half = torch.rand(b, c, 2, generator=g) * 15 + 2
    return torch.cat([centre - half, centre + half], dim=-1), torch.rand(b, c, generator=g)


def test_greedy_hard_matches_torchvision():
    boxes, scores = clustered_boxes(3, 300, 0)
    idx, out_scores, counts = greedy_nms(boxes, scores, 40, iou_threshold=0.5)
    for i in range(3):
        keep = torchvision.ops.nms(boxes[i], scores[i], 0.5)[:40]
        assert counts[i] == len(keep)
        assert torch.equal(idx[i, : len(keep)], keep)
        assert torch.equal(out_scores[i, : len(keep)], scores[i, keep])


def test_greedy_with_groups_matches_torchvision_batched():
    boxes, scores = clustered_boxes(2, 250, 1)
    groups = torch.randint(0, 4, (2, 250), generator=torch.Generator().manual_seed(1))
    idx, _, counts = greedy_nms(boxes, scores, 1000, iou_threshold=0.4, groups=groups)
    for i in range(2):
        keep = torchvision.ops.batched_nms(boxes[i], scores[i], groups[i], 0.4)
        assert torch.equal(idx[i, : counts[i]], keep)


@pytest.mark.parametrize("table", [True, False])
@pytest.mark.parametrize("sigma, thr", [(0.5, 0.001), (0.2, 0.3), (0.0, -math.inf)])
def test_greedy_matches_tf_kernel(monkeypatch, table, sigma, thr):
    if not table:
        monkeypatch.setattr(nms_module, "PAIRWISE_LIMIT", 0)
    boxes, scores = clustered_boxes(2, 120, 2)
    idx, out_scores, counts = greedy_nms(boxes, scores, 60, 0.5, sigma, thr)
    for i in range(2):
        ref_idx, ref_scores = tf_nms(boxes[i][:, [1, 0, 3, 2]].numpy(), scores[i].numpy(), 60, 0.5, thr, sigma / 2)
        assert counts[i] == len(ref_idx)
        assert idx[i, : counts[i]].tolist() == ref_idx
        torch.testing.assert_close(out_scores[i, : counts[i]], torch.tensor(ref_scores), rtol=0, atol=1e-6)
        assert (out_scores[i, counts[i] :] == 0).all() and (idx[i, counts[i] :] == 0).all()


def test_soft_nms_hand_computed():
    boxes = torch.tensor([[[0.0, 0, 2, 2], [1, 1, 3, 3], [10, 10, 11, 11]]])
    scores = torch.tensor([[0.9, 0.8, 0.1]])
    idx, out, n = soft_nms(boxes, scores, 5)
    assert idx[0, :3].tolist() == [0, 1, 2] and n.item() == 3
    torch.testing.assert_close(out[0, :3], torch.tensor([0.9, 0.8 * math.exp(-((1 / 7) ** 2) / 0.5), 0.1]))
    with pytest.raises(ValueError):
        soft_nms(boxes, scores, 5, sigma=0.0)


def test_thresholds_and_ties():
    boxes = torch.tensor([[[0.0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30], [20, 20, 30, 30]]])
    scores = torch.tensor([[0.5, 0.5, 0.7, 0.7]])
    idx, _, n = greedy_nms(boxes, scores, 10)
    assert idx[0, : n[0]].tolist() == [2, 0]  # equal scores: the lower index wins
    keep = batched_nms(boxes[0], scores[0], torch.zeros(4, dtype=torch.int64))
    assert keep.tolist() == [2, 0]
    _, _, n = greedy_nms(boxes, scores, 10, score_threshold=0.5)  # strictly above the threshold
    assert n.item() == 1
    idx, out, n = greedy_nms(boxes[:, :0], scores[:, :0], 3)
    assert n.item() == 0 and idx.shape == (1, 3) and out.abs().sum() == 0


def test_batched_nms_matches_torchvision():
    boxes, scores = clustered_boxes(1, 400, 3)
    boxes, scores = boxes[0], scores[0]
    groups = torch.randint(0, 7, (400,), generator=torch.Generator().manual_seed(3))
    assert torch.equal(batched_nms(boxes, scores, groups, 0.5), torchvision.ops.batched_nms(boxes, scores, groups, 0.5))
    # Negative coordinates (torchvision's own offset trick assumes none): compare with NMS per group.
    shifted = boxes - 80
    per_group = torch.cat(
        [
            (groups == g).nonzero()[:, 0][torchvision.ops.nms(shifted[groups == g], scores[groups == g], 0.5)]
            for g in range(7)
        ]
    )
    per_group = per_group[scores[per_group].argsort(descending=True)]
    assert torch.equal(batched_nms(shifted, scores, groups, 0.5), per_group)
    assert batched_nms(boxes[:0], scores[:0], groups[:0]).numel() == 0


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::FutureWarning")
def test_traced_greedy_has_fixed_shapes():
    boxes, scores = clustered_boxes(2, 64, 4)
    traced = torch.jit.trace(lambda b, s: greedy_nms(b, s, 20, sigma=0.5, score_threshold=0.001), (boxes, scores))
    boxes2, scores2 = clustered_boxes(2, 64, 5)
    scores2[1] = 0.0  # nothing to select in image 1: the traced graph must still give zeros
    for got, want in zip(
        traced(boxes2, scores2), greedy_nms(boxes2, scores2, 20, sigma=0.5, score_threshold=0.001), strict=True
    ):
        assert torch.equal(got, want)
