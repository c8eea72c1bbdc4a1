"""This library next to effdet 0.4.1 in one process, interleaved, with the same weights: speed ratios.

effdet's model is given trained-looking statistics on real photos (``calibrate``) and its weights are
converted into ours, so both compute the same function. Each section checks that the two agree, then warms
every runner up and times them in turn (``--repeats`` rounds), keeping medians. "speed-up" is effdet's time
divided by the runner's (above 1: faster than effdet).

- ``setup``: per ``--models`` entry: parameters, MACs, head outputs of both on one photo.
- ``e2e``: PIL RGB photos of scikit-image (several sizes) -> detections in original pixels. effdet:
  ``transforms_coco_eval`` (PIL resize, bilinear like ours) + normalise + ``DetBenchPredict``. Ours:
  ``Predictor`` (optimised PyTorch, the CPU default), ``Predictor(optimize=False)``, onnxruntime backend.
  The letterboxes differ (PIL's antialiased resize vs the TF-style one; effdet pads lite models with 0, we
  with the mean), so each runner is checked against ``DetBenchPredict`` fed the pixels that runner uses.
- ``matmul``: float32 ``n^3`` matmul GFLOP/s at the same thread count (``--matmul-size``), in PyTorch and in
  numpy (each with its own BLAS); the fastest sets the floor. With this section on, ``network`` also times
  both matmuls in its own interleaved rounds and reports each runner against the floor ``2 * MACs /
  GFLOP/s`` of the faster one measured there (same machine load as the runners).
- ``network``: normalised photos -> raw head outputs: effdet, ours, ours channels_last, ours
  ``optimize_for_inference`` (channels_last input), and that network exported to ONNX (the graph
  ``export_model`` writes, without pre- and post-processing) in onnxruntime, one image per run as the
  onnxruntime backend runs batches on the CPU; achieved GFLOP/s and time / floor.
- ``train``: one SGD step (forward, loss, backward, step) of ``--train-model`` at ``--train-batch``: effdet's
  ``DetBenchTrain`` vs our model (channels_last, as our trainer) + ``DetectionLoss``; losses checked first.
- ``postprocess``: ``benchmarks/postprocess.py``'s inputs and runners (D0, 90 classes).

Prints a table per section and, last, one JSON line with every number (``--json PATH`` writes it too).

glibc's malloc maps and unmaps every large activation (D0 at batch 8: 134 MB tensors) at each call, and
the page faults can dominate the time of both libraries (measured here: D0 batch 8, one thread, 651 ms per
image by default, 319 ms with the variables below). The header says whether they are set.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/compare_effdet.py --threads 2
    MALLOC_MMAP_THRESHOLD_=34359738368 MALLOC_TRIM_THRESHOLD_=34359738368 python benchmarks/compare_effdet.py
    python benchmarks/compare_effdet.py --quick --threads 1   # smoke test, a few minutes
"""

from __future__ import annotations

import argparse
import copy
import functools
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from timm.layers import DropPath  # noqa: E402

import efficientdet  # noqa: E402
from efficientdet.benchmark import count_macs, count_parameters  # noqa: E402
from efficientdet.config import AnchorConfig, PostprocessConfig  # noqa: E402
from efficientdet.data.preprocess import normalize, preprocess, to_chw_tensor  # noqa: E402
from efficientdet.fast import optimize_for_inference  # noqa: E402
from efficientdet.modeling.anchors import generate_anchors  # noqa: E402
from efficientdet.ops.boxes import swap_xy  # noqa: E402
from efficientdet.structures import Targets  # noqa: E402
from efficientdet.training.losses import DetectionLoss  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import effdet  # noqa: E402
    from effdet.anchors import Anchors  # noqa: E402
    from effdet.data import resolve_input_config  # noqa: E402
    from effdet.data.transforms import transforms_coco_eval  # noqa: E402

SECTIONS = ("setup", "e2e", "matmul", "network", "train", "postprocess")
PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png",
          "hubble_deep_field.jpg", "ihc.png", "camera.png")
# A detection agrees with effdet's when its class is the same and its box / score are this close (float32
# rounding, amplified by the random network: ~1e-2 px and ~1e-4 are typical for the BN-folded path). A few
# rows may differ where two candidates tie to float32 precision (at the 100-detection cut or an IoU of 0.5).
BOX_TOL, SCORE_TOL, MAX_DIFFERING = 0.5, 1e-3, 0.02  # px in the original image, sigmoid score, fraction of rows
MATMUL = "matmul"  # prefix of the floor's matmuls timed among the network runners
NETWORK_TOL, LOSS_RTOL, CL_LOSS_RTOL = 1e-3, 1e-4, 1e-2  # relative

ROWS: list[dict[str, Any]] = []  # every timing, for the JSON line
CHECKS: dict[str, Any] = {}  # agreement measurements


