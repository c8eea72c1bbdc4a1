"""The raw-image graph: one decoded ``uint8 [H, W, 3]`` image of any size in, detections in its pixels out.

Deployment code becomes "decode, run, draw" in any language: the graph letterboxes the image itself, exactly
as :func:`~efficientdet.data.preprocess.letterbox` does for :class:`~efficientdet.predict.Predictor`
(official float32 scale, bilinear resize with half-pixel centres and no antialias, top-left placement,
padding with the model's fill), then runs the :class:`~efficientdet.pipeline.DetectionPipeline` and maps the
boxes back to the image.

The resize is written with fixed output shapes: per output row and column it gathers the two source rows /
columns and blends them (separable bilinear interpolation); the rows and columns past the resized image are
set to the fill. Only the gather indices and weights depend on the image size, so the graph exports with a
dynamic height and width and costs ``O(H_in * W + H_in * W_in)``, not ``O(H * W)``.

Graph signature (``D`` = ``max_detections``):

==================  =====================  ============================================================
name                shape, type            meaning
==================  =====================  ============================================================
``image``           ``[H, W, 3]`` uint8    RGB, any size (``H, W >= 1``), as decoded
``boxes``           ``[D, 4]`` float32     xyxy in image pixels, clipped to the image; 0 in padding rows
``scores``          ``[D]`` float32        descending; 0 in padding rows
``labels``          ``[D]`` int64          ``0 .. K-1``; -1 in padding rows
``num_detections``  ``[]`` int64           valid rows
==================  =====================  ============================================================
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from efficientdet.data.preprocess import fill_values
from efficientdet.export import ExportJob
from efficientdet.pipeline import DetectionPipeline

INPUT_NAME = "image"
"""Input name of raw-image graphs (batched graphs take ``images``)."""


def _source_index(out_size: int, in_size: Tensor, resized: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Bilinear taps along one axis: ``(low [N], high [N], weight_high [N], inside [N])`` for ``N = out_size``.

    ``in_size`` / ``resized``: float32 scalars, the source length and the resized length (``<= out_size``).
    Same maths as ``F.interpolate(mode="bilinear", align_corners=False)`` (PyTorch's CPU kernel, float32):
    ``src = max((i + 0.5) * in / resized - 0.5, 0)``, ``low = floor(src)``, ``high = min(low + 1, in - 1)``.
    ``inside`` marks the outputs within the resized image (the rest is padding).
    """
    i = torch.arange(out_size, dtype=torch.float32, device=in_size.device)
    step = in_size / resized
    src = ((i + 0.5) * step - 0.5).clamp(min=0.0)
    low = src.floor()
    weight = src - low
    high = torch.minimum(low + 1.0, in_size - 1.0)
    low = torch.minimum(low, in_size - 1.0)  # padding outputs read in-range pixels (then replaced by the fill)
    return low.long(), high.long(), weight, i < resized


def _image_size(image: Tensor) -> tuple[Tensor, Tensor]:
    """``(H, W)`` of an ``[H, W, 3]`` image as float32 scalar tensors (dynamic in exported graphs)."""
    kwargs = {"dtype": torch.float32, "device": image.device}
    return torch.scalar_tensor(image.shape[0], **kwargs), torch.scalar_tensor(image.shape[1], **kwargs)


class RawImageGraph(nn.Module):
    """``image [H, W, 3]`` uint8 -> ``(boxes [D, 4] image pixels, scores [D], labels [D], num_detections [])``.

    Wraps a :class:`~efficientdet.pipeline.DetectionPipeline` (its ``image_size`` is the network input) and adds
    the letterbox in front and the scale back to image pixels after it (see the module docstring).
    """

    fill: Tensor

    def __init__(self, graph: DetectionPipeline) -> None:
        super().__init__()
        self.detector = graph
        pre = graph.model.config.preprocess
        values = fill_values(pre.fill, pre.mean)
        device = graph.anchors.device
        self.register_buffer("fill", torch.tensor(values, dtype=torch.float32, device=device), persistent=False)

    def letterbox(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """``(canvas [1, 3, H_in, W_in] float32 0..255, scale [] float32)`` of an ``[H, W, 3]`` image."""
        out_h, out_w = self.detector.image_size
        h, w = _image_size(image)
        scale = torch.minimum(out_h / h, out_w / w)  # float32, as the official code computes it
        new_h = (h * scale).floor().clamp(1.0, float(out_h))
        new_w = (w * scale).floor().clamp(1.0, float(out_w))
        y0, y1, wy, inside_y = _source_index(out_h, h, new_h)
        x0, x1, wx, inside_x = _source_index(out_w, w, new_w)
        pixels = image.float()
        top, bottom = pixels.index_select(0, y0), pixels.index_select(0, y1)  # [H_in, W, 3]
        rows = top + (bottom - top) * wy[:, None, None]
        left, right = rows.index_select(1, x0), rows.index_select(1, x1)  # [H_in, W_in, 3]
        resized = left + (right - left) * wx[None, :, None]
        inside = inside_y[:, None, None] & inside_x[None, :, None]
        canvas = torch.where(inside, resized, self.fill)
        return canvas.permute(2, 0, 1)[None], scale

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        canvas, scale = self.letterbox(image)
        h, w = _image_size(image)
        # clipped to the image in input pixels, then scaled back: what Predictor's post-processing does
        boxes, scores, labels, counts = self.detector(canvas, torch.stack([h * scale, w * scale])[None])
        return boxes[0] / scale, scores[0], labels[0], counts[0]


MAX_SIDE = 1 << 15
"""Largest image side the exported graph accepts (torch.export needs a bound)."""
EXAMPLE_SIZE = (301, 437)
"""The example image traced at export (any size works; odd, unequal sides keep the tracer from specialising)."""


def raw_metadata(meta: dict[str, str]) -> dict[str, str]:
    """The metadata of a batched graph (:func:`~efficientdet.export.export_metadata`), changed for raw input."""
    return {
        **meta,
        "input": "raw",
        "inputs": json.dumps({INPUT_NAME: "uint8 [H, W, 3] RGB, any size (letterboxed inside the graph)"}),
        "outputs": json.dumps({
            "boxes": "float32 [D, 4] xyxy image pixels",
            "scores": "float32 [D] descending, 0 in padding",
            "labels": "int64 [D] class index, -1 in padding",
            "num_detections": "int64 [] valid rows",
        }),
    }


def raw_job(graph: DetectionPipeline, path: Path, meta: dict[str, str], opset: int, exporter: str) -> ExportJob:
    """The :class:`~efficientdet.export.ExportJob` of ``graph`` behind a letterbox (height and width dynamic)."""
    raw = RawImageGraph(graph).eval()
    example = torch.zeros(*EXAMPLE_SIZE, 3, dtype=torch.uint8, device=graph.anchors.device)
    dims = {0: torch.export.Dim("height", min=2, max=MAX_SIDE), 1: torch.export.Dim("width", min=2, max=MAX_SIDE)}
    axes = {INPUT_NAME: {0: "height", 1: "width"}}
    return ExportJob(raw, example, path, INPUT_NAME, {INPUT_NAME: dims}, axes, raw_metadata(meta), opset, exporter)


__all__ = ["INPUT_NAME", "RawImageGraph", "raw_job", "raw_metadata"]
