"""One option language: ``--output`` in every command, ``--model`` / ``--pretrained`` / ``--checkpoint`` with one
meaning, ``--version``, ``models`` without a match, ``train --split``, and the top-level API the CLI runs."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import efficientdet
from efficientdet import registry
from efficientdet.cli.main import build_parser, main
from efficientdet.cli.options import MODEL_HELP
from efficientdet.config import train_config_from
from efficientdet.data.parsers import load_dataset, save_dataset
from efficientdet.data.sample import SAMPLE_CLASSES, make_sample_dataset
from efficientdet.errors import ConfigError
from tests.predict.helpers import photo, save_tiny_checkpoint, tiny_config

TINY = "tiny_cli_det"

# commands that write something, with the arguments they need besides --output
WRITERS = [
    (("predict",), ["img.jpg"]), (("export",), []), (("validate",), ["data.json"]), (("train",), []),
    (("demo",), []), (("convert", "tf"), ["ckpt"]), (("convert", "effdet"), ["ckpt", "--model", "m"]),
    (("checkpoint", "average"), []), (("checkpoint", "clean"), ["last.pth"]),
]
MODEL_COMMANDS = [("predict", ["img.jpg"]), ("export", []), ("validate", ["data.json"]), ("benchmark", []),
                  ("train", [])]


def subparser(*names: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in names:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


@pytest.fixture
def tiny_registered(monkeypatch):
    """A registered architecture without published weights, for the sample dataset's classes."""
    registry.list_models()  # the built-in entries first, then the temporary one (removed after the test)
    config = tiny_config(name=TINY, fpn__repeats=1, head__repeats=1, num_classes=len(SAMPLE_CLASSES),
                         label_names=SAMPLE_CLASSES, category_ids=tuple(range(1, 7)))
    monkeypatch.setitem(registry._REGISTRY, TINY, registry.ModelEntry(config))
    return config


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> dict[str, Path]:
    return make_sample_dataset(tmp_path_factory.mktemp("sample"), seed=1, train=3, val=2, size=96)


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"efficientdet {efficientdet.__version__}\n"


def test_every_command_names_its_output_output(capsys):
    for names, needed in WRITERS:
        parser = subparser(*names)
        assert parser.parse_args([*needed, "--output", "x"]).output == "x", names
        assert parser.parse_args([*needed, "--out", "y"]).output == "y", names  # the old spelling still works
        text = parser.format_help()
        assert "--output" in text and "--out " not in text and "--out," not in text, names
    with pytest.raises(SystemExit):
        subparser("convert", "effdet").parse_args(["ckpt", "--model", "m"])
    assert "--output is required" in capsys.readouterr().err
    assert subparser("predict").parse_args(["a.jpg"]).output == "runs/predict"


def test_model_flags_are_the_same_options_everywhere():
    for command, needed in MODEL_COMMANDS:
        parser = subparser(command)
        args = parser.parse_args([*needed, "--model", "efficientdet-d0"])
        assert not args.pretrained and args.checkpoint is None, command  # no weights unless asked for
        assert parser.parse_args([*needed, "--model", "m", "--pretrained"]).pretrained is True
        assert parser.parse_args([*needed, "--checkpoint", "w.pth"]).checkpoint == "w.pth"
        text = " ".join(parser.format_help().split())
        assert "--checkpoint FILE" in text and "--pretrained" in text, command
        if command != "train":
            assert " ".join(MODEL_HELP.split()) in text, command


def test_random_weights_are_announced_and_pretrained_means_published(tiny_registered, sample, tmp_path, caplog,
                                                                      capsys):
    val = str(sample["val"])
    runs = {
        "predict": ["predict", str(photo("coffee.png")), "--output", str(tmp_path / "p"), "--no-images",
                    "--no-progress", "--device", "cpu"],
        "validate": ["validate", val, "--workers", "0", "--batch-size", "2", "--device", "cpu"],
        "benchmark": ["benchmark", "--image-size", "64", "--warmup", "0", "--iters", "1", "--stages", "network",
                      "--device", "cpu"],
        "export": ["export", "--format", "torchscript", "--output", str(tmp_path / "t.torchscript")],
    }
    for command, argv in runs.items():
        caplog.clear()
        assert main([*argv, "--model", TINY]) == 0, command
        assert f"random weights: {TINY}" in caplog.text, command
        assert main([*argv, "--model", TINY, "--pretrained"]) == 2, command
        assert f"model {TINY!r} has no published weights" in capsys.readouterr().err, command
    train = ["train", "--data", str(sample["train"]), "--model", TINY, "--pretrained", "--epochs", "1", "--workers",
             "0", "--device", "cpu", "--output", str(tmp_path / "run")]
    assert main(train) == 2 and f"model {TINY!r} has no published weights" in capsys.readouterr().err

    # weights from a checkpoint: no warning
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    caplog.clear()
    assert main([*runs["predict"], "--checkpoint", str(ckpt)]) == 0
    assert "random weights" not in caplog.text


