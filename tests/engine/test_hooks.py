"""Trainer hooks and the evaluator registry: a toy hook and a toy evaluator added through the registration points,
any registered metric as the run's validation, the run's lines through ``logging``."""

import csv
import logging
from pathlib import Path

import pytest

from efficientdet import evaluation
from efficientdet.config import TrainConfig
from efficientdet.data.sample import ensure_sample_dataset
from efficientdet.engine.checkpoint import load_checkpoint
from efficientdet.engine.hooks import HookBase, epoch_line
from efficientdet.engine.logger import TRAIN_LOG
from efficientdet.engine.trainer import train
from efficientdet.errors import ConfigError
from efficientdet.evaluation import DetectionEvaluator, register_evaluator

TINY = str(Path(__file__).with_name("tiny.yaml"))


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return ensure_sample_dataset(tmp_path_factory.mktemp("sample"), train=8, val=4, size=96)


def tiny_cfg(sample, out, **kw):
    base = dict(model=TINY, train_data=str(sample["train"]), val_data=str(sample["val"]), batch_size=4, epochs=2,
                workers=0, output=str(out), progress=False, pretrained_backbone=False, warmup_epochs=0.5, lr=0.02)
    return TrainConfig(**{**base, **kw})


class CountingEvaluator(DetectionEvaluator):
    """A toy metric: how many validation images were evaluated and how many detections they got; its primary
    metric ``images`` grows with the epoch only through the test's hook, so the best checkpoint is predictable."""

    primary_metric = "images"

    def compute(self) -> dict[str, float]:
        indices, dets = self.collected()
        return {"images": float(len(indices)), "detections": float(sum(len(d.scores) for d in dets))}


class Recorder(HookBase):
    """A toy hook: records every call, and adds a column to each epoch's row (it runs after validation and
    before metrics.csv is written, by its default priority)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []
        self.seen_metrics: list[float] = []

    def before_train(self) -> None:
        self.calls.append(("before_train", self.trainer.epoch, self.trainer.step))

    def before_epoch(self) -> None:
        self.calls.append(("before_epoch", self.trainer.epoch, self.trainer.step))

    def after_step(self) -> None:
        self.calls.append(("after_step", self.trainer.epoch, self.trainer.step))

    def after_epoch(self) -> None:
        self.calls.append(("after_epoch", self.trainer.epoch, self.trainer.step))
        self.seen_metrics.append(self.trainer.row["images"])
        self.trainer.row["toy_column"] = 10.0 * self.trainer.epoch

    def after_train(self) -> None:
        self.calls.append(("after_train", self.trainer.epoch, self.trainer.step))


def test_a_toy_hook_and_a_registered_toy_evaluator_drive_a_run(sample, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(evaluation, "_REGISTRY", dict(evaluation._REGISTRY))  # registrations end with the test
    with pytest.raises(ConfigError, match="Did you mean: coco"):
        TrainConfig(eval_metric="cocoo")
    register_evaluator("count", CountingEvaluator)
    assert "count" in evaluation.evaluator_names()
    with pytest.raises(ConfigError, match="registered already"):
        register_evaluator("count", CountingEvaluator)

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger(TRAIN_LOG)
    logger.addHandler(handler)  # the run's lines go here, not to stdout
    logger.setLevel(logging.INFO)
    try:
        hook = Recorder()
        result = train(tiny_cfg(sample, tmp_path, eval_metric="count"), hooks=[hook])
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)

    steps = 8 // 4  # per epoch
    expected = [("before_train", 0, 0)]
    for epoch in range(2):
        expected.append(("before_epoch", epoch, epoch * steps))
        expected += [("after_step", epoch, epoch * steps + s) for s in range(1, steps + 1)]
        expected.append(("after_epoch", epoch + 1, (epoch + 1) * steps))
    assert hook.calls == [*expected, ("after_train", 2, 2 * steps)]
    assert hook.seen_metrics == [4.0, 4.0]  # the toy evaluator saw every validation image, before the hook ran
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [float(r["images"]) for r in rows] == [4.0, 4.0] and [r["toy_column"] for r in rows] == ["10.0", "20.0"]
    assert list(rows[0])[-2:] == ["images_per_s", "epoch_time_s"]  # the wall-time columns stay last
    assert result.best_metric == 4.0 and load_checkpoint(result.best_checkpoint)["epoch"] == 1  # not improved later
    lines = [r.getMessage() for r in records]
    assert lines[0].startswith("training tiny_efficientdet on 8 images") and lines[1].startswith("recipe ")
    assert lines[2].startswith("epoch 1/2 | loss ") and lines[3].startswith("epoch 2/2 | loss ")
    assert "epoch 1/2" not in capsys.readouterr().out
    with pytest.raises(ConfigError, match="HookBase"):
        train(tiny_cfg(sample, tmp_path / "bad"), hooks=[object()])


def test_voc_metric_validates_training_and_picks_the_best_checkpoint(sample, tmp_path, capsys):
    result = train(tiny_cfg(sample, tmp_path, epochs=1, eval_metric="voc07"))
    row = result.history[0]
    assert "mAP" in row and "AP" not in row and 0.0 <= row["mAP"] <= 1.0
    assert result.best_metric == row["mAP"] and result.best_checkpoint == tmp_path / "best.pth"
    out = capsys.readouterr().out  # no handler of the user's: the lines are on stdout, as print gave them
    assert f"val mAP {row['mAP']:.4f}" in out and "epoch 1/1 | loss" in out


def test_epoch_line_names_the_metric_of_each_evaluator():
    row = {"epoch": 3, "train_loss": 1.23456, "train_cls_loss": 0.8, "train_box_loss": 0.00712, "images_per_s": 35.06,
           "epoch_time_s": 12.3}
    assert epoch_line(row, 10) == "epoch 3/10 | loss 1.2346 | (cls 0.8000, box 0.00712) | 35.1 img/s | 12s"
    assert epoch_line({**row, "AP": 0.1, "AP50": 0.25}, 10).endswith("val mAP 0.1000 (AP50 0.2500)")
    assert epoch_line({**row, "mAP": 0.3, "dropped_boxes": 2}, 10).endswith("val mAP 0.3000 | 2 unusable boxes dropped")


def test_a_checkpoint_of_the_flat_layout_still_resumes(sample, tmp_path):
    import torch

    from efficientdet.config import flat_train_settings

    first = train(tiny_cfg(sample, tmp_path, epochs=1, val_data=None))
    state = load_checkpoint(first.last_checkpoint)
    assert set(state["train_config"]) == {"detector", "data", "augment", "optim", "runtime", "outputs"}
    state["train_config"] = flat_train_settings(state["train_config"])  # as checkpoints before the slices held it
    old = tmp_path / "old.pth"
    torch.save(state, old)
    with pytest.raises(ConfigError, match=r"batch_size=4 \(now 2\)"):
        train(tiny_cfg(sample, tmp_path / "other", epochs=2, val_data=None, batch_size=2), resume=old)
    resumed = train(tiny_cfg(sample, tmp_path, epochs=2, val_data=None), resume=old)
    assert [row["epoch"] for row in resumed.history] == [1, 2] and resumed.history[0] == first.history[0]
