"""The newcomer's path, on a fresh clone: the README's commands in order, as written, nothing activated by hand.

A fresh ``git clone`` of this checkout's HEAD goes to a temporary folder, and everything below runs there the
way the README tells a newcomer to: ``make demo`` (with the quick budget, ``DEMO_ARGS=--budget quick``), then
every example of the README in document order, through the clone's own ``.venv/bin/efficientdet`` and
``.venv/bin/python`` (no ``PYTHONPATH``, no activated environment), then the demo's printed "Next, try"
commands as printed.

One step is replaced: instead of ``pip`` installing ~6 GB of PyTorch again, the clone's ``.venv`` is a new
virtual environment that sees this environment's installed packages (a ``.pth`` line) and has the clone
installed into it in editable mode; ``make demo`` then finds it installed and goes straight to the demo.

README convention: ```python blocks and the ``efficientdet ...`` lines of ```bash blocks are run; a python
block whose first line is ``# needs network`` is skipped (it downloads published weights), and a block whose
first line is ``# needs MODULE ...`` runs only where those optional modules are installed; ```console blocks
are illustrative (installs, downloads, multi-GPU launches) and not run, except ``make demo`` (the first
command); ``convert tf`` runs on the official-TF fixtures in place of the downloaded archive when they are
on this machine.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import SHARED_REFERENCE

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
AP50_FLOOR = 0.01  # the quick demo reaches ~0.02; an untrained head scores ~0.0003
DEMO_ARGS = "DEMO_ARGS=--budget quick"

pytestmark = pytest.mark.slow


def readme_blocks(readme: Path = README) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced block of the README, in document order."""
    return re.findall(r"^```(\w+)\n(.*?)^```", readme.read_text(), flags=re.S | re.M)


def _env() -> dict[str, str]:
    """The newcomer's environment: nothing of this test session's Python path, no activated venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != bin_dir)
    return env


def _run(args: list[str], cwd: Path, timeout: int = 1800) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=_env(), timeout=timeout)
    assert proc.returncode == 0, f"{shlex.join(args)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _venv_seeing_this_environment(clone: Path) -> None:
    """``clone/.venv``: a new venv whose Python also sees this environment's packages, with the clone installed
    into it (editable, no downloads), marked installed for the Makefile."""
    venv = clone / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # appended after the venv's own site-packages: the clone's install wins, torch & co. come from here
    (Path(purelib) / "shared-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
          "-e", str(clone)], cwd=clone, timeout=600)
    for stamp in (".demo-installed", ".test-installed"):
        (venv / stamp).touch()  # newer than the clone's pyproject.toml: make does not install again


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A fresh clone of HEAD in which ``make demo`` ran (quick budget); its output is in ``demo.log``."""
    clone = tmp_path_factory.mktemp("newcomer") / "efficientdet"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=300)
    _venv_seeing_this_environment(clone)
    lang, first = readme_blocks(clone / "README.md")[0]
    assert lang == "console" and first.splitlines()[0].startswith("make demo")  # the README's first command
    proc = _run(["make", "demo", DEMO_ARGS], cwd=clone)
    (clone / "demo.log").write_text(proc.stdout)
    import efficientdet

    entry = subprocess.run([str(clone / ".venv/bin/python"), "-c", "import efficientdet; print(efficientdet.__file__)"],
                           capture_output=True, text=True, env=_env(), cwd="/", check=True).stdout.strip()
    assert Path(entry).is_relative_to(clone) and not Path(entry).samefile(efficientdet.__file__)
    return clone


def test_make_demo_outputs_exist_and_it_learned(clone):
    out = clone / "demo_output"
    log = (clone / "demo.log").read_text()
    for step in range(1, 6):
        assert f"[{step}/5]" in log
    assert "onnxruntime vs PyTorch on the same input: same detections" in log
    summary = json.loads((out / "demo_summary.json").read_text())
    for key in ("dataset", "checkpoint", "eval_results", "eval_metrics", "predictions", "onnx"):
        assert (clone / summary["outputs"][key]).exists(), key
    assert len(list((out / "predictions").glob("*.png"))) == 3
    assert summary["metrics"]["AP50"] > AP50_FLOOR
    # the demo's COCO results load in pycocotools against the validation set they were predicted on
    assert_loads_in_pycocotools(out / "data" / "val" / "annotations.json", out / "predictions" / "results.json")


def test_next_try_commands_work_as_printed(clone):
    """Printed for a shell that has not activated .venv: the entry point's path, which works from here."""
    log = (clone / "demo.log").read_text()
    _, _, rest = log.partition("Next, try")
    assert rest.startswith(" (or `source .venv/bin/activate` once"), rest[:200]
    commands = [line.strip() for line in rest.splitlines()[1:] if line.startswith("  ")]
    assert len(commands) == 6 and all(c.startswith(".venv/bin/efficientdet ") for c in commands)
    for command in (commands[0], commands[2], commands[5]):  # predict, data check, models (the others train)
        _run(shlex.split(command), cwd=clone, timeout=900)
    assert_loads_in_pycocotools(clone / "demo_output" / "data" / "val" / "annotations.json",
                                clone / "my_predictions" / "results.json")


def test_make_demo_again_reuses_what_is_there(clone):
    proc = _run(["make", "demo", DEMO_ARGS], cwd=clone, timeout=900)
    assert "reusing the finished run" in proc.stdout
    assert "epoch 1/" not in proc.stdout


