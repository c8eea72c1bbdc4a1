"""Post-processing speed: ours vs effdet 0.4.1 (``_post_process`` + ``_batch_detection``), D0 at 512.

Random head outputs (``K = 90`` classes, 49104 anchors, logits ~ N(-3, 1.5) like a trained head's
background-heavy output, box deltas ~ N(0, 0.5)). The detections are first checked to be identical; then
both run interleaved, ``--repeats`` times each, and the median time per image is reported. Our official
``global`` mode (hard and soft NMS over all anchors) is timed too, for reference.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/postprocess.py --threads 2
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from efficientdet.config import AnchorConfig, PostprocessConfig  # noqa: E402
from efficientdet.modeling.anchors import feature_sizes, generate_anchors  # noqa: E402
from efficientdet.postprocess import postprocess_padded  # noqa: E402
from efficientdet.structures import HeadOutputs  # noqa: E402

NUM_CLASSES = 90
IMAGE_SIZE = (512, 512)


def make_inputs(batch: int, seed: int = 0) -> tuple[HeadOutputs, list[torch.Tensor], list[torch.Tensor]]:
    """Our flat outputs and the same values as effdet's per-level ``[B, A*K, H, W]`` / ``[B, A*4, H, W]`` lists."""
    g = torch.Generator().manual_seed(seed)
    cfg = AnchorConfig()
    sizes = feature_sizes(IMAGE_SIZE, cfg.max_level)[cfg.min_level :]
    a = cfg.num_anchors
    cls_levels = [torch.randn(batch, a * NUM_CLASSES, h, w, generator=g) * 1.5 - 3.0 for h, w in sizes]
    box_levels = [torch.randn(batch, a * 4, h, w, generator=g) * 0.5 for h, w in sizes]

    def flat(levels: list[torch.Tensor], k: int) -> torch.Tensor:
        return torch.cat([t.permute(0, 2, 3, 1).reshape(batch, -1, k) for t in levels], dim=1)

    return HeadOutputs(flat(cls_levels, NUM_CLASSES), flat(box_levels, 4)), cls_levels, box_levels


def run_ours(
    outputs: HeadOutputs, anchors: torch.Tensor, cfg: PostprocessConfig, scales: torch.Tensor, orig: torch.Tensor
) -> torch.Tensor:
    """Our detections as effdet's rows ``[x1, y1, x2, y2, score, class + 1]`` (zero padding)."""
    boxes, scores, labels, _ = postprocess_padded(outputs, anchors, cfg, scales, orig)
    return torch.cat([boxes, scores[..., None], (labels + 1).clamp(min=0)[..., None].float()], dim=-1)


def run_effdet(
    cls_levels: list[torch.Tensor],
    box_levels: list[torch.Tensor],
    anchors: torch.Tensor,
    cfg: PostprocessConfig,
    scales: torch.Tensor,
    orig: torch.Tensor,
) -> torch.Tensor:
    """effdet's ``DetBenchPredict`` post-processing (``img_scale`` = 1 / scale, ``img_size`` = (W, H))."""
    from effdet.bench import _batch_detection, _post_process

    c, b, idx, cl = _post_process(cls_levels, box_levels, 5, NUM_CLASSES, cfg.max_detection_points)
    return _batch_detection(
        len(scales), c, b, anchors, idx, cl, 1.0 / scales, orig.flip(1), max_det_per_image=cfg.max_detections
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import effdet.bench  # noqa: F401  (import warnings out of the way)
        from effdet.anchors import Anchors

    anchor_cfg = AnchorConfig()
    anchors = generate_anchors(anchor_cfg, IMAGE_SIZE)
    effdet_anchors = Anchors(3, 7, 3, list(anchor_cfg.aspect_ratios), 4.0, IMAGE_SIZE).boxes
    cfg = PostprocessConfig()  # topk, hard NMS, 5000 points, 100 detections: effdet's defaults
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, D0 {IMAGE_SIZE}, K={NUM_CLASSES}, "
        f"{anchors.shape[0]} anchors, {args.repeats} interleaved repeats"
    )

    for batch in args.batches:
        outputs, cls_levels, box_levels = make_inputs(batch)
        scales = torch.full((batch,), 0.8)
        orig = torch.tensor([[480.0, 640.0]]).expand(batch, 2)
        runs = {
            "ours": functools.partial(run_ours, outputs, anchors, cfg, scales, orig),
            "effdet": functools.partial(run_effdet, cls_levels, box_levels, effdet_anchors, cfg, scales, orig),
        }
        with torch.inference_mode():
            torch.testing.assert_close(runs["ours"](), runs["effdet"](), rtol=0, atol=1e-4)
            times: dict[str, list[float]] = {name: [] for name in runs}
            for _ in range(args.repeats):
                for name, fn in runs.items():
                    t = time.perf_counter()
                    fn()
                    times[name].append((time.perf_counter() - t) / batch)
        ours_ms = statistics.median(times["ours"]) * 1e3
        effdet_ms = statistics.median(times["effdet"]) * 1e3
        print(
            f"batch {batch}: identical detections; per image: ours {ours_ms:.2f} ms, effdet {effdet_ms:.2f} ms, "
            f"speed-up {effdet_ms / ours_ms:.1f}x"
        )
        # The official mode (no effdet counterpart): best class per anchor, one NMS over all anchors.
        for nms in ("hard", "soft"):
            official = PostprocessConfig(mode="global", nms=nms)
            fn = functools.partial(run_ours, outputs, anchors, official, scales, orig)
            with torch.inference_mode():
                fn()
                samples = []
                for _ in range(max(3, args.repeats // 3)):
                    t = time.perf_counter()
                    fn()
                    samples.append((time.perf_counter() - t) / batch)
            print(
                f"batch {batch}: ours, official global mode, {nms} NMS: {statistics.median(samples) * 1e3:.2f} ms per image"
            )


if __name__ == "__main__":
    main()
