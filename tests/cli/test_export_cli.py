"""``efficientdet export``: the CLI writes a loadable graph of the requested size and says how to use it."""

from __future__ import annotations

import warnings

import torch

from efficientdet.cli.main import main
from efficientdet.export import read_metadata
from tests.predict.helpers import TINY_NAMES, save_tiny_checkpoint


def test_torchscript_export_at_another_size(tmp_path, capsys):
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.safetensors", fpn__repeats=1, head__repeats=1)
    out = tmp_path / "deploy" / "tiny.torchscript"
    assert main(["export", "--checkpoint", str(ckpt), "--format", "torchscript", "--output", str(out), "--image-size",
                 "96", "160", "--max-detections", "10", "--batch", "2"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "uint8 [2, 3, 96, 160]" in printed and "boxes [2, 10, 4]" in printed
    meta = read_metadata(out)
    assert meta["image_size"] == [96, 160] and meta["label_names"] == list(TINY_NAMES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice
        graph = torch.jit.load(str(out))
    boxes, scores, labels, counts = graph(torch.randint(0, 256, (2, 3, 96, 160), dtype=torch.uint8))
    assert boxes.shape == (2, 10, 4) and labels.dtype == torch.int64 and counts.tolist() == [10, 10]
    assert float(boxes[..., 2].max()) <= 160 and float(boxes[..., 3].max()) <= 96  # clipped to the input


def test_export_errors(tmp_path, capsys):
    assert main(["export", "--format", "onnx"]) == 2
    assert "--model NAME or --checkpoint FILE" in capsys.readouterr().err
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    assert main(["export", "--checkpoint", str(ckpt), "--image-size", "1", "2", "3"]) == 2
    assert "one size or H W" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(ckpt), "--format", "pt2", "--batch", "some", "--output",
                 str(tmp_path / "x.pt2")]) == 2
    assert "'dynamic' or a positive number" in capsys.readouterr().err
