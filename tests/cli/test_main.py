"""The CLI's error boundary: one ``error:`` line and a non-zero exit for every user mistake, no traceback
unless asked (``--debug`` / ``EFFICIENTDET_DEBUG=1``), and bugs named as bugs."""

from __future__ import annotations

import errno
import logging

import pytest
import torch

from efficientdet.cli.main import EXIT_BUG, EXIT_USER_ERROR, main, run_command
from efficientdet.config import TrainConfig
from efficientdet.errors import ConfigError


def _raise(err: BaseException):
    def func(args):
        raise err

    return func


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(("err", "expected"), [
    (ConfigError("train setting epochs=0: must be >= 1"), "epochs=0"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/data/x.jpg"), "/data/x.jpg does not exist"),
    (PermissionError(errno.EACCES, "Permission denied", "/root/out"), "/root/out is not accessible"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/data/images"), "/data/images is a folder"),
    (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
    (ModuleNotFoundError("No module named 'onnx'", name="onnx"), "pip install onnx"),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), "lower --batch-size"),
])
def test_user_mistakes_end_in_one_line(err, expected, capsys):
    assert run_command(_raise(err), None) == EXIT_USER_ERROR
    assert expected in _one_error_line(capsys)


def test_a_bug_says_so_and_how_to_see_the_traceback(capsys):
    assert run_command(_raise(KeyError("boxes")), None) == EXIT_BUG
    err = capsys.readouterr().err
    assert "Traceback" not in err and "bug" in err and "--debug" in err and "KeyError" in err
    assert run_command(_raise(KeyError("boxes")), None, debug=True) == EXIT_BUG
    assert "Traceback" in capsys.readouterr().err


def test_debug_flag_anywhere_and_environment_variable(capsys, monkeypatch):
    args = ["train", "--data", "nowhere.json", "--set", "epochs=0"]
    assert main(args) == EXIT_USER_ERROR
    assert "epochs=0" in _one_error_line(capsys)
    for argv in (["--debug", *args], [*args, "--debug"]):
        assert main(argv) == EXIT_USER_ERROR
        err = capsys.readouterr().err
        assert "Traceback" in err and "error: train setting epochs=0" in err
    monkeypatch.setenv("EFFICIENTDET_DEBUG", "1")
    assert main(args) == EXIT_USER_ERROR
    assert "Traceback" in capsys.readouterr().err


def test_argparse_mistakes_exit_2_with_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--epochs", "three"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid int value: 'three'" in err and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", [["train", "--data", "x.json"], ["validate", "x.json", "--model", "x"]])
def test_cuda_on_a_machine_without_it(command, capsys):
    assert main([*command, "--device", "cuda"]) == EXIT_USER_ERROR
    assert "CUDA is not available here" in _one_error_line(capsys)


def test_missing_user_files_are_named(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "nope.yaml")]) == EXIT_USER_ERROR
    assert "nope.yaml" in _one_error_line(capsys)
    assert main(["train", "--data", str(tmp_path / "nope.json"), "--no-pretrained-backbone"]) == EXIT_USER_ERROR
    assert "nope.json" in _one_error_line(capsys)


@pytest.mark.parametrize(("setting", "message"), [
    ({"epochs": 0}, "epochs=0: must be >= 1"),
    ({"batch_size": -2}, "batch_size=-2"),
    ({"lr": 0.0}, "lr=0.0: must be > 0"),
    ({"lr": -0.1}, "lr=-0.1"),
    ({"epochs": "ten"}, "expected an integer"),
    ({"ema_decay": 1.5}, "ema_decay"),
    ({"amp": "fp8"}, "choose one of none, bf16, fp16"),
    ({"scale_min": 2.0, "scale_max": 1.0}, "swap them"),
    ({"image_size": (0, 64)}, "image_size"),
])
def test_train_config_refuses_nonsense_on_construction(setting, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        TrainConfig(**setting)


def test_cli_shows_library_log_messages(capsys):
    from efficientdet.cli.main import _LevelFormatter

    record = logging.LogRecord("efficientdet.data.loader", logging.WARNING, __file__, 1, "skipping image %s", ("a.jpg",),
                               None)
    assert _LevelFormatter("%(message)s").format(record) == "warning: skipping image a.jpg"
