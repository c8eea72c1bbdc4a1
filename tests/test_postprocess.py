"""Post-processing against effdet (``topk`` mode) and the official TF detections (``global`` mode)."""

from __future__ import annotations

import warnings

import pytest
import torch

from efficientdet import postprocess as pp
from efficientdet.config import AnchorConfig, PostprocessConfig
from efficientdet.errors import ConfigError
from efficientdet.modeling.anchors import generate_anchors
from efficientdet.ops.boxes import swap_xy
from efficientdet.ops.nms import greedy_nms
from efficientdet.postprocess import PAD_LABEL, postprocess, postprocess_padded
from efficientdet.structures import HeadOutputs, ImageMeta
from tests.ops.tf_reference import CASES, anchor_config, load_case
from tests.training.effdet_targets import unflatten_outputs

CFG = AnchorConfig()


def random_outputs(b: int, size: tuple[int, int], k: int, seed: int = 0) -> HeadOutputs:
    g = torch.Generator().manual_seed(seed)
    n = generate_anchors(CFG, size).shape[0]
    return HeadOutputs(torch.randn(b, n, k, generator=g) * 1.5 - 3, torch.randn(b, n, 4, generator=g) * 0.5)


def effdet_detections(outputs: HeadOutputs, size, k: int, scales, orig_hw, max_points=5000, max_det=100):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from effdet.anchors import Anchors
        from effdet.bench import _batch_detection, _post_process
    cls = unflatten_outputs(outputs.cls_logits, CFG, size)
    box = unflatten_outputs(outputs.box_deltas, CFG, size)
    anchors = Anchors(3, 7, 3, list(CFG.aspect_ratios), 4.0, size).boxes
    c, b, idx, classes = _post_process(cls, box, 5, k, max_points)
    img_scale = None if scales is None else 1.0 / scales
    img_size = None if orig_hw is None else orig_hw.flip(1)  # effdet: (W, H)
    return _batch_detection(len(cls[0]), c, b, anchors, idx, classes, img_scale, img_size, max_det_per_image=max_det)


def as_rows(boxes, scores, labels):
    """Our padded outputs as effdet's rows ``[x1, y1, x2, y2, score, class + 1]`` (zero padding)."""
    return torch.cat([boxes, scores[..., None], (labels + 1).clamp(min=0)[..., None].float()], dim=-1)


@pytest.mark.parametrize(
    "size, k, max_points, max_det",
    [((256, 320), 20, 5000, 100), ((128, 128), 3, 300, 50), ((192, 160), 90, 5000, 100)],
)
def test_topk_matches_effdet(size, k, max_points, max_det):
    outputs = random_outputs(2, size, k)
    anchors = generate_anchors(CFG, size)
    scales = torch.tensor([0.5, 0.8])
    orig = torch.tensor([[size[0] * 2.0, size[1] * 1.5], [size[0] / 0.8, size[1] / 0.8 - 20]])
    cfg = PostprocessConfig(max_detection_points=max_points, max_detections=max_det)
    ours = as_rows(*postprocess_padded(outputs, anchors, cfg, scales, orig)[:3])
    torch.testing.assert_close(
        ours, effdet_detections(outputs, size, k, scales, orig, max_points, max_det), rtol=0, atol=1e-4
    )


