"""Prediction: images in, :class:`~efficientdet.structures.Detections` out, in original-image pixels.

:class:`Predictor` takes paths, PIL images, numpy arrays or tensors (one, a list of mixed sizes, or a
``[B, 3, H, W]`` batch), applies the preprocessing that belongs to the weights
(``model.config.preprocess``: letterbox to the input size and normalise), runs the model in inference
mode and returns one ``Detections`` per image: boxes ``xyxy`` float32 in pixels of that image, scores,
labels ``0 .. K-1`` and the label names, on the CPU.

The work is done by a :class:`Backend`: :class:`TorchBackend` (an :class:`EfficientDet` on any device and
dtype) or :class:`OnnxRuntimeBackend` (a file written by :func:`efficientdet.export.export_model`). A
faster backend (TensorRT, CUDA graphs, ...) subclasses :class:`Backend` and is passed to
``Predictor(backend)``; callers do not change.

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
import functools
import json
import logging
import os
import sys
import time
import types
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from efficientdet.config import DetectorConfig, PostprocessConfig, PreprocessConfig
from efficientdet.data.preprocess import ImageInput, fill_values, letterbox, preprocess, to_chw_tensor
from efficientdet.engine.distributed import resolve_device
from efficientdet.errors import ConfigError, WeightsError
from efficientdet.modeling.detector import EfficientDet
from efficientdet.ops.boxes import clip_boxes
from efficientdet.postprocess import override
from efficientdet.postprocess import postprocess as decode_detections
from efficientdet.precision import DTYPES, resolve_dtype
from efficientdet.structures import Detections, HeadOutputs, ImageBatch

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


class Backend(ABC):
    """Runs a detector on a list of images: the seam between :class:`Predictor` and an inference engine.

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
        were checked when it was built); every setting works here."""
        return None  # the base backend applies any valid config


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
        self._forward: Any = self.model
        if compile:
            mode = None if compile is True or compile == "default" else compile
            self._forward = torch.compile(self.model, mode=mode, dynamic=False)
        config: DetectorConfig = model.config
        self.name = config.name
        self.label_names = config.label_names
        self.category_ids = config.category_ids
        self.num_classes = config.num_classes
        self.preprocess = config.preprocess
        self.postprocess = config.postprocess

    def prepare(self, images: Sequence[Tensor]) -> ImageBatch:
        """Letterboxed, normalised network input on the device, in the network's dtype and memory format."""
        batch = preprocess(list(images), self.preprocess, self.device)
        pixels = batch.pixels.to(self.dtype)
        if self.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        return ImageBatch(pixels, batch.metas)

    @torch.inference_mode()
    def network(self, pixels: Tensor) -> HeadOutputs:
        """The network on a prepared batch ``[B, 3, H, W]``: head outputs in float32."""
        outputs = self._forward(pixels)
        return HeadOutputs(outputs.cls_logits.float(), outputs.box_deltas.float())

    @torch.inference_mode()
    def detect(self, images: Sequence[Tensor], postprocess: PostprocessConfig,
               classes: Sequence[int] | None = None) -> list[Detections]:
        batch = self.prepare(images)
        pixels = batch.pixels
        logits, deltas = self.network(pixels)
        keep = None
        if classes is not None:
            keep = torch.as_tensor(list(classes), dtype=torch.int64, device=logits.device)
            logits = logits.index_select(-1, keep)  # detect among these classes only
        anchors = self.model.anchors((int(pixels.shape[-2]), int(pixels.shape[-1])), self.device)
        dets = decode_detections(HeadOutputs(logits, deltas), anchors, postprocess, batch.metas)
        out = []
        for d in dets:
            labels = d.labels if keep is None else keep[d.labels]
            out.append(Detections(d.boxes.cpu(), d.scores.cpu(), labels.cpu(), self.label_names))
        return out


