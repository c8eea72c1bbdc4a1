"""COCO evaluation speed: our CocoEvaluator vs faster-coco-eval and pycocotools used directly.

A COCO-val-sized problem: ``--images`` images (5000), ``--gt-per-image`` ground-truth boxes on average (7,
about 1% crowd), ``--classes`` categories (80, sparse COCO ids), ``--dets`` detections per image (100:
jittered copies of the ground truth plus low-scoring background boxes, as a detector's top-100 output).

* ours: ``CocoEvaluator(backend="faster")`` -- ``update()`` with the per-image ``Detections`` in batches of
  8, then ``compute()``.
* faster-coco-eval direct: ``coco.loadRes(nx7)`` with the ``[N, 7]`` array, then ``COCOeval_faster``
  ``evaluate / accumulate / summarize``.
* pycocotools direct: the same with ``pycocotools`` (slow: ``--pycocotools-repeats`` runs only).

The ground-truth ``COCO`` objects are built once, outside the timings (their build time is printed);
the direct runs start from the ready ``[N, 7]`` array, ours from the ``Detections`` tensors. First the 12
summary numbers are checked to be identical; then the runs are interleaved and medians reported.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/coco_eval.py
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from efficientdet.data.records import DetectionDataset, ImageRecord  # noqa: E402
from efficientdet.evaluation import COCO_METRIC_NAMES, CocoEvaluator, coco_ground_truth  # noqa: E402
from efficientdet.structures import Detections  # noqa: E402

COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]


def make_problem(
    images: int, classes: int, gt_per_image: float, dets: int, seed: int
) -> tuple[DetectionDataset, list[Detections]]:
    rng = np.random.default_rng(seed)
    class_freq = 1.0 / np.arange(1, classes + 1) ** 0.8  # a few frequent classes, a long tail
    class_freq /= class_freq.sum()
    records, detections = [], []
    for i in range(images):
        h, w = int(rng.integers(240, 641)), int(rng.integers(240, 641))
        m = int(rng.poisson(gt_per_image))
        size = np.exp(rng.uniform(np.log(6), np.log(0.8 * min(h, w)), (m, 2)))
        xy = rng.uniform(0, 1, (m, 2)) * (np.array([w, h]) - size)
        gt = np.concatenate([xy, xy + size], axis=1)
        labels = rng.choice(classes, m, p=class_freq)
        records.append(
            ImageRecord(Path(f"{i:012d}.jpg"), 100000 + 3 * i, gt, labels, ignore=rng.random(m) < 0.01, size=(h, w))
        )
        # true-ish detections: 1-2 jittered copies per box, mostly the right class, high scores
        copies = rng.integers(1, 3, m)
        src = np.repeat(np.arange(m), copies)
        jitter = rng.normal(0, 0.08, (len(src), 4)) * np.tile(size[src], 2) if m else np.zeros((0, 4))
        tboxes = gt[src] + jitter
        tlabels = np.where(rng.random(len(src)) < 0.85, labels[src], rng.integers(0, classes, len(src)))
        tscores = rng.beta(5, 2, len(src))
        # background detections fill the top-100 with low scores
        nb = max(dets - len(src), 0)
        bsize = np.exp(rng.uniform(np.log(4), np.log(0.8 * min(h, w)), (nb, 2)))
        bxy = rng.uniform(0, 1, (nb, 2)) * (np.array([w, h]) - bsize)
        bboxes = np.concatenate([bxy, bxy + bsize], axis=1)
        boxes = np.concatenate([tboxes, bboxes])[:dets]
        scores = np.concatenate([tscores, rng.beta(1, 6, nb)])[:dets]
        dlabels = np.concatenate([tlabels, rng.choice(classes, nb, p=class_freq)])[:dets]
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        order = np.argsort(-scores, kind="stable")
        detections.append(
            Detections(
                torch.from_numpy(boxes[order].astype(np.float32)),
                torch.from_numpy(scores[order].astype(np.float32)),
                torch.from_numpy(dlabels[order].astype(np.int64)),
            )
        )
    names = tuple(f"class_{c}" for c in COCO_IDS[:classes])
    return DetectionDataset(records, names, COCO_IDS[:classes]), detections


def nx7(dataset: DetectionDataset, detections: list[Detections]) -> np.ndarray:
    """The ``[image_id, x, y, w, h, score, category_id]`` array a direct user would build."""
    rows = []
    cats = np.asarray(dataset.category_ids, dtype=np.float64)
    for r, d in zip(dataset.records, detections, strict=True):
        b = d.boxes.numpy().astype(np.float64)
        rows.append(
            np.column_stack(
                [np.full(len(d), r.image_id), b[:, :2], b[:, 2:] - b[:, :2], d.scores.numpy(), cats[d.labels.numpy()]]
            )
        )
    return np.concatenate(rows)


def run_ours(ev: CocoEvaluator, detections: list[Detections]) -> np.ndarray:
    ev.reset()
    for start in range(0, len(detections), 8):
        idx = range(start, min(start + 8, len(detections)))
        ev.update(idx, [detections[i] for i in idx])
    metrics = ev.compute()
    return np.array([metrics[k] for k in COCO_METRIC_NAMES])


def run_direct(backend: str, coco_gt, results: np.ndarray) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(results)
        if backend == "faster":
            from faster_coco_eval import COCOeval_faster

            ev = COCOeval_faster(coco_gt, coco_dt, "bbox", print_function=lambda *a, **k: None)
        else:
            from pycocotools.cocoeval import COCOeval

            ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats[:12])


def timed(fn: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def timed_both(fn: Callable[[], np.ndarray]) -> tuple[float, float, np.ndarray]:
    """Wall-clock and process CPU seconds (all three evaluators run single-threaded for boxes)."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t, time.process_time() - c, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--gt-per-image", type=float, default=7.0)
    parser.add_argument("--dets", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pycocotools-repeats", type=int, default=1, help="0 skips pycocotools")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from faster_coco_eval import COCO as FasterCOCO
    from pycocotools.coco import COCO as PyCOCO

    dataset, detections = make_problem(args.images, args.classes, args.gt_per_image, args.dets, args.seed)
    results = nx7(dataset, detections)
    n_gt = sum(len(r.labels) for r in dataset.records)
    print(f"{args.images} images, {n_gt} ground-truth boxes, {len(results)} detections, {args.classes} classes")

    gt_dict = coco_ground_truth(dataset)  # the same ground truth for all three, as a COCO annotation dict
    t_gt, ev = timed(lambda: CocoEvaluator(dataset, backend="faster"))
    t_gt_ours, _ = timed(lambda: ev.coco_gt)
    with contextlib.redirect_stdout(io.StringIO()):
        t_gt_fast, fast_gt = timed(lambda: FasterCOCO(gt_dict))
        py_gt = PyCOCO()
        py_gt.dataset = gt_dict
        t_gt_py, _ = timed(py_gt.createIndex)
    print(
        f"ground truth build (not timed below): ours {t_gt_ours:.2f}s, faster {t_gt_fast:.2f}s, pycocotools {t_gt_py:.2f}s"
    )

    runners: dict[str, Callable[[], np.ndarray]] = {
        "ours (faster backend)": lambda: run_ours(ev, detections),
        "faster-coco-eval direct": lambda: run_direct("faster", fast_gt, results),
        "pycocotools direct": lambda: run_direct("pycocotools", py_gt, results),
    }
    times: dict[str, list[float]] = {name: [] for name in runners}
    cpu_times: dict[str, list[float]] = {name: [] for name in runners}
    stats: dict[str, np.ndarray] = {}
    for rep in range(args.repeats):
        for name, fn in runners.items():
            if name.startswith("pycocotools") and rep >= args.pycocotools_repeats:
                continue
            seconds, cpu, out = timed_both(fn)
            times[name].append(seconds)
            cpu_times[name].append(cpu)
            stats.setdefault(name, out)
            if not np.array_equal(out, stats[name]):
                raise SystemExit(f"{name} gave different numbers on repeat {rep}")
        if rep == 0:
            ref = stats["faster-coco-eval direct"]
            for name, s in stats.items():
                if not np.array_equal(s, ref):
                    raise SystemExit(
                        f"{name} differs from faster-coco-eval direct: max |diff| {np.abs(s - ref).max():.3g}"
                    )
            names = ", ".join(stats)
            print(f"12 numbers identical ({names}):")
            print("  " + "  ".join(f"{k}={v:.4f}" for k, v in zip(COCO_METRIC_NAMES, ref, strict=True)))

    print(
        f"\nmedian seconds ({args.repeats} runs; pycocotools {min(args.repeats, args.pycocotools_repeats)}), "
        "speed-up = faster-coco-eval direct time / this time:"
    )
    for label, table in (("wall", times), ("cpu", cpu_times)):
        base = statistics.median(table["faster-coco-eval direct"])
        for name, ts in table.items():
            if ts:
                med = statistics.median(ts)
                runs = [round(t, 2) for t in ts]
                print(f"  {label:4s} {name:26s} {med:7.2f}s   {base / med:5.2f}x   runs {runs}")


if __name__ == "__main__":
    main()
