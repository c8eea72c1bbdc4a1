"""COCO evaluator against pycocotools / faster-coco-eval run the standard way (json files + loadRes)."""

from __future__ import annotations

import contextlib
import io
import json
import sys
import zipfile

import numpy as np
import pytest
import torch

from efficientdet.data.records import DetectionDataset, ImageRecord
from efficientdet.errors import ConfigError, DataError
from efficientdet.evaluation import (
    COCO_METRIC_NAMES,
    CocoEvaluator,
    create_evaluator,
    format_per_class_table,
    write_coco_results,
)
from efficientdet.structures import Detections
from tests.evaluation.synthetic import coco_json, coco_results_json, make_problem

BACKENDS = ["pycocotools", "faster"]


def standard_coco_eval(tmp_path, gt: dict, results: list[dict], backend: str, img_ids=None, cat_ids=None):
    """COCO evaluation exactly as its documentation shows: json files, ``loadRes``, ``COCOeval``."""
    gt_file, res_file = tmp_path / "gt.json", tmp_path / f"res_{backend}.json"
    gt_file.write_text(json.dumps(gt))
    res_file.write_text(json.dumps(results))
    with contextlib.redirect_stdout(io.StringIO()):
        if backend == "pycocotools":
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval

            coco = COCO(str(gt_file))
            ev = COCOeval(coco, coco.loadRes(str(res_file)), "bbox")
        else:
            from faster_coco_eval import COCO, COCOeval_faster

            coco = COCO(str(gt_file))
            ev = COCOeval_faster(coco, coco.loadRes(str(res_file)), "bbox")
        if img_ids is not None:
            ev.params.imgIds = img_ids
        if cat_ids is not None:
            ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats[:12]), ev


@pytest.fixture(scope="module")
def problem():
    return make_problem(seed=0)


def test_problem_is_realistic(problem):
    """The synthetic problem has what the COCO protocol must handle (guards the other tests' coverage)."""
    recs = problem.dataset.records
    assert any(len(r.labels) == 0 for r in recs)
    assert sum(int(r.ignore.sum()) for r in recs) >= 3
    areas = np.concatenate([(r.boxes[:, 2] - r.boxes[:, 0]) * (r.boxes[:, 3] - r.boxes[:, 1]) for r in recs])
    assert (areas < 32**2).any() and ((areas > 32**2) & (areas < 96**2)).any() and (areas > 96**2).any()
    assert any(len(d) == 0 for d in problem.detections)
    assert max(len(d) for d in problem.detections) > 100


@pytest.mark.parametrize("backend", BACKENDS)
def test_equals_standard_evaluation(tmp_path, problem, backend):
    ds, dets = problem.dataset, problem.detections
    ev = CocoEvaluator(ds, backend=backend)
    for start in range(0, len(dets), 8):  # batches, images given as indices
        idx = list(range(start, min(start + 8, len(dets))))
        ev.update(idx, [dets[i] for i in idx])
    metrics = ev.compute()
    expected, oracle = standard_coco_eval(
        tmp_path, coco_json(ds), coco_results_json(ds, dets, range(len(dets))), backend
    )
    assert list(metrics) == list(COCO_METRIC_NAMES)
    np.testing.assert_array_equal(np.array([metrics[k] for k in COCO_METRIC_NAMES]), expected)
    np.testing.assert_array_equal(ev.result.precision, oracle.eval["precision"])
    np.testing.assert_array_equal(ev.result.recall, oracle.eval["recall"])
    assert 0.1 < metrics["AP"] < 0.9  # a meaningful problem, neither trivial nor hopeless


