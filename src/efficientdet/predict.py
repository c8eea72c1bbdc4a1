"""Prediction: images in, :class:`~efficientdet.structures.Detections` out, in original-image pixels.

:class:`Predictor` takes paths, PIL images, numpy arrays or tensors (one, a list of mixed sizes, or a
``[B, 3, H, W]`` batch), applies the preprocessing that belongs to the weights
(``model.config.preprocess``: letterbox to the input size and normalise), runs the model in inference
mode and returns one ``Detections`` per image: boxes ``xyxy`` float32 in pixels of that image, scores,
labels ``0 .. K-1`` and the label names, on the CPU.

The work is done by a :class:`~efficientdet.backends.Backend` (:mod:`efficientdet.backends`, each in its
own module): :class:`~efficientdet.backends.torch.TorchBackend` (the
:class:`~efficientdet.pipeline.DetectionPipeline` on any device and dtype) or
:class:`~efficientdet.backends.onnxruntime.OnnxRuntimeBackend` (that pipeline exported by
:func:`efficientdet.export.export_model`). A faster backend (TensorRT, CUDA graphs, ...) subclasses
``Backend`` and is passed to ``Predictor(backend)``, or is registered with
:func:`~efficientdet.backends.register_backend` for ``Predictor(model, backend="name")``; callers do not change.

:func:`predict` does it in one call; the module itself is callable as that function, so
``efficientdet.predict(images, "tf_efficientdet_d0")`` works from the top-level package.

Example::

    from efficientdet import Predictor

    predictor = Predictor("tf_efficientdet_d0", score_threshold=0.3, classes=["person", "dog"])
    for det in predictor(["a.jpg", "b.png"]):
        print(det.boxes, det.scores, det.names)
"""

from __future__ import annotations

import difflib
import logging
import os
import sys
import types
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from efficientdet.backends import (
    BACKENDS,
    Backend,
    BackendOptions,
    check_backend,
    create_backend,
    register_backend,
)
from efficientdet.backends.onnxruntime import (
    OnnxRuntimeBackend,
    export_cache_key,
    exported_backend,
    session_options,
)
from efficientdet.backends.torch import (
    COMPILE_MODES,
    DTYPES,
    TorchBackend,
    resolve_dtype,
    resolve_optimize,
)
from efficientdet.config import DetectorConfig
from efficientdet.data.preprocess import ImageInput, to_chw_tensor
from efficientdet.engine.distributed import resolve_device
from efficientdet.errors import ConfigError
from efficientdet.modeling.detector import EfficientDet
from efficientdet.postprocess import override
from efficientdet.structures import Detections

log = logging.getLogger(__name__)

def load_model(name: str | None = None, checkpoint: str | os.PathLike[str] | None = None, *,
               pretrained: bool = True) -> EfficientDet:
    """A detector from a registered name (with its published weights when ``pretrained``) or a checkpoint.

    A checkpoint that carries its config (files written by ``efficientdet convert`` or training) defines the
    model on its own, anchors and post-processing included; otherwise ``name`` gives the architecture. A name
    without a checkpoint or ``pretrained`` has random weights, and a ``random weights:`` warning is logged.
    """
    from efficientdet.factory import resolve_model

    return resolve_model(name, checkpoint, pretrained=pretrained)