def test_models_without_a_match_is_an_error_with_close_names(capsys):
    assert main(["models", "nomatch*"]) == 2
    assert "no model matches 'nomatch*'" in capsys.readouterr().err
    assert main(["models", "tf_efficientdet_lite9*"]) == 2
    assert "Did you mean: tf_efficientdet_lite" in capsys.readouterr().err
    assert main(["models", "efficientdet-d*"]) == 2  # official names: their ports are suggested
    assert "tf_efficientdet_d0, tf_efficientdet_d1" in capsys.readouterr().err
    assert main(["models", "--show", "efficientdet-d0"]) == 0
    assert "name: tf_efficientdet_d0" in capsys.readouterr().out
    assert main(["models", "tf_efficientdet_lite0"]) == 0
    assert "1 models" in capsys.readouterr().out


def test_train_split_reaches_the_loader(sample, tmp_path, capsys):
    voc = save_dataset(load_dataset(sample["train"]), tmp_path / "voc", "voc", split="train", images="symlink")
    image_sets = voc / "ImageSets" / "Main"
    ids = (image_sets / "train.txt").read_text().split()
    (image_sets / "trainval.txt").write_text("\n".join(ids[:2]) + "\n")  # another part, of 2 images
    assert main(["train", "--data", str(voc), "--split", "trainval", "--val-split", "val", "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "train_split: trainval" in printed and "val_split: val" in printed

    from efficientdet.engine.trainer import _load_datasets

    def sizes(**settings) -> int:
        return len(_load_datasets(train_config_from(None, [], train_data=str(voc), **settings).data)[0])

    assert (sizes(), sizes(train_split="trainval"), sizes(train_split="train")) == (3, 2, 3)
    # a single COCO json has no splits: the flag is an error, not ignored
    assert main(["train", "--data", str(sample["train"]), "--split", "trainval", "--output",
                 str(tmp_path / "run"), "--device", "cpu"]) == 2
    assert "has no splits" in capsys.readouterr().err


@pytest.mark.parametrize("name, module", [("train", "efficientdet.engine.trainer"),
                                          ("validate", "efficientdet.engine.evaluate"),
                                          ("export_model", "efficientdet.export"),
                                          ("predict", "efficientdet.predict")])
def test_top_level_functions_are_what_the_cli_runs(name, module, monkeypatch, tmp_path, capsys):
    import importlib

    library = importlib.import_module(module)
    function = getattr(efficientdet, name)
    if name == "predict":  # the module efficientdet.predict, callable as its predict()
        assert function is library and callable(function) and function.predict.__doc__
    else:
        assert function is getattr(library, name) and function.__doc__
    assert name in efficientdet.__all__

    calls = []

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        raise ConfigError(f"{name} was called")

    monkeypatch.setattr(library, name, spy)
    ckpt = str(save_tiny_checkpoint(tmp_path / "tiny.safetensors", fpn__repeats=1, head__repeats=1))
    argv = {
        "train": ["train", "--data", "somewhere.json"],
        "validate": ["validate", "somewhere.json", "--checkpoint", ckpt],
        "export_model": ["export", "--checkpoint", ckpt, "--format", "torchscript", "--output",
                         str(tmp_path / "t.torchscript")],
        "predict": ["predict", str(photo("coffee.png")), "--checkpoint", ckpt, "--device", "cpu", "--no-progress",
                    "--output", str(tmp_path / "p")],
    }[name]
    assert main(argv) == 2 and f"{name} was called" in capsys.readouterr().err and len(calls) == 1


def test_train_takes_settings_as_keywords(tmp_path):
    """``efficientdet.train(**settings)``: TrainConfig fields without building a TrainConfig first."""
    from efficientdet.config import TrainConfig
    from efficientdet.errors import DataError

    with pytest.raises(ConfigError, match="Did you mean: train_data"):
        efficientdet.train(tran_data="x.json")
    missing = tmp_path / "missing.json"
    with pytest.raises(DataError, match=f"dataset path not found: {missing}"):
        efficientdet.train(TrainConfig(epochs=1, device="cpu"), train_data=str(missing), output=str(tmp_path / "r"))


def test_convert_tf_needs_an_output_or_verify(capsys, tmp_path):
    assert main(["convert", "tf", str(tmp_path / "ckpt")]) == 2
    assert "--output FILE" in capsys.readouterr().err
