"""What a user watches: a CSV log, optional TensorBoard scalars, and loss/mAP curves as a PNG."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any


class RunLogger:
    """Appends one row per epoch to ``metrics.csv`` (and TensorBoard scalars when enabled).

    Columns are fixed by the first row; later rows may add keys only at the end of a run (they are
    written as they come, missing values left empty).
    """

    def __init__(self, out_dir: str | Path, *, tensorboard: bool = False, enabled: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.enabled = enabled
        self.csv_path = self.out_dir / "metrics.csv"
        self.writer: Any = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:  # pragma: no cover - depends on the extra
                raise ImportError("tensorboard logging needs the 'tensorboard' package: pip install tensorboard") from err
            self.writer = SummaryWriter(str(self.out_dir / "tensorboard"))

    def log_epoch(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        exists = self.csv_path.is_file()
        fields = list(row)
        if exists:
            with open(self.csv_path, newline="") as f:
                header = next(csv.reader(f), [])
            fields = header + [k for k in row if k not in header]
            if fields != header:  # new columns: rewrite with the wider header
                rows = self.read()
                with open(self.csv_path, "w", newline="") as f:
                    w = csv.DictWriter(f, fieldnames=fields)
                    w.writeheader()
                    w.writerows(rows)
        with open(self.csv_path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            if not exists:
                w.writeheader()
            w.writerow(row)
        if self.writer is not None:
            step = int(row.get("epoch", 0))
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "epoch" and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)
            self.writer.flush()

    def read(self) -> list[dict[str, str]]:
        if not self.csv_path.is_file():
            return []
        with open(self.csv_path, newline="") as f:
            return list(csv.DictReader(f))

    def truncate_after(self, epoch: int) -> None:
        """Drop rows of epochs after ``epoch`` (a resumed run rewrites them)."""
        if not self.enabled or not self.csv_path.is_file():
            return
        rows = [r for r in self.read() if int(float(r.get("epoch", 0))) <= epoch]
        fields = list(rows[0]) if rows else []
        with open(self.csv_path, "w", newline="") as f:
            if fields:
                w = csv.DictWriter(f, fieldnames=fields)
                w.writeheader()
                w.writerows(rows)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def plot_curves(csv_path: str | Path, out_png: str | Path, *, extra: dict[str, list[tuple[float, float]]] | None = None) -> Path | None:
    """Loss and mAP curves from a ``metrics.csv`` into one PNG (two panels). ``None`` if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None

    def series(key: str) -> tuple[list[float], list[float]]:
        xs, ys = [], []
        for r in rows:
            if r.get(key) not in (None, ""):
                xs.append(float(r["epoch"]))
                ys.append(float(r[key]))
        return xs, ys

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("train_loss", "train_cls_loss", "train_box_loss"):
        xs, ys = series(key)
        if xs:
            ax1.plot(xs, ys, marker="o", label=key.replace("train_", ""))
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("training loss")
    ax1.legend()
    ax1.grid(alpha=0.3)
    for key in ("AP", "AP50"):
        xs, ys = series(key)
        if xs:
            ax2.plot(xs, ys, marker="o", label=f"val {key}")
    for label, points in (extra or {}).items():
        ax2.plot([p[0] for p in points], [p[1] for p in points], marker="s", label=label)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("COCO mAP")
    ax2.legend()
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
