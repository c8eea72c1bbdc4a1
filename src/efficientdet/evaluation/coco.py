"""COCO box evaluation (AP@[.50:.95], AP50, AP75, APs/m/l, AR1/10/100, ARs/m/l).

The metric itself is computed by a COCO evaluation library, never re-implemented here:

* ``pycocotools`` -- the reference implementation;
* ``faster`` -- ``faster-coco-eval`` (C++), which gives pycocotools' numbers several times faster.

``backend="auto"`` picks ``faster`` when it is installed.

What this module adds is a fast, exact bridge between the library and our data: the ground truth is built
in memory from a :class:`DetectionDataset` (no json round trip; crowd boxes become ``iscrowd=1``; ``area``
is the box area unless a record carries per-box ``area``), and detections go in as arrays. The libraries'
own ``loadRes`` makes one Python dict per detection through a slow per-row loop and adds a segmentation
polygon that box evaluation never reads; we build the minimal dicts once, directly from the arrays, and
pause Python's garbage collector while half a million of them are alive. The evaluation then runs
unchanged, so the numbers are the library's own. On 5000 images x 100 detections this takes about 0.7x
the CPU time of faster-coco-eval used directly (``loadRes`` of the ``[N, 7]`` array), with identical
numbers (``benchmarks/coco_eval.py``).

Boxes: in the library ``xyxy`` float32 pixels; COCO ``bbox`` is ``[x, y, w, h]`` in float64, computed from
the float32 values (``w = x2 - x1``); category ids are mapped back through ``dataset.category_ids``.
Undefined metrics (e.g. ``APs`` when there is no small object) are ``-1.0``, as pycocotools reports them.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import io
import json
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from efficientdet.data.records import DetectionDataset
from efficientdet.errors import ConfigError, DataError
from efficientdet.evaluation.base import DetectionEvaluator, ImageDetections, format_table, ignore_flags
from efficientdet.structures import Detections

COCO_METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
"""Names of the 12 numbers of the COCO box summary, in pycocotools' ``stats`` order."""

BACKENDS = ("auto", "faster", "pycocotools")
MAX_DETECTIONS_PER_IMAGE = 100
"""COCO scores at most 100 detections per image (and category); the test-dev server accepts 100 per image."""


@dataclass
class CocoResult:
    """Everything one COCO evaluation produced.

    ``stats``: the 12 summary numbers by name (:data:`COCO_METRIC_NAMES`). ``precision``:
    ``[T, R, K, A, M]`` interpolated precision (IoU thresholds x recall thresholds x categories x area
    ranges x max-detections settings; ``-1`` where a category has no ground truth). ``recall``:
    ``[T, K, A, M]``. ``category_ids`` / ``label_names``: the ``K`` categories, in precision's order.
    """

    stats: dict[str, float]
    precision: np.ndarray
    recall: np.ndarray
    iou_thresholds: np.ndarray
    recall_thresholds: np.ndarray
    area_labels: tuple[str, ...]
    max_dets: tuple[int, ...]
    category_ids: tuple[int, ...]
    label_names: tuple[str, ...]


