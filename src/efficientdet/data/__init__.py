"""Datasets: parsers into one record format, checks, transforms and loaders.

Names are imported on first use (``from efficientdet.data import create_loader`` loads only what it
needs), so importing this package stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ImageRecord": "efficientdet.data.records",
    "DetectionDataset": "efficientdet.data.records",
    "load_dataset": "efficientdet.data.parsers",
    "save_dataset": "efficientdet.data.parsers",
    "detect_format": "efficientdet.data.parsers",
    "check_dataset": "efficientdet.data.check",
    "CheckReport": "efficientdet.data.check",
    "preprocess": "efficientdet.data.preprocess",
    "Normalizer": "efficientdet.data.preprocess",
    "read_image": "efficientdet.data.images",
    "train_transforms": "efficientdet.data.transforms",
    "eval_transforms": "efficientdet.data.transforms",
    "TorchDataset": "efficientdet.data.dataset",
    "create_loader": "efficientdet.data.loader",
    "Batch": "efficientdet.data.loader",
    "make_sample_dataset": "efficientdet.data.sample",
    "ensure_sample_dataset": "efficientdet.data.sample",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'efficientdet.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
