"""Training checkpoints that lose nothing: written atomically, loaded safely, resumed exactly.

A checkpoint is a ``torch.save`` file of plain containers and tensors only, so it loads with
``torch.load(weights_only=True)``. Layout::

    {"format": "efficientdet.checkpoint", "version": 1,
     "config": DetectorConfig.to_dict(), "train_config": TrainConfig.to_dict() (its slices; flat before them),
     "model": state_dict, "ema": state_dict | None, "label_names": [...], "category_ids": [...],
     "epoch": completed epochs, "step": optimizer steps done, "epoch_batches": batches done in the current epoch,
     "epoch_totals": {"loss", "cls_loss", "box_loss", "batches", "images", "nonfinite_steps", "skipped_images",
                      "dropped_boxes"}: running sums of the current epoch over all processes,
     "best_metric": float | None, "optimizer": ..., "scheduler": ..., "scaler": ..., "ema_updates": int,
     "rng": {"torch": uint8 tensor, "cuda": [...], "numpy": [...], "python": [...]}, "history": [...]}
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from efficientdet.errors import WeightsError

CHECKPOINT_FORMAT = "efficientdet.checkpoint"
CHECKPOINT_VERSION = 1


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` atomically (temporary file beside ``path``, fsync, rename): never a truncated checkpoint."""
    from efficientdet.weights.io import atomic_write

    return atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a training checkpoint safely (``weights_only=True``); clear errors for missing/foreign files."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist; pass the path of a last.pth/best.pth from a run")
    from efficientdet.weights.io import _torch_load

    data = _torch_load(path)
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{path} is not a training checkpoint of this library (no 'format' entry); to start from "
                           "its weights use --checkpoint/--pretrained instead of --resume")
    for key, kind in _REQUIRED.items():
        if not isinstance(data.get(key), kind):
            found = "missing" if key not in data else f"a {type(data[key]).__name__}"
            raise WeightsError(f"{path}: entry {key!r} is {found}, not {_KIND_NAMES[kind]}; the checkpoint is damaged "
                               "or was edited. Resume from another one (epoch_*.pth) or start from its weights with "
                               "--checkpoint")
    return data


_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "config": dict, "model": dict, "optimizer": dict, "scheduler": dict, "scaler": dict, "rng": dict,
    "epoch": int, "step": int,
}
_KIND_NAMES = {dict: "a mapping", int: "an integer"}


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


def average_checkpoints(paths: list[str | Path], out: str | Path, *, use_ema: bool | None = None) -> Path:
    """Average the model weights of several checkpoints of one run into a new checkpoint at ``out``.

    Floating-point tensors are averaged (in float64, stored in their own dtype); integer buffers such as
    BN ``num_batches_tracked`` are taken from the last file. The output keeps the last checkpoint's config
    and carries no optimizer state. ``use_ema``: average the EMA weights (default when present).
    """
    from efficientdet.weights.checkpoint import read_model_checkpoint, save_inference_weights

    if not paths:
        raise WeightsError("no checkpoints to average; pass at least one file")
    loaded = [read_model_checkpoint(p, use_ema=use_ema) for p in paths]
    keys = list(loaded[-1].state_dict)
    for c in loaded:
        if list(c.state_dict) != keys:
            raise WeightsError(f"{c.path} holds other tensors than {loaded[-1].path}; average checkpoints of one run only")
    avg = {}
    for k in keys:
        last = loaded[-1].state_dict[k]
        if last.is_floating_point():
            avg[k] = (sum(c.state_dict[k].double() for c in loaded) / len(loaded)).to(last.dtype)
        else:
            avg[k] = last
    config = loaded[-1].config
    if config is None:
        raise WeightsError(f"{loaded[-1].path} does not record its model config; average checkpoints of this library")
    return save_inference_weights(avg, config, out, ema=loaded[-1].used_ema)


def clean_checkpoint(path: str | Path, out_dir: str | Path, *, use_ema: bool | None = None,
                     name: str | None = None) -> Path:
    """Turn a training checkpoint into inference weights: EMA (default when present) or raw, no optimizer
    state, config and label names kept, as ``<name>-<sha256[:8]>.safetensors`` in ``out_dir``."""
    from efficientdet.weights.checkpoint import read_model_checkpoint, save_inference_weights
    from efficientdet.weights.io import file_sha256

    source = read_model_checkpoint(path, use_ema=use_ema)
    if source.config is None:
        raise WeightsError(f"{path} does not record its model config; it is not a checkpoint of this library")
    out_dir = Path(out_dir)
    stem = name or source.config.name
    tmp = save_inference_weights(source.state_dict, source.config, out_dir / f".{stem}.tmp.safetensors",
                                 ema=source.used_ema)
    final = out_dir / f"{stem}-{file_sha256(tmp)[:8]}.safetensors"
    os.replace(tmp, final)
    return final
