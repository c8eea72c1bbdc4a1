"""Model registry: a name selects an architecture (a :class:`DetectorConfig`) and its published weights.

Every model name that effdet 0.4.1 defines is registered with effdet's hyperparameters, so that effdet
weights of the same name load (see :mod:`efficientdet.weights.effdet`). ``list_models``, ``get_config``
and ``get_weights`` are the lookups; ``register_model`` adds your own.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, replace
from typing import Any

from efficientdet.config import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AnchorConfig,
    BackboneConfig,
    DetectorConfig,
    FpnConfig,
    HeadConfig,
    PreprocessConfig,
    aspect_pairs,
    unknown_key_message,
)
from efficientdet.errors import ConfigError

# COCO 2017 category names by category id 1..90; ids without a category are "N/A". Models trained on
# COCO by the official code and effdet predict 90 classes: label i <-> COCO category id i + 1.
_COCO_NAMES_BY_ID = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train", 8: "truck",
    9: "boat", 10: "traffic light", 11: "fire hydrant", 13: "stop sign", 14: "parking meter", 15: "bench",
    16: "bird", 17: "cat", 18: "dog", 19: "horse", 20: "sheep", 21: "cow", 22: "elephant", 23: "bear",
    24: "zebra", 25: "giraffe", 27: "backpack", 28: "umbrella", 31: "handbag", 32: "tie", 33: "suitcase",
    34: "frisbee", 35: "skis", 36: "snowboard", 37: "sports ball", 38: "kite", 39: "baseball bat",
    40: "baseball glove", 41: "skateboard", 42: "surfboard", 43: "tennis racket", 44: "bottle",
    46: "wine glass", 47: "cup", 48: "fork", 49: "knife", 50: "spoon", 51: "bowl", 52: "banana", 53: "apple",
    54: "sandwich", 55: "orange", 56: "broccoli", 57: "carrot", 58: "hot dog", 59: "pizza", 60: "donut",
    61: "cake", 62: "chair", 63: "couch", 64: "potted plant", 65: "bed", 67: "dining table", 70: "toilet",
    72: "tv", 73: "laptop", 74: "mouse", 75: "remote", 76: "keyboard", 77: "cell phone", 78: "microwave",
    79: "oven", 80: "toaster", 81: "sink", 82: "refrigerator", 84: "book", 85: "clock", 86: "vase",
    87: "scissors", 88: "teddy bear", 89: "hair drier", 90: "toothbrush",
}
COCO90_LABEL_NAMES: tuple[str, ...] = tuple(_COCO_NAMES_BY_ID.get(i, "N/A") for i in range(1, 91))
COCO90_CATEGORY_IDS: tuple[int, ...] = tuple(range(1, 91))

EFFDET_RELEASE = "https://github.com/rwightman/efficientdet-pytorch/releases/download/v0.1/"


@dataclass(frozen=True)
class Weights:
    """A published weight set.

    ``sha256`` is the full hash or the hex prefix in the file name (``name-<prefix>.pth``), checked after
    download. ``map_val`` is the published COCO val2017 mAP@[.5:.95] of these weights (effdet's table),
    ``map_tf_val`` the official TF figure for the same architecture, when published.
    """

    url: str
    sha256: str
    num_classes: int = 90
    label_names: tuple[str, ...] = COCO90_LABEL_NAMES
    category_ids: tuple[int, ...] = COCO90_CATEGORY_IDS
    dataset: str = "coco2017"
    map_val: float | None = None
    map_tf_val: float | None = None
    source: str = "effdet"
    tag: str = "coco"

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ModelEntry:
    config: DetectorConfig
    weights: tuple[Weights, ...] = ()
    params_m: float | None = None  # published parameter count (millions)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(config: DetectorConfig, weights: tuple[Weights, ...] = (), params_m: float | None = None) -> None:
    """Register ``config`` under ``config.name`` (replacing an existing entry of that name)."""
    _REGISTRY[config.name] = ModelEntry(config, tuple(weights), params_m)


# The official google/automl model names -> the registered ports of the same architecture and weights.
OFFICIAL_NAMES: dict[str, str] = {
    **{f"efficientdet-d{i}": f"tf_efficientdet_d{i}" for i in range(8)},
    "efficientdet-d7x": "tf_efficientdet_d7x",
    **{f"efficientdet-lite{i}": f"tf_efficientdet_lite{i}" for i in range(5)},
    "efficientdet-lite3x": "tf_efficientdet_lite3x",
}


def resolve_name(name: str) -> str:
    """The registered name of ``name`` (``name.tag`` keeps its tag); official TF names are aliases of their ports.

    ``efficientdet-d0`` -> ``tf_efficientdet_d0`` (the official weights ported), not ``efficientdet_d0``
    (effdet's own PyTorch-trained model). The one place where a model name is looked up.

    Raises:
        ConfigError: an unknown name; the message lists close matches.
    """
    _ensure_builtin()
    base, dot, tag = name.partition(".")
    if base in _REGISTRY:
        return name
    alias = OFFICIAL_NAMES.get(base.lower())
    if alias is not None:
        return alias + dot + tag
    close = suggest_models(base)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ConfigError(f"unknown model name {base!r}.{hint} `efficientdet models` lists all {len(_REGISTRY)} names")


def suggest_models(pattern: str, n: int = 5) -> list[str]:
    """Registered names close to ``pattern`` (a name or shell-style pattern), official TF names mapped to ports."""
    _ensure_builtin()
    targets = {**{k: k for k in _REGISTRY}, **OFFICIAL_NAMES}
    ported = sorted({OFFICIAL_NAMES[a] for a in OFFICIAL_NAMES if fnmatch.fnmatch(a, pattern.lower())})
    if ported:  # an official-name pattern such as 'efficientdet-lite*'
        return ported
    stem = pattern.replace("*", "").replace("?", "").lower()
    close = difflib.get_close_matches(stem, list(targets), n=2 * n, cutoff=0.6)
    close += sorted(k for k in targets if stem and stem in k)  # 'lite' -> every name holding it
    return list(dict.fromkeys(targets[c] for c in close))[:n]


def _entry(name: str) -> ModelEntry:
    return _REGISTRY[resolve_name(name).split(".", 1)[0]]


def list_models(pattern: str = "*", *, pretrained: bool = False) -> list[str]:
    """Registered model names matching the shell-style ``pattern``; only those with weights if ``pretrained``.

    An empty list when nothing matches (:func:`suggest_models` gives close names).
    """
    _ensure_builtin()
    return sorted(n for n, e in _REGISTRY.items() if fnmatch.fnmatch(n, pattern) and (e.weights or not pretrained))


def get_config(name: str) -> DetectorConfig:
    """The architecture config of a registered model name (``name`` or ``name.tag``)."""
    return _entry(name).config


def get_weights(name: str) -> Weights:
    """The published weights of ``name`` (``name.tag`` selects among several); error if there are none."""
    entry = _entry(name)
    base, _, tag = resolve_name(name).partition(".")
    if not entry.weights:
        raise ConfigError(f"model {base!r} has no published weights; use pretrained=False, a checkpoint_path, or one "
                          f"of: {', '.join(list_models(pretrained=True))}")
    if not tag:
        return entry.weights[0]
    for w in entry.weights:
        if w.tag == tag:
            return w
    raise ConfigError(unknown_key_message(tag, [w.tag for w in entry.weights], f"weights tag of {base!r}"))


def get_entry(name: str) -> ModelEntry:
    """The full registry entry (config, weights, published parameter count)."""
    return _entry(name)


# --- effdet's model table, expressed in our configs ------------------------------------------------------

_FPN_NAMES = {
    None: ("bifpn", "fastattn"),
    "bifpn_fa": ("bifpn", "fastattn"),
    "bifpn_sum": ("bifpn", "sum"),
    "bifpn_attn": ("bifpn", "attn"),
    "pan_fa": ("pan", "fastattn"),
    "qufpn_fa": ("qufpn", "fastattn"),
}


def effdet_style_config(
    name: str,
    backbone: str,
    image_size: int,
    fpn_channels: int,
    fpn_repeats: int,
    head_repeats: int,
    *,
    pad_type: str = "same",
    redundant_bias: bool = True,
    separable_conv: bool = True,
    act: str = "swish",
    head_act: str | None = None,
    fpn_name: str | None = None,
    downsample: str = "max",
    upsample: str = "nearest",
    aspect_ratios: Any = ((1.0, 1.0), (1.4, 0.7), (0.7, 1.4)),
    anchor_scale: float = 4.0,
    max_level: int = 7,
    drop_path_rate: float = 0.0,
    backbone_indices: tuple[int, ...] | None = None,
    backbone_kwargs: tuple[tuple[str, Any], ...] = (),
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    fill: str | float = "mean",
) -> DetectorConfig:
    """A :class:`DetectorConfig` from the hyperparameters in which effdet's model table is written."""
    topology, weight_method = _FPN_NAMES[fpn_name]
    return DetectorConfig(
        name=name,
        num_classes=90,
        backbone=BackboneConfig(backbone, out_indices=backbone_indices, drop_path_rate=drop_path_rate,
                                kwargs=backbone_kwargs),
        fpn=FpnConfig(topology=topology, weight_method=weight_method, channels=fpn_channels, repeats=fpn_repeats,
                      separable_conv=separable_conv, downsample=downsample, upsample=upsample, pad_type=pad_type,
                      redundant_bias=redundant_bias, act=act),
        head=HeadConfig(repeats=head_repeats, separable_conv=separable_conv, act=head_act,
                        redundant_bias=redundant_bias, pad_type=pad_type),
        anchors=AnchorConfig(max_level=max_level, aspect_ratios=aspect_pairs(aspect_ratios), anchor_scale=anchor_scale),
        preprocess=PreprocessConfig(image_size=(image_size, image_size), mean=mean, std=std, fill=fill),
        label_names=COCO90_LABEL_NAMES,
        category_ids=COCO90_CATEGORY_IDS,
    )


def _w(file: str, map_val: float | None = None, map_tf_val: float | None = None) -> tuple[Weights, ...]:
    prefix = file.rsplit("-", 1)[-1].split(".", 1)[0]
    return (Weights(url=EFFDET_RELEASE + file, sha256=prefix, map_val=map_val, map_tf_val=map_tf_val),)


_RATIOS_FLOAT = (1.0, 2.0, 0.5)
_TF_LITE = dict(fpn_name="bifpn_sum", act="relu6", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
_AP = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), fill=0)
_TORCH = dict(pad_type="", redundant_bias=False)  # effdet's own PyTorch-native models
_EXP = dict(pad_type="", redundant_bias=False, aspect_ratios=_RATIOS_FLOAT)  # effdet's experimental models


def _builtin_table() -> list[tuple[DetectorConfig, tuple[Weights, ...], float | None]]:
    c = effdet_style_config
    t: list[tuple[DetectorConfig, tuple[Weights, ...], float | None]] = []

    # Models ported from the official TF weights: the compound-scaling table of the paper
    # (phi -> input size, BiFPN width / depth, head depth), with the official exceptions for D6-D7x.
    tf_d = [  # name, backbone, size, fpn width, fpn repeats, head repeats, extra, weights file, mAP, TF mAP, params
        ("tf_efficientdet_d0", "tf_efficientnet_b0", 512, 64, 3, 3, {}, "tf_efficientdet_d0_34-f153e0cf.pth", 34.2, 34.3, 3.88),
        ("tf_efficientdet_d1", "tf_efficientnet_b1", 640, 88, 4, 3, {}, "tf_efficientdet_d1_40-a30f94af.pth", 40.1, 40.2, 6.63),
        ("tf_efficientdet_d2", "tf_efficientnet_b2", 768, 112, 5, 3, {}, "tf_efficientdet_d2_43-8107aa99.pth", 43.4, 42.5, 8.10),
        ("tf_efficientdet_d3", "tf_efficientnet_b3", 896, 160, 6, 4, {}, "tf_efficientdet_d3_47-0b525f35.pth", 47.1, 47.2, 12.0),
        ("tf_efficientdet_d4", "tf_efficientnet_b4", 1024, 224, 7, 4, {}, "tf_efficientdet_d4_49-f56376d9.pth", 49.2, 49.3, 20.7),
        ("tf_efficientdet_d5", "tf_efficientnet_b5", 1280, 288, 7, 4, {}, "tf_efficientdet_d5_51-c79f9be6.pth", 51.2, 51.2, 33.7),
        ("tf_efficientdet_d6", "tf_efficientnet_b6", 1280, 384, 8, 5, {"fpn_name": "bifpn_sum"},
         "tf_efficientdet_d6_52-4eda3773.pth", 52.0, 52.1, 51.9),
        ("tf_efficientdet_d7", "tf_efficientnet_b6", 1536, 384, 8, 5, {"fpn_name": "bifpn_sum", "anchor_scale": 5.0},
         "tf_efficientdet_d7_53-6d1d7a95.pth", 53.1, 53.4, 51.9),
        ("tf_efficientdet_d7x", "tf_efficientnet_b7", 1536, 384, 8, 5, {"fpn_name": "bifpn_sum", "max_level": 8},
         "tf_efficientdet_d7x-f390b87c.pth", 54.3, 54.4, 77.1),
    ]
    for name, bb, size, w, d, h, extra, file, m, mtf, p in tf_d:
        t.append((c(name, bb, size, w, d, h, drop_path_rate=0.2, **extra), _w(file, m, mtf), p))

    # Det-AdvProp + AutoAugment weights (official TF), inputs normalised to [-1, 1], zero padding.
    ap = [
        (0, 512, 64, 3, 3, "tf_efficientdet_d0_ap-d0cdbd0a.pth", 34.8, 35.2, 3.88),
        (1, 640, 88, 4, 3, "tf_efficientdet_d1_ap-7721d075.pth", 40.8, 40.9, 6.63),
        (2, 768, 112, 5, 3, "tf_efficientdet_d2_ap-a2995c19.pth", 44.2, 44.3, 8.10),
        (3, 896, 160, 6, 4, "tf_efficientdet_d3_ap-e4a2feab.pth", 47.7, 48.0, 12.0),
        (4, 1024, 224, 7, 4, "tf_efficientdet_d4_ap-f601a5fc.pth", 50.2, 50.4, 20.7),
        (5, 1280, 288, 7, 4, "tf_efficientdet_d5_ap-3673ae5d.pth", 52.1, 52.2, 33.7),
    ]
    for phi, size, w, d, h, file, m, mtf, p in ap:
        t.append((c(f"tf_efficientdet_d{phi}_ap", f"tf_efficientnet_b{phi}", size, w, d, h, drop_path_rate=0.2, **_AP),
                  _w(file, m, mtf), p))

    # EfficientDet-Lite (official TF configs): ReLU6, plain-sum BiFPN, [-1, 1] inputs.
    lite = [
        ("tf_efficientdet_lite0", "tf_efficientnet_lite0", 320, 64, 3, 3, 3.0, 0.0, "tf_efficientdet_lite0-dfacfc78.pth", 27.1, 26.4, 3.24),
        ("tf_efficientdet_lite1", "tf_efficientnet_lite1", 384, 88, 4, 3, 3.0, 0.2, "tf_efficientdet_lite1-6dc7ab30.pth", 32.2, 31.5, 4.25),
        ("tf_efficientdet_lite2", "tf_efficientnet_lite2", 448, 112, 5, 3, 3.0, 0.2, "tf_efficientdet_lite2-86c5d55b.pth", 35.9, 35.1, 5.25),
        ("tf_efficientdet_lite3", "tf_efficientnet_lite3", 512, 160, 6, 4, 4.0, 0.2, "tf_efficientdet_lite3-506852cb.pth", 39.6, 38.8, 8.35),
        ("tf_efficientdet_lite3x", "tf_efficientnet_lite3", 640, 200, 6, 4, 3.0, 0.2, "tf_efficientdet_lite3x-8404c57b.pth", 43.6, 42.6, 9.28),
        ("tf_efficientdet_lite4", "tf_efficientnet_lite4", 640, 224, 7, 4, 4.0, 0.2, "tf_efficientdet_lite4-391ddabc.pth", 44.2, 43.2, 15.1),
    ]
    for name, bb, size, w, d, h, scale, dpr, file, m, mtf, p in lite:
        t.append((c(name, bb, size, w, d, h, anchor_scale=scale, drop_path_rate=dpr, **_TF_LITE), _w(file, m, mtf), p))

    # effdet's PyTorch-native EfficientDets (symmetric padding, no redundant bias, except D4/D5).
    t += [
        (c("efficientdet_d0", "efficientnet_b0", 512, 64, 3, 3, drop_path_rate=0.1, **_TORCH),
         _w("efficientdet_d0-f3276ba8.pth", 33.6), 3.88),
        (c("efficientdet_d1", "efficientnet_b1", 640, 88, 4, 3, drop_path_rate=0.2, **_TORCH),
         _w("efficientdet_d1-bb7e98fe.pth", 39.4), 6.62),
        (c("efficientdet_d2", "efficientnet_b2", 768, 112, 5, 3, drop_path_rate=0.2, **_TORCH), (), None),
        (c("efficientdet_d3", "efficientnet_b3", 896, 160, 6, 4, drop_path_rate=0.2, **_TORCH), (), None),
        (c("efficientdet_d4", "efficientnet_b4", 1024, 224, 7, 4, drop_path_rate=0.2), (), None),
        (c("efficientdet_d5", "efficientnet_b5", 1280, 288, 7, 4, drop_path_rate=0.2), (), None),
        (c("efficientdet_lite0", "efficientnet_lite0", 384, 64, 3, 3, act="relu6", redundant_bias=False,
           drop_path_rate=0.1), (), None),
        (c("efficientdetv2_dt", "efficientnetv2_rw_t", 768, 128, 5, 3, downsample="bilinear", upsample="bilinear",
           drop_path_rate=0.2, **_EXP), _w("efficientdetv2_rw_dt_agc-ad8b8c96.pth", 46.1), 13.4),
        (c("efficientdetv2_ds", "efficientnetv2_rw_s", 1024, 256, 7, 4, downsample="bilinear", upsample="bilinear",
           drop_path_rate=0.2, **_EXP), _w("efficientnetv2_rw_ds_agc-cf589293.pth", 50.1), 26.6),
        (c("efficientdet_q0", "efficientnet_b0", 512, 64, 3, 3, fpn_name="qufpn_fa", drop_path_rate=0.1, **_TORCH),
         _w("efficientdet_q0-bdf1bdb5.pth", 35.7), 4.13),
        (c("efficientdet_q1", "efficientnet_b1", 640, 88, 3, 3, fpn_name="qufpn_fa", downsample="bilinear",
           upsample="bilinear", drop_path_rate=0.2, **_TORCH), _w("efficientdet_q1b-d0612140.pth", 40.9), 6.98),
        (c("efficientdet_q2", "efficientnet_b2", 768, 112, 4, 3, fpn_name="qufpn_fa", drop_path_rate=0.2, **_TORCH),
         _w("efficientdet_q2-0f7564e5.pth", 43.1), 8.81),
        (c("efficientdet_w0", "efficientnet_b0", 512, 80, 3, 3, drop_path_rate=0.1,
           backbone_kwargs=(("feature_location", "depthwise"),), **_EXP), (), None),
        (c("efficientdet_es", "efficientnet_es", 512, 72, 3, 3, act="relu", separable_conv=False, drop_path_rate=0.1,
           **_EXP), (), None),
        (c("efficientdet_em", "efficientnet_em", 640, 96, 4, 3, act="relu", separable_conv=False, drop_path_rate=0.2,
           **_EXP), (), None),
    ]

    # effdet's experiments with other timm backbones.
    csp = dict(act="leaky_relu", separable_conv=False, drop_path_rate=0.2)
    t += [
        (c("resdet50", "resnet50", 640, 88, 4, 3, act="relu", separable_conv=False, drop_path_rate=0.2, **_TORCH),
         _w("resdet50_416-08676892.pth", 41.6), 27.6),
        (c("cspresdet50", "cspresnet50", 768, 88, 4, 3, head_act="silu", downsample="bilinear", upsample="bilinear",
           **csp, **_EXP), _w("cspresdet50b-386da277.pth", 43.2), 24.3),
        (c("cspresdext50", "cspresnext50", 640, 88, 4, 3, **csp, **_EXP), (), None),
        (c("cspresdext50pan", "cspresnext50", 640, 88, 3, 3, fpn_name="pan_fa", **csp, **_EXP),
         _w("cspresdext50pan-92fdd094.pth", 41.2), 22.2),
        (c("cspdarkdet53", "cspdarknet53", 640, 88, 4, 3, backbone_indices=(3, 4, 5), **csp, **_EXP), (), None),
        (c("cspdarkdet53m", "cspdarknet53", 768, 96, 4, 3, fpn_name="qufpn_fa", head_act="mish", downsample="bilinear",
           upsample="bilinear", backbone_indices=(3, 4, 5), **csp, **_EXP), _w("cspdarkdet53m-79062b2d.pth", 45.2), 35.6),
        (c("mixdet_m", "mixnet_m", 512, 64, 3, 3, drop_path_rate=0.1, **_EXP), (), None),
        (c("mixdet_l", "mixnet_l", 640, 88, 4, 3, drop_path_rate=0.2, **_EXP), (), None),
        (c("mobiledetv2_110d", "mobilenetv2_110d", 384, 48, 3, 3, act="relu6", drop_path_rate=0.05, **_EXP), (), None),
        (c("mobiledetv2_120d", "mobilenetv2_120d", 512, 56, 3, 3, act="relu6", drop_path_rate=0.1, **_EXP), (), None),
        (c("mobiledetv3_large", "mobilenetv3_large_100", 512, 64, 3, 3, act="hard_swish", drop_path_rate=0.1, **_EXP),
         (), None),
    ]
    return t


_BUILTIN_LOADED = False


def _ensure_builtin() -> None:
    """Fill the registry on first use (nothing happens at import time)."""
    global _BUILTIN_LOADED
    if _BUILTIN_LOADED:
        return
    _BUILTIN_LOADED = True
    for config, weights, params in _builtin_table():
        if config.name not in _REGISTRY:
            _REGISTRY[config.name] = ModelEntry(config, weights, params)


def config_with_weights(name: str, weights: Weights) -> DetectorConfig:
    """The config of ``name`` with the class count and names of ``weights``."""
    return replace(get_config(name), num_classes=weights.num_classes, label_names=weights.label_names,
                   category_ids=weights.category_ids)