class Mismatch(SystemExit):
    """The two libraries disagree: no timing is worth reporting."""


def timed(runs: dict[str, Callable[[], Any]], repeats: int, items: int) -> dict[str, float]:
    """Warm each runner up once, then time all in turn ``repeats`` times: median seconds per item."""
    for fn in runs.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - start) / items)
    return {name: statistics.median(s) for name, s in samples.items()}


def record(section: str, model: str, batch: int, medians: dict[str, float], unit: str = "image",
           floor_s: float | None = None, macs: int | None = None) -> None:
    base = medians.get("effdet")
    for runner, seconds in medians.items():
        row = {"section": section, "model": model, "batch": batch, "runner": runner, "unit": unit,
               "ms": seconds * 1e3, "per_s": 1.0 / seconds, "speedup_vs_effdet": base / seconds if base else None}
        if macs is not None:
            row["gflop_s"] = 2 * macs / seconds / 1e9
        if floor_s is not None:
            row["x_floor"] = seconds / floor_s
        ROWS.append(row)


def print_table(section: str, title: str) -> None:
    rows = [r for r in ROWS if r["section"] == section]
    if not rows:
        return
    unit = rows[0]["unit"]
    extra = [k for k in ("gflop_s", "x_floor") if any(k in r for r in rows)]
    print(f"\n== {title} ==")
    head = f"{'model':<24}{'batch':>6}  {'runner':<22}{f'ms/{unit}':>11}{f'{unit}s/s':>10}{'speed-up':>10}"
    print(head + "".join(f"{k:>10}" for k in extra))
    for r in rows:
        speedup = f"{r['speedup_vs_effdet']:.2f}x" if r["speedup_vs_effdet"] else "-"
        line = f"{r['model']:<24}{r['batch']:>6}  {r['runner']:<22}{r['ms']:>11.2f}{r['per_s']:>10.2f}{speedup:>10}"
        print(line + "".join(f"{r[k]:>10.1f}" if k in r else f"{'-':>10}" for k in extra))


# --- models --------------------------------------------------------------------------------------------


