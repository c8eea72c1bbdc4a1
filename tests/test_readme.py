"""The newcomer's path: the README's first command (`make demo`, quick budget) and every README example.

README convention: ```python blocks and the `efficientdet ...` lines of ```bash blocks are run here, in
document order, in a folder holding the demo's outputs; a python block whose first line is `# needs
network` is skipped (it downloads published weights); ```console blocks are illustrative (installs,
multi-GPU launches).
"""

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.conftest import SHARED_REFERENCE

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
AP50_FLOOR = 0.01  # the quick demo reaches ~0.02; an untrained head scores ~0.0003

pytestmark = pytest.mark.slow


def readme_blocks() -> list[tuple[str, str]]:
    return re.findall(r"^```(\w+)\n(.*?)^```", README.read_text(), flags=re.S | re.M)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Run `make demo` with the quick budget into <tmp>/work/demo_output; ../shared points at the fixtures."""
    root = tmp_path_factory.mktemp("readme")
    work = root / "work"
    work.mkdir()
    if SHARED_REFERENCE.is_dir():  # found from any clone (see tests/conftest.py)
        (root / "shared").mkdir()
        (root / "shared" / "reference").symlink_to(SHARED_REFERENCE)
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.run(["make", "-C", str(REPO), "demo", f"DEMO_ARGS=--budget quick --output {work / 'demo_output'}"],
                          capture_output=True, text=True, env=env, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (work / "demo.log").write_text(proc.stdout)
    return work


def test_make_demo_outputs_exist_and_it_learned(workdir):
    out = workdir / "demo_output"
    log = (workdir / "demo.log").read_text()
    for step in range(1, 6):
        assert f"[{step}/5]" in log
    assert "onnxruntime vs PyTorch on the same input: same detections" in log
    summary = json.loads((out / "demo_summary.json").read_text())
    for key in ("dataset", "checkpoint", "eval_results", "eval_metrics", "predictions", "onnx"):
        assert Path(summary["outputs"][key]).exists(), key
    assert len(list((out / "predictions").glob("*.png"))) == 3
    assert json.loads((out / "predictions" / "predictions.json").read_text())
    assert summary["metrics"]["AP50"] > AP50_FLOOR
    assert "Next, try:" in log


def test_make_demo_again_reuses_what_is_there(workdir):
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.run(["make", "-C", str(REPO), "demo",
                           f"DEMO_ARGS=--budget quick --output {workdir / 'demo_output'}"],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "reusing the finished run" in proc.stdout
    assert "epoch 1/" not in proc.stdout


def test_every_readme_example_runs(workdir, monkeypatch):
    from efficientdet.cli.main import main

    monkeypatch.chdir(workdir)
    ran = 0
    namespace: dict = {}
    for lang, body in readme_blocks():
        if lang == "python":
            if body.lstrip().startswith("# needs network"):
                continue
            exec(compile(body, "README.md", "exec"), namespace)  # noqa: S102 - the README's own examples
            ran += 1
        elif lang == "bash":
            for line in body.splitlines():
                if line.startswith("efficientdet "):
                    if "../shared/reference" in line and not SHARED_REFERENCE.is_dir():
                        continue  # the official-TF fixtures are not on this machine
                    assert main(shlex.split(line)[1:]) == 0, line
                    ran += 1
    assert ran >= (12 if SHARED_REFERENCE.is_dir() else 11)
    assert (workdir / "detections.png").is_file() and (workdir / "runs" / "readme_deploy.onnx").is_file()
