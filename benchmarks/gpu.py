"""The GPU goals of issue 8, next to effdet on the same device: end to end speed and training memory.

    python benchmarks/gpu.py --json gpu.json            # on a CUDA machine (about 10 minutes on one GPU)
    python benchmarks/gpu.py --device cpu --quick       # smoke test of the code paths on a CPU

- ``e2e``: D0 at 512 (``--model``), batches 1 and 8 of photos already decoded to ``uint8`` tensors on the
  device -> detections on the CPU (letterbox, normalise, network, post-processing, copy back). effdet:
  our letterbox + normalise (the same pixels) + ``DetBenchPredict``, fp32 and fp16 autocast. Ours:
  ``Predictor`` in fp32, bf16 and fp16 (``dtype=``), with ``torch.compile`` (``compile=True``) and with
  CUDA graphs (``compile="reduce-overhead"``, CUDA only). Our fp32 detections are checked against
  effdet's fp32 on the same pixels first; for the others the drift is reported. The table shows images/s
  next to the official V100 figures for D0 (batch 1: 10.2 ms, batch 8: 209 images/s end to end).
- ``memory``: one training step (forward, loss, backward) of D4 at 1024, batch 4 (``--train-model``,
  ``--train-batch``): peak allocated device memory and time, ours with and without gradient
  checkpointing and effdet's ``DetBenchTrain``. On a CPU only the time is reported.

fp32 means fp32: TF32 convolutions and matmuls (PyTorch's cuDNN default) are turned off for both libraries,
since they trade precision like bf16 does.

Timings are medians of interleaved rounds after a warm-up (compiled runners compile during the warm-up);
every runner ends with its detections on the CPU, which synchronises the device. Prints tables and one
JSON line (``--json PATH`` writes it too).
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare_effdet as ce  # noqa: E402  (the same weights, photos, checks and timing as the CPU comparison)
import torch  # noqa: E402

import efficientdet  # noqa: E402
from efficientdet.data.preprocess import preprocess, to_chw_tensor  # noqa: E402
from efficientdet.predict import Predictor  # noqa: E402
from efficientdet.training.losses import DetectionLoss  # noqa: E402

OFFICIAL_V100 = {"tf_efficientdet_d0": {1: 10.2, 8: 1000.0 * 8 / 209}}
"""google/automl's end-to-end D0 figures on a V100: ms per batch (batch 1: 10.2 ms; batch 8: 209 images/s)."""


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def effdet_runner(pair: dict[str, Any], device: torch.device, images: list[torch.Tensor],
                  half: bool) -> Callable[[], torch.Tensor]:
    """effdet's ``DetBenchPredict`` on our letterboxed, normalised pixels of ``images`` (rows on the CPU)."""
    bench = ce.effdet.DetBenchPredict(copy.deepcopy(pair["effdet"])).eval().to(device)
    cfg = pair["ours"].config.preprocess
    sizes = [(int(im.shape[-1]), int(im.shape[-2])) for im in images]

    @torch.inference_mode()
    def run() -> torch.Tensor:
        batch = preprocess(images, cfg, device)
        scales = torch.tensor([1.0 / m.scale for m in batch.metas], device=device)
        info = {"img_scale": scales, "img_size": torch.tensor(sizes, dtype=torch.float32, device=device)}
        with torch.autocast(device.type, dtype=torch.float16, enabled=half):
            return bench(batch.pixels, img_info=info).float().cpu()

    return run


def run_e2e(pair: dict[str, Any], device: torch.device, batches: list[int], repeats: int, compile_modes: list[str]
            ) -> None:
    name, model = pair["name"], pair["ours"]
    for b in batches:
        photos = ce.load_photos(b)
        images = [to_chw_tensor(p).to(device) for p in photos]  # uint8 [3, H, W], decoded, on the device
        runs: dict[str, Callable[[], Any]] = {
            "effdet": effdet_runner(pair, device, images, half=False),
            "effdet-fp16": effdet_runner(pair, device, images, half=True),
        }
        predictors = {
            "ours": Predictor(model, device=device, batch_size=b),
            "ours-bf16": Predictor(model, device=device, dtype="bfloat16", batch_size=b),
            "ours-fp16": Predictor(model, device=device, dtype="float16", batch_size=b),
        }
        for mode in compile_modes:  # "default" or "reduce-overhead" (CUDA graphs)
            label = "ours-compile" if mode == "default" else "ours-cuda-graphs"
            predictors[label] = Predictor(model, device=device, batch_size=b, compile=True if mode == "default" else mode)
        for label, predictor in predictors.items():
            runs[label] = lambda p=predictor, images=images: p(images)
        # correctness first (also the warm-up that compiles): ours in fp32 must match effdet in fp32
        reference = runs["effdet"]()
        for label in predictors:
            ce.check_e2e(name, label, runs[label](), reference, key=f"gpu-e2e/{name}/b{b}/{label}",
                         strict=label in ("ours", "ours-compile", "ours-cuda-graphs"))
        synchronize(device)
        ce.record("gpu-e2e", name, b, ce.timed(runs, repeats, b))


