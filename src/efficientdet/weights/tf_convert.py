"""Convert official TensorFlow EfficientDet checkpoints (google/automl) into this library's weights.

The official checkpoints (``efficientdet-d0.tar.gz`` ... and ``efficientdet-lite0.tgz`` ...) store TF1
variable names; each variable ``X`` may have an EMA shadow ``X/ExponentialMovingAverage``, which the official
evaluation uses (BN moving statistics included) and which is preferred here too. Layout facts:

- conv kernels are HWIO (PyTorch: ``permute(3, 2, 0, 1)``), depthwise kernels HWC1 (``permute(2, 3, 0, 1)``);
- BN ``gamma, beta, moving_mean, moving_variance`` -> ``weight, bias, running_mean, running_var``;
- the backbone's ``blocks_<n>`` are numbered globally; timm numbers them ``blocks.<stage>.<index>``;
- BiFPN ``fnode<n>/WSM, WSM_1, ...`` are the fusion weights of node ``n`` in input order, and
  ``resample_<i>_<offset>_<len>`` projects the node's ``i``-th input;
- heads: ``class-<i>`` shared convs, ``class-<i>-bn-<level>`` per-level BN, ``class-predict``.

Reading the checkpoint uses :mod:`efficientdet.weights.tf_reader` (no TensorFlow needed).
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from efficientdet.config import DetectorConfig, aspect_pairs, replace_nested
from efficientdet.errors import WeightsError
from efficientdet.registry import OFFICIAL_NAMES

EMA_SUFFIX = "/ExponentialMovingAverage"
OFFICIAL_ASPECT_RATIOS = (1.0, 2.0, 0.5)
LITE_MEAN = (127.0 / 255,) * 3
LITE_STD = (128.0 / 255,) * 3

_BN = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}

# Official model names -> the registry names with the same architecture (aliases the registry accepts).
TF_MODEL_NAMES = OFFICIAL_NAMES


def official_config(name: str) -> DetectorConfig:
    """The registry config of ``name`` with the official TF details that differ from effdet's copy.

    Official anchors use aspect ratios ``(1.0, 2.0, 0.5)`` (effdet: ``(1.4, 0.7)`` pairs), Lite models
    normalise with mean 127 / std 128, and official evaluation uses best-class-per-anchor Gaussian soft-NMS.
    """
    from efficientdet.registry import get_config

    config = get_config(name)  # official names are registry aliases
    config = replace_nested(
        config,
        anchors__aspect_ratios=aspect_pairs(OFFICIAL_ASPECT_RATIOS),
        postprocess__mode="global",
        postprocess__nms="soft",
        postprocess__score_threshold=0.001,
    )
    if "lite" in config.name:
        config = replace_nested(config, preprocess__mean=LITE_MEAN, preprocess__std=LITE_STD, preprocess__fill="mean")
    return replace(config, name=config.name)


def _kernel(value: np.ndarray, depthwise: bool) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(value))
    if t.dim() != 4:
        return t
    return t.permute(2, 3, 0, 1).contiguous() if depthwise else t.permute(3, 2, 0, 1).contiguous()


def _block_names(backbone: torch.nn.Module) -> list[tuple[str, str]]:
    """For each global block index: the timm prefix and the block kind (``ir`` or ``ds``)."""
    out = []
    for s, stage in enumerate(backbone.blocks):
        for i, block in enumerate(stage):
            out.append((f"backbone.blocks.{s}.{i}.", "ir" if hasattr(block, "conv_pwl") else "ds"))
    return out


def _backbone_key(rest: str, blocks: list[tuple[str, str]]) -> tuple[str, bool] | None:
    """Map a backbone variable (without the ``efficientnet-*/`` scope) to (our key, is_depthwise)."""
    m = re.fullmatch(r"stem/conv2d/kernel", rest)
    if m:
        return "backbone.conv_stem.weight", False
    m = re.fullmatch(r"stem/tpu_batch_normalization/(\w+)", rest)
    if m:
        return f"backbone.bn1.{_BN[m.group(1)]}", False
    m = re.fullmatch(r"blocks_(\d+)/(.+)", rest)
    if not m:
        return None
    prefix, kind = blocks[int(m.group(1))]
    part = m.group(2)
    if kind == "ir":  # expand -> depthwise -> (SE) -> project
        convs = {"conv2d/kernel": "conv_pw", "depthwise_conv2d/depthwise_kernel": "conv_dw", "conv2d_1/kernel": "conv_pwl"}
        bns = {"tpu_batch_normalization": "bn1", "tpu_batch_normalization_1": "bn2", "tpu_batch_normalization_2": "bn3"}
    else:  # depthwise -> (SE) -> project
        convs = {"depthwise_conv2d/depthwise_kernel": "conv_dw", "conv2d/kernel": "conv_pw"}
        bns = {"tpu_batch_normalization": "bn1", "tpu_batch_normalization_1": "bn2"}
    if part in convs:
        return f"{prefix}{convs[part]}.weight", part.startswith("depthwise")
    m = re.fullmatch(r"(tpu_batch_normalization(?:_\d)?)/(\w+)", part)
    if m and m.group(1) in bns:
        return f"{prefix}{bns[m.group(1)]}.{_BN[m.group(2)]}", False
    m = re.fullmatch(r"se/conv2d(_1)?/(kernel|bias)", part)
    if m:
        which = "conv_expand" if m.group(1) else "conv_reduce"
        return f"{prefix}se.{which}.{'weight' if m.group(2) == 'kernel' else 'bias'}", False
    return None


def _sepconv_key(prefix: str, leaf: str) -> tuple[str, bool] | None:
    """A separable conv: depthwise kernel -> ``dw``, pointwise kernel and bias -> ``pw``."""
    keys = {"depthwise_kernel": ("dw.weight", True), "pointwise_kernel": ("pw.weight", False), "bias": ("pw.bias", False)}
    if leaf not in keys:
        return None
    suffix, depthwise = keys[leaf]
    return prefix + suffix, depthwise


def _detector_key(name: str, min_level: int, separable: bool) -> tuple[str, bool] | None:
    """Map a BiFPN / head / extra-level variable to (our key, is_depthwise), or None."""
    m = re.fullmatch(r"resample_p(\d+)/(conv2d|bn)/(\w+)", name)
    if m:
        return None if m.group(2) == "bn" and m.group(3) not in _BN else _extra_key(m, min_level)
    m = re.fullmatch(r"fpn_cells/cell_(\d+)/fnode(\d+)/(.+)", name)
    if m:
        base = f"fpn.cells.{m.group(1)}.nodes.{m.group(2)}."
        rest = m.group(3)
        if re.fullmatch(r"WSM(_\d+)?", rest):
            return base + "weight", False  # one scalar per input, gathered by the caller
        m2 = re.fullmatch(r"op_after_combine\d+/(conv|bn)/(\w+)", rest)
        if m2 and m2.group(1) == "bn":
            return base + "norm." + _BN[m2.group(2)], False
        if m2:
            key = _sepconv_key(base + "conv.", m2.group(2)) if separable else _plain_key(base + "conv.", m2.group(2))
            return key
        m2 = re.fullmatch(r"resample_(\d+)_\d+_\d+/(conv2d|bn)/(\w+)", rest)
        if m2:
            where = f"{base}resample.{m2.group(1)}."
            if m2.group(2) == "bn":
                return where + "norm." + _BN[m2.group(3)], False
            return where + "conv." + ("weight" if m2.group(3) == "kernel" else "bias"), False
    m = re.fullmatch(r"(class|box)_net/(class|box)-(\d+|predict)(?:-bn-(\d+))?/(\w+)", name)
    if m:
        head = f"{m.group(1)}_head."
        idx, level, leaf = m.group(3), m.group(4), m.group(5)
        if level is not None:
            return f"{head}norms.{int(level) - min_level}.{idx}.{_BN[leaf]}", False
        where = f"{head}predict." if idx == "predict" else f"{head}convs.{idx}."
        return _sepconv_key(where, leaf) if separable else _plain_key(where, leaf)
    return None


def _plain_key(prefix: str, leaf: str) -> tuple[str, bool] | None:
    if leaf == "kernel":
        return prefix + "weight", False
    if leaf == "bias":
        return prefix + "bias", False
    return None


def _extra_key(m: re.Match, min_level: int) -> tuple[str, bool] | None:
    # resample_p6 is the first level above the backbone (P5 is the last backbone level in every official model)
    idx = int(m.group(1)) - 6
    if m.group(2) == "bn":
        return f"fpn.extra.{idx}.norm.{_BN[m.group(3)]}", False
    return f"fpn.extra.{idx}.conv.{'weight' if m.group(3) == 'kernel' else 'bias'}", False


def convert_tf_variables(variables: dict[str, np.ndarray], model: torch.nn.Module, *,
                         use_ema: bool = True) -> dict[str, torch.Tensor]:
    """Map official TF variables (``name -> array``) onto ``model``'s state dict.

    Prefers ``X/ExponentialMovingAverage`` over ``X`` when ``use_ema``. Every model tensor (except BN
    ``num_batches_tracked``) must be covered and every shape must match; otherwise :class:`WeightsError`.
    """
    target = model.state_dict()
    config = model.config
    blocks = _block_names(model.backbone)
    separable = config.fpn.separable_conv
    out: dict[str, torch.Tensor] = {}
    wsm: dict[str, dict[int, float]] = {}
    plain = sorted(k for k in variables if not k.endswith(EMA_SUFFIX))
    for name in plain:
        if name == "global_step" or "/Momentum" in name:
            continue
        value = variables.get(name + EMA_SUFFIX) if use_ema else None
        value = variables[name] if value is None else value
        scope, _, rest = name.partition("/")
        if scope.startswith("efficientnet-"):
            mapped = _backbone_key(rest, blocks)
        else:
            mapped = _detector_key(name, config.min_level, separable)
        if mapped is None:
            raise WeightsError(f"TF variable {name!r} has no counterpart in {config.name!r}; is the checkpoint for "
                               "this model (check the model name)?")
        key, depthwise = mapped
        if re.search(r"/WSM(_\d+)?$", name):
            idx = int(name.rsplit("WSM_", 1)[1]) if "WSM_" in name else 0
            wsm.setdefault(key, {})[idx] = float(np.asarray(value))
            continue
        tensor = _kernel(np.asarray(value), depthwise) if np.ndim(value) == 4 else torch.from_numpy(np.array(value))
        if key not in target:
            raise WeightsError(f"TF variable {name!r} maps to {key!r}, which {config.name!r} lacks; wrong model name?")
        if tuple(tensor.shape) != tuple(target[key].shape):
            raise WeightsError(f"shape mismatch for TF {name!r} -> {key!r}: {tuple(tensor.shape)} vs "
                               f"{tuple(target[key].shape)}; wrong model name or num_classes?")
        out[key] = tensor.to(target[key].dtype)
    for key, parts in wsm.items():
        n = target[key].numel()
        if sorted(parts) != list(range(n)):
            raise WeightsError(f"fusion weights of {key!r}: found WSM indices {sorted(parts)}, expected {n}")
        out[key] = torch.tensor([parts[i] for i in range(n)], dtype=target[key].dtype)
    missing = [k for k in target if k not in out and not k.endswith("num_batches_tracked")]
    if missing:
        raise WeightsError(f"the TF checkpoint lacks {len(missing)} tensors of {config.name!r}, e.g. {missing[:3]}; "
                           "is it the right model?")
    return out


def convert_tf_checkpoint(path: str | Path, model_name: str | None = None, *, use_ema: bool = True,
                          num_classes: int | None = None) -> tuple[DetectorConfig, dict[str, torch.Tensor]]:
    """Read an official checkpoint (directory, prefix or ``.tar.gz``) and convert it.

    ``model_name``: official (``efficientdet-d0``) or registry (``tf_efficientdet_d0``) name; guessed from
    the backbone scope and file name when omitted. ``num_classes``: the checkpoint's class count (read from
    the class-predict bias when omitted; official COCO models have 90).
    Returns the model config (official anchors and post-processing) and the state dict.
    """
    from efficientdet.modeling.detector import EfficientDet
    from efficientdet.weights.tf_reader import read_tf_checkpoint

    variables = read_tf_checkpoint(path)
    name = model_name or guess_model_name(variables, path)
    config = official_config(name)
    if num_classes is None:
        bias = variables.get("class_net/class-predict/bias")
        if bias is not None:
            num_classes = int(np.asarray(bias).shape[0]) // config.anchors.num_anchors
    if num_classes is not None and num_classes != config.num_classes:
        config = replace(config, num_classes=num_classes, label_names=None, category_ids=None)
    model = EfficientDet(config)
    return config, convert_tf_variables(variables, model, use_ema=use_ema)


def guess_model_name(variables: dict[str, np.ndarray], path: str | Path) -> str:
    """Guess the official model name from the file name (``efficientdet-d3``) or backbone scope."""
    text = str(path).lower()
    for official in sorted(TF_MODEL_NAMES, key=len, reverse=True):
        if official in text:
            return official
    scopes = {k.split("/", 1)[0] for k in variables if k.startswith("efficientnet-")}
    mapping = {f"efficientnet-b{i}": f"efficientdet-d{i}" for i in range(8)}
    mapping.update({f"efficientnet-lite{i}": f"efficientdet-lite{i}" for i in range(5)})
    for scope in scopes:
        if scope in mapping:
            return mapping[scope]
    raise WeightsError(f"cannot tell which EfficientDet {path} holds; pass the model name (e.g. efficientdet-d0)")