def session_options(threads: int | None = None, spinning: bool = True) -> Any:
    """onnxruntime session options for low latency: every graph optimisation, sequential execution, one
    inter-op thread and ``threads`` intra-op threads (``None``: onnxruntime's default, the physical cores).

    ``spinning``: whether idle worker threads busy-wait for work (lower latency on an otherwise idle
    machine, wasted cores on a shared one); the CLI turns it off, as it makes PyTorch's OpenMP threads passive.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads:
        options.intra_op_num_threads = int(threads)
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return options


class OnnxRuntimeBackend(Backend):
    """A file from :func:`~efficientdet.export.export_model` run by onnxruntime (post-processing in the graph).

    Letterboxing runs here (as ``uint8``, the graph input); the graph normalises, detects and runs NMS. The
    NMS method and its candidates are fixed at export: a stricter ``score_threshold``, fewer
    ``max_detections`` and a class filter are applied to the graph's output; another ``nms`` or more
    detections need a new export. Session settings: :func:`session_options`.

    On the CPU a file with a dynamic batch runs one image at a time (:meth:`run`): the activations of one
    image stay in the CPU caches, those of a batch do not (D0, 2 threads: 82.5 ms per image as 8 single
    runs, 107 ms in one batch-8 run; same outputs).
    """

    def __init__(self, path: str | os.PathLike[str], device: str | torch.device = "auto",
                 threads: int | None = None, providers: Sequence[str] | None = None,
                 spinning: bool = True) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ConfigError("running ONNX files needs onnxruntime: pip install onnxruntime (or onnxruntime-gpu)") from err
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"ONNX file {self.path} does not exist; check the path or export one with "
                              "`efficientdet export --format onnx`")
        if providers is None:
            available = ort.get_available_providers()
            wants_cuda = resolve_device(device).type == "cuda" if device != "auto" else True
            providers = [p for p in ("CUDAExecutionProvider",) if wants_cuda and p in available]
            providers.append("CPUExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(self.path), session_options(threads, spinning),
                                                providers=list(providers))
        except Exception as err:  # noqa: BLE001 - onnxruntime's load errors (InvalidProtobuf, Fail ...) share no base
            reason = str(err).split(":")[-1].strip() or type(err).__name__
            raise WeightsError(f"{self.path} is not a readable ONNX model ({reason}); it may be truncated or another "
                               "kind of file: export it again with `efficientdet export --format onnx`") from err
        meta = self.session.get_modelmeta().custom_metadata_map
        required = ("image_size", "mean", "std", "postprocess")
        if any(k not in meta for k in required):
            raise ConfigError(f"{self.path} was not written by efficientdet export (no {', '.join(required)} "
                              "metadata); export it with `efficientdet export --format onnx`")
        if meta.get("input") == "raw":
            raise ConfigError(f"{self.path} is a raw-image graph (--input raw): run it directly, "
                              "session.run(None, {'image': uint8 [H, W, 3] array}); Predictor runs batch graphs "
                              "(export without --input raw)")
        fill = json.loads(meta.get("fill", '"mean"'))
        self.preprocess = PreprocessConfig(image_size=tuple(json.loads(meta["image_size"])),  # type: ignore[arg-type]
                                           mean=tuple(json.loads(meta["mean"])),  # type: ignore[arg-type]
                                           std=tuple(json.loads(meta["std"])), fill=fill,  # type: ignore[arg-type]
                                           interpolation=json.loads(meta.get("interpolation", '"bilinear"')))
        self.postprocess = PostprocessConfig(**json.loads(meta["postprocess"]))
        names = json.loads(meta["label_names"]) if "label_names" in meta else None
        self.label_names = tuple(names) if names is not None else None
        ids = json.loads(meta.get("category_ids", "null"))
        self.category_ids = tuple(ids) if ids is not None else None
        self.num_classes = int(json.loads(meta.get("num_classes", "0")) or len(names or ()))
        self.name = meta.get("model", self.path.stem)
        shape = self.session.get_inputs()[0].shape
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None
        self._input = self.session.get_inputs()[0].name
        self.per_image = self.fixed_batch is None and self.session.get_providers() == ["CPUExecutionProvider"]

    def check(self, postprocess: PostprocessConfig) -> None:
        super().check(postprocess)
        baked = self.postprocess
        if postprocess.nms != baked.nms:
            raise ConfigError(f"{self.path} was exported with nms={baked.nms!r}; re-export with --nms {postprocess.nms} "
                              "to change it")
        if postprocess.max_detections > baked.max_detections:
            raise ConfigError(f"{self.path} returns at most {baked.max_detections} detections per image; re-export "
                              f"with --max-detections {postprocess.max_detections}")

    def letterbox_uint8(self, images: Sequence[Tensor]) -> tuple[Any, list[float]]:
        """``uint8`` network input ``[B, 3, H, W]`` (numpy) and the scale of each image."""
        fill = fill_values(self.preprocess.fill, self.preprocess.mean)
        size = (int(self.preprocess.image_size[0]), int(self.preprocess.image_size[1]))
        canvases, scales = [], []
        for image in images:
            raw = image if image.dtype == torch.uint8 else image.float() * 255.0
            canvas, scale = letterbox(raw, size, fill, self.preprocess.interpolation, uint8=True)
            canvases.append(canvas)
            scales.append(scale)
        return torch.stack(canvases).numpy(), scales

    def run(self, pixels: Any) -> list[Any]:
        """The graph on a letterboxed ``uint8`` batch (numpy ``[B, 3, H, W]``): boxes, scores, labels, counts
        (one run per image when :attr:`per_image`)."""
        if not self.per_image or len(pixels) == 1:
            return self.session.run(None, {self._input: pixels})
        runs = [self.session.run(None, {self._input: pixels[i: i + 1]}) for i in range(len(pixels))]
        return [np.concatenate(parts) for parts in zip(*runs, strict=True)]

    def detect(self, images: Sequence[Tensor], postprocess: PostprocessConfig,
               classes: Sequence[int] | None = None) -> list[Detections]:
        self.check(postprocess)
        images = list(images)
        if self.fixed_batch is not None and len(images) > self.fixed_batch:
            return [d for i in range(0, len(images), self.fixed_batch)
                    for d in self.detect(images[i: i + self.fixed_batch], postprocess, classes)]
        pixels, scales = self.letterbox_uint8(images)
        n = len(images)
        if self.fixed_batch is not None and n < self.fixed_batch:
            pixels = np.concatenate([pixels, np.zeros((self.fixed_batch - n, *pixels.shape[1:]), np.uint8)])
        boxes, scores, labels, counts = (torch.from_numpy(a) for a in self.run(pixels))
        keep_classes = None if classes is None else torch.as_tensor(list(classes), dtype=torch.int64)
        threshold = postprocess.score_threshold if postprocess.score_threshold > self.postprocess.score_threshold else None
        out = []
        for i, image in enumerate(images):
            k = int(counts[i])
            h, w = image.shape[-2:]
            b = clip_boxes(boxes[i, :k] / scales[i], torch.tensor([h, w]))
            det = Detections(b, scores[i, :k], labels[i, :k], self.label_names)
            mask = torch.ones(k, dtype=torch.bool)
            if threshold is not None:
                mask &= det.scores > threshold
            if keep_classes is not None:
                mask &= torch.isin(det.labels, keep_classes)
            det = det.filter(mask)
            out.append(det.filter(torch.arange(min(len(det), postprocess.max_detections))))
        return out


BACKENDS = ("torch", "onnxruntime")
"""Inference engines :class:`Predictor` can build from a model (``backend=``)."""


def _installed_version(package: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.cache
def _library_source_digest() -> str:
    """sha256 of this library's Python sources: an exported graph is the code's output too, so an edited or
    upgraded library never reuses a graph exported by another version of its code."""
    import hashlib

    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def export_cache_key(model: EfficientDet, nms: str | None, max_detections: int | None) -> str:
    """sha256 (hex) of everything an exported graph depends on: the weights and buffers (names, dtypes, shapes,
    values), the config, the export overrides, the library's sources and the torch / onnx versions."""
    import hashlib

    versions = tuple(_installed_version(name) for name in ("torch", "onnx", "onnxscript"))
    digest = hashlib.sha256()
    digest.update(repr((_library_source_digest(), versions, model.config, nms, max_detections)).encode())
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def exported_backend(model: EfficientDet, device: str | torch.device = "auto", threads: int | None = None,
                     nms: str | None = None, max_detections: int | None = None,
                     spinning: bool = True) -> OnnxRuntimeBackend:
    """``model`` exported to ONNX (hard or soft NMS inside) and loaded by onnxruntime.

    The file is cached under ``<cache>/onnx/`` (``$EFFICIENTDET_CACHE`` or ``~/.cache/efficientdet``), keyed
    by :func:`export_cache_key`: the same weights and settings load in about a second the next time. It is
    written to a temporary name and renamed, so a crash never leaves a partial file; an unreadable cached
    file is exported again. Where the cache folder cannot be written, the export goes to a temporary folder.
    An export prints a line before and after it (with the time it took) on stderr.
    """
    from efficientdet.export import progress
    from efficientdet.weights.download import default_cache_dir

    folder = default_cache_dir() / "onnx"
    path = folder / f"{model.config.name}-{export_cache_key(model, nms, max_detections)[:20]}.onnx"
    if path.is_file():
        try:
            return OnnxRuntimeBackend(path, device, threads, spinning=spinning)
        except Exception as err:  # a damaged file: export again
            log.warning("cached ONNX file %s cannot be loaded (%s); exporting again", path, err)
    started = time.perf_counter()
    progress(f"backend='onnxruntime': first run of these weights and settings, exporting {model.config.name} to "
             f"ONNX once (tens of seconds; cached in {folder}, later runs load it in about a second)")
    backend = _export_and_load(model, path, folder, device, threads, nms, max_detections, spinning)
    progress(f"backend='onnxruntime': ready after {time.perf_counter() - started:.1f} s")
    return backend


