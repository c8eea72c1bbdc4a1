"""Shared helpers of the prediction, export and CLI tests: a tiny detector with spread-out outputs, real photos."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from efficientdet import create_model
from efficientdet.config import replace_nested
from efficientdet.modeling.detector import EfficientDet
from efficientdet.registry import get_config

TINY_SIZE = (128, 128)
TINY_NAMES = ("cat", "dog", "bird", "car", "boat")
TINY_IDS = (3, 5, 7, 11, 13)  # dataset category ids of the classes


def photo(name: str) -> Path:
    """A real photo shipped with scikit-image (``coffee.png``, ``chelsea.png``, ``rocket.jpg`` ...)."""
    import skimage.data

    return Path(skimage.data.data_dir) / name


def tiny_config(**changes):
    """A small detector on timm's test backbone: 5 named classes with category ids, 128 x 128 input."""
    base = replace_nested(get_config("tf_efficientdet_d0"), name="tiny_det", backbone__name="test_efficientnet",
                          fpn__channels=16, fpn__repeats=2, head__repeats=2, num_classes=len(TINY_NAMES),
                          label_names=TINY_NAMES, category_ids=TINY_IDS, preprocess__image_size=TINY_SIZE)
    return replace_nested(base, **changes) if changes else base


@torch.no_grad()
def tiny_model(seed: int = 0, **changes) -> EfficientDet:
    """:func:`tiny_config` with random BN statistics and prediction layers, so scores spread out (few ties)."""
    torch.manual_seed(seed)
    model = create_model(tiny_config(**changes)).eval()
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
    for p in list(model.class_head.predict.parameters()) + list(model.box_head.predict.parameters()):
        p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model


def save_tiny_checkpoint(path: os.PathLike[str] | str, **changes) -> Path:
    """The tiny model as inference weights with its config (what ``efficientdet convert`` writes)."""
    from efficientdet.weights.checkpoint import save_inference_weights

    model = tiny_model(**changes)
    return save_inference_weights(model.state_dict(), model.config, path)
