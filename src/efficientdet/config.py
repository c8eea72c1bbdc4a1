"""Frozen configuration dataclasses.

Every part of the detector receives only its own slice of the configuration. Configs are immutable:
derive a changed copy with :func:`dataclasses.replace` (or :func:`replace_nested` for dotted paths).

Conventions (see the README): boxes are ``xyxy`` float pixels, image sizes are ``(height, width)``,
class labels are ``0 .. num_classes - 1`` with no background slot.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from efficientdet.errors import ConfigError

# Named defaults shared by several parts of the library.
PRIOR_PROB = 0.01
"""Initial foreground probability of the class head (the official focal-loss bias init)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The string choices of the configs: each field typed with one of these is checked when the config is built
# (:func:`check_choices`); code that uses the value never checks it again. ``choices(NmsMethod)`` lists them.
NormKind = Literal["batchnorm", "syncbatchnorm", "frozenbatchnorm", "groupnorm", "layernorm"]
FpnTopology = Literal["bifpn", "pan", "qufpn"]
FusionWeighting = Literal["fastattn", "attn", "sum"]
PostprocessMode = Literal["topk", "global"]
NmsMethod = Literal["hard", "soft"]
Interpolation = Literal["bilinear", "nearest", "bicubic"]
Recipe = Literal["auto", "finetune", "official"]
AmpMode = Literal["none", "bf16", "fp16"]
Precision = Literal["float32", "float16", "bfloat16"]
ClipMode = Literal["norm", "value", "agc"]


def choices(literal: Any) -> tuple[str, ...]:
    """The values of a ``Literal`` choice type, e.g. ``choices(NmsMethod) == ("hard", "soft")``."""
    return tuple(typing.get_args(literal))


PRECISIONS = choices(Precision)
"""Inference number formats offered by the commands (``--dtype``); :mod:`efficientdet.precision` maps them."""


@functools.cache
def _choice_fields(cls: type) -> dict[str, tuple[tuple[Any, ...], bool]]:
    """``field -> (allowed values, None allowed)`` for the ``Literal``-typed fields of a config dataclass."""
    out = {}
    for name, hint in typing.get_type_hints(cls).items():
        args = typing.get_args(hint)
        optional = type(None) in args
        literal = next((a for a in (hint, *args) if typing.get_origin(a) is Literal), None)
        if literal is not None:
            out[name] = (typing.get_args(literal), optional)
    return out


def check_choices(config: Any) -> None:
    """:class:`ConfigError` naming the field (and the closest allowed values) when a ``Literal``-typed field of
    ``config`` holds another value. Called by every config's ``__post_init__``."""
    where = getattr(config, "WHERE", type(config).__name__ + ".{}")
    for name, (allowed, optional) in _choice_fields(type(config)).items():
        value = getattr(config, name)
        if value in allowed or (optional and value is None):
            continue
        close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=3, cutoff=0.5)
        hint = f". Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(f"{where.format(name)}={value!r}: choose one of {', '.join(map(str, allowed))}{hint}")


class _Checked:
    """Mixin: the choices of a frozen config are checked on construction (and on every ``replace``)."""

    WHERE: ClassVar[str]

    def __post_init__(self) -> None:
        check_choices(self)


@dataclass(frozen=True)
class NormConfig(_Checked):
    """A normalisation layer.

    ``kind``: ``batchnorm`` | ``syncbatchnorm`` | ``frozenbatchnorm`` | ``groupnorm`` | ``layernorm``.
    ``eps`` and ``momentum`` use PyTorch's meaning (momentum 0.01 == TF decay 0.99).
    """

    WHERE: ClassVar[str] = "norm.{}"

    kind: NormKind = "batchnorm"
    eps: float = 1e-3
    momentum: float = 0.01
    groups: int = 8  # groupnorm only


