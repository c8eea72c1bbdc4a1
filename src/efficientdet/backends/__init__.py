"""Inference backends: the seam between :class:`~efficientdet.predict.Predictor` and an inference engine.

A backend turns letterbox-ready images into :class:`~efficientdet.structures.Detections`. Two ship with the
library, each in its own module: ``torch`` (:class:`~efficientdet.backends.torch.TorchBackend`, the
:class:`~efficientdet.pipeline.DetectionPipeline` in PyTorch) and ``onnxruntime``
(:class:`~efficientdet.backends.onnxruntime.OnnxRuntimeBackend`, the pipeline exported to ONNX).

Adding one (TensorRT, OpenVINO, a service ...): subclass :class:`Backend`, then either pass an instance to
``Predictor(backend_instance)`` or register a factory so that ``Predictor(model, backend="name")`` and
``efficientdet benchmark --backend name`` build it from a model::

    from efficientdet.backends import Backend, BackendOptions, register_backend

    class MyBackend(Backend):
        ...

    register_backend("mine", lambda model, options: MyBackend(model, options.device))
"""

from __future__ import annotations

import dataclasses
import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from efficientdet.config import PostprocessConfig, PreprocessConfig
from efficientdet.errors import ConfigError
from efficientdet.structures import Detections

if TYPE_CHECKING:
    from efficientdet.modeling.detector import EfficientDet


class Backend(ABC):
    """Runs a detector on a list of images.

    Attributes a backend sets: ``name``, ``label_names`` and ``category_ids`` (dataset ids of the classes; each
    may be ``None``), ``num_classes``, ``preprocess`` (input size, mean / std, fill: what the weights expect)
    and ``postprocess`` (its default settings).
    """

    name: str
    label_names: tuple[str, ...] | None
    category_ids: tuple[int, ...] | None = None
    num_classes: int
    preprocess: PreprocessConfig
    postprocess: PostprocessConfig

    @abstractmethod
    def detect(self, images: Sequence[Tensor], postprocess: PostprocessConfig,
               classes: Sequence[int] | None = None) -> list[Detections]:
        """Detections of ``images`` (``[3, H, W]`` tensors, ``uint8`` 0..255 or float 0..1, RGB).

        Returns one :class:`Detections` per image on the CPU: boxes xyxy in that image's pixels, labels in
        ``0 .. num_classes - 1``, only ``classes`` when given, following ``postprocess`` (score threshold,
        max detections, NMS).
        """

    def check(self, postprocess: PostprocessConfig) -> None:
        """Raise :class:`ConfigError` when this backend cannot apply ``postprocess`` (a valid config: its values
        were checked when it was built); the base backend applies any valid config."""
        return None


@dataclasses.dataclass(frozen=True)
class BackendOptions:
    """What a backend factory gets besides the model: the :class:`~efficientdet.predict.Predictor` settings.

    ``device`` / ``dtype``: where and in which precision the network runs; ``channels_last`` / ``compile`` /
    ``optimize``: PyTorch's speed options (``None``: the backend's default); ``threads``: intra-op threads of
    an engine with its own pool; ``nms`` / ``max_detections``: post-processing an engine fixes when it is
    built (an export); ``spinning``: onnxruntime's idle threads busy-wait for work.
    """

    device: str | torch.device = "auto"
    dtype: str | torch.dtype = torch.float32
    channels_last: bool | None = None
    compile: bool | str = False
    optimize: bool | None = None
    threads: int | None = None
    nms: str | None = None
    max_detections: int | None = None
    spinning: bool = True


BackendFactory = Callable[["EfficientDet", BackendOptions], Backend]
"""Builds a backend from a model and :class:`BackendOptions`."""

BACKENDS: dict[str, BackendFactory | str] = {
    "torch": "efficientdet.backends.torch:from_model",
    "onnxruntime": "efficientdet.backends.onnxruntime:from_model",
}
"""Backends :class:`~efficientdet.predict.Predictor` can build from a model (``backend=``), by name: a factory,
or ``"module:function"`` imported on first use (so an optional runtime is imported only when asked for)."""


def register_backend(name: str, factory: BackendFactory | str) -> None:
    """Make ``backend=name`` build a backend with ``factory(model, options)`` (replacing one of that name)."""
    if not name or not isinstance(name, str):
        raise ConfigError(f"a backend needs a non-empty name, got {name!r}")
    BACKENDS[name] = factory


def check_backend(name: str) -> None:
    """Raise :class:`ConfigError` (with the close match and the choices) unless ``name`` is registered."""
    if name not in BACKENDS:
        import difflib

        close = difflib.get_close_matches(name, list(BACKENDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"backend={name!r} is unknown{hint}; use one of {', '.join(BACKENDS)}")


def create_backend(name: str, model: EfficientDet, options: BackendOptions | None = None) -> Backend:
    """The backend registered as ``name`` for ``model``."""
    check_backend(name)
    factory = BACKENDS[name]
    if isinstance(factory, str):
        module, attr = factory.split(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory(model, options or BackendOptions())  # type: ignore[operator]


__all__ = ["Backend", "BackendOptions", "BackendFactory", "BACKENDS", "register_backend", "check_backend", "create_backend"]
