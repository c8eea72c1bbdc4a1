"""Configs check their choices where they are set: Literal-typed fields refused on construction (and on replace),
with the field's place and the closest values in the message; configs read from files keep loading."""

from __future__ import annotations

import dataclasses

import pytest

from efficientdet import registry
from efficientdet.config import (
    DetectorConfig,
    FpnConfig,
    FpnNode,
    NmsMethod,
    NormConfig,
    PostprocessConfig,
    PreprocessConfig,
    TrainConfig,
    choices,
    flatten_changes,
    replace_nested,
)
from efficientdet.errors import ConfigError
from efficientdet.postprocess import NMS_METHODS, override


@pytest.mark.parametrize(("build", "message"), [
    (lambda: PostprocessConfig(nms="sfot"), "postprocess.nms='sfot': choose one of hard, soft. Did you mean: soft?"),
    (lambda: PostprocessConfig(mode="glob"), "postprocess.mode='glob': choose one of topk, global. Did you mean: global?"),
    (lambda: FpnConfig(topology="bipfn"), "fpn.topology='bipfn': choose one of bifpn, pan, qufpn. Did you mean: bifpn"),
    (lambda: FpnConfig(weight_method="fast"), "fpn.weight_method='fast'"),
    (lambda: FpnNode(3, (0, 1), weight_method="summ"), "fpn.nodes[].weight_method='summ'"),
    (lambda: NormConfig(kind="batchnrom"), "norm.kind='batchnrom': choose one of batchnorm"),
    (lambda: PreprocessConfig(interpolation="cubic"), "preprocess.interpolation='cubic'"),
    (lambda: TrainConfig(clip_mode="nrom"), "train setting clip_mode='nrom': choose one of norm, value, agc"),
    (lambda: TrainConfig(recipe="fine"), "train setting recipe='fine'"),
    (lambda: PostprocessConfig(nms="soft", soft_nms_sigma=0), "soft_nms_sigma must be > 0"),
    (lambda: PostprocessConfig(max_detections=0), "max_detections must be >= 1"),
    (lambda: PostprocessConfig(score_threshold=1.0), "score_threshold must be in [0, 1)"),
])
def test_choices_are_refused_where_they_are_set(build, message):
    with pytest.raises(ConfigError) as err:
        build()
    assert message in str(err.value)


def test_changed_copies_are_checked_too():
    cfg = registry.get_config("tf_efficientdet_d0")
    with pytest.raises(ConfigError, match="postprocess.nms='fast'"):
        replace_nested(cfg, postprocess__nms="fast")
    with pytest.raises(ConfigError, match="postprocess.nms='fast'"):
        override(cfg.postprocess, nms="fast")
    with pytest.raises(ConfigError, match="fpn.topology"):
        dataclasses.replace(cfg.fpn, topology="tree")
    assert choices(NmsMethod) == NMS_METHODS == ("hard", "soft")


def test_every_registered_config_round_trips_through_a_file_mapping():
    """What ``to_dict`` wrote (old YAML / JSON / checkpoint metadata) builds the same frozen config again."""
    for name in registry.list_models():
        cfg = registry.get_config(name)
        assert DetectorConfig.from_dict(cfg.to_dict()) == cfg, name


def test_nested_configs_are_built_from_their_declared_types():
    cfg = registry.get_config("tf_efficientdet_d0")
    data = cfg.to_dict()
    data["fpn"]["nodes"] = [{"level": 6, "inputs": [3, 4]}, {"level": 5, "inputs": [2, 5], "weight_method": "sum"}]
    data["head"]["norm"] = {"kind": "groupnorm", "groups": 4}
    built = DetectorConfig.from_dict(data)
    assert built.fpn.nodes == (FpnNode(6, (3, 4)), FpnNode(5, (2, 5), "sum"))
    assert built.head.norm == NormConfig(kind="groupnorm", groups=4)
    data["head"]["norm"]["colour"] = "red"
    with pytest.raises(ConfigError, match="unknown key in config.head.norm 'colour'"):
        DetectorConfig.from_dict(data)
    data["head"]["norm"] = {"kind": "groupnorm", "groups": "four"}
    with pytest.raises(ConfigError, match="config.head.norm.groups is 'four'"):
        DetectorConfig.from_dict(data)
    data["head"]["norm"] = None
    data["fpn"]["nodes"][0]["weight_method"] = "max"
    with pytest.raises(ConfigError, match="fpn.nodes\\[\\].weight_method='max'"):
        DetectorConfig.from_dict(data)


def test_nested_changes_become_dotted_paths():
    cfg = registry.get_config("tf_efficientdet_d0")
    flat = flatten_changes(cfg, {"fpn": {"channels": 96, "norm": {"kind": "groupnorm"}}, "num_classes": 3,
                                 "head": {"norm": {"kind": "layernorm"}}, "preprocess": {"image_size": [96, 128]}})
    assert flat == {"fpn.channels": 96, "fpn.norm.kind": "groupnorm", "num_classes": 3,
                    "head.norm": NormConfig(kind="layernorm"), "preprocess.image_size": (96, 128)}
    changed = replace_nested(cfg, **flat)
    assert changed.fpn.norm.eps == cfg.fpn.norm.eps  # a partial norm change keeps the other values


def test_train_config_reads_overrides_in_every_spelling():
    pairs = TrainConfig.from_dict({"model_overrides": {"loss.box_loss": "giou", "fpn.channels": 32}})
    assert pairs.model_overrides == (("loss.box_loss", "giou"), ("fpn.channels", 32))
    assert TrainConfig.from_dict(pairs.to_dict()) == pairs
