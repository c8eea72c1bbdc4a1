"""Deployment runtimes side by side: float32 vs int8 ONNX (onnxruntime) and float32 / float16 LiteRT next to
PyTorch (ours and effdet's).

One run, one machine, one thread setting: the model of ``--checkpoint`` (e.g. a Lite0 fine-tuned on the sample
data with ``efficientdet train``) is exported to ONNX (float32, hard NMS in the graph), quantised to int8
(:mod:`efficientdet.exporters.quantize`, calibrated on ``--calibration-images`` of ``--calibration-data``),
and four runtimes detect on the validation images of ``--data``:

- ``effdet``: effdet's ``DetBenchPredict`` with the same weights (mapped onto effdet's names), its own
  eval transform (PIL resize, zero padding for Lite models) -- skipped when effdet is not installed;
- ``pytorch``: this library's :class:`~efficientdet.predict.Predictor` (optimised PyTorch on the CPU);
- ``onnx-fp32`` / ``onnx-int8``: the exported files in onnxruntime (``Predictor.from_onnx``);
- ``tflite-fp32`` / ``tflite-fp16``: ``--format tflite`` files (float32 / float16 weights, batch 1, greedy NMS
  in the graph) in LiteRT's interpreter (XNNPACK, ``--threads``), the image letterboxed as ``Predictor`` does
  -- skipped when litert-torch / ai-edge-litert are not installed (``--no-tflite`` skips them too).

Reported per runtime: COCO AP / AP50 on ``--data`` (all its images), the AP of its detections against the
float32 ONNX detections above ``--agreement-score`` taken as ground truth ("agreement": how much of the float
model's output a runtime reproduces, independent of how well the model was trained), and the end-to-end time
per image (decoded uint8 image -> detections in its pixels) on ``--speed-images`` images, all runtimes
interleaved for ``--repeats`` rounds, medians.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/deploy.py --checkpoint runs/train/best.pth --threads 2
    python benchmarks/deploy.py --checkpoint lite0.safetensors --data val/annotations.json \\
        --calibration-data train/annotations.json --calibration-images 100
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from efficientdet.data.images import read_image  # noqa: E402
from efficientdet.data.parsers import load_dataset  # noqa: E402
from efficientdet.data.records import DetectionDataset, ImageRecord  # noqa: E402
from efficientdet.data.sample import ensure_sample_dataset  # noqa: E402
from efficientdet.evaluation import CocoEvaluator  # noqa: E402
from efficientdet.export import export_model  # noqa: E402
from efficientdet.exporters.quantize import quantize_onnx  # noqa: E402
from efficientdet.predict import Predictor, load_model  # noqa: E402
from efficientdet.structures import Detections  # noqa: E402

Runner = Callable[[np.ndarray], Detections]
"""A runtime: one decoded ``uint8 [H, W, 3]`` image -> its detections (original pixels, labels 0..K-1)."""


def effdet_runner(model: torch.nn.Module) -> Runner | None:
    """effdet's inference path with ``model``'s weights, or ``None`` when effdet is not installed."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import effdet
            from effdet.data import resolve_input_config
            from effdet.data.transforms import transforms_coco_eval
    except ImportError:
        return None
    from PIL import Image

    from efficientdet.weights.effdet import convert_effdet_state_dict

    cfg = model.config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = effdet.create_model(cfg.name, pretrained=False, pretrained_backbone=False, num_classes=cfg.num_classes,
                                  image_size=tuple(cfg.image_size))
    theirs = ref.state_dict()
    ours = model.state_dict()
    renamed = convert_effdet_state_dict(theirs, model)  # our key -> effdet's tensor (the same object)
    key_of = {id(tensor): key for key, tensor in theirs.items()}
    ref.load_state_dict({key_of[id(tensor)]: ours[key] for key, tensor in renamed.items()})
    bench = effdet.DetBenchPredict(ref).eval()
    inp = resolve_input_config({}, model_config=ref.config)
    transform = transforms_coco_eval(inp["input_size"][1:], interpolation="bilinear", use_prefetcher=True,
                                     fill_color=inp["fill_color"], mean=inp["mean"], std=inp["std"])
    mean = torch.tensor([255.0 * m for m in inp["mean"]]).view(1, 3, 1, 1)
    std = torch.tensor([255.0 * s for s in inp["std"]]).view(1, 3, 1, 1)

    @torch.inference_mode()
    def run(image: np.ndarray) -> Detections:
        pil = Image.fromarray(image)
        array, anno = transform(pil, {})
        x = (torch.from_numpy(array[None]).float() - mean) / std
        info = {"img_scale": torch.tensor([anno["img_scale"]], dtype=torch.float32),
                "img_size": torch.tensor([pil.size], dtype=torch.float32)}
        rows = bench(x, img_info=info)[0]
        rows = rows[rows[:, 4] > 0]
        return Detections(rows[:, :4].float(), rows[:, 4].float(), rows[:, 5].long() - 1)

    return run


