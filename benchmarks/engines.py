"""Our network in every CPU inference engine at hand, in one process, interleaved: which runs it fastest.

The network (normalised input -> raw head outputs, ``optimize_for_inference`` with BatchNorm folded, as
``export_model`` exports it) of ``--model`` on a random image, batch 1:

- ``pytorch``: the optimised copy in channels_last (the library's CPU default);
- ``onnxruntime``: the ONNX graph ``export_model`` writes, without pre- and post-processing (the library's
  fastest backend);
- ``openvino``: the same ONNX file compiled by OpenVINO (latency hint, one stream, f32), when installed;
- ``executorch-xnnpack``: ``torch.export`` lowered to ExecuTorch with the XNNPACK partitioner, when installed.

Every engine's outputs are checked first against the plain model's (BatchNorm not folded; relative
difference ``--tol``); then all are timed in turn (``--repeats`` rounds, medians), with float32 ``1024^3``
matmuls (PyTorch's and numpy's; the faster sets the compute floor ``2 * MACs / its GFLOP/s``) in the same
rounds. The engines that are not installed are skipped with a note; install them into a scratch environment
to compare (``pip install openvino executorch``; neither is a dependency of the library).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/engines.py --threads 2 [--model tf_efficientdet_lite0] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from compare_effdet import _HeadTensors, export_network, fastest_rate, matmul_rates, matmul_runners, timed  # noqa: E402

from efficientdet import create_model  # noqa: E402
from efficientdet.benchmark import count_macs  # noqa: E402
from efficientdet.fast import optimize_for_inference  # noqa: E402
from efficientdet.predict import session_options  # noqa: E402

Runner = Callable[[], Any]


def onnxruntime_runner(path: str, x: np.ndarray, threads: int) -> Runner:
    import onnxruntime as ort

    session = ort.InferenceSession(path, session_options(threads), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda: session.run(None, {name: x})


def openvino_runner(path: str, x: np.ndarray, threads: int) -> Runner:
    import openvino as ov

    config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": threads,
              "INFERENCE_PRECISION_HINT": "f32"}
    request = ov.Core().compile_model(path, "CPU", config).create_infer_request()

    def run() -> list[np.ndarray]:
        outputs = request.infer({0: x})
        return [outputs[i] for i in range(len(outputs))]

    return run


def executorch_runner(model: torch.nn.Module, x: torch.Tensor, tmp: str) -> Runner:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    fast = optimize_for_inference(model, channels_last=False)
    for module in fast.modules():  # the heads' last conv as a conv: XNNPACK does not take their 2-D ``addmm``
        if hasattr(module, "pointwise_as_linear"):
            module.pointwise_as_linear = False
    graph = _HeadTensors(fast).eval()
    program = to_edge_transform_and_lower(torch.export.export(graph, (x,)), partitioner=[XnnpackPartitioner()])
    path = os.path.join(tmp, "network.pte")
    with open(path, "wb") as f:
        f.write(program.to_executorch().buffer)
    method = Runtime.get().load_program(path).load_method("forward")
    return lambda: method.execute([x])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tf_efficientdet_d0")
    parser.add_argument("--size", type=int, default=None, help="input side (default: the model's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--tol", type=float, default=1e-3, help="max |diff| / max |plain model| of the head outputs")
    parser.add_argument("--json", type=str, default=None, help="also write the numbers to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("onnx_ir").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")

    model = create_model(args.model, pretrained=False, pretrained_backbone=False).eval()
    size = args.size or model.config.image_size[0]
    x = torch.randn(1, 3, size, size)
    macs = count_macs(model, (size, size))
    fast = optimize_for_inference(model)  # channels_last
    xcl = x.contiguous(memory_format=torch.channels_last)
    runs: dict[str, Runner] = {"pytorch": lambda: fast(xcl)}
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        path = os.path.join(tmp, "network.onnx")
        export_network(model, x, path)
        makers = {"onnxruntime": lambda: onnxruntime_runner(path, x.numpy(), args.threads),
                  "openvino": lambda: openvino_runner(path, x.numpy(), args.threads),
                  "executorch-xnnpack": lambda: executorch_runner(model, x, tmp)}
        skipped = {}
        for engine, make in makers.items():
            try:
                runs[engine] = make()
            except ImportError as err:
                skipped[engine] = str(err)
                print(f"note: {engine} skipped ({err})")
        ref = model(x)  # the plain model (BatchNorm not folded, NCHW): the reference for every engine
        ref = [ref.cls_logits, ref.box_deltas]
        diffs = {}
        for engine, run in runs.items():
            diffs[engine] = diff = max(float((torch.as_tensor(np.asarray(o)) - r).abs().max() / r.abs().max())
                                       for o, r in zip(run(), ref, strict=True))
            print(f"check {engine}: head outputs vs the plain model, max |diff| / max |plain| {diff:.1e}")
            if diff > args.tol:
                raise SystemExit(f"{engine}: outputs differ from the plain model's by {diff:.3g} (relative), "
                                 "above --tol")
        runs.update(matmul_runners(1024, args.threads))
        medians = timed(runs, args.repeats, 1)
    rates = matmul_rates(medians, 1024)
    gflops, rates_text = fastest_rate(rates)
    floor = 2 * macs / (gflops * 1e9)
    print(f"\n{args.model} at {size}, batch 1, {args.threads} threads, medians of {args.repeats} interleaved "
          f"rounds; floor {floor * 1e3:.1f} ms ({macs / 1e9:.2f} GMACs at the rate of the fastest matmul in the same "
          f"rounds: {rates_text} GFLOP/s)")
    print(f"{'engine':20s} {'ms':>8s} {'GFLOP/s':>8s} {'x_floor':>8s}")
    for engine, seconds in sorted(medians.items(), key=lambda kv: kv[1]):
        print(f"{engine:20s} {seconds * 1e3:8.1f} {2 * macs / seconds / 1e9:8.1f} {seconds / floor:8.2f}")
    if args.json:
        engines = {engine: {"ms": seconds * 1e3, "x_floor": seconds / floor, "rel_diff": diffs[engine]}
                   for engine, seconds in medians.items()}
        report = {"model": args.model, "size": size, "threads": args.threads, "floor_ms": floor * 1e3,
                  "matmul_gflop_s": rates, "skipped": skipped, "engines": engines}
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
