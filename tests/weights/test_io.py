"""Safe weight loading and atomic saving, on files written by torch, safetensors, timm and DDP wrappers."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from efficientdet.errors import WeightsError
from efficientdet.weights.io import file_sha256, load_state_dict, read_metadata, save_state_dict


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))


def _state(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"conv.weight": torch.randn(4, 3, 3, 3, generator=g), "conv.bias": torch.randn(4, generator=g),
            "bn.num_batches_tracked": torch.tensor(7)}


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


class _Payload:
    """Unpickling this would create a folder: the classic code-execution pickle."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return os.mkdir, (str(self.target),)


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _Payload(marker)}, path)
    with pytest.raises(WeightsError) as info:
        load_state_dict(path)
    assert not marker.exists()
    message = str(info.value)
    assert str(path) in message and "refused" in message and "mkdir" in message and "save_state_dict" in message
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message


def test_safetensors_roundtrip_with_metadata(tmp_path):
    state = _state(0)
    path = save_state_dict(state, tmp_path / "sub" / "w.safetensors", metadata={"arch": "d0", "ema": "false"})
    assert path == tmp_path / "sub" / "w.safetensors"
    from safetensors.torch import load_file

    _assert_same(load_file(str(path)), state)  # a standard safetensors file
    _assert_same(load_state_dict(path), state)
    assert read_metadata(path) == {"arch": "d0", "ema": "false"}
    assert os.listdir(path.parent) == ["w.safetensors"]  # no temporary file left


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".bin"])
def test_torch_roundtrip(tmp_path, suffix):
    state = _state(1)
    path = save_state_dict(state, tmp_path / f"w{suffix}")
    _assert_same(torch.load(path, weights_only=True), state)  # a plain state dict for any torch user
    _assert_same(load_state_dict(path), state)
    with_meta = save_state_dict(state, tmp_path / f"m{suffix}", metadata={"source": "test"})
    _assert_same(load_state_dict(with_meta), state)
    assert read_metadata(with_meta) == {"source": "test"}


def test_save_replaces_atomically_and_keeps_old_file_on_failure(tmp_path):
    path = save_state_dict(_state(0), tmp_path / "w.safetensors")
    before = file_sha256(path)
    with pytest.raises(WeightsError, match="not a tensor"):
        save_state_dict({"a": torch.zeros(1), "b": 3}, path)
    assert file_sha256(path) == before and os.listdir(tmp_path) == ["w.safetensors"]
    save_state_dict(_state(2), path)
    _assert_same(load_state_dict(path), _state(2))
    assert os.listdir(tmp_path) == ["w.safetensors"]


def test_save_rejects_bad_names_and_metadata(tmp_path):
    with pytest.raises(WeightsError, match=r"\.safetensors"):
        save_state_dict(_state(0), tmp_path / "w.npz")
    with pytest.raises(WeightsError, match="strings"):
        save_state_dict(_state(0), tmp_path / "w.safetensors", metadata={"epoch": 3})


def test_tied_weights_are_saved(tmp_path):
    emb = torch.randn(5, 3)
    path = save_state_dict({"embed.weight": emb, "head.weight": emb}, tmp_path / "tied.safetensors")
    loaded = load_state_dict(path)
    assert torch.equal(loaded["embed.weight"], emb) and torch.equal(loaded["head.weight"], emb)


def test_file_sha256_matches_hashlib_oracle(tmp_path):
    import hashlib

    data = os.urandom(3 * (1 << 20) + 17)  # crosses the chunk size
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_timm_training_checkpoint_prefers_ema(tmp_path):
    """A checkpoint written by timm's CheckpointSaver (as effdet's train.py uses): args, optimizer, EMA."""
    from timm.utils import CheckpointSaver, ModelEmaV3

    model = _net()
    model(torch.randn(1, 3, 5, 5))
    ema = ModelEmaV3(model, decay=0.5)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    args = argparse.Namespace(model="efficientdet_d0", lr=0.1)
    saver = CheckpointSaver(model, optimizer, args=args, model_ema=ema, checkpoint_dir=str(tmp_path))
    saver.save_checkpoint(epoch=0, metric=0.5)
    path = tmp_path / "last.pth.tar"

    _assert_same(load_state_dict(path), ema.module.state_dict())
    _assert_same(load_state_dict(path, use_ema=True), ema.module.state_dict())
    _assert_same(load_state_dict(path, use_ema=False), model.state_dict())
    assert not torch.equal(ema.module.state_dict()["0.weight"], model.state_dict()["0.weight"])