def tflite_runner(path: Path, model: torch.nn.Module, threads: int) -> Runner:
    """A batch-1 ``.tflite`` detection graph in LiteRT's interpreter, letterboxed as ``Predictor`` does."""
    from ai_edge_litert.interpreter import Interpreter

    from efficientdet.data.preprocess import fill_values, letterbox

    interpreter = Interpreter(str(path), num_threads=threads)
    interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()
    outs = [o["index"] for o in interpreter.get_output_details()]  # boxes, scores, labels, num_detections
    pre = model.config.preprocess
    size, fill = tuple(pre.image_size), fill_values(pre.fill, pre.mean)

    def run(image: np.ndarray) -> Detections:
        canvas, scale = letterbox(torch.from_numpy(image).permute(2, 0, 1), size, fill, pre.interpolation,
                                  uint8=True)
        interpreter.set_tensor(inp["index"], canvas[None].numpy())
        interpreter.invoke()
        boxes, scores, labels, count = (interpreter.get_tensor(i)[0] for i in outs)
        n = int(count)
        h, w = image.shape[:2]
        box = torch.from_numpy(boxes[:n] / scale)
        box = torch.minimum(box.clamp(min=0), torch.tensor([w, h, w, h], dtype=box.dtype))
        return Detections(box, torch.from_numpy(scores[:n].copy()), torch.from_numpy(labels[:n].astype(np.int64)))

    return run


def predictor_runner(predictor: Predictor) -> Runner:
    return lambda image: predictor(image)[0]


def coco_ap(dataset: DetectionDataset, detections: list[Detections]) -> tuple[float, float]:
    """``(AP, AP50)`` of one detection list per record of ``dataset``."""
    evaluator = CocoEvaluator(dataset)
    evaluator.update(list(range(len(dataset))), detections)
    metrics = evaluator.compute()
    return metrics["AP"], metrics["AP50"]


def pseudo_ground_truth(dataset: DetectionDataset, detections: list[Detections], min_score: float) -> DetectionDataset:
    """``dataset`` with its boxes replaced by ``detections`` scoring above ``min_score``."""
    records = []
    for record, det in zip(dataset.records, detections, strict=True):
        keep = det.scores > min_score
        records.append(ImageRecord(record.path, record.image_id, det.boxes[keep].numpy(), det.labels[keep].numpy()))
    return DetectionDataset(records, dataset.label_names, dataset.category_ids)


