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


# --- training: TrainConfig and its slices ------------------------------------------------------------------
#
# A run's settings come in slices, each handed whole to the part that uses it: ``detector`` (what is trained,
# from which weights) to the model builder, ``data`` to the dataset and loader, ``augment`` to the loader's
# transforms, ``optim`` to the optimiser, schedule, clipping, EMA and recipe, ``runtime`` to the device and
# precision set-up, ``outputs`` to the hooks that evaluate, save and log. Field names are unique across the
# slices, so a flat key (``lr``, ``--set lr=0.01``, a flat YAML file, an old checkpoint) names one field of
# one slice (:data:`TRAIN_SLICE_OF`).

AMP_CHOICES = choices(AmpMode)
CLIP_MODES = choices(ClipMode)
RECIPES = choices(Recipe)
"""Accepted values of ``TrainConfig.recipe`` (what each does: :mod:`efficientdet.engine.recipe`)."""

# Numeric training settings, checked by their slice on construction: (kind, lowest, highest, lowest allowed
# itself); ``None`` = unbounded.
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
_TRAIN_CHOICES = {"amp": AMP_CHOICES, "clip_mode": CLIP_MODES, "recipe": RECIPES}


def _check_train_slice(part: Any) -> None:
    """Refuse nonsensical values of one slice (``ConfigError`` naming the key, with the closest valid choice)."""
    for f in dataclasses.fields(part):
        value = getattr(part, f.name)
        if f.name in _TRAIN_CHOICES and value not in _TRAIN_CHOICES[f.name]:
            choices = _TRAIN_CHOICES[f.name]
            close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"train setting {f.name}={value!r}: choose one of {', '.join(choices)}{hint}")
        if f.name not in _TRAIN_LIMITS or (value is None and f.name in _TRAIN_OPTIONAL):
            continue
        kind, low, high, low_ok = _TRAIN_LIMITS[f.name]
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not is_number or (kind is int and not isinstance(value, int)):
            raise ConfigError(f"train setting {f.name}={value!r}: expected {'an integer' if kind is int else 'a number'}"
                              f"{', or null' if f.name in _TRAIN_OPTIONAL else ''}")
        too_low = low is not None and (value < low or (value == low and not low_ok))
        too_high = high is not None and value > high
        if too_low or too_high:
            lower = f"{'>=' if low_ok else '>'} {low}" if low is not None else ""
            upper = f"<= {high}" if high is not None else ""
            raise ConfigError(f"train setting {f.name}={value!r}: must be "
                              f"{' and '.join(b for b in (lower, upper) if b)}")


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


