"""The one model resolver: a registered name, a config, a config file or a weights file -> an :class:`EfficientDet`.

:func:`create_model` is the library call; :func:`resolve_model` is what every command and :class:`Predictor`
mean by ``--model`` / ``--checkpoint`` / ``--pretrained`` (it calls :func:`create_model`). The rules, in one place:

- ``--model NAME`` is an architecture. Its weights come from ``pretrained`` (the name's published set) or a
  checkpoint; with neither they are random (and :func:`resolve_model` warns).
- A checkpoint that records its config (training checkpoints, ``efficientdet convert`` output) defines the
  model itself: anchors, input size, post-processing and classes. A name given with it is only checked
  (a warning when it names another architecture). A checkpoint without a config (effdet files, plain state
  dicts) needs the name; its class count is adopted.
- An explicit :class:`DetectorConfig` wins over the checkpoint's config (only the class count is adopted).
- A checkpoint's weights replace every tensor, so published weights are not fetched when one is given.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from efficientdet.config import DetectorConfig, replace_nested
from efficientdet.errors import ConfigError
from efficientdet.modeling.detector import EfficientDet
from efficientdet.weights.checkpoint import ModelCheckpoint, load_weights, read_model_checkpoint

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".tar")
"""Files taken as weights (a checkpoint) where a model name is expected."""

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
"""Files taken as a model config (:func:`load_config_file`) where a model name is expected."""

_ARGUMENTS = (
    "pretrained", "pretrained_backbone", "num_classes", "label_names", "checkpoint_path", "checkpoint_ema",
    "image_size", "overrides", "device",
)

ModelSource = str | os.PathLike[str] | DetectorConfig


def create_model(
    name_or_config: ModelSource | None = None,
    *,
    pretrained: bool = False,
    pretrained_backbone: bool = False,
    num_classes: int | None = None,
    label_names: tuple[str, ...] | list[str] | None = None,
    checkpoint_path: str | os.PathLike[str] | ModelCheckpoint | None = None,
    checkpoint_ema: bool | None = None,
    image_size: int | tuple[int, int] | None = None,
    overrides: Mapping[str, Any] | None = None,
    device: str | torch.device | None = None,
    **unexpected: Any,
) -> EfficientDet:
    """Create an EfficientDet (the rules: this module's docstring).

    Args:
        name_or_config: a registered name (see :func:`~efficientdet.registry.list_models`; ``name.tag``
            picks a weight set), a :class:`DetectorConfig`, a model config file (``.yaml``/``.json``: a
            full config or ``base: NAME`` plus changes), or a weights file written by this library
            (training checkpoint or cleaned ``.safetensors``), which carries its own config. ``None`` with a
            ``checkpoint_path`` that records its config.
        pretrained: load the published weights of the name (downloaded once, cached, hash-checked).
        pretrained_backbone: load ImageNet weights into the backbone only (ignored with other weights).
        num_classes: a class count other than the weights'; only the class-prediction layer is
            re-initialised (prior-probability bias), everything else keeps its pretrained weights.
        label_names: names of the ``num_classes`` classes (stored in the config, used in predictions).
        checkpoint_path: weights to load: a checkpoint of this library (training checkpoint or cleaned
            weights, ``.pth`` or ``.safetensors``) or an effdet state dict; or a
            :class:`~efficientdet.weights.checkpoint.ModelCheckpoint` already read.
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
    _refuse_unknown(unexpected)
    source, checkpoint = _open_source(name_or_config, checkpoint_path, checkpoint_ema)
    name = source if isinstance(source, str) else None
    if pretrained and name is None and checkpoint is None:
        raise ConfigError("pretrained=True needs a registered model name; pass checkpoint_path= for a config")
    weights = _published_weights(name) if pretrained else None
    config = _base_config(source, checkpoint, weights)
    config = _changed(config, overrides, image_size)
    num_classes, label_names = _requested_classes(num_classes, label_names)
    model = EfficientDet(config)
    _load(model, weights, checkpoint, pretrained_backbone)
    _set_classes(model, num_classes, label_names)
    return model if device is None else model.to(device)


def resolve_model(
    model: ModelSource | EfficientDet | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    pretrained: bool = False,
    checkpoint_ema: bool | None = None,
    image_size: int | tuple[int, int] | None = None,
    device: str | torch.device | None = None,
) -> EfficientDet:
    """The model a command or :class:`~efficientdet.predict.Predictor` is given as ``--model`` / ``--checkpoint``
    / ``--pretrained``: :func:`create_model` with this module's rules, plus:

    - ``model`` may be a built :class:`EfficientDet` (``checkpoint`` is then loaded into it) or a weights file
      (taken as the checkpoint);
    - ``pretrained`` applies to a registered name only (a config, a file or a built model brings its own
      weights or none);
    - a model left with random weights logs a ``random weights:`` warning (its results mean nothing).
    """
    if isinstance(model, EfficientDet):
        if checkpoint is not None:
            read_model_checkpoint(checkpoint, use_ema=checkpoint_ema).load_into(model)
        return model
    is_name = isinstance(model, str) and Path(model).suffix not in WEIGHT_SUFFIXES + CONFIG_SUFFIXES
    has_file = checkpoint is not None or (model is not None and not is_name and not isinstance(model, DetectorConfig)
                                          and Path(model).suffix in WEIGHT_SUFFIXES)
    published = pretrained and is_name and checkpoint is None
    net = create_model(model, pretrained=published, checkpoint_path=checkpoint, checkpoint_ema=checkpoint_ema,
                       image_size=image_size, device=device)
    if not (published or has_file):
        warn_random_weights(net.config.name)
    return net


def model_config(source: ModelSource) -> DetectorConfig:
    """The config that a registered name, a :class:`DetectorConfig`, a model config file (``.yaml``/``.json``) or
    a weights file recording its config describes, without building a model (e.g. for anchors or the input size)."""
    if isinstance(source, DetectorConfig):
        return source
    if Path(source).suffix in CONFIG_SUFFIXES:
        return load_config_file(source)
    if Path(source).suffix in WEIGHT_SUFFIXES:
        return _base_config(*_open_source(None, source, None), None)
    from efficientdet import registry

    return registry.get_config(str(source))


def warn_random_weights(name: str) -> None:
    """Log that model ``name`` runs with random weights: its detections, metrics and post-processing times
    are not a trained model's. Called where a model is built for results (predict, validate, export,
    benchmark) with neither published weights nor a checkpoint."""
    log.warning("random weights: %s was given neither its published weights (--pretrained / pretrained=True) nor a "
                "checkpoint (--checkpoint FILE); its detections, metrics and post-processing times are not a trained "
                "model's", name)


# --- the steps of create_model -----------------------------------------------------------------------------


def _refuse_unknown(unexpected: Mapping[str, Any]) -> None:
    if unexpected:
        bad = next(iter(unexpected))
        close = difflib.get_close_matches(bad, _ARGUMENTS, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(f"create_model() got an unknown argument {bad!r}.{hint} Valid: {', '.join(_ARGUMENTS)}")


def _open_source(source: ModelSource | None, checkpoint_path: str | os.PathLike[str] | ModelCheckpoint | None,
                 ema: bool | None) -> tuple[str | DetectorConfig | None, ModelCheckpoint | None]:
    """The name or config asked for and the checkpoint to load: files are read here (a config file becomes a
    :class:`DetectorConfig`, a weights file in place of a name becomes the checkpoint)."""
    if isinstance(source, os.PathLike) or (isinstance(source, str) and Path(source).suffix in CONFIG_SUFFIXES
                                           + WEIGHT_SUFFIXES):
        path = Path(source)
        if path.suffix in CONFIG_SUFFIXES:
            source = model_config(path)
        elif path.suffix in WEIGHT_SUFFIXES:
            if checkpoint_path is not None:
                raise ConfigError(f"got weights {path} and checkpoint_path={checkpoint_path}; pass one")
            source, checkpoint_path = None, path
        else:
            raise ConfigError(f"{path}: expected a model config ({', '.join(CONFIG_SUFFIXES)}) or weights "
                              f"({', '.join(WEIGHT_SUFFIXES)}) file, or a registered model name")
    if source is not None and not isinstance(source, (str, DetectorConfig)):
        raise ConfigError(f"expected a model name or DetectorConfig, got {type(source).__name__}")
    checkpoint = checkpoint_path if isinstance(checkpoint_path, ModelCheckpoint) or checkpoint_path is None \
        else read_model_checkpoint(checkpoint_path, use_ema=ema)
    if source is None and checkpoint is None:
        raise ConfigError("give a model name (e.g. tf_efficientdet_d0) or a checkpoint file: --model NAME or "
                          "--checkpoint FILE (`efficientdet models` lists the names)")
    if source is None and checkpoint is not None and checkpoint.config is None:
        raise ConfigError(f"checkpoint {checkpoint.path} does not say which model it holds; pass the model name too "
                          f"(--model NAME, or create_model(NAME, checkpoint_path={str(checkpoint.path)!r}))")
    return source, checkpoint


def _published_weights(name: str | None) -> Any:
    """The registry's record of the published weights of ``name`` (metadata only; nothing is downloaded)."""
    from efficientdet import registry

    if name is None:
        return None
    return registry.get_weights(name)


def _base_config(source: str | DetectorConfig | None, checkpoint: ModelCheckpoint | None,
                 weights: Any) -> DetectorConfig:
    """The config before changes: the checkpoint's own when it records one (unless an explicit config is given),
    else the name's or the given config, with the class count and names of the weights that will be loaded."""
    from efficientdet import registry

    if checkpoint is not None and checkpoint.config is not None and not isinstance(source, DetectorConfig):
        if source is not None and registry.resolve_name(source).split(".", 1)[0] != checkpoint.config.name:
            log.warning("checkpoint %s holds %r; using its own config rather than %r", checkpoint.path,
                        checkpoint.config.name, source)
        return checkpoint.config
    config = registry.get_config(source) if isinstance(source, str) else source
    assert config is not None  # _open_source refuses a missing source without a described checkpoint
    if checkpoint is not None and checkpoint.num_classes is not None and checkpoint.num_classes != config.num_classes:
        # build with the checkpoint's class count so that it loads; re-initialised later when asked
        return replace(config, num_classes=checkpoint.num_classes, label_names=checkpoint.label_names,
                       category_ids=checkpoint.category_ids)
    if checkpoint is not None and checkpoint.label_names is not None:
        return replace(config, label_names=checkpoint.label_names, category_ids=checkpoint.category_ids)
    if checkpoint is None and weights is not None:
        return replace(config, num_classes=weights.num_classes, label_names=weights.label_names,
                       category_ids=weights.category_ids)
    return config


def _changed(config: DetectorConfig, overrides: Mapping[str, Any] | None,
             image_size: int | tuple[int, int] | None) -> DetectorConfig:
    """``config`` with dotted-path ``overrides`` and a default input size applied."""
    if overrides:
        config = replace_nested(config, **dict(overrides))
    if image_size is not None:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(int(s) for s in image_size)
        if len(size) != 2 or min(size) < 1:
            raise ConfigError(f"image_size must be an int or (height, width), got {image_size!r}")
        config = replace_nested(config, preprocess__image_size=size)
    return config


def _requested_classes(num_classes: int | None, label_names: Any) -> tuple[int | None, tuple[str, ...] | None]:
    if label_names is None:
        return num_classes, None
    label_names = tuple(str(n) for n in label_names)
    if num_classes is None:
        num_classes = len(label_names)
    if len(label_names) != num_classes:
        raise ConfigError(f"{len(label_names)} label_names for num_classes={num_classes}; give one name per class")
    return num_classes, label_names


def _load(model: EfficientDet, weights: Any, checkpoint: ModelCheckpoint | None, pretrained_backbone: bool) -> None:
    """Load the checkpoint, else the published weights, else (when asked) ImageNet backbone weights."""
    if checkpoint is not None:
        checkpoint.load_into(model)
    elif weights is not None:
        from efficientdet.weights.pretrained import load_pretrained

        load_pretrained(model, weights)
    elif pretrained_backbone:
        from efficientdet.weights.pretrained import load_backbone_pretrained

        load_backbone_pretrained(model)


def _set_classes(model: EfficientDet, num_classes: int | None, label_names: tuple[str, ...] | None) -> None:
    """A new class head when another class count is asked for; new names otherwise."""
    if num_classes is not None and num_classes != model.config.num_classes:
        model.reset_classes(num_classes, label_names)
    elif label_names is not None:
        model.config = replace(model.config, label_names=label_names)


def load_config_file(path: str | Path) -> DetectorConfig:
    """A :class:`DetectorConfig` from YAML/JSON: either a full config, or ``base: <registered name>`` plus
    dotted or nested changes (``fpn: {channels: 96}``, ``num_classes: 3``)."""
    import yaml

    from efficientdet.config import flatten_changes

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

    config = registry.get_config(base)
    return replace_nested(config, **flatten_changes(config, data))


__all__ = ["create_model", "resolve_model", "model_config", "load_weights", "load_config_file", "warn_random_weights",
           "WEIGHT_SUFFIXES", "CONFIG_SUFFIXES"]