def print_official(name: str) -> None:
    official = OFFICIAL_V100.get(name)
    if not official:
        return
    print(f"\n  official V100 ({name}): " + ", ".join(f"batch {b}: {ms / b:.2f} ms/image ({1000 * b / ms:.0f} images/s)"
                                              for b, ms in official.items()))
    for row in ce.ROWS:
        if row["section"] == "gpu-e2e" and row["model"] == name and row["batch"] in official:
            row["vs_official_v100"] = (official[row["batch"]] / row["batch"]) / row["ms"]


def peak_step(step: Callable[[], None], device: torch.device) -> tuple[float, float | None]:
    """(seconds, peak allocated GiB or None off CUDA) of one call of ``step`` after a warm-up call."""
    step()
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    step()
    synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return seconds, peak


def run_memory(name: str, size: int, batch: int, device: torch.device) -> None:
    """Peak memory and time of one forward + loss + backward, ours with and without checkpointing, effdet."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ce.effdet.create_model(name, pretrained=False, pretrained_backbone=False, image_size=(size, size))
    ours = efficientdet.create_model(name, pretrained=False, image_size=size)
    efficientdet.load_weights(ours, ref.state_dict(), source=f"effdet {name}")
    targets = [t.to(device) for t in ce.random_targets(batch, (size, size), ours.config.num_classes)]
    x = torch.randn(batch, 3, size, size, device=device)
    loss_fn = DetectionLoss(ours.config.loss, ours.config.num_classes)
    rows: dict[str, tuple[float, float | None]] = {}
    for label, checkpointing in (("ours", False), ("ours-checkpointing", True)):
        model = copy.deepcopy(ours).train().to(device)
        model.set_grad_checkpointing(checkpointing)

        def step(model: torch.nn.Module = model) -> None:
            loss_fn(model(x), model.anchors((size, size), device), targets)["total"].backward()
            model.zero_grad(set_to_none=True)

        rows[label] = peak_step(step, device)
        del model
    bench = ce.effdet.DetBenchTrain(copy.deepcopy(ref)).train().to(device)
    effdet_target = ce.effdet_targets(targets)

    def effdet_step() -> None:
        bench(x, effdet_target)["loss"].backward()
        bench.zero_grad(set_to_none=True)

    rows["effdet"] = peak_step(effdet_step, device)
    print(f"\n== one training step (forward + loss + backward), {name} at {size}, batch {batch} ==")
    for label, (seconds, peak) in rows.items():
        memory = f"{peak:.2f} GiB peak allocated" if peak is not None else "memory: CUDA only"
        print(f"  {label:<20} {seconds * 1e3:9.1f} ms   {memory}")
        ce.ROWS.append({"section": "gpu-train-memory", "model": name, "batch": batch, "runner": label, "unit": "step",
                        "ms": seconds * 1e3, "per_s": 1.0 / seconds, "speedup_vs_effdet": None, "peak_gib": peak})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sections", nargs="+", choices=("e2e", "memory"), default=["e2e", "memory"])
    parser.add_argument("--model", default="tf_efficientdet_d0:512", help="NAME:SIZE for e2e")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 30; --quick 2)")
    parser.add_argument("--train-model", default="tf_efficientdet_d4:1024")
    parser.add_argument("--train-batch", type=int, default=4)
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile runners")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: Lite0 at 320 for e2e, D0 at 256 batch 2 for memory, batch 1, 2 rounds")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device here: run with --device cpu for a smoke test")
    repeats = args.repeats or (2 if args.quick else 30)
    e2e_name, e2e_size = ce.parse_model("tf_efficientdet_lite0:320" if args.quick else args.model)
    train_name, train_size = ce.parse_model("tf_efficientdet_d0:256" if args.quick else args.train_model)
    train_batch = 2 if args.quick else args.train_batch
    batches = [1] if args.quick else args.batches
    compile_modes = [] if args.no_compile else ["default"] + (["reduce-overhead"] if device.type == "cuda" else [])
    torch.manual_seed(0)
    torch.backends.cudnn.allow_tf32 = False  # fp32 runners compute in fp32 (see the module docstring)
    torch.backends.cuda.matmul.allow_tf32 = False
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else ce.cpu_model()
    meta = {"torch": torch.__version__, "effdet": importlib.metadata.version("effdet"),
            "efficientdet": efficientdet.__version__, "device": str(device), "device_name": gpu, "repeats": repeats}
    print(f"torch {meta['torch']}, effdet {meta['effdet']}, efficientdet {meta['efficientdet']}; {device} ({gpu}); "
          f"{repeats} interleaved repeats, medians")
    if "e2e" in args.sections:
        pair = ce.build_pair(e2e_name, e2e_size, max(8, max(batches)))
        print(f"\n-- e2e: {e2e_name} at {e2e_size}, uint8 photos on the device -> detections on the CPU")
        run_e2e(pair, device, batches, repeats, compile_modes)
        ce.print_table("gpu-e2e", f"end to end on {device}: decoded photo -> detections (per image)")
        print_official(e2e_name)
    if "memory" in args.sections:
        run_memory(train_name, train_size, train_batch, device)
    line = json.dumps({"meta": meta, "results": ce.ROWS, "checks": ce.CHECKS})
    print("\n" + line)
    if args.json:
        args.json.write_text(line + "\n")


if __name__ == "__main__":
    main()