def test_faster_coco_eval_equals_pycocotools(tmp_path, problem):
    ds, dets = problem.dataset, problem.detections
    gt, res = coco_json(ds), coco_results_json(ds, dets, range(len(dets)))
    ref, ref_ev = standard_coco_eval(tmp_path, gt, res, "pycocotools")
    fast, fast_ev = standard_coco_eval(tmp_path, gt, res, "faster")
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fast_ev.eval["precision"], ref_ev.eval["precision"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_subset_of_images_given_as_records(tmp_path, problem, backend):
    """Only the updated images are evaluated; records identify images as well as indices do."""
    ds, dets = problem.dataset, problem.detections
    subset = list(range(5, 30))
    ev = CocoEvaluator(ds, backend=backend)
    ev.update([ds.records[i] for i in subset], [dets[i] for i in subset])
    ev.update([subset[0]], [dets[subset[0]]])  # an image seen twice counts once
    metrics = ev.compute()
    img_ids = sorted(ds.records[i].image_id for i in subset)
    expected, _ = standard_coco_eval(tmp_path, coco_json(ds), coco_results_json(ds, dets, subset), backend, img_ids)
    np.testing.assert_array_equal(np.array([metrics[k] for k in COCO_METRIC_NAMES]), expected)


def test_reset_and_repeat(problem):
    ds, dets = problem.dataset, problem.detections
    ev = CocoEvaluator(ds, backend="pycocotools")
    ev.update(range(len(dets)), dets)
    first = ev.compute()
    ev.reset()
    with pytest.raises(ConfigError, match="update"):
        ev.compute()
    ev.update(range(len(dets)), dets)
    assert ev.compute() == first


def test_per_class_rows_equal_single_category_evaluation(tmp_path, problem):
    """A class's AP equals pycocotools' AP when only that category is evaluated."""
    ds, dets = problem.dataset, problem.detections
    ev = CocoEvaluator(ds, backend="pycocotools")
    ev.update(range(len(dets)), dets)
    ev.compute()
    rows = ev.per_class_rows()
    assert [r["category_id"] for r in rows] == list(ds.category_ids)
    gt, res = coco_json(ds), coco_results_json(ds, dets, range(len(dets)))
    for row in rows[:3]:
        stats, _ = standard_coco_eval(tmp_path, gt, res, "pycocotools", cat_ids=[row["category_id"]])
        assert row["AP"] == pytest.approx(stats[0], abs=1e-12)
        assert row["AP50"] == pytest.approx(stats[1], abs=1e-12)
        assert row["AP75"] == pytest.approx(stats[2], abs=1e-12)
        for key, s in zip(("APs", "APm", "APl"), stats[3:6], strict=True):
            assert (np.isnan(row[key]) and s == -1) or row[key] == pytest.approx(s, abs=1e-12)
    text = format_per_class_table(rows)
    assert text.splitlines()[0].split()[:3] == ["class", "category_id", "AP"]
    assert len(text.splitlines()) == 2 + len(rows) and f"{rows[0]['AP']:.3f}" in text


def test_class_without_ground_truth_is_left_out(tmp_path):
    """A category with detections but no ground truth is -1 in precision and NaN in the table."""
    problem = make_problem(seed=3, num_images=12)
    ds = problem.dataset
    for r in ds.records:  # remove every box of label 2
        keep = r.labels != 2
        r.boxes, r.labels, r.ignore = r.boxes[keep], r.labels[keep], r.ignore[keep]
    ev = CocoEvaluator(ds, backend="pycocotools")
    ev.update(range(len(ds)), problem.detections)
    metrics = ev.compute()
    expected, _ = standard_coco_eval(
        tmp_path, coco_json(ds), coco_results_json(ds, problem.detections, range(len(ds))), "pycocotools"
    )
    np.testing.assert_array_equal([metrics[k] for k in COCO_METRIC_NAMES], expected)
    assert np.isnan(ev.per_class_rows()[2]["AP"])
    assert (ev.result.precision[:, :, 2] == -1).all()


def test_no_detections_at_all():
    """No detection anywhere: AP and AR are 0 wherever ground truth exists, -1 where it does not."""
    problem = make_problem(seed=1, num_images=10)
    empty = Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64))
    ev = CocoEvaluator(problem.dataset, backend="pycocotools")
    ev.update(range(10), [empty] * 10)
    metrics = ev.compute()
    assert metrics["AP"] == 0.0 and metrics["AR100"] == 0.0 and metrics["AP50"] == 0.0


