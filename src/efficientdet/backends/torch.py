"""The PyTorch backend: :class:`~efficientdet.pipeline.DetectionPipeline` on any device and dtype."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from efficientdet.backends import Backend, BackendOptions
from efficientdet.config import DetectorConfig, PostprocessConfig
from efficientdet.data.preprocess import letterbox_images
from efficientdet.engine.distributed import resolve_device
from efficientdet.errors import ConfigError
from efficientdet.modeling.detector import EfficientDet
from efficientdet.pipeline import DetectionPipeline, clip_sizes
from efficientdet.precision import DTYPES, resolve_dtype
from efficientdet.structures import Detections, ImageMeta

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
"""``torch.compile`` modes accepted for ``compile`` (``reduce-overhead`` records CUDA graphs on GPUs)."""


def resolve_optimize(optimize: bool | None, device: torch.device) -> bool:
    """Whether :class:`TorchBackend` runs :func:`~efficientdet.fast.optimize_for_inference` (``None``: auto).

    Auto turns it on for the CPU, where it was measured to be faster with the same results
    (``benchmarks/README.md``); elsewhere it is an explicit choice until measured there.
    """
    return device.type == "cpu" if optimize is None else bool(optimize)


class TorchBackend(Backend):
    """An :class:`EfficientDet` in PyTorch on ``device`` in ``dtype`` (post-processing in float32).

    Images are letterboxed by :func:`~efficientdet.data.preprocess.letterbox_images` (float32 canvases, on
    the device) and run through a :class:`~efficientdet.pipeline.DetectionPipeline` (one per post-processing
    setting, sharing the network).

    Args:
        model: the detector. Without ``optimize`` it is moved to ``device`` / ``dtype`` and used as is; with
            it, a faster copy is used and ``model`` stays as it was.
        optimize: run :func:`~efficientdet.fast.optimize_for_inference` (BatchNorm folded into the convs,
            copy-free TF-SAME padding, fixed fusion weights; the same outputs to ~1e-6). ``None``: on for the
            CPU (see :func:`resolve_optimize`).
        channels_last: NHWC memory format; ``None``: on when optimizing.
        compile: ``torch.compile`` the network: ``True`` (the default mode) or a mode from
            :data:`COMPILE_MODES` (``reduce-overhead`` uses CUDA graphs on GPUs). The first call of each
            input shape compiles (tens of seconds to minutes).
    """

    def __init__(self, model: EfficientDet, device: str | torch.device = "auto", dtype: str | torch.dtype = torch.float32,
                 channels_last: bool | None = None, compile: bool | str = False, optimize: bool | None = None) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.optimize = resolve_optimize(optimize, self.device)
        self.channels_last = self.optimize if channels_last is None else bool(channels_last)
        if isinstance(compile, str) and compile not in COMPILE_MODES:
            raise ConfigError(f"compile={compile!r} is not a torch.compile mode; use True or one of {', '.join(COMPILE_MODES)}")
        self.compile = compile
        if self.optimize:
            from efficientdet.fast import optimize_for_inference

            # fold in the model's own (float32) precision, then cast
            model = optimize_for_inference(model, channels_last=False)
        self.model = model.eval().to(device=self.device, dtype=self.dtype)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        config: DetectorConfig = model.config
        self.name = config.name
        self.label_names = config.label_names
        self.category_ids = config.category_ids
        self.num_classes = config.num_classes
        self.preprocess = config.preprocess
        self.postprocess = config.postprocess
        self._pipelines: dict[PostprocessConfig, DetectionPipeline] = {}

    def pipeline(self, postprocess: PostprocessConfig | None = None) -> DetectionPipeline:
        """The pipeline that applies ``postprocess`` (default: the model's), built on first use."""
        cfg = self.postprocess if postprocess is None else postprocess
        if cfg not in self._pipelines:
            pipeline = DetectionPipeline(self.model, postprocess=cfg, dtype=self.dtype, channels_last=self.channels_last)
            if self.compile:
                pipeline.compile_network(None if self.compile is True or self.compile == "default" else self.compile)
            self._pipelines[cfg] = pipeline
        return self._pipelines[cfg]

    def prepare(self, images: Sequence[Tensor]) -> tuple[Tensor, list[ImageMeta]]:
        """Letterboxed float32 canvases ``[B, 3, H, W]`` (0..255) on the device, and each image's metadata."""
        return letterbox_images(list(images), self.preprocess, self.device)

    @torch.inference_mode()
    def detect(self, images: Sequence[Tensor], postprocess: PostprocessConfig,
               classes: Sequence[int] | None = None) -> list[Detections]:
        canvases, metas = self.prepare(images)
        pipeline = self.pipeline(postprocess)
        keep = None if classes is None else torch.as_tensor(list(classes), dtype=torch.int64, device=self.device)
        padded = pipeline(canvases, clip_sizes(metas, self.device), keep)
        return [d.to("cpu") for d in pipeline.detections(padded, metas, self.label_names)]


def from_model(model: EfficientDet, options: BackendOptions) -> TorchBackend:
    """The ``torch`` entry of :data:`~efficientdet.backends.BACKENDS`."""
    return TorchBackend(model, options.device, options.dtype, options.channels_last, options.compile, options.optimize)


__all__ = ["DTYPES", "COMPILE_MODES", "resolve_dtype", "resolve_optimize", "TorchBackend", "from_model"]
