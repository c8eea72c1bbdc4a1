"""Every broken or unusual input of the corpus (tests/corpus/make_corpus.py), through every command of the CLI.

For each case and each of ``data check``, ``train``, ``validate``, ``predict`` (and ``train --resume`` for
weight files) where it applies, the command runs in-process through ``efficientdet.cli.main.main`` and the
test asserts: the exit code; that the message names the file and the entry (annotation id, line, XML object,
key); that no traceback is printed; and that the good items next to the bad one are still processed (boxes
counted by ``data check``, images trained on / skipped as reported in ``metrics.csv``, images evaluated in
``results.json``, images predicted in ``predictions.jsonl``).

Policy the cases encode: an annotation entry that cannot be used is listed by ``data check`` (exit 1, the
other entries still read) and makes ``train`` / ``validate`` stop before starting (exit 2) with a message that
names it, since training without that box would teach the model that the object is background. An image file
that cannot be decoded is skipped by ``train`` / ``validate`` / ``predict``, which go on with the others.
"""

from __future__ import annotations

import atexit
import csv
import json
import shutil
import tempfile
from pathlib import Path

import pytest

from efficientdet.cli.main import main
from tests.corpus.make_corpus import Case, good_coco, make_corpus

TINY_TRAIN = str(Path(__file__).resolve().parents[1] / "engine" / "tiny.yaml")
SIZE = "64"
UNSAFE_ADVICE = ("weights_only=False", "weights_only` set to `False", "will likely succeed")


def _tiny_weights(path: Path) -> Path:
    """A 2-class (cat, dog) tiny detector at 64 x 64 as inference weights with its config."""
    from efficientdet import create_model
    from efficientdet.config import replace_nested
    from efficientdet.registry import get_config
    from efficientdet.weights.checkpoint import save_inference_weights

    cfg = replace_nested(get_config("tf_efficientdet_d0"), name="corpus_det", backbone__name="test_efficientnet",
                         fpn__channels=16, fpn__repeats=1, head__repeats=1, num_classes=2, label_names=("cat", "dog"),
                         category_ids=(1, 2), preprocess__image_size=(64, 64))
    model = create_model(cfg)
    return save_inference_weights(model.state_dict(), model.config, path)


def _build() -> tuple[Path, list[Case]]:
    root = Path(tempfile.mkdtemp(prefix="efficientdet-corpus-"))
    atexit.register(shutil.rmtree, root, True)
    weights = _tiny_weights(root / "good" / "tiny.safetensors")
    good_coco(root / "good" / "coco")
    return root, make_corpus(root / "cases", weights)


ROOT, CASES = _build()
GOOD_WEIGHTS = ROOT / "good" / "tiny.safetensors"
GOOD_DATA = ROOT / "good" / "coco" / "annotations.json"
PARAMS = [pytest.param(case, command, id=f"{case.name}-{command}") for case in CASES for command in case.expect]


def test_corpus_size() -> None:
    groups = {c.group for c in CASES}
    assert len(CASES) >= 80 and groups == {"image", "coco", "voc", "yolo", "csv", "openimages", "weights"}


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    out, err = capsys.readouterr()
    text = out + err
    assert "Traceback" not in text, text
    return code, text


def _records(case: Case) -> int:
    from efficientdet.data.parsers import load_dataset

    return len(load_dataset(case.path, case.fmt, default_split="train", problems=[]).records)


def _train_args(data: Path, out: Path, batch: int, fmt: str | None = None) -> list[str]:
    return ["train", "--data", str(data), "--model", TINY_TRAIN, "--no-pretrained-backbone", "--image-size", SIZE,
            "--epochs", "1", "--batch-size", str(batch), "--workers", "0", "--device", "cpu", "--output", str(out),
            "--set", "progress=false", *(["--format", fmt] if fmt else [])]


def _validate_args(data: Path, out: Path, checkpoint: Path, case: Case | None = None) -> list[str]:
    extra = []
    if case is not None and case.fmt:
        extra += ["--format", case.fmt]
    if case is not None and case.split:
        extra += ["--split", case.split]
    # --results-json without --output: no PR-curve plot, which would only slow the test down
    return ["validate", str(data), "--checkpoint", str(checkpoint), "--results-json", str(out / "results.json"),
            "--score-threshold", "0", "--workers", "0", "--device", "cpu", "--batch-size", "8", *extra]


def _predict_args(source: Path, checkpoint: Path) -> list[str]:
    # the default output folder (runs/predict under the test's working folder)
    return ["predict", str(source), "--checkpoint", str(checkpoint), "--no-images", "--score-threshold", "0",
            "--device", "cpu", "--no-progress"]


@pytest.mark.parametrize(("case", "command"), PARAMS)
def test_corpus(case: Case, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    want_code, count = case.expect[command]
    out = tmp_path / "out"
    if case.group == "weights":
        args = {"predict": _predict_args(GOOD_DATA.parent, case.path),
                "validate": _validate_args(GOOD_DATA, out, case.path),
                "train": [*_train_args(GOOD_DATA, out, 4), "--checkpoint", str(case.path)],
                "resume": [*_train_args(GOOD_DATA, out, 4), "--resume", str(case.path)]}[command]
    elif command in ("check", "check_header"):
        args = ["data", "check", str(case.path), "--json", *(["--format", case.fmt] if case.fmt else []),
                *(["--split", case.split] if case.split else []),
                *(["--images", "header"] if command == "check_header" else [])]
    elif command == "train":
        args = _train_args(case.path, out, max(2, _records(case)) if want_code == 0 else 2, case.fmt)
    elif command == "validate":
        args = _validate_args(case.path, out, GOOD_WEIGHTS, case)
    else:
        assert case.images is not None
        args = _predict_args(case.images, GOOD_WEIGHTS)

    code, text = _run(args, capsys)
    assert code == want_code, f"{case.note}\n{text[-3000:]}"
    is_check = command.startswith("check")
    if code != 0 or (is_check and case.issue):
        for word in case.names + (case.refusal if not is_check else ()):
            assert word in text, f"{word!r} not in the message:\n{text[-3000:]}"
    if case.group == "weights":
        assert not any(a in text for a in UNSAFE_ADVICE), text
        return

    if is_check and code in (0, 1):
        report = json.loads(text[text.index("{"): text.rindex("}") + 1])
        codes = {i["code"] for i in report["issues"]}
        if case.issue:
            assert case.issue in codes, codes
        if code == 0:
            assert not [i for i in report["issues"] if i["severity"] == "error"]
        assert report["num_boxes"] == count, report["num_boxes"]  # the good entries are still read
    elif command == "train" and code == 0:
        with open(out / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 1 and float(rows[0]["train_loss"]) > 0
        assert int(rows[0]["skipped_images"]) == count  # the bad images skipped, all others trained on
    elif command == "validate" and code == 0:
        results = json.loads((out / "results.json").read_text())
        assert len({r["image_id"] for r in results}) == count  # every readable image evaluated
    elif command == "predict" and code == 0:
        lines = (tmp_path / "runs" / "predict" / "predictions.jsonl").read_text().splitlines()
        assert len(lines) == count  # every readable image predicted
