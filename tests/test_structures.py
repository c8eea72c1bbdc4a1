"""``Detections`` as a sequence, and its round trips through torchvision dicts and supervision."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from efficientdet import Detections
from efficientdet.errors import ConfigError
from efficientdet.structures import Detection

NAMES = ("cat", "dog", "bird")


def make() -> Detections:
    boxes = torch.tensor([[10.0, 20.0, 50.0, 80.0], [0.5, 1.5, 2.5, 3.5], [100.0, 0.0, 120.0, 40.0],
                          [7.0, 8.0, 9.0, 10.0]])
    return Detections(boxes, torch.tensor([0.9, 0.7, 0.4, 0.1]), torch.tensor([1, 0, 2, 1]), NAMES)


def assert_same(a: Detections, b: Detections) -> None:
    assert torch.equal(a.boxes, b.boxes) and torch.equal(a.scores, b.scores) and torch.equal(a.labels, b.labels)
    assert a.boxes.dtype == torch.float32 and a.scores.dtype == torch.float32 and a.labels.dtype == torch.int64
    assert a.label_names == b.label_names


def test_len_index_slice_mask_and_iteration():
    det = make()
    assert len(det) == 4
    for index, rows in ((1, [1]), (-1, [3]), (np.int64(2), [2]), (torch.tensor(0), [0]), (slice(1, 3), [1, 2]),
                        (slice(None, None, -1), [3, 2, 1, 0]), (det.scores > 0.5, [0, 1]),
                        (torch.tensor([3, 0]), [3, 0]), ([2, 2], [2, 2]), (np.array([False, True, False, True]), [1, 3])):
        got = det[index]
        assert isinstance(got, Detections) and got.label_names == NAMES
        assert got.labels.tolist() == [det.labels.tolist()[i] for i in rows], index
        assert torch.equal(got.boxes, det.boxes[rows])
    assert det[1:1].boxes.shape == (0, 4) and len(det[det.scores > 1]) == 0
    with pytest.raises(IndexError, match="out of range"):
        det[4]
    with pytest.raises(IndexError):
        det[-5]

    rows = list(det)
    assert rows[0] == Detection((10.0, 20.0, 50.0, 80.0), pytest.approx(0.9), 1, "dog")
    assert [r.name for r in rows] == ["dog", "cat", "bird", "dog"] and isinstance(rows[2].label, int)
    assert [r.box for r in det[2:]] == [tuple(b) for b in det.boxes[2:].tolist()]
    unnamed = Detections(det.boxes, det.scores, det.labels)
    assert [r.name for r in unnamed] == ["1", "0", "2", "1"]


def test_torchvision_dict_round_trip():
    det = make()
    target = det.to_torchvision()
    assert set(target) == {"boxes", "labels", "scores"} and target["boxes"].shape == (4, 4)
    assert_same(Detections.from_torchvision(target, NAMES), det)
    # torchvision's detectors count the background as label 0
    shifted = det.to_torchvision(label_offset=1)
    assert shifted["labels"].tolist() == [2, 1, 3, 2]
    assert_same(Detections.from_torchvision(shifted, NAMES, label_offset=1), det)
    # a ground-truth target (lists, no scores): every score 1; unsorted scores are sorted
    gt = Detections.from_torchvision({"boxes": [[0, 0, 4, 4]], "labels": [2]})
    assert gt.scores.tolist() == [1.0] and gt.boxes.dtype == torch.float32 and gt.labels.tolist() == [2]
    shuffled = {k: v[[2, 0, 3, 1]] for k, v in target.items()}
    assert_same(Detections.from_torchvision(shuffled, NAMES), det)
    empty = Detections.from_torchvision({"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)})
    assert len(empty) == 0 and empty.boxes.shape == (0, 4)
    with pytest.raises(ConfigError, match="lacks \\['labels'\\]"):
        Detections.from_torchvision({"boxes": target["boxes"]})
    with pytest.raises(ConfigError, match="4 boxes, 4 scores and 3 labels"):
        Detections.from_torchvision({**target, "labels": target["labels"][:3]})
    with pytest.raises(ConfigError, match="label_offset"):
        Detections.from_torchvision(shifted, NAMES)  # label 3 with 3 names: 1-based labels


def test_supervision_round_trip():
    sv = pytest.importorskip("supervision")
    det = make()
    converted = det.to_supervision()
    assert isinstance(converted, sv.Detections) and len(converted) == 4
    np.testing.assert_array_equal(converted.xyxy, det.boxes.numpy())
    np.testing.assert_array_equal(converted.class_id, [1, 0, 2, 1])
    assert list(converted.data["class_name"]) == ["dog", "cat", "bird", "dog"]
    assert_same(Detections.from_supervision(converted, NAMES), det)
    # without label names, the names carried in data["class_name"] come back for the labels seen
    back = Detections.from_supervision(converted)
    assert back.names == det.names and back.label_names == NAMES
    # supervision's own operations in between: filter by confidence, then back
    kept = Detections.from_supervision(converted[converted.confidence > 0.5], NAMES)
    assert_same(kept, det[det.scores > 0.5])
    no_conf = sv.Detections(xyxy=np.array([[1, 2, 3, 4]], dtype=np.float32), class_id=np.array([0]))
    assert Detections.from_supervision(no_conf).scores.tolist() == [1.0]
    with pytest.raises(ConfigError, match="no class_id"):
        Detections.from_supervision(sv.Detections(xyxy=np.zeros((1, 4), dtype=np.float32)))
    empty = Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), NAMES)
    assert_same(Detections.from_supervision(empty.to_supervision(), NAMES), empty)


def test_supervision_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "supervision", None)  # as if not installed
    with pytest.raises(ConfigError, match="pip install 'efficientdet\\[supervision\\]'"):
        make().to_supervision()
