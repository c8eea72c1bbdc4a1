"""What a user watches: a CSV log, optional TensorBoard events, and training curves as a PNG.

``metrics.csv``: one row per epoch. Every column is reproducible (a resumed run writes the same bytes as an
uninterrupted one) except the wall-time columns :data:`WALL_TIME_COLUMNS`, which come last in each row.

TensorBoard (``tensorboard=True``, events in ``<output>/tensorboard``), on the optimizer-step axis:
``train/loss``, ``train/cls_loss``, ``train/box_loss`` and ``lr`` every ``log_every_steps`` steps; per epoch
``epoch/...`` (the means of ``metrics.csv``), ``data/...`` (skipped images, dropped boxes), ``val/mAP``,
``val/AP50``, ... , the per-class AP table as text (``val/per_class_AP``) and a few validation images with
their detections drawn (``val/predictions``).

The console: the run's lines go through ``logging`` (logger :data:`TRAIN_LOG`); :func:`console_output` shows
them on stdout, exactly as ``print`` did, unless that logger has handlers of its own.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

TRAIN_LOG = "efficientdet.train"
"""The logger of a run's own lines (its start, one line per epoch): INFO messages, shown on stdout by
:func:`console_output` while a run trains. Give it a handler of your own (and level INFO) to send them elsewhere."""

WALL_TIME_COLUMNS = ("images_per_s", "epoch_time_s")
"""Columns of ``metrics.csv`` that measure time and so differ between runs; always the last columns."""

_DATA_COLUMNS = ("skipped_images", "dropped_boxes", "nonfinite_steps")


def tensorboard_tag(key: str) -> str:
    """The grouped TensorBoard tag of a ``metrics.csv`` column (``AP`` or ``mAP`` -> ``val/mAP``, ``AP50`` ->
    ``val/AP50``)."""
    if key in ("AP", "mAP"):  # COCO's mAP is its AP; VOC's and Open Images' are mAP
        return "val/mAP"
    if key.startswith(("AP", "AR")):
        return f"val/{key}"
    if key in _DATA_COLUMNS:
        return f"data/{key}"
    return f"epoch/{key}"  # the per-step learning rate is ``lr``; the epoch's last one ``epoch/lr``


class _Stdout(logging.StreamHandler):
    """A handler that writes to ``sys.stdout`` as it is when a record comes (a redirect, pytest's capture)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler.__init__ assigns it: always sys.stdout
        pass


@contextlib.contextmanager
def console_output() -> Iterator[None]:
    """While inside, INFO messages of the :data:`TRAIN_LOG` logger go to stdout as plain lines (not also to the
    root logger's handlers, so the command line shows each once); a logger the caller gave handlers is left
    alone."""
    logger = logging.getLogger(TRAIN_LOG)
    if logger.handlers:
        yield
        return
    handler = _Stdout()
    handler.setFormatter(logging.Formatter("%(message)s"))
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


class RunLogger:
    """Appends one row per epoch to ``metrics.csv``; writes TensorBoard events when ``tensorboard``.

    Columns are fixed by the first row; later rows may add keys (the file is rewritten with the wider header,
    missing values left empty). ``purge_step``: the first step a resumed run does again; TensorBoard drops the
    events the interrupted run wrote from that step on, so the resumed curves have no duplicates.
    """

    def __init__(self, out_dir: str | Path, *, tensorboard: bool = False, enabled: bool = True,
                 purge_step: int | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.enabled = enabled
        self.csv_path = self.out_dir / "metrics.csv"
        self.writer: Any = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:  # pragma: no cover - depends on the extra
                from efficientdet.errors import ConfigError

                raise ConfigError("tensorboard=true needs the 'tensorboard' package: pip install tensorboard") from err
            self.writer = SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=purge_step)

    def log_epoch(self, row: dict[str, Any], step: int | None = None) -> None:
        """Append ``row`` to ``metrics.csv``; TensorBoard scalars at optimizer ``step`` (default: the epoch)."""
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
            at = int(row.get("epoch", 0)) if step is None else step
            self.log_scalars({tensorboard_tag(k): v for k, v in row.items() if k != "epoch"}, at)

    def log_scalars(self, scalars: dict[str, Any], step: int) -> None:
        """TensorBoard scalars ``{tag: value}`` at ``step`` (non-numbers and non-finite values are left out)."""
        if self.writer is None:
            return
        for tag, value in scalars.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def log_text(self, tag: str, text: str, step: int) -> None:
        """A text panel (e.g. the per-class AP table, shown as a fixed-width block)."""
        if self.writer is not None and text:
            body = "\n".join("    " + line for line in text.splitlines())  # markdown code block: keeps the columns
            self.writer.add_text(tag, body, step)
            self.writer.flush()

    def log_images(self, tag: str, images: Sequence[Any], step: int) -> None:
        """PIL images (e.g. validation images with detections drawn) as ``tag/0``, ``tag/1``, ..."""
        if self.writer is None:
            return
        import numpy as np

        for i, image in enumerate(images):
            self.writer.add_image(f"{tag}/{i}", np.asarray(image.convert("RGB")), step, dataformats="HWC")
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


# The panels of curves.png: (title, [(column, label)]); each quantity on its own axis, so a small box loss is
# not flattened against the total loss.
CURVE_PANELS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("training loss (total)", (("train_loss", "total"),)),
    ("classification loss (focal)", (("train_cls_loss", "cls"),)),
    ("box regression loss", (("train_box_loss", "box"),)),
    ("validation mAP", (("AP", "AP"), ("AP50", "AP50"), ("mAP", "mAP"))),  # COCO's AP / AP50, or another metric's mAP
)


def plot_curves(csv_path: str | Path, out_png: str | Path, *,
                extra: dict[str, list[tuple[float, float]]] | None = None) -> Path | None:
    """Training curves from a ``metrics.csv``: one panel per quantity (:data:`CURVE_PANELS`), every epoch
    marked, so a one-epoch run shows its points. ``extra``: more ``(epoch, mAP)`` series for the mAP panel.

    Draws on a private ``matplotlib.figure.Figure`` with the Agg canvas: the caller's matplotlib backend
    and pyplot state are untouched. Returns ``None`` when matplotlib is missing or there is no log yet.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return None
    if not Path(csv_path).is_file():
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

    fig = Figure(figsize=(13, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(CURVE_PANELS))
    epochs = [float(r["epoch"]) for r in rows]
    for ax, (title, keys) in zip(axes, CURVE_PANELS):
        drawn = False
        for key, label in keys:
            xs, ys = series(key)
            if xs:
                ax.plot(xs, ys, marker="o", markersize=5, label=label)
                if len(xs) == 1:  # one epoch: write the value, a lone marker says little
                    ax.annotate(f"{ys[0]:.4g}", (xs[0], ys[0]), textcoords="offset points", xytext=(6, 4), fontsize=8)
                drawn = True
        if title.startswith("validation"):
            for label, points in (extra or {}).items():
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="s", label=label)
                drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "not measured\n(no validation set)" if title.startswith("validation") else "no data",
                    ha="center", va="center", transform=ax.transAxes, color="gray")
        elif len(keys) > 1 or extra:
            ax.legend(fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)  # a single epoch is a visible point, not an edge
        if max(epochs) - min(epochs) <= 12:
            ax.set_xticks(range(int(min(epochs)), int(max(epochs)) + 1))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png)
    return out_png
