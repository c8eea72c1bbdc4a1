"""create_model with published weights (served locally), checkpoints of every layout, and torch.hub."""

import http.server
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from efficientdet import create_model, registry
from efficientdet.config import replace_nested
from efficientdet.errors import ConfigError, WeightsError
from efficientdet.weights.checkpoint import read_model_checkpoint, save_inference_weights
from efficientdet.weights.io import file_sha256

from .modeling.effdet_oracle import calibrate_bn, effdet_model, flatten_effdet

NAME = "tf_efficientdet_lite0"
SIZE = (128, 128)


@pytest.fixture(scope="module")
def effdet_lite0(tmp_path_factory):
    ref = effdet_model(NAME, SIZE)
    calibrate_bn(ref, SIZE)
    path = tmp_path_factory.mktemp("effdet") / "tf_efficientdet_lite0.pth"
    torch.save(ref.state_dict(), path)
    return ref, path


def _outputs_equal(model, ref):
    x = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        c, b = ref(x)
        out = model.eval()(x)
    torch.testing.assert_close(out.cls_logits, flatten_effdet(c, 90), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.box_deltas, flatten_effdet(b, 4), atol=1e-4, rtol=0)


def test_effdet_state_dict_file_loads_directly(effdet_lite0):
    ref, path = effdet_lite0
    _outputs_equal(create_model(NAME, checkpoint_path=path), ref)


def test_effdet_training_checkpoint_with_ema_loads(effdet_lite0, tmp_path):
    ref, _ = effdet_lite0
    raw = {k: torch.zeros_like(v) for k, v in ref.state_dict().items()}
    path = tmp_path / "model_best.pth.tar"
    torch.save({"epoch": 3, "state_dict": raw, "state_dict_ema": ref.state_dict()}, path)
    _outputs_equal(create_model(NAME, checkpoint_path=path), ref)  # EMA preferred
    with pytest.raises(AssertionError):
        _outputs_equal(create_model(NAME, checkpoint_path=path, checkpoint_ema=False), ref)


def test_our_weights_carry_config_and_class_count(tmp_path):
    model = create_model(NAME, num_classes=3, label_names=("cat", "dog", "fox"))
    path = save_inference_weights(model.state_dict(), model.config, tmp_path / "w.safetensors")
    ckpt = read_model_checkpoint(path)
    assert ckpt.num_classes == 3 and ckpt.label_names == ("cat", "dog", "fox")
    loaded = create_model(NAME, checkpoint_path=path)  # class count adopted from the file
    assert loaded.config.num_classes == 3 and loaded.config.label_names == ("cat", "dog", "fox")
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k


def test_wrong_architecture_is_a_clear_error(effdet_lite0):
    _, path = effdet_lite0
    with pytest.raises(WeightsError, match="tf_efficientdet_d0|different architecture|do not fit"):
        create_model("tf_efficientdet_d0", checkpoint_path=path)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture()
def local_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a, **k: _Quiet(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def _register_local(monkeypatch, url, sha, name="local_lite0"):
    """Register a model whose weights live at ``url``, for this test only."""
    config = replace(registry.get_config(NAME), name=name)
    entry = registry.ModelEntry(config, (registry.Weights(url=url, sha256=sha),))
    monkeypatch.setitem(registry._REGISTRY, name, entry)


def test_pretrained_downloads_verifies_caches_and_loads(effdet_lite0, local_server, tmp_path, monkeypatch):
    ref, path = effdet_lite0
    root, base = local_server
    sha = file_sha256(path)
    (root / f"lite0-{sha[:8]}.pth").write_bytes(path.read_bytes())
    monkeypatch.setenv("EFFICIENTDET_CACHE", str(tmp_path / "cache"))
    _register_local(monkeypatch, base + f"lite0-{sha[:8]}.pth", sha[:8])
    _outputs_equal(create_model("local_lite0", pretrained=True), ref)
    assert (tmp_path / "cache" / f"lite0-{sha[:8]}.pth").is_file()
    # a new class count keeps everything but the class-prediction layer
    m = create_model("local_lite0", pretrained=True, num_classes=4)
    ours = create_model("local_lite0", pretrained=True).state_dict()
    for k, v in m.state_dict().items():
        if not k.startswith("class_head.predict."):
            assert torch.equal(v, ours[k]), k
    assert m.class_head.predict_bias().shape == (9 * 4,)


def test_pretrained_without_network_fails_fast_naming_url(tmp_path, monkeypatch):
    import socket

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("EFFICIENTDET_CACHE", str(tmp_path / "cache"))
    url = f"http://127.0.0.1:{port}/w-deadbeef.pth"
    _register_local(monkeypatch, url, "deadbeef", name="offline_lite0")
    start = time.perf_counter()
    with pytest.raises(WeightsError) as err:
        create_model("offline_lite0", pretrained=True)
    assert time.perf_counter() - start < 5
    assert url in str(err.value) and "checkpoint" in str(err.value)


def test_pretrained_backbone_uses_local_imagenet_lite_weights():
    from efficientdet.weights.lite_backbone import lite_backbone_state_dict

    model = create_model(NAME, pretrained_backbone=True)
    expected = lite_backbone_state_dict(0)
    state = model.backbone.state_dict()
    common = [k for k in state if k in expected]
    assert len(common) > 50 and all(torch.equal(state[k], expected[k]) for k in common)


def test_torch_hub_loads_local_repo():
    repo = Path(__file__).resolve().parents[1]
    model = torch.hub.load(str(repo), "tf_efficientdet_lite0", source="local", num_classes=2)
    assert model.config.num_classes == 2
    import importlib.util

    spec = importlib.util.spec_from_file_location("hubconf", repo / "hubconf.py")
    hub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hub)
    assert callable(hub.tf_efficientdet_d7x) and len(registry.list_models()) == 47


def test_image_size_and_overrides():
    m = create_model(NAME, image_size=(256, 384), overrides={"fpn.act": "relu"})
    assert m.config.image_size == (256, 384) and m.config.fpn.act == "relu"
    cfg = replace_nested(registry.get_config(NAME), num_classes=7, label_names=None)
    assert create_model(cfg).config.num_classes == 7


def test_official_names_are_aliases_of_their_ports():
    """``efficientdet-d0`` (google/automl's name) is ``tf_efficientdet_d0``, not effdet's ``efficientdet_d0``."""
    from efficientdet.weights.tf_convert import TF_MODEL_NAMES

    assert registry.get_config("efficientdet-d0") is registry.get_config("tf_efficientdet_d0")
    assert registry.get_weights("EfficientDet-Lite3x") == registry.get_weights("tf_efficientdet_lite3x")
    assert registry.resolve_name("efficientdet-d7x.coco") == "tf_efficientdet_d7x.coco"
    assert registry.resolve_name("efficientdet_d0") == "efficientdet_d0"  # effdet's own model stays itself
    assert create_model("efficientdet-lite0").config.name == "tf_efficientdet_lite0"
    assert TF_MODEL_NAMES is registry.OFFICIAL_NAMES  # one table
    with pytest.raises(ConfigError, match="unknown model name 'efficientdet-d9'. Did you mean: tf_efficientdet_d"):
        registry.get_config("efficientdet-d9")
    assert registry.suggest_models("efficientdet-lite*") == [f"tf_efficientdet_lite{s}" for s in
                                                             ("0", "1", "2", "3", "3x", "4")]
