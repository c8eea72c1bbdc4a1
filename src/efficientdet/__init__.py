"""EfficientDet object detection in PyTorch.

The public API; each name is imported on first use, so ``import efficientdet`` stays fast and does
nothing else. One function per command of the ``efficientdet`` CLI, the same ones the CLI runs:

- ``train(cfg=None, **settings)``: train or fine-tune (``TrainConfig`` fields as settings);
- ``validate(data, model=..., checkpoint=...)``: COCO / VOC / OpenImages metrics of a model on a dataset;
- ``predict(images, model, ...)``: detections of images (``efficientdet.predict`` is also the module
  holding ``Predictor``);
- ``export_model(model, path, format)``: ONNX / torch.export / TorchScript with decoding and NMS inside;

plus ``create_model`` / ``list_models`` (the registry), ``Predictor`` and the data structures.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "create_model": "efficientdet.factory",
    "load_weights": "efficientdet.weights.checkpoint",
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
    "DetectionPipeline": "efficientdet.pipeline",
    "Predictor": "efficientdet.predict",
    "predict": "efficientdet.predict",  # the module, callable as its predict() function
    "train": "efficientdet.engine.trainer",
    "validate": "efficientdet.engine.evaluate",
    "export_model": "efficientdet.export",
    "TrainConfig": "efficientdet.config",
    "optimize_for_inference": "efficientdet.fast",
    "draw_detections": "efficientdet.visualize",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'efficientdet' has no attribute {name!r}")
    imported = importlib.import_module(module)
    if module == f"{__name__}.{name}":  # a submodule of the same name: importing it made it this attribute
        return imported
    value = getattr(imported, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
