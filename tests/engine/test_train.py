"""Training engine: runs, logs, checkpoints, exact resume after a kill, DDP equivalence, NaN handling."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from efficientdet.config import TrainConfig, train_config_from
from efficientdet.data.sample import ensure_sample_dataset
from efficientdet.engine.checkpoint import average_checkpoints, clean_checkpoint, load_checkpoint
from efficientdet.engine.trainer import TrainingError, train
from efficientdet.weights.checkpoint import read_model_checkpoint

TINY = str(Path(__file__).with_name("tiny.yaml"))
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    return ensure_sample_dataset(root, train=24, val=8, size=96)


def tiny_cfg(sample, out, **kw):
    base = dict(model=TINY, train_data=str(sample["train"]), val_data=str(sample["val"]), batch_size=4, epochs=2,
                workers=0, output=str(out), progress=False, pretrained_backbone=False, warmup_epochs=0.5, lr=0.02)
    base.update(kw)
    return TrainConfig(**base)


def test_train_writes_checkpoints_logs_and_curves(sample, tmp_path):
    result = train(tiny_cfg(sample, tmp_path, save_every_epochs=1))
    assert len(result.history) == 2
    for row in result.history:
        assert row["train_loss"] > 0 and "AP" in row and row["skipped_images"] == 0
    assert (tmp_path / "last.pth").is_file() and (tmp_path / "epoch_0002.pth").is_file()
    assert result.best_checkpoint is not None and result.best_checkpoint.is_file()
    assert (tmp_path / "metrics.csv").read_text().count("\n") == 3
    assert result.curves is not None and result.curves.stat().st_size > 1000
    state = load_checkpoint(tmp_path / "last.pth")
    assert state["epoch"] == 2 and state["step"] == 12 and state["ema"] is not None
    assert state["label_names"] == list(state["config"]["label_names"])
    # the checkpoint restores the model with its classes
    ckpt = read_model_checkpoint(tmp_path / "last.pth")
    assert ckpt.used_ema and ckpt.num_classes == 6


def test_checkpoint_tools(sample, tmp_path):
    train(tiny_cfg(sample, tmp_path, epochs=3, save_every_epochs=1))
    paths = sorted(tmp_path.glob("epoch_*.pth"))
    avg = average_checkpoints(paths, tmp_path / "avg.safetensors")
    states = [read_model_checkpoint(p).state_dict for p in paths]
    merged = read_model_checkpoint(avg)
    key = "box_head.predict.pw.weight"
    torch.testing.assert_close(merged.state_dict[key], sum(s[key] for s in states) / 3)
    assert merged.num_classes == 6
    clean = clean_checkpoint(tmp_path / "last.pth", tmp_path / "clean")
    assert clean.name.startswith("tiny_efficientdet-") and clean.suffix == ".safetensors"
    assert clean.stat().st_size < (tmp_path / "last.pth").stat().st_size / 2  # no optimizer state
    from efficientdet import create_model

    assert create_model(clean).config.num_classes == 6


def test_nonfinite_loss_skips_then_stops_with_advice(sample, tmp_path, caplog):
    with pytest.raises(TrainingError, match="learning rate"):
        train(tiny_cfg(sample, tmp_path, lr=1e12, clip_grad=None, max_nonfinite_steps=2, warmup_epochs=0, ema=False))
    assert any("non-finite loss" in r.getMessage() for r in caplog.records)


def _losses(path):
    return load_checkpoint(path)["step_losses"]


def _run_cli(args, env=None):
    return subprocess.Popen([sys.executable, "-m", "efficientdet", "train", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_resume_after_kill_mid_epoch_continues_exactly(sample, tmp_path):
    common = ["--model", TINY, "--data", str(sample["train"]), "--epochs", "3", "--batch-size", "2",
              "--workers", "0", "--lr", "0.02", "--no-pretrained-backbone", "--set", "progress=false",
              "--set", "save_every_steps=1", "--set", "warmup_epochs=0.5"]
    ref = _run_cli([*common, "--output", str(tmp_path / "ref")])
    assert ref.wait(timeout=600) == 0, ref.stderr.read().decode()

    run = tmp_path / "run"
    proc = _run_cli([*common, "--output", str(run)])
    deadline = time.time() + 600
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        last = run / "last.pth"
        if last.is_file():
            state = load_checkpoint(last)
            if state["epoch"] == 1 and 3 <= state["epoch_batches"] < 10:  # in the middle of the second epoch
                proc.send_signal(signal.SIGKILL)
                killed_at = state["step"]
                break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert killed_at is not None, "the run ended before it could be interrupted"
    resumed = _run_cli([*common, "--output", str(run), "--resume", str(run / "last.pth")])
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read().decode()
    expected, got = _losses(tmp_path / "ref" / "last.pth"), _losses(run / "last.pth")
    assert len(got) == len(expected) == 36
    assert got == expected  # bit-identical losses at every step, before and after the kill
    a, b = load_checkpoint(tmp_path / "ref" / "last.pth"), load_checkpoint(run / "last.pth")
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k


def test_two_gloo_processes_equal_one_process_with_the_same_global_batch(sample, tmp_path):
    common = ["--model", TINY, "--data", str(sample["train"]), "--epochs", "1", "--workers", "0", "--lr", "0.05",
              "--no-pretrained-backbone", "--set", "progress=false", "--set", "ema=false",
              "--set", "warmup_epochs=0", "--set", "hflip=0.0", "--freeze", "*bn*", "*norm*"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    single = _run_cli([*common, "--batch-size", "4", "--output", str(tmp_path / "one")], env=env)
    assert single.wait(timeout=600) == 0, single.stderr.read().decode()
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533",
         "-m", "efficientdet", "train", *common, "--batch-size", "2", "--output", str(tmp_path / "two")],
        cwd=REPO, env=env, capture_output=True, timeout=600,
    )
    assert ddp.returncode == 0, ddp.stderr.decode()[-3000:]
    one, two = load_checkpoint(tmp_path / "one" / "last.pth"), load_checkpoint(tmp_path / "two" / "last.pth")
    assert one["step"] == two["step"] == 6
    for k, v in one["model"].items():
        if v.is_floating_point():
            torch.testing.assert_close(two["model"][k], v, atol=2e-5, rtol=1e-4, msg=k)
    # gradients really flowed: the momentum buffers are not zero
    buffers = [s["momentum_buffer"] for s in one["optimizer"]["state"].values()]
    assert buffers and max(float(b.abs().max()) for b in buffers) > 1e-4


def test_config_file_and_overrides(tmp_path):
    yaml_file = tmp_path / "train.yaml"
    yaml_file.write_text("epochs: 7\nlr: 0.5\nfreeze: [backbone]\nmodel_overrides: {loss.gamma: 2.0}\n")
    cfg = train_config_from(str(yaml_file), ["lr=0.01", "model.loss.alpha=0.3", "amp=bf16"], batch_size=3, epochs=None)
    assert (cfg.epochs, cfg.lr, cfg.batch_size, cfg.amp, cfg.freeze) == (7, 0.01, 3, "bf16", ("backbone",))
    assert dict(cfg.model_overrides) == {"loss.gamma": 2.0, "loss.alpha": 0.3}
    from efficientdet.errors import ConfigError

    with pytest.raises(ConfigError, match="epochs"):
        train_config_from(None, ["epoch=3"])


def test_accumulation_bf16_autocast_tensorboard_and_timm_optimizer(sample, tmp_path):
    result = train(tiny_cfg(sample, tmp_path, epochs=1, grad_accum=2, amp="bf16", tensorboard=True,
                            optimizer="adamw", lr=1e-3, scheduler="step", clip_mode="agc", clip_grad=0.01))
    state = load_checkpoint(tmp_path / "last.pth")
    assert state["step"] == 3  # 6 batches, 2 per optimizer step
    assert all(torch.isfinite(torch.tensor(loss)) for loss in state["step_losses"])
    assert result.history[-1]["train_loss"] > 0
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