@dataclass(frozen=True)
class TrainModelConfig:
    """What is trained: ``model`` (a registered name or config), started from its published weights
    (``pretrained``), ImageNet backbone weights (``pretrained_backbone``) or a ``checkpoint``; ``image_size``
    ``(H, W)`` (one int: square; ``None``: the model's); ``model_overrides``: dotted :class:`DetectorConfig`
    changes, e.g. ``{"loss.box_loss": "giou"}`` (a mapping or pairs)."""

    model: str = "tf_efficientdet_lite0"
    pretrained: bool = False
    pretrained_backbone: bool = True
    checkpoint: str | None = None
    image_size: tuple[int, int] | None = None
    model_overrides: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        overrides = self.model_overrides
        if isinstance(overrides, dict):
            overrides = overrides.items()
        _set(self, "model_overrides", tuple((str(k), _tupled(v)) for k, v in overrides))
        size = self.image_size
        if isinstance(size, list):
            size = tuple(size)
        if isinstance(size, int) and not isinstance(size, bool):
            size = (size, size)
        _set(self, "image_size", size)
        if size is not None and not (isinstance(size, tuple) and len(size) == 2 and all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
            shown = list(size) if isinstance(size, tuple) else size
            raise ConfigError(f"train setting image_size={shown!r}: expected a positive integer or two [height, width]")


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from: ``train_data`` / ``val_data`` (a dataset folder or annotation file) in
    ``data_format`` (``None``: detected), the parts ``train_split`` (default ``train``) / ``val_split`` (default
    ``val``) of datasets made of parts; ``batch_size`` images per process and batch, ``workers`` loader processes."""

    train_data: str = ""
    val_data: str | None = None
    data_format: str | None = None
    train_split: str | None = None
    val_split: str | None = None
    batch_size: int = 8
    workers: int = 2

    def __post_init__(self) -> None:
        _check_train_slice(self)


@dataclass(frozen=True)
class AugmentConfig:
    """The training augmentation (:func:`efficientdet.data.transforms.train_transforms`): scale jitter in
    ``[scale_min, scale_max]``, horizontal flips with probability ``hflip``, 4-image ``mosaic`` with that
    probability, ``autoaugment`` (a policy name, e.g. ``v0``), ``randaugment`` (2 ops, magnitude 9) and
    ``random_erasing`` (probability)."""

    scale_min: float = 0.1
    scale_max: float = 2.0
    hflip: float = 0.5
    mosaic: float = 0.0
    autoaugment: str | None = None
    randaugment: bool = False
    random_erasing: float = 0.0

    def __post_init__(self) -> None:
        _check_train_slice(self)
        if self.scale_min > self.scale_max:
            raise ConfigError(f"train settings scale_min={self.scale_min} > scale_max={self.scale_max}: swap them")


@dataclass(frozen=True)
class OptimConfig:
    """How the weights are optimised, for ``epochs`` epochs.

    ``recipe``: ``auto`` | ``finetune`` | ``official`` (see :mod:`efficientdet.engine.recipe`) fills in ``lr``,
    ``warmup_epochs``, ``ema_decay`` and ``bn_momentum`` when they are ``None``; a value set here always wins.
    ``auto`` picks ``finetune`` (settings derived from the run's steps and batch) unless the run is long and
    the dataset large. ``official``: ``lr_base * batch_size * world_size * grad_accum / lr_base_batch``
    (0.08 per 64 images, scaled linearly), 1 warm-up epoch, EMA 0.9998, the model's BatchNorm momentum.
    ``bn_momentum``: running-statistics momentum of every BatchNorm layer (PyTorch's meaning).
    ``head_lr_scale``: the pyramid's and heads' learning rate relative to ``lr`` (the backbone's); the recipe
    fills it in when ``None``.
    ``optimizer``: ``momentum`` (SGD, momentum 0.9, the official choice) or any timm optimizer name
    (``adamw``, ``lamb``, ...). ``scheduler``: any timm scheduler (``cosine`` default), stepped per update.
    ``clip_mode``: ``norm`` | ``value`` | ``agc`` (``clip_grad`` ``None``: no clipping). ``grad_accum``: batches
    per optimizer step. ``freeze``: parameter-name patterns (fnmatch) or the shortcuts ``backbone`` and
    ``backbone+fpn``; norm layers whose parameters are all frozen keep their statistics (eval mode).
    """

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
    freeze: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("freeze", "lr_noise"):
            if isinstance(getattr(self, name), list):
                _set(self, name, tuple(getattr(self, name)))
        _check_train_slice(self)


@dataclass(frozen=True)
class RuntimeConfig:
    """Where and how the computation runs: ``device`` (``auto`` | ``cpu`` | ``cuda[:N]`` | ``mps``), ``amp``
    (``none`` | ``bf16`` | ``fp16`` with loss scaling), memory layout, ``torch.compile``, gradient checkpointing,
    SyncBatchNorm across processes, the run's ``seed``, and how many non-finite steps an epoch may skip."""

    device: str = "auto"
    amp: AmpMode = "none"
    channels_last: bool = True
    compile: bool = False
    grad_checkpointing: bool = False
    sync_bn: bool = False
    seed: int = 42
    max_nonfinite_steps: int = 10

    def __post_init__(self) -> None:
        _check_train_slice(self)


@dataclass(frozen=True)
class OutputConfig:
    """What a run writes and shows, in the folder ``output``: validation every ``eval_every`` epochs (and after
    the last) with the evaluator ``eval_metric`` (``coco``, ``voc07``, ``voc``, ``openimages`` or any registered
    with :func:`efficientdet.evaluation.register_evaluator`); ``last.pth`` after each epoch, every
    ``save_every_steps`` optimizer steps (0: off) and after ``save_every_minutes`` of training (0: off), so a
    kill loses at most that much; ``epoch_NNNN.pth`` every ``save_every_epochs``; TensorBoard per-step scalars
    every ``log_every_steps``; a progress bar."""

    output: str = "runs/train"
    eval_every: int = 1
    eval_metric: str = "coco"
    save_every_epochs: int = 0
    save_every_steps: int = 0
    save_every_minutes: float = 10.0
    log_every_steps: int = 10
    tensorboard: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        _check_train_slice(self)
        from efficientdet.evaluation import evaluator_class

        evaluator_class(self.eval_metric, what="train setting eval_metric")


TRAIN_SLICES: dict[str, type] = {
    "detector": TrainModelConfig, "data": DataConfig, "augment": AugmentConfig, "optim": OptimConfig,
    "runtime": RuntimeConfig, "outputs": OutputConfig,
}
"""The slices of :class:`TrainConfig`, by attribute name."""

TRAIN_SLICE_OF: dict[str, str] = {f.name: name for name, cls in TRAIN_SLICES.items() for f in dataclasses.fields(cls)}
"""The slice that holds each flat setting: ``{"lr": "optim", "batch_size": "data", ...}``."""


@dataclass(frozen=True, init=False)
class TrainConfig:
    """A training run: six frozen slices, each handed whole to the part that uses it (see the slice classes).

    Build it from slices, from flat settings, or both (flat settings change the slices given)::

        TrainConfig(optim=OptimConfig(lr=0.01), data=DataConfig(train_data="train.json"))
        TrainConfig(lr=0.01, train_data="train.json")           # the same

    Reading a flat name reads its slice's field (``cfg.lr is cfg.optim.lr``), and
    :func:`dataclasses.replace` takes flat names too (``replace(cfg, lr=0.02)``). Values are checked on
    construction by their slice (:class:`ConfigError` naming the key). :meth:`to_dict` writes the slices;
    :meth:`from_dict` reads that, flat keys (older YAML files and checkpoints) and dotted ones (``optim.lr``).
    """

    detector: TrainModelConfig = TrainModelConfig()
    data: DataConfig = DataConfig()
    augment: AugmentConfig = AugmentConfig()
    optim: OptimConfig = OptimConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    outputs: OutputConfig = OutputConfig()

    def __init__(self, detector: TrainModelConfig | None = None, data: DataConfig | None = None,
                 augment: AugmentConfig | None = None, optim: OptimConfig | None = None,
                 runtime: RuntimeConfig | None = None, outputs: OutputConfig | None = None, **settings: Any) -> None:
        given = {"detector": detector, "data": data, "augment": augment, "optim": optim, "runtime": runtime,
                 "outputs": outputs}
        changes: dict[str, dict[str, Any]] = {}
        for key, value in settings.items():
            if key not in TRAIN_SLICE_OF:
                raise ConfigError(unknown_key_message(key, [*TRAIN_SLICE_OF, *TRAIN_SLICES], "train setting"))
            changes.setdefault(TRAIN_SLICE_OF[key], {})[key] = value
        for name, cls in TRAIN_SLICES.items():
            part = given[name] if given[name] is not None else cls()
            if not isinstance(part, cls):
                raise ConfigError(f"TrainConfig({name}=...) takes a {cls.__name__}, got {type(part).__name__}")
            _set(self, name, dataclasses.replace(part, **changes[name]) if name in changes else part)

    def __getattr__(self, name: str) -> Any:
        """A flat setting (``cfg.lr``): the field of the slice that holds it."""
        slice_name = TRAIN_SLICE_OF.get(name)
        if slice_name is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(object.__getattribute__(self, slice_name), name)

    def to_dict(self) -> dict[str, Any]:
        """The slices as plain mappings (YAML/JSON-friendly): ``{"detector": {...}, "data": {...}, ...}``."""
        out = {name: _plain(dataclasses.asdict(getattr(self, name))) for name in TRAIN_SLICES}
        out["detector"]["model_overrides"] = {k: _plain(v) for k, v in self.detector.model_overrides}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`. Also reads flat keys (``lr: 0.01``, the layout of older files and
        checkpoints) and dotted ones (``optim.lr``); a flat or dotted key wins over its slice's mapping.
        Unknown keys raise an error that lists close matches."""
        parts: dict[str, dict[str, Any]] = {name: {} for name in TRAIN_SLICES}
        for key, value in data.items():
            if key in TRAIN_SLICES and isinstance(value, dict):
                parts[key] = {**dict(value), **parts[key]}
                continue
            head, dot, field_name = key.partition(".")
            if dot and head in TRAIN_SLICES:
                parts[head][field_name] = value
            elif key in TRAIN_SLICE_OF:
                parts[TRAIN_SLICE_OF[key]][key] = value
            else:
                raise ConfigError(unknown_key_message(key, [*TRAIN_SLICE_OF, *TRAIN_SLICES], "key in train config"))
        detector = parts["detector"]
        if isinstance(detector.get("model_overrides"), dict):
            detector["model_overrides"] = tuple(detector["model_overrides"].items())
        return cls(**{name: _build(part_cls, parts[name], f"train config.{name}")
                      for name, part_cls in TRAIN_SLICES.items()})


def flat_train_settings(data: dict[str, Any]) -> dict[str, Any]:
    """A saved :class:`TrainConfig` mapping of either layout (slices, or the flat one of older checkpoints)
    as flat ``{setting: value}``, for comparing runs without building a config."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in TRAIN_SLICES and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return flat


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
    "TrainModelConfig",
    "DataConfig",
    "AugmentConfig",
    "OptimConfig",
    "RuntimeConfig",
    "OutputConfig",
    "TRAIN_SLICES",
    "TRAIN_SLICE_OF",
    "flat_train_settings",
    "replace_nested",
    "unknown_key_message",
]


def train_config_from(yaml_file: str | None = None, sets: list[str] | tuple[str, ...] = (), **explicit: Any) -> TrainConfig:
    """Build a :class:`TrainConfig` from defaults, a YAML file, explicit values and ``key=value`` overrides.

    Later sources win: YAML, then ``explicit`` (non-``None`` values only), then ``sets``. Values in ``sets``
    are parsed as YAML (``lr=0.01``, ``freeze=[backbone]``, ``amp=bf16``). Keys starting with ``model.``
    change the model config (``model.loss.box_loss=giou`` -> ``model_overrides``). Keys may be flat (``lr``) or
    name their slice (``optim.lr``); the YAML file may be flat or hold the slices (what ``--print-config`` writes).
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
    detector = data.get("detector")
    nested = detector.pop("model_overrides", {}) if isinstance(detector, dict) else {}
    model_overrides = {**dict(nested or {}), **dict(data.pop("model_overrides", {}) or {})}
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
