"""Pascal VOC metric against the TF Object Detection API evaluator (shipped by effdet) and hand-computed cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from efficientdet.data.records import DetectionDataset, ImageRecord
from efficientdet.errors import ConfigError
from efficientdet.evaluation import VOCEvaluator, create_evaluator
from efficientdet.evaluation.ap import average_precision
from efficientdet.structures import Detections
from tests.evaluation.synthetic import make_problem
from tests.evaluation.tf_oracle import tf_evaluate


@pytest.fixture(scope="module")
def problem():
    return make_problem(seed=10, num_images=40, ignore_rate=0.15)


def run(evaluator, problem, indices=None):
    indices = list(range(len(problem.dataset))) if indices is None else indices
    evaluator.update(indices, [problem.detections[i] for i in indices])
    return evaluator.compute()


def devkit_11point(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC2007 devkit ``VOCevaldet.m``: ``for t=0:0.1:1, p=max(prec(rec>=t)) (0 if none), ap=ap+p/11``."""
    ap = 0.0
    for t in [k / 10 for k in range(11)]:
        p = precision[recall >= t]
        ap += (p.max() if p.size else 0.0) / 11
    return ap


def test_problem_has_difficult_boxes_and_misses(problem):
    assert sum(int(r.ignore.sum()) for r in problem.dataset.records) >= 5
    assert any(len(r.labels) == 0 for r in problem.dataset.records)


def test_area_ap_equals_tf_pascal_evaluator(problem):
    ours = VOCEvaluator(problem.dataset, method="area")
    metrics = run(ours, problem)
    oracle = tf_evaluate(problem, "PascalDetectionEvaluator")
    np.testing.assert_allclose(ours.result.ap, oracle["per_class_ap"], rtol=1e-12, atol=1e-15)
    assert metrics["mAP"] == pytest.approx(oracle["mean_ap"], rel=1e-12)
    for k, name in enumerate(problem.dataset.label_names):
        assert metrics[f"AP/{name}"] == pytest.approx(oracle["per_class_ap"][k], rel=1e-12)
    assert 0.2 < metrics["mAP"] < 0.95
    for k in range(problem.dataset.num_classes):  # identical precision/recall curves too
        np.testing.assert_allclose(ours.result.precision[k], oracle["per_class_precision"][k], rtol=1e-12)
        np.testing.assert_allclose(ours.result.recall[k], oracle["per_class_recall"][k], rtol=1e-12)


def test_subset_equals_tf_pascal_evaluator(problem):
    subset = list(range(3, 40, 2))
    ours = create_evaluator("voc", problem.dataset)
    metrics = run(ours, problem, subset)
    oracle = tf_evaluate(problem, "PascalDetectionEvaluator", indices=subset)
    assert metrics["mAP"] == pytest.approx(oracle["mean_ap"], rel=1e-12)


def test_voc07_11point_equals_devkit_on_tf_curves(problem):
    ours = create_evaluator("voc07", problem.dataset)
    metrics = run(ours, problem)
    oracle = tf_evaluate(problem, "PascalDetectionEvaluator")
    expected = [
        devkit_11point(p, r) if not np.isnan(ap) else np.nan
        for p, r, ap in zip(
            oracle["per_class_precision"], oracle["per_class_recall"], oracle["per_class_ap"], strict=True
        )
    ]
    np.testing.assert_allclose(ours.result.ap, expected, rtol=1e-12)
    assert metrics["mAP"] == pytest.approx(np.nanmean(expected), rel=1e-12)
    assert metrics["mAP"] != pytest.approx(oracle["mean_ap"], rel=1e-3)  # really a different metric


def hand_dataset(boxes, labels, ignore, num_classes=2) -> DetectionDataset:
    record = ImageRecord(Path("a.jpg"), 1, np.array(boxes, np.float32), np.array(labels), ignore=np.array(ignore))
    return DetectionDataset([record], tuple(f"c{k}" for k in range(num_classes)))


def dets(boxes, scores, labels) -> Detections:
    return Detections(torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores), torch.tensor(labels))


