"""Training engine: runs, logs, checkpoints, exact resume after a kill, DDP equivalence, NaN handling."""

import contextlib
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from efficientdet.config import TrainConfig, train_config_from
from efficientdet.data.sample import ensure_sample_dataset
from efficientdet.engine.checkpoint import average_checkpoints, clean_checkpoint, load_checkpoint
from efficientdet.engine.logger import WALL_TIME_COLUMNS
from efficientdet.engine.trainer import TrainingError, train
from efficientdet.weights.checkpoint import read_model_checkpoint

TINY = str(Path(__file__).with_name("tiny.yaml"))
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    """A TCP port nothing listens on now (a fixed one collides with another run of the suite on the machine)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def _broken_copy(sample, folder: Path) -> Path:
    """The sample training set with one missing image (so one batch of 2 shrinks to 1 image every epoch: P7 is
    1 x 1 at 96 px, the BatchNorm corner case) and one zero-width box (dropped when loaded)."""
    folder.mkdir()
    (folder / "images").symlink_to(Path(sample["train"]).parent / "images")
    data = json.loads(Path(sample["train"]).read_text())
    data["images"][10]["file_name"] = "images/missing.jpg"
    data["annotations"].append({**data["annotations"][0], "id": 10**6, "bbox": [10, 10, 0, 5]})
    (folder / "annotations.json").write_text(json.dumps(data))
    return folder / "annotations.json"


def _reproducible_csv(path: Path) -> str:
    """metrics.csv without its wall-time columns (WALL_TIME_COLUMNS, the only ones that depend on the clock)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    keep = [i for i, name in enumerate(rows[0]) if name not in WALL_TIME_COLUMNS]
    assert len(keep) == len(rows[0]) - len(WALL_TIME_COLUMNS)
    return "\n".join(",".join(row[i] for i in keep) for row in rows)


def test_resume_after_kill_mid_epoch_continues_exactly(sample, tmp_path):
    """kill -9 in the middle of an epoch, then --resume: the same losses at every step, the same weights and the
    same metrics.csv (epoch means over all the epoch's batches, skip counts) as a run never interrupted. The
    checkpoints come from the time-based default (save_every_minutes, here a few ms) and the warnings about
    the broken data must show under PYTHONWARNINGS=ignore (they go through logging)."""
    data = _broken_copy(sample, tmp_path / "data")
    common = ["--model", TINY, "--data", str(data), "--val-data", str(sample["val"]), "--epochs", "2",
              "--batch-size", "2", "--workers", "0", "--lr", "0.02", "--no-pretrained-backbone",
              "--set", "progress=false", "--set", "save_every_minutes=0.0001", "--set", "warmup_epochs=0.5",
              "--set", "tensorboard=true", "--set", "log_every_steps=1"]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    ref = _run_cli([*common, "--output", str(tmp_path / "ref")], env=env)
    assert ref.wait(timeout=600) == 0, ref.stderr.read().decode()
    ref_err = ref.stderr.read().decode()
    assert "skipping image" in ref_err and "missing.jpg" in ref_err and "1 unusable boxes dropped" in ref_err

    run = tmp_path / "run"
    proc = _run_cli([*common, "--output", str(run)], env=env)
    deadline = time.time() + 600
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        last = run / "last.pth"
        if last.is_file():
            with contextlib.suppress(Exception):  # read while the next one is being renamed in: try again
                state = load_checkpoint(last)
                if state["epoch"] == 1 and 3 <= state["epoch_batches"] < 10:  # in the middle of the second epoch
                    proc.send_signal(signal.SIGKILL)
                    killed_at = state["step"]
                    break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert killed_at is not None, "the run ended before it could be interrupted"
    resumed = _run_cli([*common, "--output", str(run), "--resume", str(run / "last.pth")], env=env)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read().decode()
    expected, got = _losses(tmp_path / "ref" / "last.pth"), _losses(run / "last.pth")
    assert len(got) == len(expected) == 24
    assert got == expected  # bit-identical losses at every step, before and after the kill
    a, b = load_checkpoint(tmp_path / "ref" / "last.pth"), load_checkpoint(run / "last.pth")
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    ref_csv, run_csv = _reproducible_csv(tmp_path / "ref" / "metrics.csv"), _reproducible_csv(run / "metrics.csv")
    assert run_csv == ref_csv  # byte-identical, the interrupted epoch's means included
    rows = list(csv.DictReader(open(run / "metrics.csv", newline="")))
    assert [r["skipped_images"] for r in rows] == ["1", "1"] and [r["dropped_boxes"] for r in rows] == ["1"] * 2
    assert all(r["AP"] != "" for r in rows)
    # TensorBoard: the steps the killed run logged after its last checkpoint are purged, not doubled
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    logged = events.Scalars("train/loss")
    assert [e.step for e in logged] == list(range(1, 25))
    assert [e.value for e in logged] == pytest.approx(expected)