def test_checkpoint_layouts_and_ema_choice(tmp_path):
    raw, ema = _state(0), _state(1)
    cases = {
        "effdet.pth": {"state_dict": raw, "state_dict_ema": ema, "epoch": 3},
        "other.pth": {"model": raw, "model_ema": ema},
        "ours.pth": {"format": "efficientdet.checkpoint", "model": raw, "ema": ema, "step": 10},
    }
    for name, content in cases.items():
        torch.save(content, tmp_path / name)
        _assert_same(load_state_dict(tmp_path / name), ema)
        _assert_same(load_state_dict(tmp_path / name, use_ema=False), raw)

    torch.save({"model": raw, "ema": None}, tmp_path / "no_ema.pth")  # EMA disabled in training
    _assert_same(load_state_dict(tmp_path / "no_ema.pth"), raw)
    with pytest.raises(WeightsError, match="no EMA"):
        load_state_dict(tmp_path / "no_ema.pth", use_ema=True)

    torch.save({"state_dict_ema": ema}, tmp_path / "ema_only.pth")
    _assert_same(load_state_dict(tmp_path / "ema_only.pth"), ema)
    with pytest.raises(WeightsError, match="only EMA"):
        load_state_dict(tmp_path / "ema_only.pth", use_ema=False)

    torch.save(raw, tmp_path / "plain.pth")
    _assert_same(load_state_dict(tmp_path / "plain.pth"), raw)
    with pytest.raises(WeightsError, match="without EMA"):
        load_state_dict(tmp_path / "plain.pth", use_ema=True)


def test_ema_flag_in_safetensors_metadata(tmp_path):
    path = save_state_dict(_state(0), tmp_path / "ema.safetensors", metadata={"ema": "true"})
    _assert_same(load_state_dict(path, use_ema=True), _state(0))
    with pytest.raises(WeightsError, match="only EMA"):
        load_state_dict(path, use_ema=False)
    plain = save_state_dict(_state(0), tmp_path / "plain.safetensors")
    with pytest.raises(WeightsError, match="not EMA"):
        load_state_dict(plain, use_ema=True)


def test_wrapper_prefixes_are_removed(tmp_path):
    model = _net()
    model(torch.randn(1, 3, 5, 5))
    reference = model.state_dict()
    ddp_like = nn.DataParallel(model).state_dict()  # keys "module.*", as DistributedDataParallel writes
    compiled = torch.compile(nn.DataParallel(torch.compile(model))).state_dict()  # "_orig_mod.module._orig_mod.*"
    assert all(k.startswith("module.") for k in ddp_like)
    assert all(k.startswith("_orig_mod.module._orig_mod.") for k in compiled)
    torch.save({"state_dict": ddp_like}, tmp_path / "ddp.pth")
    torch.save(compiled, tmp_path / "compiled.pth")
    _assert_same(load_state_dict(tmp_path / "ddp.pth"), reference)
    _assert_same(load_state_dict(tmp_path / "compiled.pth"), reference)
    # a model that merely has a submodule named "module" keeps its keys
    partial = {"module.weight": torch.zeros(1), "head.weight": torch.ones(1)}
    torch.save(partial, tmp_path / "partial.pth")
    _assert_same(load_state_dict(tmp_path / "partial.pth"), partial)


def test_unreadable_files_are_clear_errors(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        load_state_dict(tmp_path / "missing.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="safetensors"):
        load_state_dict(tmp_path / "junk.safetensors")
    (tmp_path / "junk.pth").write_bytes(b"\x00garbage")
    with pytest.raises(WeightsError, match="junk.pth"):
        load_state_dict(tmp_path / "junk.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(WeightsError, match="list"):
        load_state_dict(tmp_path / "list.pth")
    torch.save({"epoch": 3, "net": {"lr": 0.1}}, tmp_path / "no_tensors.pth")
    with pytest.raises(WeightsError, match="no tensors"):
        load_state_dict(tmp_path / "no_tensors.pth")
