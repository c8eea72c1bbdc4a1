"""Training checkpoints that lose nothing: written atomically, loaded safely, resumed exactly.

A checkpoint is a ``torch.save`` file of plain containers and tensors only, so it loads with
``torch.load(weights_only=True)``. Layout::

    {"format": "efficientdet.checkpoint", "version": 1,
     "config": DetectorConfig.to_dict(), "train_config": TrainConfig.to_dict(),
     "model": state_dict, "ema": state_dict | None, "label_names": [...], "category_ids": [...],
     "epoch": completed epochs, "step": optimizer steps done, "epoch_step": steps done in the current epoch,
     "best_metric": float | None, "optimizer": ..., "scheduler": ..., "scaler": ..., "ema_updates": int,
     "rng": {"torch": uint8 tensor, "cuda": [...], "numpy": [...], "python": [...]}, "history": [...]}
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from efficientdet.errors import WeightsError

CHECKPOINT_FORMAT = "efficientdet.checkpoint"
CHECKPOINT_VERSION = 1


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync it, then rename over ``path``.

    A crash at any moment leaves either the old file or the new one, never a truncated file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a training checkpoint safely (``weights_only=True``); clear errors for missing/foreign files."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist; pass the path of a last.pth/best.pth from a run")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - report any unpickling refusal or corruption clearly
        raise WeightsError(f"cannot read checkpoint {path}: {err}. It may be truncated or not a checkpoint "
                           "written by this library (only plain tensors and containers are accepted)") from err
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{path} is not a training checkpoint of this library (no 'format' entry); to start from "
                           "its weights use --checkpoint/--pretrained instead of --resume")
    return data


def rng_state() -> dict[str, Any]:
    """Every random generator the training loop touches, as weights-only-safe values."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state_to_plain(np.random.get_state()),
        "python": _python_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(_numpy_state_from_plain(state["numpy"]))
    random.setstate(_python_state_from_plain(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_state_to_plain(s: tuple) -> list:
    return [s[0], torch.from_numpy(np.asarray(s[1], dtype=np.uint32).astype(np.int64)), int(s[2]), int(s[3]), float(s[4])]


def _numpy_state_from_plain(s: list) -> tuple:
    return (s[0], s[1].numpy().astype(np.uint32), s[2], s[3], s[4])


def _python_state_to_plain(s: tuple) -> list:
    return [s[0], list(s[1]), s[2]]


def _python_state_from_plain(s: list) -> tuple:
    return (s[0], tuple(s[1]), s[2])