@dataclass(frozen=True)
class BackboneConfig:
    """A timm backbone used with ``features_only=True``.

    ``out_indices``: timm feature indices feeding pyramid levels ``min_level ..``; ``None`` picks the
    indices whose reduction is ``2**level`` for each level the backbone provides.
    ``kwargs``: extra keyword arguments for ``timm.create_model`` as ``(name, value)`` pairs.
    """

    name: str = "tf_efficientnet_b0"
    out_indices: tuple[int, ...] | None = None
    drop_path_rate: float = 0.0
    kwargs: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class FpnNode(_Checked):
    """One fusion node of a feature pyramid: fuses the running features ``inputs`` at pyramid ``level``.

    ``inputs`` index the running feature list, which starts as ``[P_min .. P_max]`` and grows by one
    entry per node. ``weight_method``: ``fastattn`` | ``attn`` (softmax) | ``sum``.
    """

    WHERE: ClassVar[str] = "fpn.nodes[].{}"

    level: int
    inputs: tuple[int, ...]
    weight_method: FusionWeighting = "fastattn"


@dataclass(frozen=True)
class FpnConfig(_Checked):
    """The feature pyramid (BiFPN, PAN or QuadFPN, given as data).

    ``topology``: ``bifpn`` | ``pan`` | ``qufpn``, expanded by :func:`efficientdet.modeling.fpn.fpn_topology`
    unless ``nodes`` gives the nodes explicitly. ``downsample``: ``max`` | ``avg`` | any
    ``F.interpolate`` mode; ``upsample``: any ``F.interpolate`` mode. ``pad_type``: ``same`` (TF SAME,
    needed by TF-ported weights) or ``""`` (PyTorch symmetric). ``conv_bn_act``: activation after the
    norm (official ``conv_bn_act_pattern``) instead of before the conv.
    """

    WHERE: ClassVar[str] = "fpn.{}"

    topology: FpnTopology = "bifpn"
    weight_method: FusionWeighting = "fastattn"
    nodes: tuple[FpnNode, ...] | None = None
    channels: int = 64
    repeats: int = 3
    separable_conv: bool = True
    downsample: str = "max"
    upsample: str = "nearest"
    pad_type: str = "same"
    resample_bn: bool = True
    conv_bn_act: bool = False
    redundant_bias: bool = True
    act: str = "swish"
    norm: NormConfig = NormConfig()


@dataclass(frozen=True)
class HeadConfig:
    """Class and box heads, shared across levels with a norm per level and repeat.

    ``act`` / ``norm``: ``None`` means the same as the FPN's. ``survival_prob``: official stochastic
    depth in the heads (residual around repeats after the first); ``None`` disables it.
    """

    repeats: int = 3
    separable_conv: bool = True
    act: str | None = None
    norm: NormConfig | None = None
    redundant_bias: bool = True
    pad_type: str = "same"
    prior_prob: float = PRIOR_PROB
    survival_prob: float | None = None


@dataclass(frozen=True)
class AnchorConfig:
    """Anchor layout (the official one).

    ``aspect_ratios``: ``(x_scale, y_scale)`` pairs; a plain ratio ``r = width / height`` is stored as
    ``(sqrt(r), 1 / sqrt(r))`` by :func:`aspect_pairs`. ``anchor_scale``: one value, or one per level.
    """

    min_level: int = 3
    max_level: int = 7
    num_scales: int = 3
    aspect_ratios: tuple[tuple[float, float], ...] = ((1.0, 1.0), (1.4, 0.7), (0.7, 1.4))
    anchor_scale: float | tuple[float, ...] = 4.0

    @property
    def num_anchors(self) -> int:
        """Anchors per feature-map location."""
        return self.num_scales * len(self.aspect_ratios)


def aspect_pairs(ratios: Any) -> tuple[tuple[float, float], ...]:
    """Normalise aspect ratios to ``(x_scale, y_scale)`` pairs; ``r`` (width / height) -> ``(sqrt r, 1/sqrt r)``."""
    out = []
    for r in ratios:
        if isinstance(r, (tuple, list)):
            if len(r) != 2:
                raise ConfigError(f"aspect ratio pair {r!r} must have two values (x_scale, y_scale)")
            out.append((float(r[0]), float(r[1])))
        else:
            x = float(r) ** 0.5
            out.append((x, 1.0 / x))
    return tuple(out)