def resolve_backend(backend: str) -> str:
    """``auto`` -> ``faster`` when faster-coco-eval is installed, else ``pycocotools``; checks the name."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown COCO backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    has_faster = importlib.util.find_spec("faster_coco_eval") is not None
    if backend == "auto":
        return "faster" if has_faster else "pycocotools"
    if backend == "faster" and not has_faster:
        raise ConfigError(
            "backend 'faster' needs faster-coco-eval: pip install faster-coco-eval "
            "(or pip install 'efficientdet[fasteval]'), or use backend='pycocotools'"
        )
    return backend


def _coco_class(backend: str) -> type:
    if backend == "faster":
        from faster_coco_eval import COCO
    else:
        from pycocotools.coco import COCO
    return COCO


def _make_coco(backend: str, dataset: dict[str, Any]) -> Any:
    """A backend ``COCO`` object indexing ``dataset`` (a COCO-format dict), built without a json file."""
    coco = _coco_class(backend)()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


def coco_ground_truth(dataset: DetectionDataset) -> dict[str, Any]:
    """The COCO-format ground-truth dict of ``dataset`` (``images``, ``annotations``, ``categories``).

    Every record becomes an image (``height``/``width`` when its size is known); every box an annotation
    with ``bbox`` ``[x, y, w, h]``, ``iscrowd`` from the record's ``ignore`` flag (COCO crowd; a VOC
    ``difficult`` box thus becomes a crowd region: it absorbs detections without counting as a miss), and
    ``area`` from the
    record's per-box ``area`` array when it has one, else ``w * h``. Annotation ids start at 1 (0 means
    "unmatched" inside the COCO evaluators).
    """
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    cat_ids = np.asarray(dataset.category_ids, dtype=np.int64)
    seen_ids: set[int] = set()
    for record in dataset.records:
        image_id = int(record.image_id)
        if image_id in seen_ids:
            raise DataError(f"image id {image_id} appears twice in the dataset ({record.path}); COCO needs unique ids")
        seen_ids.add(image_id)
        image: dict[str, Any] = {"id": image_id, "file_name": record.path.name}
        if record.size is not None:
            image["height"], image["width"] = int(record.size[0]), int(record.size[1])
        images.append(image)
        if len(record.labels) == 0:
            continue
        if record.labels.min() < 0 or record.labels.max() >= len(cat_ids):
            raise DataError(f"{record.path}: box labels must lie in 0..{len(cat_ids) - 1}")
        xywh = _xyxy_to_xywh(record.boxes)
        area = getattr(record, "area", None)
        areas = np.asarray(area, dtype=np.float64) if area is not None else xywh[:, 2] * xywh[:, 3]
        crowd = ignore_flags(record).astype(np.int64)
        first = len(annotations) + 1
        for k, (bbox, cat, a, c) in enumerate(
            zip(xywh.tolist(), cat_ids[record.labels].tolist(), areas.tolist(), crowd.tolist(), strict=True)
        ):
            annotations.append(
                {"id": first + k, "image_id": image_id, "category_id": cat, "bbox": bbox, "area": a, "iscrowd": c}
            )
    categories = [{"id": int(c), "name": n} for c, n in zip(dataset.category_ids, dataset.label_names, strict=True)]
    return {"images": images, "annotations": annotations, "categories": categories}


def _xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """``[N, 4]`` xyxy (any float dtype) -> ``[N, 4]`` float64 xywh."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def coco_results_array(
    image_ids: Sequence[int], detections: Sequence[ImageDetections | Detections], category_ids: Sequence[int]
) -> np.ndarray:
    """Detections as the ``[N, 7]`` float64 array COCO tools accept: ``[image_id, x, y, w, h, score, category_id]``.

    ``detections[i]`` belongs to image ``image_ids[i]``; labels map to ``category_ids[label]``.
    """
    if len(image_ids) != len(detections):
        raise ConfigError(f"{len(image_ids)} image ids but {len(detections)} detections; give one per image")
    dets = [_as_numpy(d) for d in detections]
    cats = np.asarray(category_ids, dtype=np.float64)
    if not dets or sum(len(d.scores) for d in dets) == 0:
        return np.zeros((0, 7), dtype=np.float64)
    labels = np.concatenate([d.labels for d in dets])
    if labels.min() < 0 or labels.max() >= len(cats):
        raise DataError(f"detection labels must lie in 0..{len(cats) - 1}, got {labels.min()}..{labels.max()}")
    ids = np.repeat(np.asarray(image_ids, dtype=np.float64), [len(d.scores) for d in dets])
    xywh = _xyxy_to_xywh(np.concatenate([d.boxes for d in dets]))
    scores = np.concatenate([d.scores for d in dets]).astype(np.float64)
    return np.concatenate([ids[:, None], xywh, scores[:, None], cats[labels][:, None]], axis=1)


def _as_numpy(d: ImageDetections | Detections) -> ImageDetections:
    if isinstance(d, ImageDetections):
        return d
    return ImageDetections(
        d.boxes.detach().to("cpu", torch.float32).numpy().reshape(-1, 4),
        d.scores.detach().to("cpu", torch.float32).numpy(),
        d.labels.detach().to("cpu", torch.int64).numpy(),
    )