@torch.no_grad()
def calibrate(model: torch.nn.Module, pixels: torch.Tensor, seed: int = 0, batch: int = 4) -> None:
    """Trained-looking statistics on real photos (``pixels``: letterboxed, normalised).

    Random norm scales / shifts, conv biases and fusion weights; every BatchNorm's running mean / variance
    measured (cumulative average) on ``pixels`` in train mode; then the last conv of each prediction head
    rescaled so that, on ``pixels``, class logits centre on -4 with a spread of up to 1.5 and none above
    +8, and box deltas centre on 0 with a spread of up to 0.5 and none beyond 3 (the random network's
    outputs are heavy-tailed: without this, real photos saturate scores at exactly 1.0, whose ties make
    the order of detections arbitrary).
    """
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith("edge_weights"):
            p.copy_(torch.rand(p.shape, generator=g) + 0.25)
        elif name.endswith("bias") and "predict" not in name:
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        elif p.ndim == 1 and name.endswith("weight"):  # norm scales
            p.copy_(torch.rand(p.shape, generator=g) + 0.5)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    for chunk in pixels.split(batch):
        model(chunk)
    model.eval()
    cls, box = model(pixels)
    for head, levels, mean, std, span in ((model.class_net, cls, -4.0, 1.5, 12.0), (model.box_net, box, 0.0, 0.5, 3.0)):
        values = torch.cat([t.flatten() for t in levels])
        a = min(std / float(values.std()), span / float((values - values.mean()).abs().max()))
        last = [m for m in head.predict.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        last.weight.mul_(a)
        last.bias.copy_(a * (last.bias - float(values.mean())) + mean)


def build_pair(name: str, size: int, n_photos: int) -> dict[str, Any]:
    """effdet's model calibrated on photos and ours with the same weights (converted effdet state dict)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = effdet.create_model(name, pretrained=False, pretrained_backbone=False, image_size=(size, size))
    ours = efficientdet.create_model(name, pretrained=False, image_size=size)
    photos = load_photos(n_photos)
    pixels = preprocess(photos, ours.config.preprocess).pixels
    flipped = preprocess([p.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for p in photos], ours.config.preprocess).pixels
    calibrate(ref, torch.cat([pixels, flipped]))
    efficientdet.load_weights(ours, ref.state_dict(), source=f"effdet {name}")
    ours.eval()
    return {"name": name, "size": (size, size), "effdet": ref, "ours": ours, "pixels": pixels,
            "macs": count_macs(ours, (size, size)), "params": (count_parameters(ref), count_parameters(ours))}


@torch.inference_mode()
def head_diff(ref: torch.nn.Module, out: Any, x: torch.Tensor) -> float:
    """Max abs difference between effdet's per-level outputs on ``x`` and our flat ``HeadOutputs`` ``out``,
    relative to the largest effdet output (the random network amplifies float32 rounding: effdet itself is
    ~1e-4 from its float64 result)."""
    def flat(levels: list[torch.Tensor], k: int) -> torch.Tensor:
        return torch.cat([t.permute(0, 2, 3, 1).reshape(len(x), -1, k) for t in levels], dim=1)

    cls, box = ref(x)
    pairs = ((flat(cls, out.cls_logits.shape[-1]), out.cls_logits), (flat(box, 4), out.box_deltas))
    return max(float((a - b).abs().max() / a.abs().max()) for a, b in pairs)


def run_setup(pairs: list[dict[str, Any]]) -> None:
    print("\n== setup: effdet weights (calibrated norms) loaded into ours ==")
    for p in pairs:
        x = photo_batch(p, 1)
        with torch.inference_mode():
            diff = head_diff(p["effdet"], p["ours"](x), x)
        CHECKS[f"setup/{p['name']}/head_rel_diff"] = diff
        print(f"{p['name']} {p['size']}: params effdet {p['params'][0] / 1e6:.2f} M, ours {p['params'][1] / 1e6:.2f} M; "
              f"{p['macs'] / 1e9:.2f} GMACs/image; head outputs on a photo: max |diff| / max |effdet| {diff:.1e}")
        if diff > NETWORK_TOL:
            raise Mismatch(f"{p['name']}: head outputs differ by {diff:.3g} after loading effdet's weights")


# --- end to end ----------------------------------------------------------------------------------------


def load_photos(n: int) -> list[Image.Image]:
    from skimage import data

    return [Image.open(os.path.join(data.data_dir, PHOTOS[i % len(PHOTOS)])).convert("RGB") for i in range(n)]


class EffdetPipeline:
    """effdet's inference path: eval transform (ResizePad + ImageToNumpy), stack, normalise, DetBenchPredict."""

    def __init__(self, model: torch.nn.Module) -> None:
        cfg = resolve_input_config({}, model_config=model.config)
        self.transform = transforms_coco_eval(cfg["input_size"][1:], interpolation="bilinear", use_prefetcher=True,
                                              fill_color=cfg["fill_color"], mean=cfg["mean"], std=cfg["std"])
        self.mean = torch.tensor([255.0 * m for m in cfg["mean"]]).view(1, 3, 1, 1)
        self.std = torch.tensor([255.0 * s for s in cfg["std"]]).view(1, 3, 1, 1)
        self.bench = effdet.DetBenchPredict(model).eval()

    def __call__(self, images: list[Image.Image]) -> torch.Tensor:
        arrays, scales = [], []
        for image in images:
            array, anno = self.transform(image, {})
            arrays.append(array)
            scales.append(anno["img_scale"])
        x = (torch.from_numpy(np.stack(arrays)).float() - self.mean) / self.std
        return self.detect(x, torch.tensor(scales), [im.size for im in images])

    @torch.inference_mode()
    def detect(self, x: torch.Tensor, img_scale: torch.Tensor, sizes_wh: list[tuple[int, int]]) -> torch.Tensor:
        """``[B, 100, 6]`` rows ``[x1, y1, x2, y2, score, class + 1]`` in original pixels, zero padding."""
        info = {"img_scale": img_scale.float(), "img_size": torch.tensor(sizes_wh, dtype=torch.float32)}
        return self.bench(x, img_info=info)


def match_error(det: Any, rows: torch.Tensor, in_graph_clip: bool = False) -> tuple[int, float, float, int]:
    """Our detections of one image vs effdet's rows ``[x1, y1, x2, y2, score, class + 1]`` (zero padding).

    Rows are paired by an optimal assignment (same class, nearest box and score). Returns (count difference,
    max box diff px and max score diff over the pairs that agree, number of pairs that do not: a different
    class, or a box / score beyond BOX_TOL / SCORE_TOL).

    ``in_graph_clip`` (the onnxruntime graph): it clips boxes to the input canvas before NMS, effdet (and our
    PyTorch path) to the image, so boxes lying in the letterbox padding (zero area once clipped to the
    image) survive NMS in effdet but suppress each other in the graph, and other rows take their slots
    at the tail. Those are left out: zero-area rows on both sides, then the longer list cut to the shorter.
    Boxes reaching into the padding also suppress their neighbours differently: a few differing rows at the
    image edge next to the padding are expected.
    """
    from scipy.optimize import linear_sum_assignment

    ref = rows[rows[:, 4] > 0]
    mine = torch.cat([det.boxes, det.scores[:, None], (det.labels + 1)[:, None].float()], 1)
    if in_graph_clip:
        mine, ref = (r[(r[:, 2] > r[:, 0]) & (r[:, 3] > r[:, 1])] for r in (mine, ref))
        mine, ref = mine[: len(ref)], ref[: len(mine)]
    if len(mine) != len(ref) or len(ref) == 0:
        return len(mine) - len(ref), 0.0, 0.0, 0
    box = (mine[:, None, :4] - ref[None, :, :4]).abs().amax(-1)
    score = (mine[:, None, 4] - ref[None, :, 4]).abs()
    label = mine[:, None, 5] != ref[None, :, 5]
    i, j = linear_sum_assignment((box + 1e3 * score + 1e6 * label).double().numpy())
    box, score, label = box[i, j], score[i, j], label[i, j]
    bad = label | (box > BOX_TOL) | (score > SCORE_TOL)
    good = ~bad
    if not good.any():  # nothing agrees (a low-precision runner): no error to report over agreeing rows
        return 0, float("nan"), float("nan"), int(bad.sum())
    return 0, float(box[good].max()), float(score[good].max()), int(bad.sum())


def check_e2e(name: str, runner: str, dets: list[Any], ref_rows: torch.Tensor, key: str | None = None,
              strict: bool = True) -> None:
    """Record (``CHECKS[key]``, default ``e2e/<name>/<runner>``) and print how ``dets`` differ from effdet's
    rows; with ``strict``, stop when they differ (a low-precision runner only reports its drift)."""
    in_graph = runner == "ours-onnxruntime"
    errors = [match_error(d, r, in_graph) for d, r in zip(dets, ref_rows, strict=True)]
    total = sum(len(d) for d in dets)
    count, box, score, differ = (max(abs(e[0]) for e in errors), max(e[1] for e in errors), max(e[2] for e in errors),
                                 sum(e[3] for e in errors))
    CHECKS[key or f"e2e/{name}/{runner}"] = {"detections": total, "count_diff": count, "max_box_px": box,
                                             "max_score": score, "differing_rows": differ}
    note = " (zero-area rows in the padding left out)" if in_graph else ""
    print(f"  check {runner:<17} vs effdet on the same pixels, {len(dets)} photos, {total} detections: count diff "
          f"{count}, max |box| {box:.1e} px, max |score| {score:.1e}, differing rows {differ}{note}")
    if strict and (count or differ > MAX_DIFFERING * total):
        raise Mismatch(f"{name} {runner}: detections differ from effdet's (see the line above)")


def run_e2e(pair: dict[str, Any], batches: list[int], repeats: int, threads: int, n_photos: int) -> None:
    from efficientdet.predict import Predictor

    name, model = pair["name"], pair["ours"]
    photos = load_photos(n_photos)
    eff = EffdetPipeline(pair["effdet"])
    chunk = max(batches)
    runners: dict[str, Any] = {
        "ours-torch": Predictor(model, device="cpu", batch_size=chunk),
        "ours-torch-plain": Predictor(model, device="cpu", batch_size=chunk, optimize=False),
    }
    logging.getLogger("onnx_ir").setLevel(logging.ERROR)  # the exporter's chatter
    try:
        start = time.perf_counter()
        runners["ours-onnxruntime"] = Predictor(model, device="cpu", backend="onnxruntime", threads=threads,
                                                batch_size=chunk)
        print(f"  (ONNX export + session for {name}: {time.perf_counter() - start:.1f} s)")
    except Exception as err:  # onnx / onnxruntime / onnxscript missing or export failure: time the rest
        print(f"  note: onnxruntime runner skipped for {name}: {type(err).__name__}: {str(err).splitlines()[0]}")
    # correctness: effdet fed exactly the pixels each of our runners feeds its network
    batch = preprocess(photos, model.config.preprocess)
    scales = torch.tensor([1.0 / m.scale for m in batch.metas])
    sizes = [(m.orig_size[1], m.orig_size[0]) for m in batch.metas]
    float_ref = eff.detect(batch.pixels, scales, sizes)
    for runner, predictor in runners.items():
        if runner == "ours-onnxruntime":
            pre = predictor.backend.preprocess
            pixels, s = predictor.backend.letterbox_uint8([to_chw_tensor(p) for p in photos])
            ref = eff.detect(normalize(torch.from_numpy(pixels), pre.mean, pre.std), 1.0 / torch.tensor(s), sizes)
        else:
            ref = float_ref
        check_e2e(name, runner, predictor(photos), ref)
    for b in batches:
        chunks = [photos[i: i + b] for i in range(0, len(photos), b)]
        runs = {"effdet": lambda chunks=chunks: [eff(c) for c in chunks]}
        for runner, predictor in runners.items():
            runs[runner] = lambda chunks=chunks, p=predictor: [p(c) for c in chunks]
        record("e2e", name, b, timed(runs, repeats, len(photos)))


# --- network, matmul floor, training -------------------------------------------------------------------


def photo_batch(pair: dict[str, Any], batch: int) -> torch.Tensor:
    """``batch`` letterboxed, normalised photos (cycled) at the model's input size."""
    pixels = pair["pixels"]
    return pixels[[i % len(pixels) for i in range(batch)]].contiguous()


def matmul_runners(n: int, threads: int) -> dict[str, Callable[[], Any]]:
    """Float32 ``n^3`` matmuls, one per BLAS at hand, at ``threads`` threads: ``{"matmul <library>": run}``.

    The compute floor takes the fastest of them (:func:`fastest_rate`): PyTorch's BLAS (MKL) can be far from
    the machine's peak (on an AMD Zen 4, 78-190 GFLOP/s where numpy's OpenBLAS ran 169-203), and a floor set
    by a slow matmul would flatter every runner. numpy's threads are limited with threadpoolctl; without it numpy's
    matmul is left out (with a note) rather than timed at another thread count.
    """
    a, b, out = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
    runs: dict[str, Callable[[], Any]] = {f"{MATMUL} torch": lambda: torch.mm(a, b, out=out)}
    try:
        import threadpoolctl
    except ImportError:
        print("  note: numpy's matmul left out of the floor (pip install threadpoolctl to limit its threads)")
        return runs
    # Set once, for the process (a context manager around each call would cost ~0.5 ms a call).
    threadpoolctl.ThreadpoolController().select(user_api="blas").limit(limits=threads)
    an, bn, outn = a.numpy(), b.numpy(), np.empty((n, n), np.float32)
    runs[f"{MATMUL} numpy"] = lambda: np.matmul(an, bn, out=outn)
    return runs


def matmul_rates(medians: dict[str, float], n: int, items: int = 1) -> dict[str, float]:
    """Pop the matmul runners' times out of ``medians`` (seconds per item, ``items`` per run): GFLOP/s each."""
    return {name: 2 * n**3 / (medians.pop(name) * items) / 1e9 for name in [k for k in medians if k.startswith(MATMUL)]}


def fastest_rate(rates: dict[str, float]) -> tuple[float, str]:
    """The floor's rate from :func:`matmul_rates`: ``(GFLOP/s of the fastest matmul, "lib a, lib b" rates text)``."""
    return max(rates.values()), ", ".join(f"{lib} {rate:.1f}" for lib, rate in rates.items())


def matmul_gflops(n: int, repeats: int, threads: int) -> dict[str, float]:
    """GFLOP/s of each of :func:`matmul_runners`, timed interleaved."""
    return matmul_rates(timed(matmul_runners(n, threads), repeats, 1), n)


class _HeadTensors(torch.nn.Module):
    """An inference model with plain tensor outputs ``(cls_logits, box_deltas)``, for ONNX export."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(x)
        return out.cls_logits, out.box_deltas


def export_network(model: torch.nn.Module, x: torch.Tensor, path: str) -> None:
    """``model``'s network as ``export_model`` exports it (the ``optimize_for_inference(for_onnx=True)`` copy),
    without pre- and post-processing, written to ONNX at ``path`` for inputs shaped like ``x``: normalised
    ``[B, 3, H, W]`` -> ``(cls_logits [B, N, K], box_deltas [B, N, 4])``."""
    logging.getLogger("onnx_ir").setLevel(logging.ERROR)
    graph = _HeadTensors(optimize_for_inference(model, for_onnx=True, channels_last=False)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, (x,), path, dynamo=True, verbose=False)


def onnxruntime_network(model: torch.nn.Module, x: torch.Tensor, threads: int) -> Callable[[torch.Tensor], Any] | None:
    """``model``'s network (``optimize_for_inference(for_onnx=True)``, as ``export_model`` exports it) in
    onnxruntime for inputs shaped like ``x``: ``run(x) -> HeadOutputs``, one image per session run (as
    :class:`~efficientdet.predict.OnnxRuntimeBackend` runs a batch on the CPU), each run writing into its
    rows of the batch outputs; None when onnx / onnxruntime are missing."""
    import tempfile

    from efficientdet.predict import session_options
    from efficientdet.structures import HeadOutputs

    try:
        import onnxruntime as ort
    except ImportError as err:
        print(f"  note: onnxruntime network runner skipped: {err}")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "network.onnx")
        export_network(model, x[:1], path)
        session = ort.InferenceSession(path, session_options(threads), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    outputs = [out.name for out in session.get_outputs()]
    shapes = [a.shape[1:] for a in session.run(None, {name: x[:1].numpy()})]

    def run(pixels: torch.Tensor) -> HeadOutputs:
        # Each run writes its outputs straight into its rows of the batch arrays (an I/O binding), as the
        # PyTorch runners' last concatenation writes theirs: no copy of the 18 MB of D0 head outputs per
        # image after the run (concatenating the runs' outputs cost 3-4 ms per D0 image).
        batch = [np.empty((len(pixels), *shape), np.float32) for shape in shapes]
        binding = session.io_binding()
        for i, image in enumerate(pixels):
            pixels_i = np.ascontiguousarray(image[None].numpy())  # (kept alive until the run is over)
            binding.bind_cpu_input(name, pixels_i)
            for out, array in zip(outputs, batch, strict=True):
                binding.bind_output(out, "cpu", 0, np.float32, [1, *array.shape[1:]], array[i].ctypes.data)
            session.run_with_iobinding(binding)
        return HeadOutputs(*(torch.from_numpy(array) for array in batch))

    return run


def run_network(pair: dict[str, Any], batches: list[int], repeats: int, matmul_size: int | None, threads: int) -> None:
    """Head outputs checked against effdet's, then every runner timed. With ``matmul_size``, an
    ``n^3`` float32 matmul is timed in the same interleaved rounds: the floor of each batch is the
    model's FLOPs at that rate (so the floor sees the same machine load as the runners)."""
    name, ref, ours, macs = pair["name"], pair["effdet"], pair["ours"], pair["macs"]
    ours_cl = copy.deepcopy(ours).to(memory_format=torch.channels_last)
    fast = optimize_for_inference(ours)  # channels_last by default
    matmuls = matmul_runners(matmul_size, threads) if matmul_size else {}
    for b in batches:
        x = photo_batch(pair, b)
        xcl = x.contiguous(memory_format=torch.channels_last)
        runs = {"effdet": lambda x=x: ref(x), "ours-plain": lambda x=x: ours(x),
                "ours-plain-cl": lambda x=xcl: ours_cl(x), "ours-optimized-cl": lambda x=xcl: fast(x)}
        ort_run = onnxruntime_network(ours, x, threads)
        if ort_run is not None:
            runs["ours-onnxruntime"] = lambda x=x, run=ort_run: run(x)
        checked = [r for r in runs if r != "effdet"]  # (before the matmul joins the rounds)
        with torch.inference_mode():
            for runner in checked:
                diff = head_diff(ref, runs[runner](), x)
                CHECKS[f"network/{name}/b{b}/{runner}"] = diff
                if diff > NETWORK_TOL:
                    raise Mismatch(f"{name} {runner}: head outputs differ from effdet's by {diff:.3g} (relative)")
            print(f"  check {name} batch {b}: head outputs vs effdet, max |diff| / max |effdet|: " + ", ".join(
                f"{r} {CHECKS[f'network/{name}/b{b}/{r}']:.1e}" for r in checked))
            runs.update(matmuls)
            medians = timed(runs, repeats, b)
        floor_s = None
        if matmul_size:
            rates = matmul_rates(medians, matmul_size, b)
            gflops, rates_text = fastest_rate(rates)
            floor_s = 2 * macs / (gflops * 1e9)
            CHECKS[f"network/{name}/b{b}/matmul_gflop_s"] = gflops
            for lib, rate in rates.items():
                CHECKS[f"network/{name}/b{b}/{lib.replace(' ', '_')}_gflop_s"] = rate
        record("network", name, b, medians, floor_s=floor_s, macs=macs)
        if floor_s:
            best = min((s, r) for r, s in medians.items() if r != "effdet")
            torch_best = min((s, r) for r, s in medians.items() if r.startswith("ours-") and r != "ours-onnxruntime")
            print(f"  {name} batch {b}: network within {best[0] / floor_s:.1f}x of the matmul floor "
                  f"({best[1]}; best PyTorch runner {torch_best[0] / floor_s:.1f}x; effdet {medians['effdet'] / floor_s:.1f}x; "
                  f"floor {floor_s * 1e3:.2f} ms/image at {gflops:.1f} GFLOP/s, the fastest of the matmuls timed in "
                  f"the same rounds: {rates_text})")


def random_targets(batch: int, size: tuple[int, int], num_classes: int, seed: int = 0) -> list[Targets]:
    """A few boxes per image (2 .. 6), xyxy in input pixels, labels 0-based."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(batch):
        m = 2 + i % 5
        wh = torch.rand(m, 2, generator=g) * (size[0] / 3) + 12
        xy = torch.rand(m, 2, generator=g) * (torch.tensor([size[1], size[0]]) - wh)
        out.append(Targets(torch.cat([xy, xy + wh], 1), torch.randint(0, num_classes, (m,), generator=g)))
    return out


def effdet_targets(targets: list[Targets]) -> dict[str, list[torch.Tensor]]:
    """Our targets (xyxy, labels 0-based) as effdet's training targets (yxyx, classes 1-based: 0 is background)."""
    return {"bbox": [swap_xy(t.boxes) for t in targets], "cls": [t.labels + 1 for t in targets]}


def run_train(pair: dict[str, Any], batch: int, repeats: int, lr: float = 1e-3) -> None:
    name, size = pair["name"], pair["size"]
    ref, ours = copy.deepcopy(pair["effdet"]), copy.deepcopy(pair["ours"])
    bench = effdet.DetBenchTrain(ref).train()
    ours = ours.train().to(memory_format=torch.channels_last)
    loss_fn = DetectionLoss(ours.config.loss, ours.config.num_classes)
    x = photo_batch(pair, batch)
    xcl = x.contiguous(memory_format=torch.channels_last)
    targets = random_targets(batch, size, ours.config.num_classes)
    effdet_target = effdet_targets(targets)
    opt_ref = torch.optim.SGD(ref.parameters(), lr=lr, momentum=0.9)
    opt_ours = torch.optim.SGD(ours.parameters(), lr=lr, momentum=0.9)

    def ours_loss(model: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        return loss_fn(model(pixels), model.anchors(size, pixels.device), targets)["total"]

    def sgd_step(loss_of: Callable[[], torch.Tensor], optimizer: torch.optim.Optimizer) -> float:
        loss = loss_of()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    step_effdet = functools.partial(sgd_step, lambda: bench(x, effdet_target)["loss"], opt_ref)
    step_ours = functools.partial(sgd_step, lambda: ours_loss(ours, xcl), opt_ours)

    # Same weights: the first losses must agree (this is also the warm-up). Stochastic depth (drop path,
    # on in both backbones) draws different random masks, so it is off for this step. Our NCHW model must
    # match effdet closely; the channels_last one (timed, as our trainer) less so: PyTorch's CPU BatchNorm in
    # training mode is less precise on channels_last input (~1e-3 relative here, the random net amplifies it).
    drop_paths = [m for m in (*ref.modules(), *ours.modules()) if isinstance(m, DropPath)]
    rates = [m.drop_prob for m in drop_paths]
    for m in drop_paths:
        m.drop_prob = 0.0
    with torch.no_grad():
        nchw = float(ours_loss(copy.deepcopy(ours).to(memory_format=torch.contiguous_format), x))
    a, b = step_effdet(), step_ours()
    for m, rate in zip(drop_paths, rates, strict=True):
        m.drop_prob = rate
    CHECKS[f"train/{name}/loss"] = {"effdet": a, "ours_nchw": nchw, "ours_channels_last": b}
    print(f"  check {name} batch {batch}: first-step loss effdet {a:.6f}, ours NCHW {nchw:.6f} (rel. diff "
          f"{abs(a - nchw) / abs(a):.1e}), ours channels_last {b:.6f} (rel. diff {abs(a - b) / abs(a):.1e})")
    if abs(a - nchw) > LOSS_RTOL * abs(a) or abs(a - b) > CL_LOSS_RTOL * abs(a):
        raise Mismatch(f"{name}: training losses differ (effdet {a}, ours NCHW {nchw}, channels_last {b})")
    record("train", name, batch, timed({"effdet": step_effdet, "ours": step_ours}, repeats, 1), unit="step")


# --- post-processing (benchmarks/postprocess.py) -------------------------------------------------------


def run_postprocess(batches: list[int], repeats: int) -> None:
    spec = importlib.util.spec_from_file_location("bench_postprocess", Path(__file__).with_name("postprocess.py"))
    pp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pp)
    cfg_a = AnchorConfig()
    anchors = generate_anchors(cfg_a, pp.IMAGE_SIZE)
    effdet_anchors = Anchors(cfg_a.min_level, cfg_a.max_level, cfg_a.num_scales, list(cfg_a.aspect_ratios),
                             cfg_a.anchor_scale, pp.IMAGE_SIZE).boxes
    cfg = PostprocessConfig()  # effdet's defaults: topk, hard NMS, 5000 points, 100 detections
    for b in batches:
        outputs, cls_levels, box_levels = pp.make_inputs(b)
        scales = torch.full((b,), 0.8)
        orig = torch.tensor([[480.0, 640.0]]).expand(b, 2)
        runs = {"effdet": functools.partial(pp.run_effdet, cls_levels, box_levels, effdet_anchors, cfg, scales, orig),
                "ours": functools.partial(pp.run_ours, outputs, anchors, cfg, scales, orig)}
        with torch.inference_mode():
            diff = float((runs["ours"]() - runs["effdet"]()).abs().max())
            CHECKS[f"postprocess/b{b}"] = diff
            if diff > 1e-4:
                raise Mismatch(f"post-processing batch {b}: detections differ by {diff:.3g}")
            record("postprocess", f"D0 {pp.IMAGE_SIZE[0]} K={pp.NUM_CLASSES}", b, timed(runs, repeats, b))


# --- main ----------------------------------------------------------------------------------------------


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.machine())


