"""Backbones: any timm model that supports ``features_only``, with levels read from its feature info."""

from __future__ import annotations

import difflib

import timm
import torch.nn as nn

from efficientdet.config import BackboneConfig
from efficientdet.errors import ConfigError

MAX_BACKBONE_LEVEL = 5
"""Backbones provide features up to stride 32; higher pyramid levels are made by the FPN."""


def _create(cfg: BackboneConfig, out_indices: tuple[int, ...]) -> nn.Module:
    kwargs = dict(cfg.kwargs)
    if cfg.drop_path_rate:
        kwargs["drop_path_rate"] = cfg.drop_path_rate
    return timm.create_model(cfg.name, pretrained=False, features_only=True, out_indices=out_indices, **kwargs)


def create_backbone(cfg: BackboneConfig, min_level: int, max_level: int) -> tuple[nn.Module, list[int]]:
    """Create a timm ``features_only`` backbone feeding pyramid levels ``min_level ..``.

    Returns the module (``forward: [B, 3, H, W] -> list of [B, C_i, H / 2**level, W / 2**level]``) and the
    channel count of each returned level. With ``cfg.out_indices`` unset, the features whose reduction
    is ``2**level`` are chosen for every level from ``min_level`` up to ``min(max_level, 5)``.
    """
    if not timm.is_model(cfg.name):
        close = difflib.get_close_matches(cfg.name, timm.list_models(), n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown timm backbone {cfg.name!r}.{hint} See timm.list_models().")
    if cfg.out_indices is not None:
        body = _create(cfg, tuple(cfg.out_indices))
        return body, list(body.feature_info.channels())

    levels = list(range(min_level, min(max_level, MAX_BACKBONE_LEVEL) + 1))
    wanted = [2**level for level in levels]
    guess = tuple(level - 1 for level in levels)  # the usual layout: feature i has reduction 2**(i + 1)
    body = _create(cfg, guess)
    if list(body.feature_info.reduction()) == wanted:
        return body, list(body.feature_info.channels())
    full = timm.create_model(cfg.name, pretrained=False, features_only=True, **dict(cfg.kwargs))
    reductions = list(full.feature_info.reduction())
    missing = [r for r in wanted if r not in reductions]
    if missing:
        raise ConfigError(f"backbone {cfg.name!r} has no features with reduction {missing} (it has {reductions}); "
                          "set backbone.out_indices or change min_level")
    indices = tuple(len(reductions) - 1 - reductions[::-1].index(r) for r in wanted)  # deepest of each stride
    body = _create(cfg, indices)
    return body, list(body.feature_info.channels())