def test_annotation_file_with_its_own_areas(tmp_path, problem):
    """With ``annotation_file`` the file's areas (e.g. segmentation areas) decide APs/APm/APl."""
    ds, dets = problem.dataset, problem.detections
    gt = coco_json(ds)
    rng = np.random.default_rng(5)
    for ann in gt["annotations"]:
        ann["area"] *= float(rng.uniform(0.4, 1.0))  # masks cover less than their box
    # the file also annotates a category the dataset (and so the model) does not have: not evaluated
    gt["categories"].append({"id": 95, "name": "extra"})
    extra = [dict(a, id=10000 + a["id"], category_id=95) for a in gt["annotations"][:10]]
    gt["annotations"] += extra
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(gt))
    ev = CocoEvaluator(ds, backend="faster", annotation_file=path)
    ev.update(range(len(dets)), dets)
    metrics = ev.compute()
    expected, _ = standard_coco_eval(
        tmp_path, gt, coco_results_json(ds, dets, range(len(dets))), "pycocotools", cat_ids=list(ds.category_ids)
    )
    np.testing.assert_allclose([metrics[k] for k in COCO_METRIC_NAMES], expected, rtol=0, atol=1e-12)
    assert ev.result.category_ids == ds.category_ids
    box_area = CocoEvaluator(ds, backend="faster")
    box_area.update(range(len(dets)), dets)
    assert box_area.compute()["APs"] != metrics["APs"]


def test_record_area_is_used(tmp_path):
    """A record carrying a per-box ``area`` array gives that area to the ground truth."""
    problem = make_problem(seed=4, num_images=15)
    ds = problem.dataset
    gt = coco_json(ds)
    k = 0
    for r in ds.records:
        r.area = np.array([gt["annotations"][k + j]["area"] * 0.5 for j in range(len(r.labels))])
        for j in range(len(r.labels)):
            gt["annotations"][k + j]["area"] *= 0.5
        k += len(r.labels)
    ev = CocoEvaluator(ds, backend="pycocotools")
    ev.update(range(len(ds)), problem.detections)
    metrics = ev.compute()
    expected, _ = standard_coco_eval(
        tmp_path, gt, coco_results_json(ds, problem.detections, range(len(ds))), "pycocotools"
    )
    np.testing.assert_array_equal([metrics[k] for k in COCO_METRIC_NAMES], expected)


def test_results_json_for_val_and_test_dev(tmp_path, problem):
    ds, dets = problem.dataset, problem.detections
    ev = CocoEvaluator(ds, backend="pycocotools")
    ev.update(range(len(dets)), dets)
    exact = ev.compute()

    path = ev.write_results(tmp_path / "val_results.json")
    rows = json.loads(path.read_text())
    assert set(rows[0]) == {"image_id", "category_id", "bbox", "score"}
    assert {r["category_id"] for r in rows} <= set(ds.category_ids)
    assert {r["image_id"] for r in rows} <= {r.image_id for r in ds.records}
    assert max(np.bincount([r["image_id"] - 1000 for r in rows])) == 100  # the 120-detection image is cut
    assert all(round(v, 2) == v for r in rows[:200] for v in r["bbox"])
    first = dets[0]
    x1, y1, x2, y2 = first.boxes[0].tolist()
    assert rows[0]["image_id"] == ds.records[0].image_id
    assert rows[0]["category_id"] == ds.category_ids[int(first.labels[0])]
    assert rows[0]["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=0.005)
    assert rows[0]["score"] == pytest.approx(float(first.scores[0]), abs=5e-6)

    # the rounded file scores (almost) the same with pycocotools' own loader
    stats, _ = standard_coco_eval(tmp_path, coco_json(ds), rows, "pycocotools")
    np.testing.assert_allclose(stats, [exact[k] for k in COCO_METRIC_NAMES], atol=2e-3)

    # test-dev: image ids only, zipped
    image_ids = [r.image_id for r in ds.records]
    zpath = write_coco_results(
        tmp_path / "detections_test-dev2017_effdet_results.zip", image_ids, dets, ds.category_ids
    )
    with zipfile.ZipFile(zpath) as zf:
        assert zf.namelist() == ["detections_test-dev2017_effdet_results.json"]
        assert json.loads(zf.read(zf.namelist()[0])) == rows


def test_pr_curves_png(tmp_path, problem):
    from PIL import Image

    ds, dets = problem.dataset, problem.detections
    ev = CocoEvaluator(ds, backend="pycocotools")
    with pytest.raises(ConfigError, match="compute"):
        ev.save_pr_curves(tmp_path / "pr.png")
    ev.update(range(len(dets)), dets)
    ev.compute()
    path = ev.save_pr_curves(tmp_path / "plots" / "pr.png", classes=list(ds.label_names[:2]))
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] >= 800
    with pytest.raises(ConfigError, match="unknown class"):
        ev.save_pr_curves(tmp_path / "x.png", classes=["zebra"])