def test_two_gloo_processes_equal_one_process_with_the_same_global_batch(sample, tmp_path):
    common = ["--model", TINY, "--data", str(sample["train"]), "--epochs", "1", "--workers", "0", "--lr", "0.05",
              "--no-pretrained-backbone", "--set", "progress=false", "--set", "ema=false",
              "--set", "warmup_epochs=0", "--set", "hflip=0.0", "--freeze", "*bn*", "*norm*"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    single = _run_cli([*common, "--batch-size", "4", "--output", str(tmp_path / "one")], env=env)
    assert single.wait(timeout=600) == 0, single.stderr.read().decode()
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
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
    result = train(tiny_cfg(sample, tmp_path, epochs=1, grad_accum=2, amp="bf16", tensorboard=True, log_every_steps=1,
                            optimizer="adamw", lr=1e-3, scheduler="step", clip_mode="agc", clip_grad=0.01))
    state = load_checkpoint(tmp_path / "last.pth")
    assert state["step"] == 3  # 6 batches, 2 per optimizer step
    assert all(torch.isfinite(torch.tensor(loss)) for loss in state["step_losses"])
    assert result.history[-1]["train_loss"] > 0
    # TensorBoard, read back: per-step scalars with grouped tags, epoch and validation scalars at the epoch's
    # last step, the per-class AP table and validation images with their detections drawn
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    for tag in ("train/loss", "train/cls_loss", "train/box_loss", "lr"):
        assert [e.step for e in events.Scalars(tag)] == [1, 2, 3], tag
    assert [round(e.value, 6) for e in events.Scalars("train/loss")] == [round(v, 6) for v in state["step_losses"]]
    assert {"val/mAP", "val/AP50", "epoch/train_loss", "data/skipped_images"} <= set(tags["scalars"])
    assert events.Scalars("val/mAP")[0].step == 3 and events.Scalars("val/mAP")[0].value == pytest.approx(
        result.history[-1]["AP"])
    table = events.Tensors("val/per_class_AP/text_summary")[0].tensor_proto.string_val[0].decode()
    assert all(name in table for name in state["label_names"])
    images = [t for t in tags["images"] if t.startswith("val/predictions/")]
    assert len(images) == 3 and events.Images(images[0])[0].width == 96  # drawn on the original image


def test_batchnorm_trains_on_one_value_per_channel_as_tensorflow():
    """P7 is 1 x 1 at 128 px: a batch of one gives its norms one value per channel. The output is the bias (the
    batch mean is the value), the input's gradient is zero, the running statistics stay; otherwise plain BN."""
    from efficientdet.modeling.layers import BatchNorm2d

    bn = BatchNorm2d(3).train()
    with torch.no_grad():
        bn.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
    x = torch.randn(1, 3, 1, 1, requires_grad=True)
    out = bn(x)
    assert torch.equal(out.flatten(), bn.bias.detach())
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x)) and torch.equal(bn.weight.grad, torch.zeros(3))  # in the graph
    assert torch.equal(bn.bias.grad, torch.ones(3))  # (DDP needs a gradient for every parameter)
    assert torch.equal(bn.running_mean, torch.zeros(3)) and torch.equal(bn.running_var, torch.ones(3))
    plain = torch.nn.BatchNorm2d(3).train()
    plain.load_state_dict(bn.state_dict())
    y = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(bn(y), plain(y), rtol=0, atol=0)


def test_batch_size_one_trains_and_tiny_inputs_are_refused_up_front(sample, tmp_path):
    from efficientdet.engine.trainer import Trainer
    from efficientdet.errors import ConfigError

    result = train(tiny_cfg(sample, tmp_path, batch_size=1, image_size=(128, 128), epochs=1, val_data=None))
    assert result.history[0]["train_loss"] > 0 and len(result.step_losses) == 24
    with pytest.raises(ConfigError, match="image size 32x32 is too small.*above 32"):
        Trainer(tiny_cfg(sample, tmp_path / "small", image_size=(32, 32)))


def test_plot_curves_one_panel_per_quantity_and_leaves_the_backend_alone(tmp_path):
    import matplotlib

    from efficientdet.engine.logger import CURVE_PANELS, plot_curves

    log = tmp_path / "metrics.csv"
    log.write_text("epoch,train_loss,train_cls_loss,train_box_loss,AP,AP50,images_per_s\n1,1.2,0.9,0.006,0.1,0.2,5\n")
    backend = matplotlib.get_backend()
    matplotlib.use("svg")  # a caller's choice that train() must not change
    try:
        out = plot_curves(log, tmp_path / "curves.png")
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(backend)
    from PIL import Image

    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] >= 1000
    titles = [title for title, _ in CURVE_PANELS]
    assert len(titles) == 4 and any("box" in t for t in titles)  # the box loss has its own axis
