"""Exported NMS breaks exact ties as TF's kernel does, like the eager post-processing (tests/test_postprocess.py).

The graphs here take head outputs instead of images (the export's own NMS code after the network), so that
the scores hold exact ties: equal logits and saturated logits whose TF float32 scores are exactly 1.0.
"""

from __future__ import annotations

import pytest
import torch

from efficientdet.export import (
    INPUT_NAME,
    OUTPUT_NAMES,
    DetectionGraph,
    ExportJob,
    _dynamic_batch,
    _write_onnx,
    export_config,
)
from efficientdet.postprocess import postprocess_padded
from efficientdet.structures import HeadOutputs
from tests.predict.helpers import tiny_model
from tests.test_postprocess import tied_outputs

SIZE = (64, 64)


class HeadsGraph(DetectionGraph):
    """:class:`DetectionGraph` from head outputs ``[B, N, K + 4]`` (class logits, then box deltas) on."""

    def forward(self, images: torch.Tensor):  # type: ignore[override]  # the export's input name
        outputs = HeadOutputs(images[..., :-4], images[..., -4:])
        return self.postprocessor(outputs, self.anchors, input_size=self.image_size)


SLOW = pytest.mark.slow  # ~20 s each: the dynamo exporter


@pytest.mark.parametrize(
    "mode, nms, exporter",
    [
        ("global", "hard", "torchscript"),
        ("global", "soft", "torchscript"),
        ("topk", "soft", "torchscript"),
        pytest.param("global", "hard", "dynamo", marks=SLOW),
        pytest.param("topk", "hard", "dynamo", marks=SLOW),
    ],
)
def test_onnx_nms_ties_equal_pytorch(mode, nms, exporter, tmp_path):
    """Same detections, in the same order, from onnxruntime as from PyTorch (which follows TF, see
    tests/test_postprocess.py); the ONNX ``NonMaxSuppression`` operator of hard NMS sees tie-free ranks."""
    import onnxruntime as ort

    model = tiny_model(num_classes=3, label_names=None, category_ids=None, preprocess__image_size=SIZE,
                       fpn__repeats=1, head__repeats=1)
    cfg = export_config(model.config, nms=nms)
    cfg = type(cfg)(**{**cfg.__dict__, "mode": mode, "max_detections": 20 if nms == "soft" else 40, "class_agnostic": mode == "global"})
    graph = HeadsGraph(model, SIZE, cfg, hard_nms="onnx").eval()
    first, second = tied_outputs(SIZE, seed=1), tied_outputs(SIZE, seed=2)
    heads = torch.cat([torch.cat(first, -1), torch.cat(second, -1)])
    path = tmp_path / "ties.onnx"
    _write_onnx(ExportJob(graph, heads[:1], path, INPUT_NAME, {INPUT_NAME: {0: _dynamic_batch()}},
                          {name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)}, {}, 18, exporter))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": heads.numpy()})
    expected = postprocess_padded(HeadOutputs(heads[..., :-4], heads[..., -4:]), graph.anchors, cfg, input_size=SIZE)
    assert got[3].tolist() == expected[3].tolist() == [cfg.max_detections] * 2
    assert got[2].tolist() == expected[2].tolist()
    # onnxruntime's exp() in the box decoding moves boxes by ~1e-6, and so soft-NMS decays by an ulp
    torch.testing.assert_close(torch.from_numpy(got[0]), expected[0], rtol=0, atol=1e-4)
    torch.testing.assert_close(torch.from_numpy(got[1]), expected[1], rtol=0, atol=0 if nms == "hard" else 1e-6)