def test_hand_computed_with_difficult_box():
    ds = hand_dataset(
        boxes=[[0, 0, 10, 10], [20, 20, 30, 30], [100, 100, 120, 120], [50, 50, 60, 60]],
        labels=[0, 0, 0, 1],
        ignore=[False, True, False, False],
    )
    d = dets(
        boxes=[
            [0, 0, 10, 10],  # .9  class 0 hits A: TP
            [0, 0, 10, 11],  # .8  class 0 hits A again: duplicate, FP
            [20, 20, 30, 30],  # .7  class 0 hits the difficult box: dropped
            [20, 20, 30, 30],  # .65 again the difficult box: dropped (difficult boxes absorb any number)
            [300, 300, 310, 310],  # .6  class 0 background: FP
            [100, 100, 120, 121],  # .55 class 0 hits D: TP
            [50, 50, 60, 61],  # .5  class 1 hits C: TP
            [5, 5, 5, 30],  # .99 zero width: dropped before matching
        ],
        scores=[0.9, 0.8, 0.7, 0.65, 0.6, 0.55, 0.5, 0.99],
        labels=[0, 0, 0, 0, 0, 0, 1, 0],
    )
    # class 0: TP FP FP TP, 2 ground-truth boxes -> precision 1, 1/2, 1/3, 1/2; recall .5, .5, .5, 1
    area = VOCEvaluator(ds, method="area")
    area.update([0], [d])
    m = area.compute()
    assert m["AP/c0"] == pytest.approx(0.5 * 1 + 0.5 * 0.5)  # 0.75
    assert m["AP/c1"] == pytest.approx(1.0)
    assert m["mAP"] == pytest.approx((0.75 + 1.0) / 2)
    voc07 = VOCEvaluator(ds, method="11point")
    voc07.update([0], [d])
    # recall thresholds 0..0.5 see precision 1 (6 points), 0.6..1.0 see 1/2 (5 points)
    assert voc07.compute()["AP/c0"] == pytest.approx((6 * 1 + 5 * 0.5) / 11)
    rows = area.per_class_rows()
    assert [r["num_gt"] for r in rows] == [2, 1] and [r["detections"] for r in rows] == [4, 1]
    assert "c0" in area.per_class_table() and "0.750" in area.per_class_table()


def test_eleven_point_thresholds_are_exact_tenths():
    """Recall exactly 0.3 must count for the 0.3 threshold (np.arange(0, 1.1, .1)[3] is 0.30000000000000004)."""
    precision = np.array([1.0, 0.5])
    recall = np.array([0.3, 0.3])
    assert average_precision(precision, recall, "11point") == pytest.approx(4 / 11)


def test_pixel_inclusive_convention():
    """Devkit '+1': GT [0,0,9,9] vs detection [0,0,9,4] has IoU 50/100 = 0.5 inclusive, 36/81 = 0.44 continuous."""
    ds = hand_dataset(boxes=[[0, 0, 9, 9]], labels=[0], ignore=[False], num_classes=1)
    d = dets([[0, 0, 9, 4]], [0.9], [0])
    continuous = VOCEvaluator(ds)
    continuous.update([0], [d])
    inclusive = VOCEvaluator(ds, pixel_inclusive=True)
    inclusive.update([0], [d])
    assert continuous.compute()["mAP"] == 0.0
    assert inclusive.compute()["mAP"] == 1.0


def test_class_without_ground_truth_is_not_averaged():
    ds = hand_dataset(boxes=[[0, 0, 10, 10]], labels=[0], ignore=[False], num_classes=3)
    ev = VOCEvaluator(ds)
    ev.update([0], [dets([[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8], [0, 2])])
    assert ev.compute() == {"mAP": 1.0, "AP/c0": 1.0}
    assert np.isnan(ev.result.ap[1]) and np.isnan(ev.result.ap[2])


def test_options_are_checked(problem):
    with pytest.raises(ConfigError, match="unknown VOC AP method"):
        VOCEvaluator(problem.dataset, method="interp")
    with pytest.raises(ConfigError, match="iou_threshold"):
        create_evaluator("voc", problem.dataset, iou_threshold=0)
    with pytest.raises(ConfigError, match="no option 'method'"):
        create_evaluator("voc07", problem.dataset, method="area")
    with pytest.raises(ConfigError, match="compute"):
        VOCEvaluator(problem.dataset).per_class_rows()
