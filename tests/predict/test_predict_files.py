"""``predict_files``: the library function behind ``efficientdet predict`` (the CLI only parses and prints), and
onnxruntime's thread spinning as an argument rather than an environment variable read back."""

from __future__ import annotations

import json
import shutil

import pytest

from efficientdet import Predictor
from efficientdet.errors import DataError
from efficientdet.predict_files import predict_files
from tests.predict.helpers import photo, save_tiny_checkpoint


def test_predict_files_writes_the_results_of_a_predictor(tmp_path):
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    shutil.copy(photo("coffee.png"), tmp_path / "a.png")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    report = predict_files([tmp_path / "a.png", tmp_path / "broken.jpg"], checkpoint=ckpt, output=tmp_path / "out",
                           draw=False, progress=False, device="cpu", score_threshold=0.3)
    assert report.counts == {"images": 1, "frames": 0, "detections": report.counts["detections"], "skipped": 1}
    assert report.results == tmp_path / "out" / "results.json" and report.image_info == tmp_path / "out" / "images.json"
    line = json.loads((tmp_path / "out" / "predictions.jsonl").read_text())
    expected = Predictor(checkpoint=ckpt, device="cpu", score_threshold=0.3)(photo("coffee.png"))[0]
    assert len(line["detections"]) == len(expected) == report.counts["detections"]
    assert not list((tmp_path / "out").glob("*.png"))  # draw=False: no annotated copies
    # a ready Predictor is used as is
    ready = Predictor(checkpoint=ckpt, device="cpu", score_threshold=0.3)
    again = predict_files([tmp_path / "a.png"], ready, output=tmp_path / "again", progress=False)
    assert again.counts["detections"] == report.counts["detections"] and (tmp_path / "again" / "a.png").is_file()
    with pytest.raises(DataError, match="none of the 1 files"):
        predict_files([tmp_path / "broken.jpg"], ready, output=tmp_path / "none", progress=False)


def test_onnxruntime_spinning_is_an_argument(monkeypatch):
    pytest.importorskip("onnxruntime")
    from efficientdet.predict import session_options

    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # not read back: only the argument decides
    assert session_options().get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert session_options(spinning=False).get_session_config_entry("session.intra_op.allow_spinning") == "0"