def assert_loads_in_pycocotools(images_json: Path, results_json: Path) -> None:
    """``COCO(images_json).loadRes(results_json)`` works: every result names an image and a category of
    ``images_json`` (pycocotools cannot load an empty list: a run without detections only checks the ids)."""
    from pycocotools.coco import COCO

    gt = COCO(str(images_json))
    rows = json.loads(results_json.read_text())
    assert {r["image_id"] for r in rows} <= set(gt.getImgIds())
    assert {r["category_id"] for r in rows} <= set(gt.getCatIds())
    if rows:
        assert len(gt.loadRes(str(results_json)).getAnnIds()) == len(rows)


def _convert_with_fixtures(line: str) -> list[str] | None:
    """``convert tf ARCHIVE ...`` with the official-TF fixture folder in place of the downloaded archive."""
    args = shlex.split(line)[1:]
    fixture = SHARED_REFERENCE / "tf-official" / "efficientdet-d0"
    if not fixture.is_dir():
        return None
    return [args[0], args[1], str(fixture), *args[3:]]


def _runnable_here(body: str) -> bool:
    """A block whose first line is ``# needs network`` never runs here; ``# needs MODULE ...`` (an optional
    extra's import names, e.g. ``litert_torch``) runs where those modules are installed."""
    first = body.lstrip().splitlines()[0] if body.strip() else ""
    if not first.startswith("# needs "):
        return True
    needs = first.removeprefix("# needs ").split("(")[0].split()
    if needs[:1] == ["network"]:
        return False
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in needs)


def test_every_readme_example_runs_in_order(clone):
    python, cli = str(clone / ".venv/bin/python"), str(clone / ".venv/bin/efficientdet")
    ran: list[str] = []
    for n, (lang, body) in enumerate(readme_blocks(clone / "README.md")):
        if not _runnable_here(body):
            continue
        if lang == "python":
            script = clone / "runs" / f"readme_block_{n}.py"
            script.parent.mkdir(exist_ok=True)
            script.write_text(body)
            _run([python, str(script)], cwd=clone, timeout=900)
            ran.append(f"python block {n}")
        elif lang in ("bash", "console"):
            for line in body.splitlines():
                if lang == "bash" and line.startswith("efficientdet "):
                    _run([cli, *shlex.split(line)[1:]], cwd=clone, timeout=900)
                    ran.append(line)
                elif lang == "console" and line.startswith("efficientdet convert tf "):
                    args = _convert_with_fixtures(line)
                    if args is not None:
                        _run([cli, *args], cwd=clone, timeout=900)
                        ran.append(line)
    assert len([r for r in ran if r.startswith("python")]) >= 6 and len(ran) >= 15, ran
    assert (clone / "detections.png").is_file() and (clone / "runs" / "readme_deploy.onnx").is_file()
    predicted = clone / "runs" / "readme_predict"  # the README's way to load predict's results without a dataset
    assert_loads_in_pycocotools(predicted / "images.json", predicted / "results.json")
    assert len(json.loads((predicted / "images.json").read_text())["images"]) == 24  # the quick demo's val images


def test_readme_onnxruntime_example_gives_the_predictors_detections(clone):
    """On the demo's trained model and exported file, the README's onnxruntime-only example finds what
    ``Predictor`` finds: running the same file (``Predictor.from_onnx``), the same labels, boxes within 0.5 px
    and scores within 1e-3; and PyTorch's ``Predictor`` on the same uint8 canvas (the exported graph takes uint8
    pixels; PyTorch's own letterbox keeps them float). The quick demo's model scores below the README's
    0.3, so the snippet runs with 0.15 (its only change)."""
    import torch

    from efficientdet import Detections, Predictor
    from efficientdet.data.preprocess import letterbox_images
    from efficientdet.ops.boxes import clip_boxes
    from tests.export.test_export import assert_same_as_predictor, run_readme_onnxruntime_snippet

    threshold = 0.15
    onnx_file = clone / "runs" / "readme_deploy.onnx"
    if not onnx_file.is_file():  # the examples test exports it; on its own, export here
        _run([str(clone / ".venv/bin/efficientdet"), "export", "--checkpoint", "demo_output/train/best.pth",
              "--format", "onnx", "--out", str(onnx_file)], cwd=clone, timeout=900)
    same_file = Predictor.from_onnx(onnx_file, device="cpu", score_threshold=threshold)
    pytorch = Predictor(checkpoint=clone / "demo_output" / "train" / "best.pth", device="cpu",
                        score_threshold=threshold)
    work = clone / "runs" / "snippet"
    work.mkdir(parents=True, exist_ok=True)
    compared = 0
    for image in sorted((clone / "demo_output" / "data" / "val" / "images").iterdir())[:6]:
        found = run_readme_onnxruntime_snippet(onnx_file, image, work, threshold=threshold)
        expected = same_file(image)[0]
        assert_same_as_predictor(found, expected, threshold)
        # PyTorch on the same uint8 pixels the graph gets (the snippet's canvas): float pixels would move these
        # flat, near-tied scores of the quick demo's model by ~4e-3 and flip NMS between overlapping boxes
        canvas, metas = letterbox_images([image], pytorch.backend.preprocess, uint8=True)
        on_canvas = pytorch(canvas[0])[0]
        h, w = metas[0].orig_size
        in_photo = Detections(clip_boxes(on_canvas.boxes / metas[0].scale, torch.tensor([h, w])), on_canvas.scores,
                              on_canvas.labels, on_canvas.label_names)
        assert_same_as_predictor(found, in_photo, threshold)
        compared += len(expected) > 0
    assert compared >= 2