@pytest.mark.parametrize("n, k, top", [(500, 20, 300), (40, 6, 100), (300, 1, 120), (7, 4, 28), (50, 3, 1)])
@pytest.mark.parametrize("ties", [False, True])
def test_topk_pool_holds_the_global_top_k(n, k, top, ties):
    """The best-pairs-first pool gives the top-``top`` of all anchors x classes: the same values in order and
    the same (anchor, class) pairs (among equal values the order may differ)."""
    g = torch.Generator().manual_seed(n + k)
    logits = torch.randn(2, n, k, generator=g) * 2 - 3
    if ties:
        logits = logits.round()  # many equal logits, inside and across anchors
    anchor, label, score = pp._topk_order(logits, top)
    values, flat = logits.reshape(2, -1).topk(min(top, n * k), dim=1)
    torch.testing.assert_close(score, values.double().sigmoid().float(), rtol=0, atol=0)
    torch.testing.assert_close(logits[torch.arange(2)[:, None], anchor, label], values, rtol=0, atol=0)
    for i in range(2):
        pairs = set(zip(anchor[i].tolist(), label[i].tolist(), strict=True))
        assert len(pairs) == len(values[i])  # no pair twice
        above = values[i] > values[i, -1]  # pairs above the last value are the same; ties at the cut may differ
        expected = {(f // k, f % k) for f in flat[i][above].tolist()}
        assert expected <= pairs


# Soft-NMS multiplies a box's decays in selection order, TF newest first in batches (its lazy queue): a
# decayed score can differ in its last bits (measured on these fixtures: at most 1.8e-7, 3 ulps near 1).
SOFT_SCORE_ATOL = 2e-7


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("nms", ["soft", "hard"])
def test_global_matches_official(reference_dir, case, nms):
    """TF's detections from TF's head outputs: the same boxes and classes in the same order (ties and the raw
    D0's saturated scores included); hard-NMS scores bit for bit, soft-NMS ones within a few ulps."""
    data = load_case(reference_dir, case)
    size = data["size"]
    anchors = generate_anchors(anchor_config(case), (size, size))
    outputs = HeadOutputs(data["cls"], data["box"])
    cfg = PostprocessConfig(mode="global", nms=nms)
    # official: clip to the input, then multiply by image_scale (= 1 / our scale)
    boxes, scores, labels, counts = postprocess_padded(
        outputs, anchors, cfg, scales=torch.tensor([1 / data["image_scale"]])
    )
    assert counts.item() == 100
    ref = data[nms][0]
    assert torch.equal(labels[0] + 1, ref[:, 6].long())
    torch.testing.assert_close(boxes[0], swap_xy(ref[:, 1:5]), rtol=0, atol=1e-3 * data["image_scale"])
    torch.testing.assert_close(scores[0], ref[:, 5], rtol=0, atol=0 if nms == "hard" else SOFT_SCORE_ATOL)


def test_global_candidates_match_official_prenms(reference_dir):
    data = load_case(reference_dir, "d0-native")
    anchors = generate_anchors(anchor_config("d0-native"), (512, 512))
    source = pp.CandidateSource(HeadOutputs(data["cls"], data["box"]), anchors, PostprocessConfig(mode="global"), None)
    cand = source.take(49104)
    order = cand.anchor[0]
    assert torch.equal(cand.score[0], data["prenms_scores"][0, order])  # TF's float32 sigmoid
    assert torch.equal(cand.label[0], data["prenms_classes"][0, order])
    assert (cand.score[0, :-1] >= cand.score[0, 1:]).all()
    assert torch.equal(source.take(1000).anchor, cand.anchor[:, :1000])  # prefixes (top-k of keys) == sort


@pytest.mark.parametrize("mode, nms", [("topk", "hard"), ("topk", "soft"), ("global", "hard"), ("global", "soft")])
def test_prefix_shortcut_is_exact(monkeypatch, mode, nms):
    size, k = (96, 128), 12
    outputs = random_outputs(3, size, k, seed=7)
    anchors = generate_anchors(CFG, size)
    cfg = PostprocessConfig(mode=mode, nms=nms, max_detections=60, max_detection_points=1500)
    fast = postprocess_padded(outputs, anchors, cfg)
    monkeypatch.setattr(pp, "PREFIX_MIN", 10**9)  # all candidates at once
    full = postprocess_padded(outputs, anchors, cfg)
    for a, b in zip(fast, full, strict=True):
        assert torch.equal(a, b)


def test_topk_soft_matches_greedy_oracle():
    # topk + soft: per class soft-NMS over the top-k candidates == greedy_nms with class groups on them
    size, k = (128, 128), 5
    outputs = random_outputs(1, size, k, seed=8)
    anchors = generate_anchors(CFG, size)
    cfg = PostprocessConfig(nms="soft", max_detection_points=400, max_detections=30)
    boxes, scores, labels, counts = postprocess_padded(outputs, anchors, cfg)
    logits = outputs.cls_logits[0].reshape(-1)
    top = logits.topk(400).indices
    anchor, label = top // k, top % k
    from efficientdet.ops.box_coder import decode
    from efficientdet.ops.boxes import clip_boxes

    cand = clip_boxes(decode(outputs.box_deltas[0, anchor], anchors[anchor]), torch.tensor([128.0, 128.0]))
    idx, ref_scores, n = greedy_nms(
        cand[None], logits[top].sigmoid()[None], 30, sigma=0.5, score_threshold=0.001, groups=label[None]
    )
    assert counts.item() == n.item()
    torch.testing.assert_close(scores, ref_scores)
    assert torch.equal(labels[0], label[idx[0]])
    torch.testing.assert_close(boxes[0], cand[idx[0]])


def test_list_api_threshold_agnostic_and_padding():
    size, k = (128, 128), 4
    outputs = random_outputs(2, size, k, seed=9)
    anchors = generate_anchors(CFG, size)
    metas = [ImageMeta((256, 200), size, 0.5), ImageMeta((100, 128), size, 1.0)]
    cfg = PostprocessConfig(score_threshold=0.3, max_detections=40)
    dets = postprocess(outputs, anchors, cfg, metas, label_names=("a", "b", "c", "d"))
    boxes, scores, labels, counts = postprocess_padded(
        outputs, anchors, cfg, torch.tensor([0.5, 1.0]), torch.tensor([[256.0, 200], [100, 128]])
    )
    for i, d in enumerate(dets):
        n = counts[i]
        assert len(d) == n and (d.scores > 0.3).all() and (d.scores[:-1] >= d.scores[1:]).all()
        assert torch.equal(d.boxes, boxes[i, :n]) and set(d.names) <= {"a", "b", "c", "d"}
        h, w = metas[i].orig_size
        assert (d.boxes >= 0).all() and (d.boxes[:, [0, 2]] <= w).all() and (d.boxes[:, [1, 3]] <= h).all()
        assert (labels[i, n:] == PAD_LABEL).all() and (scores[i, n:] == 0).all() and (boxes[i, n:] == 0).all()
    # without metas: input pixels, clipped to the input
    plain = postprocess(outputs, anchors, cfg)
    assert all((d.boxes >= 0).all() and (d.boxes <= 128).all() for d in plain)
    # class-agnostic NMS never keeps two boxes overlapping more than the threshold
    agnostic = postprocess(outputs, anchors, PostprocessConfig(class_agnostic=True, max_detections=40))[0]
    from torchvision.ops import box_iou

    iou = box_iou(agnostic.boxes, agnostic.boxes).fill_diagonal_(0).nan_to_num(0.0)  # empty boxes: 0 / 0
    assert iou.max() <= 0.5


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::FutureWarning")
@pytest.mark.parametrize("nms", ["hard", "soft"])
@pytest.mark.parametrize("mode", ["topk", "global"])
def test_traceable_fixed_shapes(mode, nms):
    size, k = (64, 64), 3
    anchors = generate_anchors(CFG, size)
    cfg = PostprocessConfig(mode=mode, nms=nms, max_detection_points=200, max_detections=20)
    scales, orig = torch.tensor([0.5]), torch.tensor([[128.0, 100.0]])

    def run(logits, deltas):
        return postprocess_padded(HeadOutputs(logits, deltas), anchors, cfg, scales, orig)

    traced = torch.jit.trace(run, tuple(random_outputs(1, size, k, seed=10)))
    other = random_outputs(1, size, k, seed=11)
    for got, want in zip(traced(*other), run(*other), strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("max_outputs", [5, 300])
def test_hard_nms_fixed_equals_greedy_hard_nms(grouped, max_outputs):
    """The loop-free traceable hard NMS (one batched call) keeps what the greedy reference keeps."""
    g = torch.Generator().manual_seed(3)
    b, c = 3, 200
    xy = torch.rand(b, c, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(b, c, 2, generator=g) * 20], dim=-1)
    scores = torch.rand(b, c, generator=g).sort(dim=1, descending=True).values
    groups = torch.randint(0, 4, (b, c), generator=g) if grouped else None
    got = pp.hard_nms_fixed(boxes, scores, groups, 0.5, 0.2, max_outputs)
    want = greedy_nms(boxes, scores, max_outputs, 0.5, 0.0, 0.2, groups)
    for a, w in zip(got, want, strict=True):
        assert torch.equal(a, w)
    assert 0 < int(got[2].min()) and int(got[2].max()) <= max_outputs


def test_bad_input():
    size = (64, 64)
    outputs = random_outputs(1, size, 3)
    anchors = generate_anchors(CFG, size)
    with pytest.raises(ConfigError, match="mode"):
        postprocess(outputs, anchors, PostprocessConfig(mode="best"))
    with pytest.raises(ConfigError, match="nms"):
        postprocess(outputs, anchors, PostprocessConfig(nms="fast"))
    with pytest.raises(ValueError, match="anchors"):
        postprocess(outputs, anchors[:-9], PostprocessConfig())
    with pytest.raises(ValueError, match="metas"):
        postprocess(outputs, anchors, PostprocessConfig(), [ImageMeta((64, 64), size, 1.0)] * 2)


def tied_outputs(size=(64, 64), k: int = 3, seed: int = 12) -> HeadOutputs:
    """Head outputs full of exact ties: integer logits (equal within and across anchors) and a third of the
    anchors saturated between 16.64 and 17.3, where TF's float32 sigmoid is exactly 1.0 (correctly rounded:
    1 - 2^-24); boxes that overlap their neighbours."""
    g = torch.Generator().manual_seed(seed)
    n = generate_anchors(CFG, size).shape[0]
    logits = torch.randint(-3, 3, (1, n, k), generator=g).float()
    saturated = torch.rand(1, n, generator=g) < 0.3
    logits[..., 0] = torch.where(saturated, 16.7 + torch.rand(1, n, generator=g) * 0.6, logits[..., 0])
    return HeadOutputs(logits, torch.randn(1, n, 4, generator=g) * 0.3)


def tf_reference_detections(outputs: HeadOutputs, anchors: torch.Tensor, cfg: PostprocessConfig, size):
    """TF's NMS kernel (transcribed) over the candidates in TF's box order: ``global``: every anchor with its best
    class, TF's float32 scores; ``topk`` (all pairs, class-agnostic): every (anchor, class) in that order."""
    from efficientdet.ops.box_coder import decode
    from efficientdet.ops.boxes import clip_boxes
    from efficientdet.ops.sigmoid import rounded_sigmoid, tf_sigmoid
    from tests.ops.tf_reference import tf_nms

    logits, deltas = outputs.cls_logits[0], outputs.box_deltas[0]
    boxes = decode(deltas, anchors)
    bound = torch.tensor(size, dtype=torch.float32)
    if cfg.mode == "global":
        scores, labels = tf_sigmoid(logits.amax(-1)), logits.argmax(-1)
    else:
        k = logits.shape[-1]
        scores, labels = rounded_sigmoid(logits).reshape(-1), torch.arange(k).repeat(len(anchors))
        boxes = clip_boxes(boxes, bound).repeat_interleave(k, dim=0)
    soft = cfg.nms == "soft"
    sel, sel_scores = tf_nms(boxes[:, [1, 0, 3, 2]].numpy(), scores.numpy(), cfg.max_detections, cfg.iou_threshold,
                             0.001 if soft else -float("inf"), cfg.soft_nms_sigma / 2 if soft else 0.0)
    return clip_boxes(boxes[sel], bound), torch.tensor(sel_scores), labels[sel]


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::FutureWarning")
@pytest.mark.parametrize("nms", ["hard", "soft"])
@pytest.mark.parametrize("mode", ["global", "topk"])
def test_ties_and_saturated_scores_follow_tf(mode, nms):
    """Exact ties everywhere (equal logits, 1.0 scores of saturated logits, decayed scores): eager and traced
    post-processing select TF's boxes in TF's order (lower anchor, then class, first)."""
    size = (64, 64)
    outputs = tied_outputs(size)
    anchors = generate_anchors(CFG, size)
    n, k = outputs.cls_logits.shape[1:]
    cfg = PostprocessConfig(mode=mode, nms=nms, max_detections=60, max_detection_points=n * k, class_agnostic=True)
    ref_boxes, ref_scores, ref_labels = tf_reference_detections(outputs, anchors, cfg, size)
    assert len(ref_scores) == 60 and int((ref_scores == 1.0).sum()) >= (5 if mode == "global" else 0)

    def run(logits, deltas):
        return postprocess_padded(HeadOutputs(logits, deltas), anchors, cfg)

    traced = torch.jit.trace(run, tuple(outputs), check_trace=False)
    for boxes, scores, labels, counts in (run(*outputs), traced(*outputs)):
        assert counts.item() == 60 and torch.equal(labels[0], ref_labels)
        torch.testing.assert_close(boxes[0], ref_boxes, rtol=0, atol=0)
        torch.testing.assert_close(scores[0], ref_scores, rtol=0, atol=0 if nms == "hard" else 1e-6)
