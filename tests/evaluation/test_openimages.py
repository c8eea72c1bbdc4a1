"""Open Images metric against the TF Object Detection API evaluators (shipped by effdet) and by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from efficientdet.data.records import DetectionDataset, ImageRecord
from efficientdet.errors import ConfigError
from efficientdet.evaluation import OpenImagesEvaluator, create_evaluator, expand_hierarchy
from efficientdet.structures import Detections
from tests.evaluation.synthetic import make_problem
from tests.evaluation.tf_oracle import tf_evaluate


@pytest.fixture(scope="module")
def problem():
    return make_problem(seed=20, num_images=40, ignore_rate=0.0, group_of_rate=0.3, image_labels=True)


def run(evaluator, problem):
    evaluator.update(range(len(problem.dataset)), problem.detections)
    return evaluator.compute()


def test_problem_has_group_of_boxes_and_image_labels(problem):
    recs = problem.dataset.records
    assert sum(int(r.group_of.sum()) for r in recs) >= 20
    assert sum(len(r.negative_labels) for r in recs) >= 20
    assert any(len(np.setdiff1d(r.image_labels, r.labels)) for r in recs)


def test_challenge_metric_equals_tf_challenge_evaluator(problem):
    ours = create_evaluator("openimages", problem.dataset)
    metrics = run(ours, problem)
    oracle = tf_evaluate(problem, "OpenImagesChallengeEvaluator", difficult=False, image_labels=True)
    np.testing.assert_allclose(ours.result.ap, oracle["per_class_ap"], rtol=1e-12)
    assert metrics["mAP"] == pytest.approx(oracle["mean_ap"], rel=1e-12)
    for k in range(problem.dataset.num_classes):
        np.testing.assert_allclose(ours.result.precision[k], oracle["per_class_precision"][k], rtol=1e-12)
        np.testing.assert_allclose(ours.result.recall[k], oracle["per_class_recall"][k], rtol=1e-12)
    assert 0.2 < metrics["mAP"] < 0.95


def test_v2_metric_equals_tf_open_images_evaluator(problem):
    ours = OpenImagesEvaluator(problem.dataset, group_of_weight=0.0, use_image_labels=False)
    metrics = run(ours, problem)
    oracle = tf_evaluate(problem, "OpenImagesDetectionEvaluator", difficult=False)
    np.testing.assert_allclose(ours.result.ap, oracle["per_class_ap"], rtol=1e-12)
    assert metrics["mAP"] == pytest.approx(oracle["mean_ap"], rel=1e-12)
    challenge = run(OpenImagesEvaluator(problem.dataset), problem)
    assert metrics["mAP"] != pytest.approx(challenge["mAP"], rel=1e-3)  # the rules matter on this problem


def two_images(image_labels_1, negative_labels_1) -> DetectionDataset:
    group = ImageRecord(
        Path("a.jpg"),
        1,
        boxes=np.array([[0, 0, 100, 100], [200, 200, 240, 240]], np.float32),
        labels=np.array([0, 0]),
        group_of=np.array([True, False]),
        image_labels=np.array(image_labels_1),
        negative_labels=np.array(negative_labels_1),
    )
    other = ImageRecord(
        Path("b.jpg"),
        2,
        boxes=np.array([[0, 0, 50, 50], [100, 100, 150, 150], [300, 300, 400, 400]], np.float32),
        labels=np.array([1, 2, 0]),
        group_of=np.array([False, False, True]),  # a group of c0 that nothing detects
        image_labels=np.array([0, 1, 2]),
        negative_labels=np.array([], dtype=np.int64),
    )
    return DetectionDataset([group, other], ("c0", "c1", "c2"))


def detections():
    first = Detections(
        torch.tensor(
            [
                [10, 10, 30, 30],  # .9  c0 inside the group-of box
                [50, 50, 90, 95],  # .8  c0 inside the group-of box
                [0, 0, 40, 100],  # .7  c0 inside the group-of box
                [200, 200, 240, 241],  # .6  c0 on the regular box: TP
                [400, 400, 420, 420],  # .5  c0 background: FP
                [0, 0, 10, 10],  # .99 c1, image 1 is not labelled for c1: ignored (challenge)
                [300, 300, 320, 320],  # .95 c2, verified absent from image 1: FP
            ],
            dtype=torch.float32,
        ),
        torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.99, 0.95]),
        torch.tensor([0, 0, 0, 0, 0, 1, 2]),
    )
    second = Detections(
        torch.tensor([[0, 0, 50, 51], [100, 100, 150, 151]], dtype=torch.float32),
        torch.tensor([0.3, 0.4]),
        torch.tensor([1, 2]),
    )
    return [first, second]


def test_hand_computed_challenge_metric():
    ds = two_images(image_labels_1=[0], negative_labels_1=[2])
    ev = OpenImagesEvaluator(ds)
    ev.update([0, 1], detections())
    m = ev.compute()
    # c0: group-of entry (.9, TP), .6 TP, .5 FP; 3 instances (2 group-of boxes, one missed)
    # -> precision 1, 1, 2/3; recall 1/3, 2/3, 2/3 -> AP 2/3
    assert m["AP/c0"] == pytest.approx(2 / 3)
    # c1: only the .3 TP counts (the .99 detection is in an image not labelled for c1)
    assert m["AP/c1"] == pytest.approx(1.0)
    # c2: .95 FP (verified negative), then .4 TP -> precision 0, 1/2; recall 0, 1 -> AP 1/2
    assert m["AP/c2"] == pytest.approx(0.5)
    assert m["mAP"] == pytest.approx((2 / 3 + 1 + 0.5) / 3)
    assert ev.per_class_rows()[0]["detections"] == 3  # three group-of hits became one entry


def test_hand_computed_without_image_labels_or_group_weight():
    ds = two_images(image_labels_1=[0], negative_labels_1=[2])
    ev = OpenImagesEvaluator(ds, group_of_weight=0.0, use_image_labels=False)
    ev.update([0, 1], detections())
    m = ev.compute()
    # c0: group-of boxes neither counted nor hit (their detections ignored): .6 TP, .5 FP, 1 instance -> AP 1
    assert m["AP/c0"] == pytest.approx(1.0)
    # c1: the .99 detection is now a false positive before the .3 TP -> AP 1/2
    assert m["AP/c1"] == pytest.approx(0.5)


def test_unverified_class_is_not_evaluated_in_an_image():
    """Marking c2 as verified positive (not negative) still makes the c2 detection a false positive."""
    ds = two_images(image_labels_1=[0, 2], negative_labels_1=[])
    ev = OpenImagesEvaluator(ds)
    ev.update([0, 1], detections())
    assert ev.compute()["AP/c2"] == pytest.approx(0.5)
    ds = two_images(image_labels_1=[0], negative_labels_1=[])  # c2 not verified in image 1: ignored
    ev = OpenImagesEvaluator(ds)
    ev.update([0, 1], detections())
    assert ev.compute()["AP/c2"] == pytest.approx(1.0)


def test_expand_hierarchy():
    names = ("animal", "dog", "puppy", "vehicle", "car", "boat", "sailboat")
    parents = {1: [0], 2: [1], 4: [3], 6: [5]}
    record = ImageRecord(
        Path("a.jpg"),
        1,
        boxes=np.array([[0, 0, 10, 10], [5, 5, 20, 20]], np.float32),
        labels=np.array([2, 4]),  # a puppy (group of puppies) and a car
        group_of=np.array([True, False]),
        image_labels=np.array([2, 4]),
        negative_labels=np.array([5]),  # verified: no boat
    )
    ds = DetectionDataset([record], names)
    r = expand_hierarchy(ds, parents).records[0]
    assert r.labels.tolist() == [2, 0, 1, 4, 3]  # each box, then its ancestors
    np.testing.assert_array_equal(r.boxes, record.boxes[[0, 0, 0, 1, 1]])
    assert r.group_of.tolist() == [True, True, True, False, False]
    assert r.image_labels.tolist() == [0, 1, 2, 3, 4]  # positives go up
    assert r.negative_labels.tolist() == [5, 6]  # negatives go down: no boat, so no sailboat
    assert ds.records[0].labels.tolist() == [2, 4]  # the input is unchanged
    with pytest.raises(ConfigError, match="cycle"):
        expand_hierarchy(ds, {0: [1], 1: [0]})
    with pytest.raises(ConfigError, match="outside"):
        expand_hierarchy(ds, {1: [7]})


def test_options_are_checked(problem):
    with pytest.raises(ConfigError, match="group_of_weight"):
        OpenImagesEvaluator(problem.dataset, group_of_weight=2.0)
    with pytest.raises(ConfigError, match="no option 'pixel_inclusive'"):
        create_evaluator("openimages", problem.dataset, pixel_inclusive=True)