def _result_annotations(results: np.ndarray) -> list[dict[str, Any]]:
    """Minimal COCO result dicts from an ``[N, 7]`` array (what box evaluation reads, nothing more)."""
    w, h = results[:, 3], results[:, 4]
    return [
        {"id": i, "image_id": im, "category_id": c, "bbox": b, "score": s, "area": a}
        for i, im, c, b, s, a in zip(
            range(1, len(results) + 1),
            results[:, 0].astype(np.int64).tolist(),
            results[:, 6].astype(np.int64).tolist(),
            results[:, 1:5].tolist(),
            results[:, 5].tolist(),
            (w * h).tolist(),
            strict=True,
        )
    ]


def evaluate_coco(
    coco_gt: Any,
    results: np.ndarray,
    image_ids: Sequence[int],
    backend: str = "auto",
    category_ids: Sequence[int] | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run COCO box evaluation of ``results`` (``[N, 7]``, see :func:`coco_results_array`) on ``image_ids``.

    ``coco_gt`` is a ``COCO`` object of the same backend; ``category_ids`` restricts the evaluated
    categories (default: all of ``coco_gt``'s). Returns pycocotools' 12 ``stats`` and its ``eval`` dict
    (``precision`` ``[T, R, K, A, M]``, ``recall`` ``[T, K, A, M]``) plus the parameters.
    """
    backend = resolve_backend(backend)
    with _gc_paused():
        return _evaluate_coco(coco_gt, results, image_ids, backend, category_ids)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (restoring its previous state afterwards).

    Evaluation allocates about one dict per detection (500k for COCO val); every allocation burst makes the
    collector rescan all of them, which costs ~15% of the evaluation time. Nothing here creates cycles.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _evaluate_coco(
    coco_gt: Any, results: np.ndarray, image_ids: Sequence[int], backend: str, category_ids: Sequence[int] | None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    coco_dt = _make_coco(
        backend,
        {
            "images": coco_gt.dataset["images"],
            "categories": coco_gt.dataset["categories"],
            "annotations": _result_annotations(results),
        },
    )
    if backend == "faster":
        from faster_coco_eval import COCOeval_faster

        evaluator = COCOeval_faster(coco_gt, coco_dt, "bbox", print_function=lambda *args, **kwargs: None)
    else:
        from pycocotools.cocoeval import COCOeval

        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
    evaluator.params.imgIds = sorted({int(i) for i in image_ids})
    if category_ids is not None:
        evaluator.params.catIds = sorted({int(c) for c in category_ids})
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    p = evaluator.params
    out = {
        "precision": np.asarray(evaluator.eval["precision"], dtype=np.float64),
        "recall": np.asarray(evaluator.eval["recall"], dtype=np.float64),
        "iou_thresholds": np.asarray(p.iouThrs, dtype=np.float64),
        "recall_thresholds": np.asarray(p.recThrs, dtype=np.float64),
        "category_ids": np.asarray(p.catIds, dtype=np.int64),
        "area_labels": np.asarray(p.areaRngLbl),
        "max_dets": np.asarray(p.maxDets, dtype=np.int64),
    }
    return np.asarray(evaluator.stats[:12], dtype=np.float64), out


class CocoEvaluator(DetectionEvaluator):
    """COCO box metrics of detections on a :class:`DetectionDataset`.

    ``backend``: ``auto`` | ``faster`` | ``pycocotools`` (see the module docstring).
    ``annotation_file``: evaluate against an official COCO json instead of the ground truth rebuilt from the
    records (then ``area`` comes from the file, e.g. segmentation areas for APs/m/l); its image and
    category ids must be the dataset's. Only the dataset's categories are evaluated.

    After :meth:`compute`, :attr:`result` holds the full :class:`CocoResult` (precision/recall arrays) for
    :meth:`per_class_rows`, :meth:`save_pr_curves` and :meth:`write_results`.
    """

    primary_metric = "AP"

    def __init__(
        self, dataset: DetectionDataset, *, backend: str = "auto", annotation_file: str | Path | None = None
    ) -> None:
        super().__init__(dataset)
        if len(set(dataset.category_ids)) != len(dataset.category_ids):
            raise DataError(
                f"the dataset maps several labels to one category id ({list(dataset.category_ids)[:20]}...); "
                "COCO evaluation needs one id per class"
            )
        self.backend = resolve_backend(backend)
        self.annotation_file = Path(annotation_file) if annotation_file is not None else None
        if self.annotation_file is not None and not self.annotation_file.is_file():
            raise DataError(f"COCO annotation file {self.annotation_file} does not exist; pass the instances json")
        self._coco_gt: Any = None
        self.result: CocoResult | None = None

    @property
    def coco_gt(self) -> Any:
        """The backend ``COCO`` ground-truth object (built once, on first use)."""
        if self._coco_gt is None:
            if self.annotation_file is not None:
                with open(self.annotation_file) as f:
                    gt = json.load(f)
                file_cats = {int(c["id"]) for c in gt.get("categories", [])}
                missing = sorted(set(self.dataset.category_ids) - file_cats)
                if missing:
                    raise DataError(
                        f"{self.annotation_file} lacks category ids {missing[:10]} of the dataset; "
                        "use the annotation file the dataset was parsed from"
                    )
            else:
                gt = coco_ground_truth(self.dataset)
            self._coco_gt = _make_coco(self.backend, gt)
        return self._coco_gt

    def reset(self) -> None:
        super().reset()
        self.result = None

    def results_array(self) -> np.ndarray:
        """All collected detections as the ``[N, 7]`` COCO results array (see :func:`coco_results_array`).

        Gathers across processes like :meth:`compute`: call it on every process of a distributed run.
        """
        indices, dets = self.collected()
        image_ids = [self.dataset.records[i].image_id for i in indices]
        return coco_results_array(image_ids, dets, self.dataset.category_ids)

    def compute(self) -> dict[str, float]:
        """The 12 COCO numbers (:data:`COCO_METRIC_NAMES`) over the images passed to :meth:`update`."""
        indices, dets = self.collected()
        if not indices:
            raise ConfigError("no images to evaluate: call update() with detections before compute()")
        image_ids = [self.dataset.records[i].image_id for i in indices]
        gt = self.coco_gt
        unknown = sorted(set(image_ids) - set(gt.imgs))
        if unknown:
            raise DataError(f"image ids {unknown[:10]} are not in {self.annotation_file}; evaluate the matching split")
        with _gc_paused():
            results = coco_results_array(image_ids, dets, self.dataset.category_ids)
            stats, ev = evaluate_coco(gt, results, image_ids, self.backend, self.dataset.category_ids)
        names_by_id = dict(zip(self.dataset.category_ids, self.dataset.label_names, strict=True))
        cat_ids = tuple(int(c) for c in ev["category_ids"])
        self.result = CocoResult(
            stats=dict(zip(COCO_METRIC_NAMES, stats.tolist(), strict=True)),
            precision=ev["precision"],
            recall=ev["recall"],
            iou_thresholds=ev["iou_thresholds"],
            recall_thresholds=ev["recall_thresholds"],
            area_labels=tuple(str(a) for a in ev["area_labels"]),
            max_dets=tuple(int(m) for m in ev["max_dets"]),
            category_ids=cat_ids,
            label_names=tuple(names_by_id.get(c, str(c)) for c in cat_ids),
        )
        return dict(self.result.stats)

    def _require_result(self) -> CocoResult:
        if self.result is None:
            raise ConfigError("run compute() first; there is no COCO evaluation result yet")
        return self.result

    def per_class_rows(self) -> list[dict[str, Any]]:
        """Per-category AP rows of the last :meth:`compute` (see :func:`per_class_ap_rows`)."""
        return per_class_ap_rows(self._require_result())

    def per_class_table(self, digits: int = 3) -> str:
        """The per-category AP table as text."""
        return format_per_class_table(self.per_class_rows(), digits)

    def save_pr_curves(self, path: str | Path, **kwargs: Any) -> Path:
        """Save precision-recall curves of the last :meth:`compute` as a PNG (needs matplotlib)."""
        from efficientdet.evaluation.plots import save_coco_pr_curves

        return save_coco_pr_curves(self._require_result(), path, **kwargs)

    def write_results(self, path: str | Path, **kwargs: Any) -> Path:
        """Write the collected detections as a COCO results json (see :func:`write_coco_results`).

        In a distributed run call it on every process (it gathers the detections); rank 0 writes the file.
        """
        indices, dets = self.collected()
        if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
            return Path(path)
        image_ids = [self.dataset.records[i].image_id for i in indices]
        return write_coco_results(path, image_ids, dets, self.dataset.category_ids, **kwargs)


def per_class_ap_rows(result: CocoResult) -> list[dict[str, Any]]:
    """One row per category: ``class``, ``category_id``, ``AP``, ``AP50``, ``AP75``, ``APs``, ``APm``, ``APl``.

    Each AP averages ``result.precision`` of that category the way the summary does (maxDets 100, all
    entries ``> -1``); NaN where the category has no ground truth in the evaluated images.
    """
    p = result.precision
    m = len(result.max_dets) - 1
    t50 = int(np.flatnonzero(np.isclose(result.iou_thresholds, 0.5))[0])
    t75 = int(np.flatnonzero(np.isclose(result.iou_thresholds, 0.75))[0])
    areas = {name: i for i, name in enumerate(result.area_labels)}

    def mean_valid(x: np.ndarray) -> float:
        valid = x[x > -1]
        return float(np.mean(valid)) if valid.size else float("nan")

    rows = []
    for k, (cid, name) in enumerate(zip(result.category_ids, result.label_names, strict=True)):
        a = areas["all"]
        rows.append(
            {
                "class": name,
                "category_id": cid,
                "AP": mean_valid(p[:, :, k, a, m]),
                "AP50": mean_valid(p[t50, :, k, a, m]),
                "AP75": mean_valid(p[t75, :, k, a, m]),
                "APs": mean_valid(p[:, :, k, areas["small"], m]),
                "APm": mean_valid(p[:, :, k, areas["medium"], m]),
                "APl": mean_valid(p[:, :, k, areas["large"], m]),
            }
        )
    return rows


def format_per_class_table(rows: Sequence[dict[str, Any]], digits: int = 3) -> str:
    """Text table of :func:`per_class_ap_rows` (``-`` where a class has no ground truth)."""
    return format_table(rows, ["class", "category_id", "AP", "AP50", "AP75", "APs", "APm", "APl"], digits)


def write_coco_results(
    path: str | Path,
    image_ids: Sequence[int],
    detections: Sequence[ImageDetections | Detections],
    category_ids: Sequence[int],
    *,
    max_per_image: int | None = MAX_DETECTIONS_PER_IMAGE,
    box_decimals: int = 2,
    score_decimals: int = 5,
) -> Path:
    """Write detections as a COCO results json: ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]``.

    ``detections[i]`` belongs to ``image_ids[i]`` (the dataset's COCO image ids); labels are mapped to
    ``category_ids[label]``. Boxes are rounded to ``box_decimals`` (0.01 px by default) and scores to
    ``score_decimals``; at most ``max_per_image`` highest-scoring detections per image are kept (the COCO
    server limit; ``None`` keeps all). For a test-dev submission name the file
    ``detections_test-dev2017_<method>_results.json`` -- a path ending in ``.zip`` writes that json inside a
    zip archive (named after the zip), ready to upload.
    """
    path = Path(path)
    dets = [_as_numpy(d) for d in detections]
    if max_per_image is not None:
        if max_per_image < 1:
            raise ConfigError(f"max_per_image must be at least 1 (or None), got {max_per_image}")
        dets = [_top_k(d, max_per_image) for d in dets]
    arr = coco_results_array(image_ids, dets, category_ids)
    boxes = np.round(arr[:, 1:5], box_decimals).tolist()
    scores = np.round(arr[:, 5], score_decimals).tolist()
    rows = [
        {"image_id": im, "category_id": c, "bbox": b, "score": s}
        for im, c, b, s in zip(
            arr[:, 0].astype(np.int64).tolist(), arr[:, 6].astype(np.int64).tolist(), boxes, scores, strict=True
        )
    ]
    text = json.dumps(rows, separators=(",", ":"))
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(path.with_suffix(".json").name, text)
    else:
        path.write_text(text)
    return path


def _top_k(d: ImageDetections, k: int) -> ImageDetections:
    if len(d.scores) <= k:
        return d
    keep = np.argsort(-d.scores, kind="stable")[:k]
    return ImageDetections(d.boxes[keep], d.scores[keep], d.labels[keep])