def image_folder(folder: str, model: torch.nn.Module) -> DetectionDataset:
    """The images of ``folder`` as a dataset without boxes (for the agreement numbers only)."""
    from efficientdet.data.images import IMAGE_EXTENSIONS

    files = sorted(f for f in Path(folder).iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
    cfg = model.config
    names = cfg.label_names or tuple(str(i) for i in range(cfg.num_classes))
    return DetectionDataset([ImageRecord(f, i, np.zeros((0, 4)), np.zeros(0)) for i, f in enumerate(files)], names,
                            cfg.category_ids or ())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="weights with their config (e.g. a training run's best.pth)")
    parser.add_argument("--data", help="validation set (default: the sample data's val split); a folder of images "
                                       "without annotations gives the agreement numbers only")
    parser.add_argument("--calibration-data", help="int8 calibration images (default: the sample data's train split)")
    parser.add_argument("--calibration-images", type=int, default=100)
    parser.add_argument("--speed-images", type=int, default=8, help="images timed per round")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op and torch threads")
    parser.add_argument("--agreement-score", type=float, default=0.3,
                        help="float32 ONNX detections above this score are the agreement ground truth")
    parser.add_argument("--out", default=None, help="folder for the exported files (default: a temporary one)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--no-tflite", action="store_true", help="skip the LiteRT rows (their export takes minutes)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.data is None or args.calibration_data is None:
        splits = ensure_sample_dataset(Path(tempfile.gettempdir()) / "efficientdet-sample")
        args.data = args.data or str(splits["val"])
        args.calibration_data = args.calibration_data or str(splits["train"])
    model = load_model(None, args.checkpoint)
    annotated = not (Path(args.data).is_dir() and any(Path(args.data).glob("*.[jp][pn]g")))
    dataset = load_dataset(args.data) if annotated else image_folder(args.data, model)
    images = [np.array(read_image(r.path)) for r in dataset.records]
    if model.config.num_classes != dataset.num_classes:
        raise SystemExit(f"{args.checkpoint} has {model.config.num_classes} classes, {args.data} has "
                         f"{dataset.num_classes}: give the validation set the model was trained for")
    folder = Path(args.out or tempfile.mkdtemp(prefix="efficientdet-deploy-"))
    t0 = time.perf_counter()
    fp32 = export_model(model, folder / "fp32.onnx", nms="hard")
    t1 = time.perf_counter()
    int8 = quantize_onnx(fp32, folder / "int8.onnx", args.calibration_data, args.calibration_images)
    t2 = time.perf_counter()
    info = {"export_s": t1 - t0, "quantize_s": t2 - t1, "fp32_mib": fp32.stat().st_size / 2**20,
            "int8_mib": int8.stat().st_size / 2**20}
    tflite: dict[str, Path] = {}
    try:
        import ai_edge_litert  # noqa: F401
        import litert_torch  # noqa: F401
    except ImportError:
        args.no_tflite = True
        print("LiteRT rows skipped: pip install litert-torch ai-edge-litert (efficientdet[tflite])")
    if not args.no_tflite:
        for name, half in (("tflite-fp32", False), ("tflite-fp16", True)):
            start = time.perf_counter()
            tflite[name] = export_model(model, folder / f"{name}.tflite", "tflite", nms="hard", half=half)
            info[f"{name}_export_s"] = time.perf_counter() - start
            info[f"{name}_mib"] = tflite[name].stat().st_size / 2**20
    print(f"{model.config.name}, {model.config.num_classes} classes, input {tuple(model.config.image_size)}; "
          f"{len(images)} validation images; threads {args.threads}; torch {torch.__version__}")
    print(f"export {info['export_s']:.0f} s ({info['fp32_mib']:.1f} MiB), int8 quantisation on "
          f"{args.calibration_images} images {info['quantize_s']:.0f} s ({info['int8_mib']:.1f} MiB)")

    runners: dict[str, Runner] = {}
    effdet = effdet_runner(model)
    if effdet is not None:
        runners["effdet"] = effdet
    runners["pytorch"] = predictor_runner(Predictor(model, device="cpu", nms="hard"))
    runners["onnx-fp32"] = predictor_runner(Predictor.from_onnx(fp32, device="cpu", threads=args.threads))
    runners["onnx-int8"] = predictor_runner(Predictor.from_onnx(int8, device="cpu", threads=args.threads))
    for name, path in tflite.items():
        runners[name] = tflite_runner(path, model, args.threads)
        print(f"{name}: export {info[f'{name}_export_s']:.0f} s ({info[f'{name}_mib']:.1f} MiB)")

    outputs = {name: [run(image) for image in images] for name, run in runners.items()}
    reference = pseudo_ground_truth(dataset, outputs["onnx-fp32"], args.agreement_score)
    results: dict[str, dict[str, float]] = {}
    for name, dets in outputs.items():
        ap, ap50 = coco_ap(dataset, dets) if annotated else (float("nan"), float("nan"))
        agree, agree50 = coco_ap(reference, dets)
        results[name] = {"AP": ap, "AP50": ap50, "agreement_AP": agree, "agreement_AP50": agree50}

    timed = images[: args.speed_images]
    times: dict[str, list[float]] = {name: [] for name in runners}
    for run in runners.values():
        run(timed[0])  # warm-up
    for _ in range(args.repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            for image in timed:
                run(image)
            times[name].append((time.perf_counter() - start) / len(timed))
    base = statistics.median(times["onnx-fp32"])
    print(f"\n{'runtime':<11} {'AP':>6} {'AP50':>6} {'agree AP':>9} {'agree AP50':>10} {'ms/image':>9} "
          f"{'vs onnx-fp32':>12}")
    for name, r in results.items():
        ms = statistics.median(times[name]) * 1000
        r["ms_per_image"] = ms
        r["speedup_vs_onnx_fp32"] = base * 1000 / ms
        print(f"{name:<11} {100 * r['AP']:6.2f} {100 * r['AP50']:6.2f} {100 * r['agreement_AP']:9.2f} "
              f"{100 * r['agreement_AP50']:10.2f} {ms:9.1f} {r['speedup_vs_onnx_fp32']:11.2f}x")
    print(f"(AP: COCO AP x 100 on {args.data}; agreement: AP against onnx-fp32's detections above "
          f"{args.agreement_score}; time: median of {args.repeats} interleaved rounds over {len(timed)} images)")
    line = {"model": model.config.name, "checkpoint": args.checkpoint, "data": args.data, "threads": args.threads,
            **info, "results": results}
    print(json.dumps(line))
    if args.json:
        Path(args.json).write_text(json.dumps(line, indent=1))


if __name__ == "__main__":
    main()
