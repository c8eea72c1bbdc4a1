"""``create_model``: a detector by registered name or config, with pretrained or checkpoint weights."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from efficientdet.config import DetectorConfig, replace_nested
from efficientdet.errors import ConfigError, WeightsError
from efficientdet.modeling.detector import EfficientDet

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".tar")

_ARGUMENTS = (
    "pretrained", "pretrained_backbone", "num_classes", "label_names", "checkpoint_path", "checkpoint_ema",
    "image_size", "overrides", "device",
)


def create_model(
    name_or_config: str | Path | DetectorConfig,
    *,
    pretrained: bool = False,
    pretrained_backbone: bool = False,
    num_classes: int | None = None,
    label_names: tuple[str, ...] | list[str] | None = None,
    checkpoint_path: str | Path | None = None,
    checkpoint_ema: bool | None = None,
    image_size: int | tuple[int, int] | None = None,
    overrides: Mapping[str, Any] | None = None,
    device: str | torch.device | None = None,
    **unexpected: Any,
) -> EfficientDet:
    """Create an EfficientDet.

    Args:
        name_or_config: a registered name (see :func:`~efficientdet.registry.list_models`; ``name.tag``
            picks a weight set), a :class:`DetectorConfig`, a model config file (``.yaml``/``.json``: a
            full config or ``base: NAME`` plus changes), or a weights file written by this library
            (training checkpoint or cleaned ``.safetensors``), which carries its own config.
        pretrained: load the published weights of the name (downloaded once, cached, hash-checked).
        pretrained_backbone: load ImageNet weights into the backbone only (ignored with ``pretrained``).
        num_classes: a class count other than the weights'; only the class-prediction layer is
            re-initialised (prior-probability bias), everything else keeps its pretrained weights.
        label_names: names of the ``num_classes`` classes (stored in the config, used in predictions).
        checkpoint_path: weights to load last: a checkpoint of this library (training checkpoint or
            cleaned weights, ``.pth`` or ``.safetensors``) or an effdet state dict. Its class count is adopted
            when ``num_classes`` is not given.
        checkpoint_ema: prefer (True) or refuse (False) the EMA weights of a training checkpoint; ``None``
            takes EMA when present.
        image_size: default input size ``(H, W)`` (or one int) for preprocessing; the network itself accepts
            any size at run time.
        overrides: config changes by dotted path, e.g. ``{"fpn.act": "relu", "loss.box_loss": "giou"}``.
        device: where to put the model.

    Raises:
        ConfigError: unknown name, argument or config key (the message lists close matches).
        WeightsError: weights that cannot be fetched, verified or loaded (the message says what to do).
    """
    if unexpected:
        bad = next(iter(unexpected))
        close = difflib.get_close_matches(bad, _ARGUMENTS, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(f"create_model() got an unknown argument {bad!r}.{hint} Valid: {', '.join(_ARGUMENTS)}")

    from efficientdet import registry

    if isinstance(name_or_config, (str, Path)) and Path(name_or_config).suffix in (".yaml", ".yml", ".json"):
        name_or_config = load_config_file(name_or_config)
    elif isinstance(name_or_config, (str, Path)) and Path(name_or_config).suffix in WEIGHT_SUFFIXES:
        # a weights file of this library describes its own model
        from efficientdet.weights.checkpoint import read_model_checkpoint

        if checkpoint_path is not None:
            raise ConfigError(f"got weights {name_or_config} and checkpoint_path={checkpoint_path}; pass one")
        checkpoint_path = name_or_config
        described = read_model_checkpoint(checkpoint_path, use_ema=checkpoint_ema).config
        if described is None:
            raise ConfigError(f"{name_or_config} does not record its model; call create_model(NAME, "
                              f"checkpoint_path={str(name_or_config)!r}) with the model name")
        name_or_config = described
    name = name_or_config if isinstance(name_or_config, str) else None
    config = registry.get_config(name) if name is not None else name_or_config
    if not isinstance(config, DetectorConfig):
        raise ConfigError(f"expected a model name or DetectorConfig, got {type(name_or_config).__name__}")
    if pretrained and name is None:
        raise ConfigError("pretrained=True needs a registered model name; pass checkpoint_path= for a config")
    weights = registry.get_weights(name) if pretrained else None
    if weights is not None:
        config = replace(config, num_classes=weights.num_classes, label_names=weights.label_names,
                         category_ids=weights.category_ids)
    if overrides:
        config = replace_nested(config, **dict(overrides))
    if image_size is not None:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(int(s) for s in image_size)
        if len(size) != 2 or min(size) < 1:
            raise ConfigError(f"image_size must be an int or (height, width), got {image_size!r}")
        config = replace_nested(config, preprocess__image_size=size)

    checkpoint = None
    if checkpoint_path is not None:
        from efficientdet.weights.checkpoint import read_model_checkpoint

        checkpoint = read_model_checkpoint(checkpoint_path, use_ema=checkpoint_ema)
        if checkpoint.num_classes is not None and checkpoint.num_classes != config.num_classes:
            # build with the checkpoint's class count so that it loads; re-initialise below if asked
            config = replace(config, num_classes=checkpoint.num_classes, label_names=checkpoint.label_names,
                             category_ids=checkpoint.category_ids)
        elif checkpoint.label_names is not None:
            config = replace(config, label_names=checkpoint.label_names, category_ids=checkpoint.category_ids)

    if label_names is not None:
        label_names = tuple(str(n) for n in label_names)
        if num_classes is None:
            num_classes = len(label_names)
        if len(label_names) != num_classes:
            raise ConfigError(f"{len(label_names)} label_names for num_classes={num_classes}; give one name per class")

    model = EfficientDet(config)
    if weights is not None:
        from efficientdet.weights.pretrained import load_pretrained

        load_pretrained(model, weights)
    elif pretrained_backbone and checkpoint is None:
        from efficientdet.weights.pretrained import load_backbone_pretrained

        load_backbone_pretrained(model)
    if checkpoint is not None:
        checkpoint.load_into(model)

    if num_classes is not None and num_classes != model.config.num_classes:
        model.reset_classes(num_classes, label_names)
    elif label_names is not None:
        model.config = replace(model.config, label_names=label_names)
    if device is not None:
        model.to(device)
    return model


def warn_random_weights(name: str) -> None:
    """Log that model ``name`` runs with random weights: its detections, metrics and post-processing times
    are not a trained model's. Called where a model is built for results (predict, validate, export,
    benchmark) with neither published weights nor a checkpoint."""
    log.warning("random weights: %s was given neither its published weights (--pretrained / pretrained=True) nor a "
                "checkpoint (--checkpoint FILE); its detections, metrics and post-processing times are not a trained "
                "model's", name)


def load_config_file(path: str | Path) -> DetectorConfig:
    """A :class:`DetectorConfig` from YAML/JSON: either a full config, or ``base: <registered name>`` plus
    dotted or nested changes (``fpn: {channels: 96}``, ``num_classes: 3``)."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as err:
        raise ConfigError(f"cannot read model config {path}: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping (a DetectorConfig or base: NAME plus changes)")
    base = data.pop("base", None)
    if base is None:
        return DetectorConfig.from_dict(data)
    from efficientdet import registry

    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and prefix.split(".")[-1] not in ("norm",):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            flat[prefix] = tuple(value) if isinstance(value, list) else value

    walk("", data)
    return replace_nested(registry.get_config(base), **flat)


def load_weights(model: EfficientDet, state_dict: Mapping[str, torch.Tensor], *, source: str = "weights") -> None:
    """Load a state dict in this library's or effdet's layout into ``model`` (strict; clear errors)."""
    from efficientdet.weights.effdet import convert_effdet_state_dict, is_effdet_state_dict

    if is_effdet_state_dict(state_dict):
        state_dict = convert_effdet_state_dict(state_dict, model)
    target = model.state_dict()
    wrong = [(k, tuple(v.shape), tuple(target[k].shape)) for k, v in state_dict.items()
             if k in target and tuple(v.shape) != tuple(target[k].shape)]
    if wrong:
        k, got, want = wrong[0]
        raise WeightsError(f"{source} do not fit {model.config.name!r}: {len(wrong)} tensors have other shapes, e.g. "
                           f"{k} {got} vs {want}; check the model name and num_classes")
    result = model.load_state_dict(dict(state_dict), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise WeightsError(
            f"{source} do not fit {model.config.name!r}: {len(result.missing_keys)} missing tensors (e.g. "
            f"{result.missing_keys[:3]}), {len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:3]}); "
            "check that the model name and num_classes match the checkpoint"
        )
