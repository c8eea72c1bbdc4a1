"""The demo: the whole product on the built-in sample dataset, on a CPU, in minutes.

1. generate the sample dataset (``data/``);
2. fine-tune ``tf_efficientdet_lite0`` from the real ImageNet Lite0 backbone (``train/``);
3. evaluate: COCO mAP and a per-class AP table (``eval/``);
4. predict on held-out images: annotated PNGs and a COCO-results json with the validation set's image ids
   (``predictions/results.json``; ``COCO(data/val/annotations.json).loadRes`` reads it);
5. export to ONNX with NMS inside and check that onnxruntime gives the same detections (``model.onnx``).

Running it again reuses what is already there: a finished training run is not repeated, an interrupted
one resumes exactly.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from efficientdet.config import TrainConfig


@dataclass(frozen=True)
class DemoBudget:
    """How much work the demo does. ``full`` is the README's demo; ``quick`` is for tests."""

    train_images: int
    val_images: int
    image_size: int
    epochs: int
    predict_images: int
    data_size: int


BUDGETS = {
    "full": DemoBudget(train_images=400, val_images=80, image_size=256, epochs=6, predict_images=8, data_size=384),
    "quick": DemoBudget(train_images=96, val_images=24, image_size=192, epochs=6, predict_images=3, data_size=256),
}

MODEL = "tf_efficientdet_lite0"


def _same_settings(cfg: TrainConfig, saved: dict) -> bool:
    """Whether a checkpoint's settings are ``cfg``'s: the saved ones have the recipe's values filled in where
    ``cfg`` left them unset (``engine/recipe.py``), so those are compared only when ``cfg`` sets them."""
    from efficientdet.config import flat_train_settings
    from efficientdet.engine.recipe import RESOLVED_FIELDS

    wanted, saved = flat_train_settings(cfg.to_dict()), flat_train_settings(saved)
    return all(saved.get(k) == v for k, v in wanted.items() if not (k in RESOLVED_FIELDS and v is None))


def demo_train_config(data: dict[str, Path], out: Path, budget: DemoBudget) -> TrainConfig:
    """The fine-tuning recipe for a few CPU minutes (see the README's fine-tuning recipes).

    The backbone keeps its ImageNet weights and statistics (frozen), the pyramid and heads learn with a high
    rate and fast BatchNorm statistics (momentum 0.1 instead of the official 0.01, which suits 300 epochs).
    """
    return TrainConfig(
        model=MODEL,
        pretrained_backbone=True,
        image_size=(budget.image_size, budget.image_size),
        train_data=str(data["train"]),
        val_data=str(data["val"]),
        batch_size=8,
        workers=1,
        epochs=budget.epochs,
        lr=0.12,
        warmup_epochs=0.3,
        freeze=("backbone",),
        scale_min=0.5,
        scale_max=1.5,
        model_overrides=(("fpn.norm.momentum", 0.1),),
        output=str(out),
        seed=0,
    )


def compare_onnx(model, onnx_path: Path, images: list) -> tuple[bool, float, float]:
    """Run the exported file (onnxruntime) and the same graph in PyTorch on one letterboxed ``uint8`` batch.

    Returns (same detections, max box difference in pixels, max score difference).
    """
    import torch

    from efficientdet.data.preprocess import to_chw_tensor
    from efficientdet.export import DetectionGraph, export_config
    from efficientdet.predict import Predictor

    backend = Predictor.from_onnx(onnx_path, device="cpu").backend
    pixels, _ = backend.letterbox_uint8([to_chw_tensor(i) for i in images])
    got = backend.run(pixels)
    graph = DetectionGraph(model, model.config.image_size, export_config(model.config)).eval()
    with torch.no_grad():
        want = [t.numpy() for t in graph(torch.from_numpy(pixels))]
    same, worst_box, worst_score = True, 0.0, 0.0
    for i in range(len(images)):
        n = int(want[3][i])
        same &= int(got[3][i]) == n and bool((got[2][i, :n] == want[2][i, :n]).all())
        if same and n:
            worst_box = max(worst_box, float(abs(got[0][i, :n] - want[0][i, :n]).max()))
            worst_score = max(worst_score, float(abs(got[1][i, :n] - want[1][i, :n]).max()))
    return same and worst_box < 1e-2 and worst_score < 1e-4, worst_box, worst_score


def cli_command() -> str:
    """How to call the command line from the current folder: ``efficientdet`` when that name on ``PATH`` is this
    environment's entry point (an activated venv), else the entry point's path (``.venv/bin/efficientdet``), else
    ``python -m efficientdet`` with this interpreter."""
    import os
    import shutil
    import sys

    entry = Path(sys.executable).with_name("efficientdet")  # not resolved: a venv's python is a symlink
    on_path = shutil.which("efficientdet")
    if on_path is not None and entry.is_file() and Path(on_path).resolve() == entry.resolve():
        return "efficientdet"
    if entry.is_file():
        relative = os.path.relpath(entry)
        return relative if not relative.startswith("..") else str(entry)
    return f"{sys.executable} -m efficientdet"


def _step(number: int, title: str) -> float:
    print(f"\n[{number}/5] {title}", flush=True)
    return time.perf_counter()


def _done(start: float, note: str = "") -> None:
    print(f"      done in {time.perf_counter() - start:.0f}s{' - ' + note if note else ''}", flush=True)


