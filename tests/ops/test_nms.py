"""NMS against torchvision (hard) and a transcription of TF's NonMaxSuppressionV5 (soft and hard), ties included."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision

from efficientdet.ops import nms as nms_module
from efficientdet.ops.nms import batched_nms, greedy_nms, soft_nms
from tests.ops.tf_reference import tf_nms


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


def _yxyx(boxes: torch.Tensor) -> np.ndarray:
    return boxes[:, [1, 0, 3, 2]].numpy()


def tied_scene(seed: int, c: int = 160) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Overlapping boxes ``[1, C, 4]`` whose scores ``[1, C]`` take 5 values (many exact ties), and a best-first
    candidate order ``[1, C]`` in which equal scores are shuffled (not in index order)."""
    boxes, _ = clustered_boxes(1, c, seed)
    g = torch.Generator().manual_seed(seed)
    scores = torch.tensor([0.3, 0.5, 0.6, 0.7, 0.9])[torch.randint(0, 5, (1, c), generator=g)]
    shuffled = torch.randperm(c, generator=g)[None]
    order = shuffled.gather(1, scores.gather(1, shuffled).sort(dim=1, descending=True, stable=True).indices)
    return boxes, scores, order


@pytest.mark.parametrize("table", [True, False])
@pytest.mark.parametrize("sigma, thr", [(0.5, 0.001), (0.0, -math.inf)])
def test_ties_go_to_the_lower_index_like_tf(monkeypatch, table, sigma, thr):
    """Candidates given best first with shuffled ties (as post-processing hands them over) and TF's box
    indices as ``ids``: TF's selection order exactly; without ``ids`` the positions decide and it differs."""
    if not table:
        monkeypatch.setattr(nms_module, "PAIRWISE_LIMIT", 0)
    boxes, scores, order = tied_scene(5)
    ref_idx, ref_scores = tf_nms(_yxyx(boxes[0]), scores[0].numpy(), 60, 0.5, thr, sigma / 2)
    cand_boxes, cand_scores = boxes[:, order[0]], scores[:, order[0]]
    idx, out, n = greedy_nms(cand_boxes, cand_scores, 60, 0.5, sigma, thr, ids=order)
    assert n.item() == len(ref_idx) == 60
    assert order[0, idx[0]].tolist() == ref_idx
    torch.testing.assert_close(out[0], torch.tensor(ref_scores), rtol=0, atol=1e-6)
    by_position, _, _ = greedy_nms(cand_boxes, cand_scores, 60, 0.5, sigma, thr)
    assert order[0, by_position[0]].tolist() != ref_idx  # the scene does need the tie rule
    # in index order no ids are needed
    idx, _, _ = greedy_nms(boxes, scores, 60, 0.5, sigma, thr)
    assert idx[0].tolist() == ref_idx


@pytest.mark.parametrize("far_first", [True, False])
def test_soft_nms_decayed_score_landing_on_an_untouched_score(far_first):
    """Box ``near`` overlaps the first selection (IoU 0.25) and decays exactly onto the untouched score of box
    ``far``: TF takes the lower index of the two next, whatever their scores were before the decay."""
    first, near, far = [0.0, 0, 10, 10], [6.0, 0, 16, 10], [50.0, 50, 60, 60]
    decay = np.float32(math.exp(np.float32(np.float32(-2.0) * np.float32(0.25)) * np.float32(0.25)))
    near_score, far_score = np.float32(0.8), np.float32(np.float32(0.8) * decay)  # the exact tie after one decay
    rows = [(first, 0.9), (far, far_score), (near, near_score)] if far_first else [(first, 0.9), (near, near_score),
                                                                                     (far, far_score)]
    boxes = torch.tensor([b for b, _ in rows])[None]
    scores = torch.tensor([float(s) for _, s in rows], dtype=torch.float32)[None]
    ref_idx, ref_scores = tf_nms(_yxyx(boxes[0]), scores[0].numpy(), 3, 0.5, 0.001, 0.25)
    assert ref_idx == [0, 1, 2] and ref_scores[1] == ref_scores[2] == far_score  # TF: index 1, then 2
    idx, out, _ = soft_nms(boxes, scores, 3)
    assert idx[0].tolist() == ref_idx and out[0].tolist() == [float(s) for s in ref_scores]
    # The same candidates best first (by original score: first, near, far) with their TF indices as ids.
    order = torch.tensor([[0, 2, 1]]) if far_first else torch.tensor([[0, 1, 2]])
    idx, out, _ = soft_nms(boxes[:, order[0]], scores[:, order[0]], 3, ids=order)
    assert order[0, idx[0]].tolist() == ref_idx and out[0].tolist() == [float(s) for s in ref_scores]


def test_hard_nms_tie_keeps_the_lower_index_everywhere():
    """Two equal-scored boxes overlapping above the threshold: every hard NMS keeps the lower index."""
    from efficientdet.postprocess import _hard_nms_padded, hard_nms_fixed

    boxes = torch.tensor([[[20.0, 20, 30, 30], [0, 0, 10, 10], [1, 0, 11, 10], [21, 20, 31, 30]]])
    scores = torch.tensor([[0.5, 0.5, 0.5, 0.5]])
    ref, _ = tf_nms(_yxyx(boxes[0]), scores[0].numpy(), 4, 0.5, -math.inf, 0.0)
    assert ref == [0, 1]
    assert greedy_nms(boxes, scores, 4)[0][0, :2].tolist() == ref
    assert batched_nms(boxes[0], scores[0], torch.zeros(4, dtype=torch.int64)).tolist() == ref
    assert hard_nms_fixed(boxes, scores, None, 0.5, -math.inf, 4)[0][0, :2].tolist() == ref
    assert _hard_nms_padded(boxes, scores, None, 0.5, -math.inf, 4)[0][0, :2].tolist() == ref
    order = torch.tensor([[3, 2, 1, 0]])  # reversed candidates: ids restore TF's choice
    idx = greedy_nms(boxes[:, order[0]], scores[:, order[0]], 4, ids=order)[0]
    assert order[0, idx[0, :2]].tolist() == ref


@pytest.mark.parametrize("fixture", ["tf-official/d0", "tf-official-lite0/lite0"])
def test_tf_transcription_reproduces_the_fixtures_soft_nms(reference_dir, fixture):
    """The transcription is TF's kernel: from TF's pre-NMS boxes and scores it gives the official soft-NMS
    detections bit for bit (which also pins the correctly rounded ``exp``)."""
    folder, prefix = fixture.split("/")
    p = np.load(reference_dir / folder / f"{prefix}-postprocess-native-ema.npz")
    selected, scores = tf_nms(p["prenms_boxes"][0], p["prenms_scores"][0], 100, 0.5, 0.001, 0.25)
    assert np.array_equal(np.array(scores, np.float32), p["detections"][0, :, 5])
    assert np.array_equal(p["prenms_classes"][0][selected] + 1, p["detections"][0, :, 6])