@dataclass(frozen=True)
class LossConfig:
    """Detection loss (official defaults).

    ``box_loss``: ``huber`` | ``smooth_l1`` (beta = ``delta``) | ``iou`` | ``giou`` | ``diou`` | ``ciou``.
    The IoU-family losses (on decoded boxes, weighted by ``iou_loss_weight``) replace the Huber loss rather
    than being added to it as the official code does.
    """

    alpha: float = 0.25
    gamma: float = 1.5
    label_smoothing: float = 0.0
    legacy_focal: bool = False
    delta: float = 0.1
    box_loss_weight: float = 50.0
    box_loss: str = "huber"
    iou_loss_weight: float = 1.0
    match_threshold: float = 0.5
    unmatched_threshold: float = 0.5


@dataclass(frozen=True)
class PostprocessConfig(_Checked):
    """Turning head outputs into detections.

    ``mode``: ``topk`` (effdet: top-k over anchors x classes, per-class NMS) or ``global`` (official:
    best class per anchor, one class-agnostic NMS). ``nms``: ``hard`` | ``soft`` (Gaussian).
    ``soft_nms_sigma`` is the official config sigma: a score decays by ``exp(-IoU^2 / sigma)``.
    ``score_threshold`` 0 means the official default: none for hard NMS, 0.001 for soft-NMS.
    ``class_agnostic`` and ``max_detection_points`` apply to ``topk`` mode only (``global`` is
    class-agnostic by definition).
    """

    WHERE: ClassVar[str] = "postprocess.{}"

    mode: PostprocessMode = "topk"
    nms: NmsMethod = "hard"
    iou_threshold: float = 0.5
    soft_nms_sigma: float = 0.5
    score_threshold: float = 0.0
    max_detection_points: int = 5000
    max_detections: int = 100
    class_agnostic: bool = False

    def __post_init__(self) -> None:
        check_choices(self)
        if self.nms == "soft" and self.soft_nms_sigma <= 0:
            raise ConfigError(f"postprocess.soft_nms_sigma must be > 0 for soft NMS, got {self.soft_nms_sigma}")
        if self.max_detections < 1:
            raise ConfigError(f"postprocess.max_detections must be >= 1, got {self.max_detections}")
        if self.max_detection_points < 1:
            raise ConfigError(f"postprocess.max_detection_points must be >= 1, got {self.max_detection_points}")
        if not 0.0 <= self.score_threshold < 1.0:
            raise ConfigError(f"postprocess.score_threshold must be in [0, 1), got {self.score_threshold}")


@dataclass(frozen=True)
class PreprocessConfig(_Checked):
    """Input preprocessing: letterbox resize to ``image_size`` (H, W), then normalise.

    ``mean`` / ``std`` in the 0..1 pixel range. ``fill``: padding value as ``mean`` or a 0..255 number.
    """

    image_size: tuple[int, int] = (512, 512)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    WHERE: ClassVar[str] = "preprocess.{}"

    fill: str | float = "mean"
    interpolation: Interpolation = "bilinear"