def _export_and_load(model: EfficientDet, path: Path, folder: Path, device: str | torch.device, threads: int | None,
                     nms: str | None, max_detections: int | None, spinning: bool = True) -> OnnxRuntimeBackend:
    """Export ``model`` to ``path`` (through a temporary name) and open it; see :func:`exported_backend`."""
    import tempfile

    from efficientdet.export import export_model

    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=folder, prefix=f".{path.stem}-", suffix=".onnx")
        os.close(handle)
        tmp = Path(name)
    except OSError as err:
        log.warning("cannot write the ONNX cache %s (%s); exporting to a temporary folder", folder, err)
        with tempfile.TemporaryDirectory() as scratch:
            out = export_model(model, Path(scratch) / "model.onnx", "onnx", nms=nms, max_detections=max_detections)
            return OnnxRuntimeBackend(out, device, threads, spinning=spinning)  # the session holds the graph: the file may go
    try:
        os.replace(export_model(model, tmp, "onnx", nms=nms, max_detections=max_detections), path)
    finally:
        tmp.unlink(missing_ok=True)
    return OnnxRuntimeBackend(path, device, threads, spinning=spinning)


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
        backend: ``"torch"`` (:class:`TorchBackend`, default) or ``"onnxruntime"``
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
        if backend not in BACKENDS:
            raise ConfigError(f"backend={backend!r} is unknown; use one of {', '.join(BACKENDS)}")
        engine: Backend
        if isinstance(model_or_name, Backend):
            engine = model_or_name
        elif isinstance(model_or_name, (str, os.PathLike)) and str(model_or_name).endswith(".onnx"):
            engine = OnnxRuntimeBackend(model_or_name, device, threads, spinning=spinning)
        else:
            from efficientdet.factory import resolve_model

            model = resolve_model(model_or_name, checkpoint, pretrained=pretrained)
            if backend == "onnxruntime":
                engine = exported_backend(model, device, threads, nms, max_detections, spinning)
            else:
                engine = TorchBackend(model, device, dtype, channels_last, compile, optimize)
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
    "TorchBackend",
    "OnnxRuntimeBackend",
    "Predictor",
    "predict",
]