def test_pr_curve_legends_do_not_cover_the_curves(problem):
    from efficientdet.evaluation.plots import draw_coco_pr_curves

    ds, dets = problem.dataset, problem.detections
    ev = CocoEvaluator(ds, backend="pycocotools")
    ev.update(range(len(dets)), dets)
    ev.compute()
    fig = draw_coco_pr_curves(ev._require_result(), classes=list(ds.label_names[:2]))
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        legend, plot_area = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
        assert not legend.overlaps(plot_area)  # below the panel
        assert legend.y0 >= 0  # and still inside the image


def test_pr_curves_without_matplotlib(tmp_path, problem, monkeypatch):
    ds, dets = problem.dataset, problem.detections
    ev = CocoEvaluator(ds, backend="pycocotools")
    ev.update(range(len(dets)), dets)
    ev.compute()
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ConfigError, match="pip install"):
        ev.save_pr_curves(tmp_path / "pr.png")


def test_backend_choice(monkeypatch, problem):
    with pytest.raises(ConfigError, match="unknown COCO backend"):
        CocoEvaluator(problem.dataset, backend="detectron")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "faster_coco_eval" else real(n, *a))
    with pytest.raises(ConfigError, match="pip install faster-coco-eval"):
        CocoEvaluator(problem.dataset, backend="faster")
    assert CocoEvaluator(problem.dataset).backend == "pycocotools"


def test_bad_input_is_reported(problem):
    ds, dets = problem.dataset, problem.detections
    ev = create_evaluator("coco", ds, backend="pycocotools")
    with pytest.raises(ConfigError, match="one Detections per image"):
        ev.update([0, 1], dets[:1])
    with pytest.raises(ConfigError, match="out of range"):
        ev.update([len(ds)], dets[:1])
    bad = Detections(torch.zeros(1, 4), torch.ones(1), torch.tensor([len(ds.label_names)]))
    with pytest.raises(DataError, match="labels"):
        ev.update([0], [bad])
    with pytest.raises(DataError, match=r"\[N, 4\]"):
        ev.update([0], [Detections(torch.zeros(2, 5), torch.ones(2), torch.zeros(2, dtype=torch.int64))])
    stranger = ImageRecord(path="elsewhere.jpg", image_id=5, boxes=np.zeros((0, 4)), labels=np.zeros(0))
    with pytest.raises(ConfigError, match="not in the evaluator's dataset"):
        ev.update([stranger], dets[:1])
    with pytest.raises(ConfigError, match="no option 'method'"):
        create_evaluator("coco", ds, method="area")
    with pytest.raises(ConfigError, match="unknown evaluator"):
        create_evaluator("lvis", ds)
    dup = DetectionDataset([ds.records[0], ds.records[0]], ds.label_names, ds.category_ids)
    ev = CocoEvaluator(dup, backend="pycocotools")
    ev.update([0], dets[:1])
    with pytest.raises(DataError, match="appears twice"):
        ev.compute()
    with pytest.raises(DataError, match="one id per class"):
        CocoEvaluator(DetectionDataset(ds.records, ("a", "b"), (1, 1)))
    with pytest.raises(DataError, match="does not exist"):
        CocoEvaluator(ds, annotation_file="/nonexistent/instances_val2017.json")
