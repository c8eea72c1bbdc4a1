"""Precision-recall curves as PNG files (matplotlib, imported only when a plot is made).

The figures are drawn on a private ``Figure`` with the Agg canvas, so plotting never changes
matplotlib's global backend or state of the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from efficientdet.errors import ConfigError

if TYPE_CHECKING:
    from efficientdet.evaluation.coco import CocoResult


def _new_figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ConfigError(
            "saving precision-recall curves needs matplotlib: pip install matplotlib "
            "(or pip install 'efficientdet[plot]')"
        ) from err
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _mean_curve(precision: np.ndarray) -> np.ndarray:
    """``[R, K]`` precision (``-1`` = class without ground truth) -> ``[R]`` mean over the valid classes."""
    valid = precision > -1
    count = valid.sum(axis=1)
    total = np.where(valid, precision, 0.0).sum(axis=1)
    return np.divide(total, count, out=np.full(len(total), np.nan), where=count > 0)


def save_coco_pr_curves(
    result: CocoResult,
    path: str | Path,
    *,
    classes: Sequence[str] | None = None,
    area: str = "all",
) -> Path:
    """Save COCO precision-recall curves (maxDets 100) to a PNG at ``path`` (see :func:`draw_coco_pr_curves`)."""
    fig = draw_coco_pr_curves(result, classes=classes, area=area)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def draw_coco_pr_curves(result: CocoResult, *, classes: Sequence[str] | None = None, area: str = "all") -> Any:
    """COCO precision-recall curves (maxDets 100) on a ``matplotlib.figure.Figure``.

    The first panel shows the class-mean curve at IoU 0.50, 0.75 and averaged over 0.50:0.95; then one
    panel per class named in ``classes`` (IoU 0.50 and 0.50:0.95). Each legend sits below its panel, never
    over the curves. ``area``: ``all`` | ``small`` | ``medium`` | ``large``.
    """
    if area not in result.area_labels:
        raise ConfigError(f"unknown area range {area!r}; choose one of {', '.join(result.area_labels)}")
    a = result.area_labels.index(area)
    m = len(result.max_dets) - 1
    prec = result.precision[:, :, :, a, m]  # [T, R, K]
    rec = result.recall_thresholds
    t50 = int(np.flatnonzero(np.isclose(result.iou_thresholds, 0.5))[0])
    t75 = int(np.flatnonzero(np.isclose(result.iou_thresholds, 0.75))[0])
    names = list(classes or [])
    unknown = [n for n in names if n not in result.label_names]
    if unknown:
        raise ConfigError(
            f"unknown class names {unknown[:5]}; the evaluated classes are {list(result.label_names)[:10]}..."
        )

    panels = 1 + len(names)
    cols = min(panels, 4)
    rows = (panels + cols - 1) // cols
    fig = _new_figure(4.0 * cols, 4.4 * rows)
    ax = fig.add_subplot(rows, cols, 1)
    for t, label in ((t50, "IoU=0.50"), (t75, "IoU=0.75")):
        curve = _mean_curve(prec[t])
        ax.plot(rec, curve, label=f"{label}  AP={np.nanmean(curve):.3f}")
    mean_t = np.nanmean(np.stack([_mean_curve(prec[t]) for t in range(prec.shape[0])]), axis=0)
    ax.plot(rec, mean_t, label=f"IoU=0.50:0.95  AP={np.nanmean(mean_t):.3f}", linestyle="--")
    _style(ax, f"all classes (area={area})")
    for i, name in enumerate(names, start=2):
        k = result.label_names.index(name)
        ax = fig.add_subplot(rows, cols, i)
        curve = np.where(prec[t50, :, k] > -1, prec[t50, :, k], np.nan)
        ax.plot(rec, curve, label=f"IoU=0.50  AP={np.mean(curve):.3f}")
        mean_k = np.where(prec[:, :, k] > -1, prec[:, :, k], np.nan).mean(axis=0)
        ax.plot(rec, mean_k, label=f"IoU=0.50:0.95  AP={np.mean(mean_k):.3f}", linestyle="--")
        _style(ax, name)
    fig.tight_layout()
    return fig


def _style(ax: Any, title: str) -> None:
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=8, frameon=False)
