"""Fine-tuning from the real ImageNet Lite0 backbone vs from random init, same recipe: one plot.

    python scripts/learning_curves.py --epochs 8 --threads 1

Writes docs/learning_curves.png and docs/learning_curves.json (per-epoch COCO mAP of both runs on the
built-in sample dataset, 400 training / 80 validation images, Lite0 at 256 px, the whole network trained).
A run that was interrupted resumes from its ``last.pth`` (training continues exactly where it stopped).
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
    args = parser.parse_args()

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
    (docs / "learning_curves.json").write_text(json.dumps({"threads": args.threads, "runs": runs}, indent=1))

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
    fig.savefig(docs / "learning_curves.png", dpi=100)
    print(json.dumps({k: [round(e["AP"], 4) for e in v["epochs"]] for k, v in runs.items()}))


if __name__ == "__main__":
    main()