def parse_model(spec: str) -> tuple[str, int]:
    """``NAME:SIZE`` (``NAME`` alone: 512)."""
    name, _, size = spec.partition(":")
    return name, int(size or 512)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--models", nargs="+", default=["tf_efficientdet_d0:512", "tf_efficientdet_lite0:320"],
                        help="NAME:SIZE (square input)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 15; --quick 2)")
    parser.add_argument("--train-model", default="tf_efficientdet_d0:512")
    parser.add_argument("--train-batch", type=int, default=None, help="default 4 (--quick 2)")
    parser.add_argument("--train-repeats", type=int, default=None, help="default 5 (--quick 1)")
    parser.add_argument("--matmul-size", type=int, default=1024)
    parser.add_argument("--quick", action="store_true", help="smoke test: batch 1, 4 photos, 2 repeats")
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON line here")
    args = parser.parse_args()
    quick = args.quick
    repeats = args.repeats or (2 if quick else 15)
    train_repeats = args.train_repeats or (1 if quick else 5)
    train_batch = args.train_batch or (2 if quick else 4)
    batches = [1] if quick else args.batches
    n_photos = 4 if quick else max(8, max(batches))
    sections = [s for s in SECTIONS if s in args.sections]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    malloc = {k: os.environ[k] for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_") if k in os.environ}
    meta = {"torch": torch.__version__, "effdet": importlib.metadata.version("effdet"),
            "efficientdet": efficientdet.__version__,
            "onnxruntime": importlib.metadata.version("onnxruntime") if importlib.util.find_spec("onnxruntime") else None,
            "threads": torch.get_num_threads(), "cpu": cpu_model(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "malloc": malloc, "repeats": repeats, "train_repeats": train_repeats, "quick": quick, "sections": sections}
    print(f"torch {meta['torch']}, effdet {meta['effdet']}, efficientdet {meta['efficientdet']}, onnxruntime "
          f"{meta['onnxruntime']}; {meta['threads']} threads; CPU {meta['cpu']} ({os.cpu_count()} logical); "
          f"OMP_WAIT_POLICY={meta['omp_wait_policy']}; malloc {malloc or 'glibc defaults'}; "
          f"{repeats} interleaved repeats (train {train_repeats}), medians")

    pairs = [build_pair(*parse_model(m), n_photos) for m in args.models] if {"setup", "e2e", "network"} & set(sections) else []
    if "setup" in sections:
        run_setup(pairs)
    if "e2e" in sections:
        print(f"\n-- e2e: {n_photos} photos, {', '.join(f'{im.width}x{im.height}' for im in load_photos(n_photos))}")
        for pair in pairs:
            run_e2e(pair, batches, repeats, args.threads, n_photos)
        print_table("e2e", "end to end: PIL photo -> detections in original pixels (per image)")
    gflops = None
    if "matmul" in sections:
        n = args.matmul_size
        rates = matmul_gflops(n, max(5, repeats), args.threads)
        gflops, rates_text = fastest_rate(rates)
        meta["matmul_gflop_s"] = gflops
        meta["matmul_gflop_s_by_library"] = rates
        print(f"\n== matmul: float32 {n}x{n}x{n}, {args.threads} threads: {rates_text} GFLOP/s; "
              f"the fastest ({gflops:.1f}) sets the compute floor ==")
        for pair in pairs:
            print(f"  {pair['name']}: floor {2 * pair['macs'] / gflops / 1e6:.2f} ms/image ({pair['macs'] / 1e9:.2f} GMACs)")
    if "network" in sections:
        print("\n-- network: checking head outputs, then timing")
        for pair in pairs:
            run_network(pair, batches, repeats, args.matmul_size if "matmul" in sections else None, args.threads)
        print_table("network", "network only: normalised input -> head outputs (per image; x_floor = time / floor)")
    if "train" in sections:
        name, size = parse_model(args.train_model)
        pair = next((p for p in pairs if p["name"] == name and p["size"] == (size, size)), None) or build_pair(name, size, n_photos)
        print("\n-- train")
        run_train(pair, train_batch, train_repeats)
        print_table("train", f"one training step, batch {train_batch} (forward + loss + backward + SGD; per step)")
    if "postprocess" in sections:
        run_postprocess(batches, repeats)
        print_table("postprocess", "post-processing: head outputs -> detections (per image)")

    line = json.dumps({"meta": meta, "results": ROWS, "checks": CHECKS})
    print("\n" + line)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(line + "\n")


if __name__ == "__main__":
    main()
