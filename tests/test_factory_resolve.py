"""The one resolver: what a name, a config, a config file and a weights file mean, in create_model, resolve_model
and every place that builds a model from user input (Predictor, load_model, validate)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from efficientdet import registry
from efficientdet.config import replace_nested
from efficientdet.errors import ConfigError
from efficientdet.factory import create_model, model_config, resolve_model
from efficientdet.predict import Predictor, load_model
from efficientdet.weights.checkpoint import save_inference_weights
from tests.predict.helpers import tiny_config, tiny_model

NAME = "tiny_resolve_det"


@pytest.fixture
def registered(monkeypatch):
    """``NAME``: the tiny architecture, registered with "published" weights at a URL nothing serves."""
    registry.list_models()
    weights = registry.Weights(url="http://127.0.0.1:9/tiny-00000000.pth", sha256="00000000", num_classes=5,
                               label_names=tiny_config().label_names, category_ids=tiny_config().category_ids)
    monkeypatch.setitem(registry._REGISTRY, NAME, registry.ModelEntry(tiny_config(name=NAME), (weights,)))
    return NAME


def _trained(path: Path, **changes) -> tuple[torch.nn.Module, Path]:
    """The tiny model with its config changed as training would (input size, post-processing), saved with it."""
    model = tiny_model(name=NAME)
    model.config = replace_nested(model.config, **changes)
    return model, save_inference_weights(model.state_dict(), model.config, path)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_checkpoint_that_records_its_config_defines_the_model(registered, tmp_path, caplog):
    trained, path = _trained(tmp_path / "w.safetensors", preprocess__image_size=(64, 96), postprocess__nms="soft")
    for built in (create_model(registered, checkpoint_path=path), create_model(checkpoint_path=path),
                  create_model(path), resolve_model(registered, path), load_model(registered, path)):
        assert built.config == trained.config and _same_weights(built, trained)
    assert "holds" not in caplog.text
    # another architecture named with it: the file still decides, and the mismatch is said
    with caplog.at_level(logging.WARNING):
        built = create_model("tf_efficientdet_lite0", checkpoint_path=path)
    assert built.config == trained.config and f"holds {NAME!r}" in caplog.text
    # an explicit config wins over the file's (its class count is adopted)
    explicit = create_model(tiny_config(name=NAME), checkpoint_path=path)
    assert explicit.config.image_size == tiny_config().image_size and _same_weights(explicit, trained)


def test_published_weights_are_not_fetched_under_a_checkpoint(registered, tmp_path):
    trained, path = _trained(tmp_path / "w.safetensors")
    built = create_model(registered, pretrained=True, checkpoint_path=path)  # the URL would refuse the connection
    assert _same_weights(built, trained)


def test_resolve_model_rules(registered, tmp_path, caplog):
    trained, path = _trained(tmp_path / "w.safetensors")
    with caplog.at_level(logging.WARNING):
        resolve_model(registered)
    assert f"random weights: {NAME}" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert _same_weights(resolve_model(path, pretrained=True), trained)  # a weights file in place of a name
        fresh = tiny_model(seed=3)
        assert resolve_model(fresh, path) is fresh and _same_weights(fresh, trained)  # loaded into a built model
    assert "random weights" not in caplog.text
    with pytest.raises(ConfigError, match="--model NAME or --checkpoint FILE"):
        resolve_model()
    plain = tmp_path / "plain.pth"
    torch.save(trained.state_dict(), plain)
    with pytest.raises(ConfigError, match="--model NAME"):
        resolve_model(checkpoint=plain)
    assert _same_weights(resolve_model(registered, plain), trained)  # the name gives the architecture


def test_predictor_builds_what_the_resolver_builds(registered, tmp_path):
    _, path = _trained(tmp_path / "w.safetensors", preprocess__image_size=(64, 96))
    assert Predictor(registered, checkpoint=path, device="cpu").input_size == (64, 96)
    assert Predictor(path, device="cpu").input_size == (64, 96)


def test_model_config_reads_names_configs_and_files(registered, tmp_path):
    trained, path = _trained(tmp_path / "w.safetensors", preprocess__image_size=(64, 96))
    yaml_file = tmp_path / "m.yaml"
    yaml_file.write_text(f"base: {NAME}\nfpn:\n  channels: 8\nhead:\n  norm:\n    kind: groupnorm\n")
    assert model_config(registered) == tiny_config(name=NAME)
    assert model_config(path) == trained.config
    from_yaml = model_config(yaml_file)
    assert from_yaml.fpn.channels == 8 and from_yaml.head.norm is not None and from_yaml.head.norm.kind == "groupnorm"
    assert create_model(yaml_file).config == from_yaml


def test_weights_modules_do_not_import_the_factory():
    """The resolver builds on weights/ (reading, converting, loading tensors), never the other way round."""
    import efficientdet.weights

    folder = Path(efficientdet.weights.__file__).parent
    for source in folder.glob("*.py"):
        assert "efficientdet.factory" not in source.read_text(encoding="utf-8"), source.name
