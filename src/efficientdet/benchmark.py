"""Speed and size of a detector: latency, throughput, parameters and multiply-accumulates.

Two stages are timed per batch size:

- ``network``: the network alone on a prepared, normalised batch at the input size (PyTorch backend), or
  the exported graph on a prepared ``uint8`` batch (onnxruntime backend: normalisation, network, decoding
  and NMS, which live in the graph);
- ``end_to_end``: ``uint8`` images of ``source_size`` (a camera frame, 480 x 640 by default) to
  :class:`~efficientdet.structures.Detections` through :class:`~efficientdet.predict.Predictor`:
  letterbox, normalisation, network, decoding, NMS, rescaling and the copy back to the CPU.

Latency is per batch (median and 90th percentile over ``iters`` timed runs after ``warmup`` runs);
throughput is ``batch_size / median``. MACs are counted with :class:`torch.utils.flop_counter.FlopCounterMode`
at one image of the input size (``MACs = FLOPs / 2``; convolutions and matrix products, which is where
the work is). Post-processing time depends on the score distribution: random weights give many more
NMS candidates than trained ones, so pass real weights for realistic end-to-end numbers.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from efficientdet.errors import ConfigError
from efficientdet.modeling.detector import EfficientDet

STAGES = ("network", "end_to_end")
DEFAULT_SOURCE_SIZE = (480, 640)
"""``(H, W)`` of the images fed to the end-to-end stage."""


@dataclass(frozen=True)
class BenchmarkResult:
    """One timed configuration. Latencies in milliseconds per batch; ``macs`` per image."""

    model: str
    backend: str
    stage: str
    device: str
    dtype: str
    batch_size: int
    image_size: tuple[int, int]
    median_ms: float
    p90_ms: float
    images_per_s: float
    params: int
    macs: int
    threads: int
    channels_last: bool = False
    compile: bool | str = False
    optimize: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["image_size"] = list(self.image_size)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (buffers such as BN statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, image_size: tuple[int, int], batch_size: int = 1) -> int:
    """Multiply-accumulates of one forward pass of ``model`` on a ``[batch_size, 3, H, W]`` input.

    Counted by :class:`torch.utils.flop_counter.FlopCounterMode` (FLOPs / 2) on the model's device and dtype.
    """
    from torch.utils.flop_counter import FlopCounterMode

    param = next(model.parameters())
    x = torch.zeros(batch_size, 3, *image_size, device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() // 2


def _sync(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return torch.cuda.synchronize
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


def time_calls(fn: Callable[[], Any], warmup: int, iters: int, sync: Callable[[], None] = lambda: None) -> list[float]:
    """Seconds taken by each of ``iters`` calls of ``fn`` after ``warmup`` untimed calls."""
    if iters < 1 or warmup < 0:
        raise ConfigError(f"iters must be >= 1 and warmup >= 0, got iters={iters}, warmup={warmup}")
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[int]:
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def benchmark(
    model: str | EfficientDet | None,
    *,
    batch_sizes: Sequence[int] = (1,),
    image_size: int | tuple[int, int] | None = None,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = torch.float32,
    channels_last: bool | None = None,
    compile: bool | str = False,
    optimize: bool | None = None,
    backend: str = "torch",
    threads: int | None = None,
    warmup: int = 3,
    iters: int = 10,
    stages: Sequence[str] = STAGES,
    source_size: tuple[int, int] = DEFAULT_SOURCE_SIZE,
    onnx_path: str | os.PathLike[str] | None = None,
    pretrained: bool = False,
    checkpoint: str | os.PathLike[str] | None = None,
    spinning: bool = True,
) -> list[BenchmarkResult]:
    """Time ``model`` (a name, random weights unless ``pretrained`` / ``checkpoint``) per batch size and stage.

    ``backend``: a name of :data:`~efficientdet.backends.BACKENDS`; ``"onnxruntime"`` exports the model to ONNX
    (dynamic batch, the model's NMS; cached, see :func:`~efficientdet.backends.onnxruntime.exported_backend`)
    unless ``onnx_path`` gives one. ``threads`` sets
    PyTorch's (and onnxruntime's) intra-op threads; ``spinning``: onnxruntime's threads busy-wait for work
    (:func:`~efficientdet.backends.onnxruntime.session_options`; the CLI turns it off).
    ``optimize`` / ``channels_last`` / ``compile``: as :class:`~efficientdet.backends.torch.TorchBackend` takes them
    (``None``: its defaults, the inference copy of :func:`~efficientdet.fast.optimize_for_inference` in NHWC
    on the CPU).
    """
    from efficientdet.backends import Backend, BackendOptions, check_backend, create_backend
    from efficientdet.backends.onnxruntime import OnnxRuntimeBackend
    from efficientdet.backends.torch import resolve_dtype
    from efficientdet.config import replace_nested
    from efficientdet.engine.distributed import resolve_device
    from efficientdet.predict import Predictor, load_model

    check_backend(backend)
    for stage in stages:
        if stage not in STAGES:
            raise ConfigError(f"stage {stage!r} is unknown; use {', '.join(STAGES)}")
    if not batch_sizes or min(batch_sizes) < 1:
        raise ConfigError(f"batch sizes must be >= 1, got {list(batch_sizes)}")
    net = model if isinstance(model, EfficientDet) else load_model(model, checkpoint, pretrained=pretrained)
    if image_size is not None:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(int(s) for s in image_size)
        net.config = replace_nested(net.config, preprocess__image_size=(int(size[0]), int(size[1])))
    size = (int(net.config.image_size[0]), int(net.config.image_size[1]))
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype)
    dtype_name = str(torch_dtype).removeprefix("torch.")
    params = count_parameters(net)
    macs = count_macs(net.float().eval(), size)
    sync = _sync(dev)
    results = []
    with _threads(threads) as n_threads:
        engine: Backend
        if backend == "onnxruntime" and onnx_path is not None:
            engine = OnnxRuntimeBackend(onnx_path, dev, threads=n_threads, spinning=spinning)
        else:  # onnxruntime: exported at the benchmark's size (in the config), cached like Predictor's
            engine = create_backend(backend, net, BackendOptions(dev, torch_dtype, channels_last, compile, optimize,
                                                                 n_threads, spinning=spinning))
        predictor = Predictor(engine, batch_size=max(batch_sizes))
        gen = torch.Generator().manual_seed(0)
        for bs in batch_sizes:
            frames = [torch.randint(0, 256, (3, *source_size), dtype=torch.uint8, generator=gen) for _ in range(bs)]
            for stage in stages:
                if stage == "network":
                    fn = _network_call(engine, frames)
                else:
                    def fn(frames: list[torch.Tensor] = frames) -> Any:
                        return predictor(frames)
                times = time_calls(fn, warmup, iters, sync)
                median = statistics.median(times)
                results.append(BenchmarkResult(
                    model=net.config.name, backend=backend, stage=stage, device=str(dev), dtype=dtype_name,
                    batch_size=bs, image_size=size, median_ms=median * 1e3, p90_ms=_percentile(times, 0.9) * 1e3,
                    images_per_s=bs / median, params=params, macs=macs, threads=n_threads,
                    channels_last=bool(getattr(engine, "channels_last", False)), compile=compile,
                    optimize=bool(getattr(engine, "optimize", False)),
                ))
    return results


def _network_call(engine: Any, frames: list[torch.Tensor]) -> Callable[[], Any]:
    """The ``network`` stage: the network of the torch backend's pipeline, or the whole exported graph
    (onnxruntime), on a prepared batch."""
    from efficientdet.backends.onnxruntime import OnnxRuntimeBackend
    from efficientdet.backends.torch import TorchBackend

    if isinstance(engine, OnnxRuntimeBackend):
        pixels, _ = engine.letterbox_uint8(frames)
        return lambda: engine.run(pixels)
    if not isinstance(engine, TorchBackend):
        raise ConfigError(f"the network stage times the torch and onnxruntime backends, not {type(engine).__name__}; "
                          "time this backend with --stage end_to_end")
    pipeline = engine.pipeline()
    with torch.inference_mode():
        pixels = pipeline.normalize(engine.prepare(frames)[0])

    @torch.inference_mode()
    def run() -> Any:
        return pipeline.network(pixels)

    return run


def format_table(results: Sequence[BenchmarkResult]) -> str:
    """A plain-text table of results, one row per configuration."""
    header = (f"{'model':24s} {'backend':11s} {'stage':10s} {'device':6s} {'dtype':8s} {'batch':>5s} "
              f"{'median ms':>10s} {'p90 ms':>8s} {'img/s':>8s}")
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(f"{r.model[:24]:24s} {r.backend:11s} {r.stage:10s} {r.device[:6]:6s} {r.dtype:8s} {r.batch_size:5d} "
                     f"{r.median_ms:10.2f} {r.p90_ms:8.2f} {r.images_per_s:8.1f}")
    if results:
        r = results[0]
        lines.append(f"\n{r.model}: {r.params / 1e6:.2f} M parameters, {r.macs / 1e9:.3f} GMACs per image at "
                     f"{r.image_size[0]}x{r.image_size[1]}, {r.threads} threads")
    return "\n".join(lines)


__all__ = [
    "STAGES",
    "DEFAULT_SOURCE_SIZE",
    "BenchmarkResult",
    "count_parameters",
    "count_macs",
    "time_calls",
    "benchmark",
    "format_table",
]
