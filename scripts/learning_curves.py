"""Learning curves for the README: effdet vs ours per step, and ImageNet backbone vs random init.

    python scripts/learning_curves.py --benchmark runs/learning/sample.json runs/learning/labelme.json

plots the curves of ``benchmarks/learning.py`` (validation COCO mAP at each evaluation point, one panel
per dataset, effdet's plain loop and our defaults side by side) into docs/learning_curves.png and copies
the numbers to docs/learning_curves.json. Nothing is trained in this mode.

    python scripts/learning_curves.py --epochs 8 --threads 1

trains twice on the built-in sample dataset (400 training / 80 validation images, Lite0 at 256 px, the
whole network trained), from the real ImageNet Lite0 backbone and from random init, and writes
docs/backbone_curves.png and docs/backbone_curves.json. A run that was interrupted resumes from its
``last.pth`` (training continues exactly where it stopped).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/learning_curves")
    parser.add_argument("--docs", default="docs")
    parser.add_argument("--benchmark", nargs="+", help="JSON files of benchmarks/learning.py to plot (no training)")
    args = parser.parse_args()
    if args.benchmark:
        plot_benchmark([Path(p) for p in args.benchmark], Path(args.docs))
        return

    import torch

    from efficientdet.config import TrainConfig
    from efficientdet.data.sample import ensure_sample_dataset
    from efficientdet.engine.trainer import train

    torch.set_num_threads(args.threads)
    data = ensure_sample_dataset(Path(args.out) / "data")
    runs = {}
    for label, pretrained in (("ImageNet Lite0 backbone", True), ("random init", False)):
        cfg = TrainConfig(model="tf_efficientdet_lite0", pretrained_backbone=pretrained, image_size=(256, 256),
                          train_data=str(data["train"]), val_data=str(data["val"]), batch_size=8, workers=1,
                          epochs=args.epochs, lr=0.08, warmup_epochs=0.3, scale_min=0.5, scale_max=1.5,
                          model_overrides={"fpn.norm.momentum": 0.1, "backbone.drop_path_rate": 0.0},
                          output=str(Path(args.out) / ("pretrained" if pretrained else "random")), seed=0,
                          progress=False)
        last = Path(cfg.output) / "last.pth"
        start = time.perf_counter()
        result = train(cfg, resume=last if last.is_file() else None)
        runs[label] = {"seconds_this_call": time.perf_counter() - start,
                       "epochs": [{"epoch": h["epoch"], "AP": h["AP"], "AP50": h["AP50"], "loss": h["train_loss"]}
                                  for h in result.history]}
    docs = Path(args.docs)
    docs.mkdir(exist_ok=True)
    (docs / "backbone_curves.json").write_text(json.dumps({"threads": args.threads, "runs": runs}, indent=1))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for label, run in runs.items():
        epochs = [e["epoch"] for e in run["epochs"]]
        ax1.plot(epochs, [e["AP"] for e in run["epochs"]], marker="o", label=f"{label} (AP)")
        ax1.plot(epochs, [e["AP50"] for e in run["epochs"]], marker="s", linestyle="--", label=f"{label} (AP50)")
        ax2.plot(epochs, [e["loss"] for e in run["epochs"]], marker="o", label=label)
    ax1.set(xlabel="epoch", ylabel="validation COCO mAP", title="tf_efficientdet_lite0 on the sample dataset")
    ax2.set(xlabel="epoch", ylabel="training loss")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(docs / "backbone_curves.png", dpi=100)
    print(json.dumps({k: [round(e["AP"], 4) for e in v["epochs"]] for k, v in runs.items()}))


RUN_STYLES = {"effdet": ("effdet 0.4.1, plain loop (lr 0.02 / 8 images, one-cycle)", "tab:red", "o", "-"),
              "ours": ("efficientdet, defaults (recipe auto -> finetune)", "tab:blue", "s", "-"),
              "ours-official": ("efficientdet, recipe=official", "tab:gray", "^", ":"),
              "effdet-recipe": ("effdet's model + our finetune recipe", "tab:orange", "D", "--")}


def plot_benchmark(files: list[Path], docs: Path) -> None:
    """One panel per dataset of benchmarks/learning.py's JSON: validation mAP against optimizer steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets: dict[str, dict] = {}
    args = {}
    for path in files:
        report = json.loads(path.read_text())
        args = report["args"]
        datasets.update(report["datasets"])
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for ax, (name, data) in zip(axes[0], datasets.items(), strict=True):
        for run, (label, colour, marker, style) in RUN_STYLES.items():
            if run in data["runs"]:
                curve = data["runs"][run]["curve"]
                ax.plot([p["step"] for p in curve], [p["AP"] for p in curve], color=colour,
                        marker=marker, linestyle=style, label=label)
        ax.set(xlabel=f"optimizer steps (batch {args.get('batch')})", ylabel="validation COCO mAP",
               title=f"{name} ({data['train_images']} train / {data['val_images']} val images)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"tf_efficientdet_lite0 from the ImageNet backbone, {args.get('image_size')} px, same batches "
                 "and seeds (benchmarks/learning.py)", fontsize=10)
    fig.tight_layout()
    docs.mkdir(exist_ok=True)
    fig.savefig(docs / "learning_curves.png", dpi=100)
    slim = {name: {run: [{k: round(v, 4) if isinstance(v, float) else v for k, v in p.items()} for p in r["curve"]]
                   for run, r in data["runs"].items()} for name, data in datasets.items()}
    (docs / "learning_curves.json").write_text(json.dumps({"args": args, "mAP_by_step": slim}, indent=1))
    print(json.dumps({name: {run: [p["AP"] for p in c] for run, c in runs.items()} for name, runs in slim.items()}))


if __name__ == "__main__":
    main()
