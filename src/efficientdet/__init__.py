"""EfficientDet object detection in PyTorch.

The public API; each name is imported on first use, so ``import efficientdet`` stays fast and does
nothing else.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "create_model": "efficientdet.factory",
    "load_weights": "efficientdet.factory",
    "list_models": "efficientdet.registry",
    "get_config": "efficientdet.registry",
    "get_weights": "efficientdet.registry",
    "register_model": "efficientdet.registry",
    "EfficientDet": "efficientdet.modeling.detector",
    "DetectorConfig": "efficientdet.config",
    "Detections": "efficientdet.structures",
    "HeadOutputs": "efficientdet.structures",
    "ImageMeta": "efficientdet.structures",
    "ImageBatch": "efficientdet.structures",
    "Targets": "efficientdet.structures",
    "Predictor": "efficientdet.predict",
    "optimize_for_inference": "efficientdet.fast",
    "draw_detections": "efficientdet.visualize",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'efficientdet' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
