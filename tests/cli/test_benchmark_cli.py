"""``efficientdet benchmark`` and its Python API: timings are produced, MAC counts are right."""

from __future__ import annotations

import json

import pytest
from torch import nn

from efficientdet import create_model, registry
from efficientdet.benchmark import benchmark, count_macs, count_parameters
from efficientdet.cli.main import main
from tests.predict.helpers import tiny_config, tiny_model


def test_macs_of_a_known_layer_stack():
    # conv 3->8 3x3: 8*3*9 MACs per output pixel; depthwise 8ch 3x3: 8*9; pointwise 8->4: 4*8; 10 x 12 = 120 pixels
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8),
                        nn.Conv2d(8, 4, 1))
    assert count_macs(net, (10, 12)) == (8 * 3 * 9 + 8 * 9 + 4 * 8) * 120
    assert count_macs(net, (10, 12), batch_size=3) == 3 * (8 * 3 * 9 + 8 * 9 + 4 * 8) * 120
    assert count_parameters(net) == (8 * 27 + 8) + (8 * 9 + 8) + (4 * 8 + 4)


def test_d0_costs_the_published_2_5_gmacs():
    """The paper's EfficientDet-D0: 3.9 M parameters, 2.5 B multiply-adds at 512 x 512."""
    model = create_model("tf_efficientdet_d0")
    assert abs(count_macs(model, (512, 512)) / 1e9 - 2.5) < 0.05
    assert round(count_parameters(model) / 1e6, 1) == 3.9


def test_benchmark_api_reports_positive_consistent_numbers():
    results = benchmark(tiny_model(), batch_sizes=(1, 2), device="cpu", warmup=1, iters=3, threads=1)
    assert [(r.batch_size, r.stage) for r in results] == [(1, "network"), (1, "end_to_end"), (2, "network"),
                                                          (2, "end_to_end")]
    for r in results:
        assert 0 < r.median_ms <= r.p90_ms and r.threads == 1 and r.params > 0
        assert abs(r.images_per_s - r.batch_size * 1000 / r.median_ms) < 1e-6 * r.images_per_s
        assert r.macs == count_macs(tiny_model(), (128, 128))


def test_benchmark_cli_prints_a_table_and_json_lines(capsys, monkeypatch):
    registry.list_models()  # the built-in entries first, then a temporary one (removed after the test)
    monkeypatch.setitem(registry._REGISTRY, "tiny_bench_det", registry.ModelEntry(tiny_config(name="tiny_bench_det")))
    assert main(["benchmark", "--model", "tiny_bench_det", "--batch-sizes", "1", "2", "--image-size", "96", "--device",
                 "cpu", "--warmup", "0", "--iters", "2", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "median ms" in out and "GMACs per image at 96x96" in out
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [(r["batch_size"], r["stage"]) for r in rows] == [(1, "network"), (1, "end_to_end"), (2, "network"),
                                                             (2, "end_to_end")]
    assert all(r["image_size"] == [96, 96] and r["median_ms"] > 0 and r["backend"] == "torch" for r in rows)
    assert main(["benchmark", "--model", "tiny_bench_det", "--batch-sizes", "0"]) == 2


@pytest.mark.slow  # ~15 s: exports the model to ONNX first
def test_benchmark_onnxruntime_backend():
    results = benchmark(tiny_model(fpn__repeats=1, head__repeats=1), backend="onnxruntime", batch_sizes=(1, 3),
                        device="cpu", warmup=1, iters=2, threads=1)
    assert [(r.batch_size, r.stage, r.backend) for r in results] == [
        (1, "network", "onnxruntime"), (1, "end_to_end", "onnxruntime"),
        (3, "network", "onnxruntime"), (3, "end_to_end", "onnxruntime")]
    assert all(r.median_ms > 0 and r.images_per_s > 0 for r in results)