def run_demo(out: str | Path = "demo_output", budget: str = "full") -> dict[str, Path]:
    """Run the five steps into ``out``; returns the paths of the outputs."""
    import torch

    from efficientdet.data.images import read_image
    from efficientdet.data.sample import ensure_sample_dataset
    from efficientdet.engine.checkpoint import load_checkpoint
    from efficientdet.engine.evaluate import validate
    from efficientdet.engine.trainer import train
    from efficientdet.errors import ConfigError
    from efficientdet.export import export_model
    from efficientdet.factory import create_model
    from efficientdet.predict import Predictor
    from efficientdet.predict_files import ImageIds
    from efficientdet.visualize import draw_detections

    if budget not in BUDGETS:
        raise ConfigError(f"unknown demo budget {budget!r}; choose {', '.join(BUDGETS)}")
    b = BUDGETS[budget]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    started = time.perf_counter()
    outputs: dict[str, Path] = {}

    t = _step(1, f"sample dataset: {b.train_images} training and {b.val_images} validation images")
    data = ensure_sample_dataset(out / "data", train=b.train_images, val=b.val_images, size=b.data_size)
    outputs["dataset"] = out / "data"
    _done(t, str(out / "data"))

    t = _step(2, f"fine-tune {MODEL} from the ImageNet Lite0 backbone ({b.epochs} epochs at {b.image_size}px)")
    cfg = demo_train_config(data, out / "train", b)
    last = out / "train" / "last.pth"
    state = load_checkpoint(last) if last.is_file() else None
    if state is not None and state["epoch"] >= cfg.epochs and _same_settings(cfg, state["train_config"]):
        print(f"      reusing the finished run in {out / 'train'}")
    else:
        resume = last if state is not None and state["train_config"] == cfg.to_dict() else None
        train(cfg, resume=resume)
    best = out / "train" / ("best.pth" if (out / "train" / "best.pth").is_file() else "last.pth")
    outputs["checkpoint"] = best
    _done(t, str(best))

    t = _step(3, "evaluate on the validation images (COCO metrics, EMA weights)")
    report = validate(data["val"], checkpoint=best, output=out / "eval", batch_size=8, workers=0, progress=False)
    m = report.metrics
    print(f"      COCO mAP@[.5:.95] = {m['AP']:.4f}   mAP@.5 = {m['AP50']:.4f}   mAP@.75 = {m['AP75']:.4f}")
    print("\n".join("      " + line for line in report.per_class_table.splitlines()))
    outputs.update({f"eval_{k}": v for k, v in report.files.items()})
    _done(t, str(out / "eval"))

    t = _step(4, f"predict on {b.predict_images} held-out images")
    model = create_model(best).eval()
    predictor = Predictor(model, device="cpu", score_threshold=0.3)
    val_records = sorted((out / "data" / "val" / "images").iterdir())[: b.predict_images]
    pred_dir = out / "predictions"
    pred_dir.mkdir(exist_ok=True)
    ids = ImageIds(data["val"])
    category_ids = list(model.config.category_ids) if model.config.category_ids is not None else None
    rows, counts_by_image = [], []
    images = [read_image(p) for p in val_records]
    detections = predictor(images)
    for path, image, det in zip(val_records, images, detections):
        draw_detections(image, det).save(pred_dir / f"{path.stem}.png")
        rows += det.to_coco(ids.lookup(path), category_ids)
        counts_by_image.append(f"{path.name}: {len(det)}")
    (pred_dir / "results.json").write_text(json.dumps(rows))
    outputs["predictions"] = pred_dir
    counts = ", ".join(counts_by_image[:4])
    _done(t, f"{pred_dir} ({counts}, ...)")

    t = _step(5, "export to ONNX (NMS inside) and check onnxruntime against PyTorch")
    onnx_path = export_model(model, out / "model.onnx", "onnx", batch="dynamic")
    same, worst_box, worst_score = compare_onnx(model, onnx_path, images)
    verdict = "same detections" if same else "DIFFERENT detections"
    print(f"      onnxruntime vs PyTorch on the same input: {verdict} "
          f"(max box difference {worst_box:.1e} px, score {worst_score:.1e})")
    if not same:
        raise RuntimeError("onnxruntime and PyTorch disagree on the exported model; please report this")
    outputs["onnx"] = onnx_path
    _done(t, str(onnx_path))

    total = time.perf_counter() - started
    print(f"\nDemo finished in {total / 60:.1f} min. Outputs:")
    width = max(len(k) for k in outputs)
    for key, path in outputs.items():
        print(f"  {key:<{width}}  {path}")
    cli = cli_command()
    entry_point = cli != "efficientdet" and cli.endswith("efficientdet")  # a path into an environment's bin/
    activate = f" (or `source {Path(cli).parent}/activate` once, then type `efficientdet ...`)" if entry_point else ""
    print(
        f"\nNext, try{activate}:\n"
        f"  {cli} predict {data['val'].parent / 'images'} --annotations {data['val']} --checkpoint {best} "
        "--output my_predictions\n"
        f"  {cli} validate {data['val']} --checkpoint {best} --mode global --nms soft\n"
        f"  {cli} data check {data['train']} --model {MODEL}\n"
        f"  {cli} train --data {data['train']} --val-data {data['val']} --epochs 20 --output runs/longer\n"
        f"  {cli} benchmark --checkpoint {best}\n"
        f"  {cli} models 'tf_efficientdet_*'"
    )
    (out / "demo_summary.json").write_text(json.dumps({"minutes": total / 60, "metrics": m,
                                                       "outputs": {k: str(v) for k, v in outputs.items()}}, indent=1))
    return outputs