def resolve_classes(classes: Iterable[int | str] | int | str | None, label_names: Sequence[str] | None,
                    num_classes: int) -> list[int] | None:
    """Class indices (sorted, unique) from names or indices (``"3"`` counts as index 3 when no class has that name)."""
    if classes is None:
        return None
    if isinstance(classes, (int, str)):
        classes = [classes]
    names = list(label_names) if label_names is not None else []
    out: set[int] = set()
    for c in classes:
        if isinstance(c, str) and c in names:
            out.add(names.index(c))
            continue
        if isinstance(c, int) or (isinstance(c, str) and c.strip().isdigit()):
            i = int(c)
            if not 0 <= i < num_classes:
                raise ConfigError(f"class index {i} is out of range; the model has classes 0..{num_classes - 1}")
            out.add(i)
            continue
        close = difflib.get_close_matches(str(c), names, n=3, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        known = f" Known: {', '.join(n for n in names if n != 'N/A')}" if names else " The model has no label names."
        raise ConfigError(f"unknown class {c!r}.{hint} Give class names or indices.{known}")
    if not out:
        raise ConfigError("classes= is empty; give at least one class name or index, or None for all")
    return sorted(out)


def _as_list(images: Any) -> list[Any]:
    """One image, a list / tuple of images, or a ``[B, 3, H, W]`` tensor -> a list of single images."""
    if isinstance(images, Tensor) and images.ndim == 4:
        return list(images.unbind(0))
    if isinstance(images, (list, tuple)):
        return list(images)
    return [images]


class Predictor:
    """Images in, :class:`Detections` out (original-image pixels, label names, on the CPU).

    Args:
        model_or_name: a registered model name (published weights are downloaded once), an
            :class:`EfficientDet`, a :class:`DetectorConfig`, an exported ``.onnx`` file (run by onnxruntime),
            a weights file (as ``checkpoint``), or a :class:`Backend`. ``None`` with ``checkpoint`` loads the
            checkpoint's own config.
        checkpoint: weights to load (training checkpoint, converted ``.safetensors``, effdet ``.pth``).
        device: ``auto`` (CUDA, else MPS, else CPU) or a device name.
        dtype: network dtype (``float32``, ``float16``, ``bfloat16``); post-processing runs in float32.
        score_threshold / max_detections / nms: override the model's post-processing (``None`` keeps it).
        classes: detect only these classes (names or indices).
        backend: a name registered in :data:`~efficientdet.backends.BACKENDS`: ``"torch"`` (:class:`TorchBackend`,
            default), ``"onnxruntime"``
            (:class:`OnnxRuntimeBackend`; a model that is not an ``.onnx`` file is exported first, with the
            ``nms`` / ``max_detections`` given here: tens of seconds for D0 the first time, then loaded from
            the cache, see :func:`exported_backend`). An ``.onnx`` file always runs with onnxruntime.
        optimize: PyTorch backend: run the inference copy of :func:`~efficientdet.fast.optimize_for_inference`
            (same outputs, faster). ``None`` (default): on for the CPU.
        channels_last / compile: NHWC memory format (``None``: with ``optimize``) / ``torch.compile`` the
            network (``True`` or a mode, see :class:`TorchBackend`).
        threads: onnxruntime intra-op threads (``None``: its default). PyTorch uses ``torch.set_num_threads``.
        spinning: onnxruntime threads busy-wait for work (see :func:`session_options`).
        batch_size: images per forward pass.
        pretrained: with a model name, load its published weights (default) or keep random ones.
    """

    def __init__(
        self,
        model_or_name: str | os.PathLike[str] | EfficientDet | DetectorConfig | Backend | None = None,
        *,
        checkpoint: str | os.PathLike[str] | None = None,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = torch.float32,
        score_threshold: float | None = None,
        classes: Iterable[int | str] | int | str | None = None,
        max_detections: int | None = None,
        nms: str | None = None,
        channels_last: bool | None = None,
        compile: bool | str = False,
        batch_size: int = 8,
        pretrained: bool = True,
        backend: str = "torch",
        optimize: bool | None = None,
        threads: int | None = None,
        spinning: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        check_backend(backend)
        engine: Backend
        if isinstance(model_or_name, Backend):
            engine = model_or_name
        elif isinstance(model_or_name, (str, os.PathLike)) and str(model_or_name).endswith(".onnx"):
            engine = OnnxRuntimeBackend(model_or_name, device, threads, spinning=spinning)
        else:
            from efficientdet.factory import resolve_model

            model = resolve_model(model_or_name, checkpoint, pretrained=pretrained)
            options = BackendOptions(device=device, dtype=dtype, channels_last=channels_last, compile=compile,
                                     optimize=optimize, threads=threads, nms=nms, max_detections=max_detections,
                                     spinning=spinning)
            engine = create_backend(backend, model, options)
        self.backend = engine
        self.batch_size = int(batch_size)
        self.postprocess = override(engine.postprocess, nms=nms, max_detections=max_detections,
                                    score_threshold=score_threshold)
        engine.check(self.postprocess)
        self.classes = resolve_classes(classes, engine.label_names, engine.num_classes)

    @classmethod
    def from_onnx(cls, path: str | os.PathLike[str], *, device: str | torch.device = "auto", threads: int | None = None,
                  spinning: bool = True, **kwargs: Any) -> Predictor:
        """A predictor running an exported ONNX file with onnxruntime (see :class:`OnnxRuntimeBackend`)."""
        return cls(OnnxRuntimeBackend(path, device, threads, spinning=spinning), **kwargs)

    @property
    def label_names(self) -> tuple[str, ...] | None:
        return self.backend.label_names

    @property
    def category_ids(self) -> tuple[int, ...] | None:
        """The dataset id (e.g. COCO category id) of each class index, when the weights record them."""
        return self.backend.category_ids

    @property
    def input_size(self) -> tuple[int, int]:
        """The network input ``(H, W)``."""
        size = self.backend.preprocess.image_size
        return (int(size[0]), int(size[1]))

    def __call__(self, images: ImageInput | Sequence[ImageInput]) -> list[Detections]:
        """Detections of each image (one image, a list of mixed types and sizes, or a ``[B, 3, H, W]`` tensor)."""
        return [det for _, det in self.predict_batches(_as_list(images))]

    def predict_batches(self, images: Iterable[ImageInput], batch_size: int | None = None
                        ) -> Iterator[tuple[ImageInput, Detections]]:
        """Stream ``(image, detections)`` pairs, reading ``images`` lazily ``batch_size`` at a time (any iterable)."""
        size = self.batch_size if batch_size is None else int(batch_size)
        if size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {size}")
        chunk: list[ImageInput] = []
        for image in images:
            chunk.append(image)
            if len(chunk) == size:
                yield from zip(chunk, self._detect(chunk), strict=True)
                chunk = []
        if chunk:
            yield from zip(chunk, self._detect(chunk), strict=True)

    def _detect(self, images: Sequence[ImageInput]) -> list[Detections]:
        return self.backend.detect([to_chw_tensor(image) for image in images], self.postprocess, self.classes)

    def predict_tiled(self, image: ImageInput, tile_size: int | tuple[int, int] | None = None, *, overlap: float = 0.2,
                      full_image: bool = True, iou_threshold: float = 0.5) -> Detections:
        """Sliced inference on one (large) image: see :func:`efficientdet.tiling.sliced_predict`.

        ``tile_size`` defaults to the network input size, so tiles are not resized.
        """
        from efficientdet.tiling import sliced_predict

        return sliced_predict(self.__call__, to_chw_tensor(image), tile_size or self.input_size, overlap=overlap,
                              full_image=full_image, iou_threshold=iou_threshold,
                              max_detections=self.postprocess.max_detections)


def predict(images: ImageInput | Sequence[ImageInput],
            model: str | os.PathLike[str] | EfficientDet | Predictor | None = None, *, tile: int | None = None,
            tile_overlap: float = 0.2, tile_full_image: bool = True, **kwargs: Any) -> list[Detections]:
    """Detections of ``images`` in one call (what ``efficientdet predict`` runs on each batch).

    Args:
        images: one image or a list (paths, PIL images, ``[H, W, 3]`` uint8 arrays, ``[3, H, W]`` tensors), or
            a ``[B, 3, H, W]`` batch.
        model: a registered name (with its published weights unless ``pretrained=False``), a weights file, an
            :class:`EfficientDet`, or a ready :class:`Predictor` (used as is: give no other settings then).
        tile: sliced inference on ``tile x tile`` pixel tiles (small objects in large images), see
            :meth:`Predictor.predict_tiled`; ``tile_overlap`` / ``tile_full_image`` as its ``overlap`` /
            ``full_image``.
        kwargs: :class:`Predictor` settings (``checkpoint=``, ``score_threshold=``, ``device=`` ...).

    Returns:
        one :class:`Detections` per image: ``xyxy`` boxes in that image's pixels, scores, labels.

    ``efficientdet.predict`` (the module) can be called as this function: ``efficientdet.predict("a.jpg",
    "tf_efficientdet_d0")``.
    """
    if isinstance(model, Predictor):
        if kwargs:
            raise ConfigError(f"predict() got settings ({', '.join(kwargs)}) with a ready Predictor; set them on it")
        predictor = model
    else:
        predictor = Predictor(model, **kwargs)
    if tile is None:
        return predictor(images)
    if tile < 1:
        raise ConfigError(f"tile must be a positive number of pixels, got {tile}")
    return [predictor.predict_tiled(image, tile, overlap=tile_overlap, full_image=tile_full_image)
            for image in _as_list(images)]


class _CallableModule(types.ModuleType):
    """This module, callable as :func:`predict`: ``efficientdet.predict`` names both the module and the
    top-level function (a package attribute cannot be both otherwise, since importing the module sets it)."""

    def __call__(self, *args: Any, **kwargs: Any) -> list[Detections]:
        return predict(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule


__all__ = [
    "DTYPES",
    "BACKENDS",
    "COMPILE_MODES",
    "resolve_device",
    "resolve_dtype",
    "load_model",
    "resolve_classes",
    "resolve_optimize",
    "session_options",
    "export_cache_key",
    "exported_backend",
    "Backend",
    "BackendOptions",
    "register_backend",
    "TorchBackend",
    "OnnxRuntimeBackend",
    "Predictor",
    "predict",
]
