"""The one inference pipeline: letterboxed pixels -> normalise -> network -> anchors -> post-process -> un-pad.

:class:`DetectionPipeline` is the only place this sequence is written. Everything that runs a detector wraps
it: :class:`~efficientdet.backends.torch.TorchBackend` (what :class:`~efficientdet.predict.Predictor` runs),
:func:`~efficientdet.engine.evaluate.evaluate` (``validate`` and validation during training), every export
format (:class:`~efficientdet.export.DetectionGraph` is this class) and the benchmark. The letterbox in front
of it is :func:`~efficientdet.data.preprocess.letterbox`, used by ``Predictor`` and by the evaluation data
path alike, so the same image gives the same network input, and the same detections, everywhere
(``tests/test_pipeline.py``).

::

    canvases [B, 3, H, W] (0..255, uint8 or float32, letterboxed top-left)
      -> Normalizer                      (x - 255 * mean) / (255 * std), in the network's dtype
      -> EfficientDet                    HeadOutputs, cast to float32
      -> anchors(H, W)                   a buffer for the export size, else the model's per-size cache
      -> Postprocessor                   top-k, decode, clip, NMS (kernel chosen once): padded [B, D] outputs
    forward() returns the padded tensors in input pixels (what exported graphs return);
    detections() un-pads them into Detections in original-image pixels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from efficientdet.config import PostprocessConfig
from efficientdet.data.preprocess import Normalizer
from efficientdet.modeling.detector import EfficientDet
from efficientdet.postprocess import PAD_LABEL, Postprocessor, unpad
from efficientdet.structures import Detections, HeadOutputs, ImageMeta

Padded = tuple[Tensor, Tensor, Tensor, Tensor]
"""``(boxes [B, D, 4] xyxy float32, scores [B, D] float32, labels [B, D] int64 (-1 padding), counts [B] int64)``."""


class DetectionPipeline(nn.Module):
    """Letterboxed images ``[B, 3, H, W]`` (0..255, ``uint8`` or float) -> padded detections in input pixels.

    Args:
        model: the detector; used as it is (not copied, moved or cast: the caller prepares it).
        image_size: the input ``(H, W)`` whose anchors are kept as a buffer (exported graphs take this size);
            default the model's. Other sizes work too, with the model's cached anchors for that size.
        postprocess: post-processing settings; default the model's.
        hard_nms: the hard NMS kernel, see :data:`~efficientdet.postprocess.HARD_NMS` (``auto`` for eager
            use; exports pick ``torchvision``, ``onnx`` or ``greedy``).
        dtype: the network's input dtype (the model's parameters must match, or use ``autocast``).
        channels_last: give the network NHWC input.
        autocast: run the network (only) under ``torch.autocast`` in this dtype (mixed precision).

    ``forward(images, clip_to=None, classes=None)``: ``clip_to [B, 2]`` float32 ``(H, W)`` in input pixels to
    clip each image's boxes to (the resized image, see :func:`clip_sizes`; ``None``: the whole input);
    ``classes [K']`` int64: detect among these classes only (labels stay indices of the model's classes).
    Returns :data:`Padded`: boxes xyxy in input pixels, scores descending, labels ``0 .. K-1`` and ``-1`` in
    padding rows, valid rows per image.
    """

    anchors: Tensor
    _network: Any

    def __init__(self, model: EfficientDet, image_size: Sequence[int] | None = None,
                 postprocess: PostprocessConfig | None = None, *, hard_nms: str = "auto",
                 dtype: torch.dtype = torch.float32, channels_last: bool = False,
                 autocast: torch.dtype | None = None) -> None:
        super().__init__()
        config = model.config
        self.model = model
        size = config.image_size if image_size is None else image_size
        self.image_size = (int(size[0]), int(size[1]))
        self.postprocess = config.postprocess if postprocess is None else postprocess
        self.postprocessor = Postprocessor(self.postprocess, hard_nms)
        device = next(model.parameters()).device
        self.normalize = Normalizer.from_config(config.preprocess, dtype, channels_last).to(device)
        self.autocast = autocast
        self.register_buffer("anchors", model.anchors(self.image_size, device).clone(), persistent=False)
        self.__dict__["_network"] = model  # the callable run as the network (compile_network); not a submodule

    def compile_network(self, mode: str | None = None) -> None:
        """``torch.compile`` the network (not the post-processing, whose shapes depend on the data)."""
        self.__dict__["_network"] = torch.compile(self.model, mode=mode, dynamic=False)

    def anchors_for(self, size: tuple[int, int]) -> Tensor:
        """Anchors ``[N, 4]`` xyxy input pixels for an input of ``size`` ``(H, W)``."""
        if size == self.image_size:
            return self.anchors
        return self.model.anchors(size, self.anchors.device)

    def network(self, pixels: Tensor) -> HeadOutputs:
        """The network on a normalised batch ``[B, 3, H, W]``: head outputs in float32."""
        ctx = (torch.autocast(pixels.device.type, dtype=self.autocast) if self.autocast is not None
               else contextlib.nullcontext())
        with ctx:
            outputs = self._network(pixels)
        return HeadOutputs(outputs.cls_logits.float(), outputs.box_deltas.float())

    def forward(self, images: Tensor, clip_to: Tensor | None = None, classes: Tensor | None = None) -> Padded:
        outputs = self.network(self.normalize(images))
        if classes is not None:  # detect among these classes only
            outputs = HeadOutputs(outputs.cls_logits.index_select(-1, classes), outputs.box_deltas)
        size = (int(images.shape[-2]), int(images.shape[-1]))
        boxes, scores, labels, counts = self.postprocessor(outputs, self.anchors_for(size), clip_to, size)
        if classes is not None:
            labels = torch.where(labels == PAD_LABEL, PAD_LABEL, classes[labels.clamp(min=0)])
        return boxes, scores, labels, counts

    @staticmethod
    def detections(padded: Padded, metas: Sequence[ImageMeta],
                   label_names: Sequence[str] | None = None) -> list[Detections]:
        """Un-pad: one :class:`Detections` per image, boxes divided by its letterbox scale (original-image
        pixels), on the device of ``padded``."""
        scales = torch.tensor([m.scale for m in metas], dtype=torch.float32, device=padded[0].device)
        return unpad(padded, scales, label_names)


def clip_sizes(metas: Sequence[ImageMeta], device: torch.device | str | None = None) -> Tensor:
    """``[B, 2]`` float32: each image's resized ``(H, W)`` in input pixels (original size times scale), what
    :class:`DetectionPipeline` clips boxes to."""
    sizes = torch.tensor([m.orig_size for m in metas], dtype=torch.float32, device=device)
    return sizes * torch.tensor([m.scale for m in metas], dtype=torch.float32, device=device)[:, None]


__all__ = ["DetectionPipeline", "Padded", "clip_sizes"]
