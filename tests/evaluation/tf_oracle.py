"""Run the TF Object Detection API evaluators that ``effdet`` ships, on our synthetic problems.

They take ``[ymin, xmin, ymax, xmax]`` boxes and 1-based class ids. They were written for numpy 1 and use
``np.float_``, removed in numpy 2; :func:`tf_evaluators` restores that alias while the oracle runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from tests.evaluation.synthetic import Problem

_MODULE: Any = None


def _detection_evaluator_module() -> Any:
    """``effdet.evaluation.detection_evaluator``, without importing all of effdet when it is not loaded yet.

    The evaluation subpackage needs only numpy, but ``import effdet`` builds timm and the models (~5 s).
    A temporary bare ``effdet`` package entry lets the subpackage load alone; afterwards ``sys.modules`` is
    restored so a later real ``import effdet`` is unaffected.
    """
    global _MODULE
    if _MODULE is not None:
        return _MODULE
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if "effdet" in sys.modules:
        _MODULE = importlib.import_module("effdet.evaluation.detection_evaluator")
        return _MODULE
    spec = importlib.util.find_spec("effdet")
    saved = {k: v for k, v in sys.modules.items() if k == "effdet" or k.startswith("effdet.")}
    bare = types.ModuleType("effdet")
    bare.__path__ = [str(Path(spec.origin).parent)]
    sys.modules["effdet"] = bare
    try:
        _MODULE = importlib.import_module("effdet.evaluation.detection_evaluator")
    finally:
        for k in [k for k in sys.modules if k == "effdet" or k.startswith("effdet.")]:
            del sys.modules[k]
        sys.modules.update(saved)
    return _MODULE


@contextmanager
def tf_evaluators() -> Iterator[Any]:
    detection_evaluator = _detection_evaluator_module()
    had = hasattr(np, "float_")
    if not had:
        np.float_ = np.float64
    try:
        yield detection_evaluator
    finally:
        if not had:
            del np.float_


def tf_evaluate(
    problem: Problem,
    evaluator_name: str,
    indices: Iterable[int] | None = None,
    difficult: bool = True,
    image_labels: bool = False,
    **kwargs: Any,
) -> dict[str, Any]:
    """``ObjectDetectionEvaluation.evaluate()`` of the named TF evaluator (per_class_ap, mean_ap, curves)."""
    ds = problem.dataset
    indices = range(len(ds)) if indices is None else indices
    with tf_evaluators() as tfe:
        cats = [{"id": k + 1, "name": n} for k, n in enumerate(ds.label_names)]
        ev = getattr(tfe, evaluator_name)(cats, **kwargs)
        for i in indices:
            r = ds.records[i]
            gt = {"bbox": r.boxes[:, [1, 0, 3, 2]].copy(), "cls": r.labels + 1}
            if difficult:
                gt["difficult"] = r.ignore.copy()
            if r.group_of is not None:
                gt["group_of"] = np.asarray(r.group_of, dtype=bool).copy()
            if image_labels:
                verified = [x for x in (r.image_labels, r.negative_labels) if x is not None]
                gt["img_cls"] = np.concatenate(verified).astype(np.int64) + 1 if verified else np.zeros(0, np.int64)
            ev.add_single_ground_truth_image_info(i, gt)
            d = problem.detections[i]
            ev.add_single_detected_image_info(
                i,
                {
                    "bbox": d.boxes.numpy()[:, [1, 0, 3, 2]].copy(),
                    "score": d.scores.numpy().copy(),
                    "cls": d.labels.numpy() + 1,
                },
            )
        return ev._evaluation.evaluate()