@dataclass(frozen=True)
class DetectorConfig:
    """Everything that defines an EfficientDet model, its anchors, loss and post-processing.

    ``label_names`` / ``category_ids``: the name and dataset id (e.g. COCO category id) of each class index
    ``0 .. num_classes - 1``, when known; predictions map labels back through them.
    """

    name: str = "efficientdet"
    num_classes: int = 90
    backbone: BackboneConfig = BackboneConfig()
    fpn: FpnConfig = FpnConfig()
    head: HeadConfig = HeadConfig()
    anchors: AnchorConfig = AnchorConfig()
    loss: LossConfig = LossConfig()
    postprocess: PostprocessConfig = PostprocessConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    label_names: tuple[str, ...] | None = None
    category_ids: tuple[int, ...] | None = None

    @property
    def min_level(self) -> int:
        return self.anchors.min_level

    @property
    def max_level(self) -> int:
        return self.anchors.max_level

    @property
    def num_levels(self) -> int:
        return self.anchors.max_level - self.anchors.min_level + 1

    @property
    def image_size(self) -> tuple[int, int]:
        return self.preprocess.image_size

    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML/JSON-friendly dict (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise an error that lists close matches."""
        return _build(cls, data, "config")


@dataclass(frozen=True)
class TrainConfig:
    """A training run.

    ``recipe``: ``auto`` | ``finetune`` | ``official`` (see :mod:`efficientdet.engine.recipe`) fills in ``lr``,
    ``warmup_epochs``, ``ema_decay`` and ``bn_momentum`` when they are ``None``; a value set here always wins.
    ``auto`` picks ``finetune`` (settings derived from the run's steps and batch) unless the run is long and
    the dataset large. ``official``: ``lr_base * batch_size * world_size * grad_accum / lr_base_batch``
    (0.08 per 64 images, scaled linearly), 1 warm-up epoch, EMA 0.9998, the model's BatchNorm momentum.
    ``bn_momentum``: running-statistics momentum of every BatchNorm layer (PyTorch's meaning).
    ``head_lr_scale``: the pyramid's and heads' learning rate relative to ``lr`` (the backbone's); the recipe
    fills it in when ``None``.
    ``optimizer``: ``momentum`` (SGD, momentum 0.9, the official choice) or any timm optimizer name
    (``adamw``, ``lamb``, ...). ``scheduler``: any timm scheduler (``cosine`` default), stepped per update. ``clip_mode``: ``norm`` | ``value`` | ``agc``.
    ``amp``: ``none`` | ``bf16`` | ``fp16`` (with loss scaling). ``freeze``: parameter-name patterns
    (fnmatch) or the shortcuts ``backbone`` and ``backbone+fpn``; norm layers whose parameters are all frozen
    keep their statistics (eval mode). ``model_overrides``: dotted
    :class:`DetectorConfig` changes, e.g. ``{"loss.box_loss": "giou"}``. Checkpoints (``last.pth``): after
    each epoch, and within an epoch every ``save_every_steps`` optimizer steps (0: off) and after
    ``save_every_minutes`` of training (0: off), so a kill loses at most that much. ``log_every_steps``:
    TensorBoard per-step scalars. Values are checked on construction (:class:`ConfigError` naming the key).
    """

    # model
    model: str = "tf_efficientdet_lite0"
    pretrained: bool = False
    pretrained_backbone: bool = True
    checkpoint: str | None = None
    image_size: tuple[int, int] | None = None
    model_overrides: tuple[tuple[str, Any], ...] = ()
    # data
    train_data: str = ""
    val_data: str | None = None
    data_format: str | None = None
    train_split: str | None = None  # part of train_data (VOC image set, YOLO split, ...); None: "train"
    val_split: str | None = None  # part of val_data; None: "val"
    batch_size: int = 8
    workers: int = 2
    scale_min: float = 0.1
    scale_max: float = 2.0
    hflip: float = 0.5
    mosaic: float = 0.0
    randaugment: bool = False
    random_erasing: float = 0.0
    # optimisation
    epochs: int = 300
    recipe: Recipe = "auto"
    head_lr_scale: float | None = None
    optimizer: str = "momentum"
    lr: float | None = None
    lr_base: float = 0.08
    lr_base_batch: int = 64
    momentum: float = 0.9
    weight_decay: float = 4e-5
    scheduler: str = "cosine"
    warmup_epochs: float | None = None
    warmup_lr_ratio: float = 0.1
    min_lr_ratio: float = 0.0
    lr_noise: tuple[float, ...] | None = None
    clip_grad: float | None = 10.0
    clip_mode: ClipMode = "norm"
    grad_accum: int = 1
    ema: bool = True
    ema_decay: float | None = None
    bn_momentum: float | None = None
    # execution
    device: str = "auto"
    amp: AmpMode = "none"
    channels_last: bool = True
    compile: bool = False
    grad_checkpointing: bool = False
    sync_bn: bool = False
    freeze: tuple[str, ...] = ()
    seed: int = 42
    # output
    output: str = "runs/train"
    eval_every: int = 1
    save_every_epochs: int = 0
    save_every_steps: int = 0
    save_every_minutes: float = 10.0
    log_every_steps: int = 10
    tensorboard: bool = False
    max_nonfinite_steps: int = 10
    progress: bool = True

    WHERE: ClassVar[str] = "train setting {}"

    def __post_init__(self) -> None:
        # accept a mapping or pairs for model_overrides, and lists for the tuple fields
        overrides = self.model_overrides
        if isinstance(overrides, dict):
            overrides = overrides.items()
        object.__setattr__(self, "model_overrides", tuple((str(k), _tupled(v)) for k, v in overrides))
        for name in ("freeze", "image_size", "lr_noise"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        if isinstance(self.image_size, int) and not isinstance(self.image_size, bool):
            object.__setattr__(self, "image_size", (self.image_size, self.image_size))
        _check_train_config(self)

    def to_dict(self) -> dict[str, Any]:
        data = _plain(dataclasses.asdict(self))
        data["model_overrides"] = {k: _plain(v) for k, v in self.model_overrides}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        if isinstance(data.get("model_overrides"), dict):
            data["model_overrides"] = tuple(data["model_overrides"].items())
        return _build(cls, data, "train config")


# TrainConfig fields checked on construction: (kind, lowest, highest, lowest allowed itself); ``None`` = unbounded.
_TRAIN_LIMITS: dict[str, tuple[type, float | None, float | None, bool]] = {
    "batch_size": (int, 1, None, True), "workers": (int, 0, None, True), "epochs": (int, 1, None, True),
    "grad_accum": (int, 1, None, True), "lr_base_batch": (int, 1, None, True), "seed": (int, None, None, True),
    "eval_every": (int, 0, None, True), "save_every_epochs": (int, 0, None, True),
    "save_every_steps": (int, 0, None, True), "log_every_steps": (int, 0, None, True),
    "max_nonfinite_steps": (int, 1, None, True),
    "lr": (float, 0, None, False), "lr_base": (float, 0, None, False), "momentum": (float, 0, 1, True),
    "weight_decay": (float, 0, None, True), "warmup_epochs": (float, 0, None, True),
    "warmup_lr_ratio": (float, 0, 1, True), "min_lr_ratio": (float, 0, 1, True), "clip_grad": (float, 0, None, False),
    "ema_decay": (float, 0, 1, True), "scale_min": (float, 0, None, False), "scale_max": (float, 0, None, False),
    "hflip": (float, 0, 1, True), "mosaic": (float, 0, 1, True), "random_erasing": (float, 0, 1, True),
    "save_every_minutes": (float, 0, None, True), "bn_momentum": (float, 0, 1, False),
    "head_lr_scale": (float, 0, None, False),
}
_TRAIN_OPTIONAL = ("lr", "clip_grad", "warmup_epochs", "ema_decay", "bn_momentum", "head_lr_scale")
"""Settings that may be ``None``: the recipe (``engine/recipe.py``) fills in lr, warm-up, EMA decay and BN
momentum; ``clip_grad=None`` turns clipping off."""
RECIPES = choices(Recipe)
"""Accepted values of ``TrainConfig.recipe`` (what each does: :mod:`efficientdet.engine.recipe`)."""


def _check_train_config(cfg: TrainConfig) -> None:
    """Refuse nonsensical training settings before anything starts (``ConfigError`` naming the key)."""
    for name, (kind, low, high, low_ok) in _TRAIN_LIMITS.items():
        value = getattr(cfg, name)
        if value is None and name in _TRAIN_OPTIONAL:
            continue
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not is_number or (kind is int and not isinstance(value, int)):
            raise ConfigError(f"train setting {name}={value!r}: expected {'an integer' if kind is int else 'a number'}"
                              f"{', or null' if name in _TRAIN_OPTIONAL else ''}")
        too_low = low is not None and (value < low or (value == low and not low_ok))
        too_high = high is not None and value > high
        if too_low or too_high:
            lower = f"{'>=' if low_ok else '>'} {low}" if low is not None else ""
            upper = f"<= {high}" if high is not None else ""
            raise ConfigError(f"train setting {name}={value!r}: must be {' and '.join(b for b in (lower, upper) if b)}")
    if cfg.scale_min > cfg.scale_max:
        raise ConfigError(f"train settings scale_min={cfg.scale_min} > scale_max={cfg.scale_max}: swap them")
    check_choices(cfg)
    if cfg.image_size is not None:
        size = cfg.image_size
        if not isinstance(size, tuple) or len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
            raise ConfigError(f"train setting image_size={list(size)!r}: expected a positive integer or two [height, width]")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _tupled(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tupled(v) for v in value)
    return value


def unknown_key_message(key: str, choices: Any, what: str) -> str:
    """An error message for an unknown name that lists the closest valid ones."""
    choices = sorted(choices)
    close = difflib.get_close_matches(key, choices, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return f"unknown {what} {key!r}.{hint} Valid: {', '.join(choices)}"


def _build(cls: Any, data: dict[str, Any], path: str) -> Any:
    """``cls(**data)`` for a config dataclass, nested configs built from their dicts (by the declared field types)
    and plain values checked against ``int`` / ``float`` / ``bool`` / ``str`` declarations; unknown keys raise an
    error that lists close matches."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(unknown_key_message(key, fields, f"key in {path}"))
        kwargs[key] = _field_value(cls, fields[key], value, path)
    return cls(**kwargs)


def _field_value(cls: Any, f: dataclasses.Field, value: Any, path: str) -> Any:
    """A value read from YAML/JSON for field ``f`` of ``cls``: a config (or a tuple of configs) when the field
    declares one, else the value with lists as tuples."""
    nested, many = _config_type(cls, f.name)
    if nested is not None and many and isinstance(value, (list, tuple)):
        return tuple(_build(nested, dict(v), f"{path}.{f.name}") for v in value)
    if nested is not None and not many and isinstance(value, dict):
        return _build(nested, value, f"{path}.{f.name}")
    value = _tupled(value)
    _check_scalar(f, value, path)
    return value


@functools.cache
def _config_type(cls: type, name: str) -> tuple[type | None, bool]:
    """``(config dataclass, is a tuple of them)`` declared by field ``name`` of ``cls`` (``X``, ``X | None``,
    ``tuple[X, ...]``, ``tuple[X, ...] | None``), or ``(None, False)``."""
    hint = typing.get_type_hints(cls)[name]
    for part in (hint, *typing.get_args(hint)):
        if dataclasses.is_dataclass(part):
            return part, False  # type: ignore[return-value]
        if typing.get_origin(part) is tuple:
            inner = typing.get_args(part)
            if inner and dataclasses.is_dataclass(inner[0]):
                return inner[0], True  # type: ignore[return-value]
    return None, False


def flatten_changes(config: Any, changes: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested changes of a config (``{"fpn": {"channels": 96}}``) as dotted paths for :func:`replace_nested`
    (``{"fpn.channels": 96}``). A mapping goes deeper where the config holds a config; where it holds ``None``
    (e.g. ``head.norm``) it becomes the declared config type built from the mapping."""
    flat: dict[str, Any] = {}
    for key, value in changes.items():
        path = f"{prefix}{key}"
        names = {f.name: f for f in dataclasses.fields(config)} if dataclasses.is_dataclass(config) else {}
        current = getattr(config, key, None) if key in names else None
        if isinstance(value, dict) and dataclasses.is_dataclass(current):
            flat.update(flatten_changes(current, value, f"{path}."))
        elif isinstance(value, (dict, list)) and key in names:
            flat[path] = _field_value(type(config), names[key], value, path.rsplit(".", 1)[0] or "config")
        else:
            flat[path] = _tupled(value)
    return flat


_SCALARS = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def _check_scalar(f: dataclasses.Field, value: Any, path: str) -> None:
    """:class:`ConfigError` when a field declared ``int`` / ``float`` / ``bool`` / ``str`` (optionally ``| None``)
    gets a value of another type (e.g. ``num_classes: "six"`` from an edited file); other fields are left to
    their ``__post_init__`` checks."""
    declared = str(f.type).replace(" ", "")
    optional = declared.endswith("|None")
    kinds = _SCALARS.get(declared.removesuffix("|None"))
    if kinds is None or (optional and value is None):
        return
    if isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool)):
        return
    raise ConfigError(f"{path}.{f.name} is {value!r} ({type(value).__name__}); expected "
                      f"{declared.removesuffix('|None')}{' or null' if optional else ''}")


def replace_nested(config: Any, **changes: Any) -> Any:
    """Return a copy of a frozen config with dotted-path changes, e.g. ``{"fpn.channels": 88}``.

    Use ``__`` in place of ``.`` when passing keyword arguments: ``replace_nested(cfg, fpn__channels=88)``.
    """
    grouped: dict[str, dict[str, Any]] = {}
    direct: dict[str, Any] = {}
    names = {f.name for f in dataclasses.fields(config)}
    for key, value in changes.items():
        key = key.replace("__", ".")
        head, _, rest = key.partition(".")
        if head not in names:
            raise ConfigError(unknown_key_message(head, names, f"field of {type(config).__name__}"))
        if rest:
            grouped.setdefault(head, {})[rest] = value
        else:
            direct[head] = value
    for head, sub in grouped.items():
        direct[head] = replace_nested(getattr(config, head), **sub)
    return dataclasses.replace(config, **direct)


__all__ = [
    "PRIOR_PROB",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NormConfig",
    "BackboneConfig",
    "FpnNode",
    "FpnConfig",
    "HeadConfig",
    "AnchorConfig",
    "aspect_pairs",
    "LossConfig",
    "PostprocessConfig",
    "PreprocessConfig",
    "DetectorConfig",
    "TrainConfig",
    "replace_nested",
    "unknown_key_message",
]


def train_config_from(yaml_file: str | None = None, sets: list[str] | tuple[str, ...] = (), **explicit: Any) -> TrainConfig:
    """Build a :class:`TrainConfig` from defaults, a YAML file, explicit values and ``key=value`` overrides.

    Later sources win: YAML, then ``explicit`` (non-``None`` values only), then ``sets``. Values in ``sets``
    are parsed as YAML (``lr=0.01``, ``freeze=[backbone]``, ``amp=bf16``). Keys starting with ``model.``
    change the model config (``model.loss.box_loss=giou`` -> ``model_overrides``).
    """
    import yaml

    data: dict[str, Any] = {}
    if yaml_file:
        try:
            with open(yaml_file, encoding="utf-8") as f:
                loaded = yaml.safe_load(f) or {}
        except OSError as err:
            raise ConfigError(f"cannot read config file {yaml_file}: {err}") from err
        if not isinstance(loaded, dict):
            raise ConfigError(f"{yaml_file} must hold a mapping of TrainConfig keys, got {type(loaded).__name__}")
        data.update(loaded)
    data.update({k: v for k, v in explicit.items() if v is not None})
    model_overrides = dict(data.pop("model_overrides", {}) or {})
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: use key=value, e.g. --set lr=0.01")
        value = yaml.safe_load(raw)
        if key.startswith("model."):
            model_overrides[key[len("model."):]] = value
        else:
            data[key.strip()] = value
    if model_overrides:
        data["model_overrides"] = model_overrides
    return TrainConfig.from_dict(data)
