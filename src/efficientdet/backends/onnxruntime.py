"""The onnxruntime backend: an ONNX file from :func:`~efficientdet.export.export_model` (the
:class:`~efficientdet.pipeline.DetectionPipeline` exported whole) run by onnxruntime."""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from efficientdet.backends import Backend, BackendOptions
from efficientdet.config import PostprocessConfig, PreprocessConfig
from efficientdet.data.preprocess import letterbox_images
from efficientdet.engine.distributed import resolve_device
from efficientdet.errors import ConfigError, WeightsError
from efficientdet.modeling.detector import EfficientDet
from efficientdet.ops.boxes import clip_boxes
from efficientdet.structures import Detections

log = logging.getLogger(__name__)


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
        canvases, metas = letterbox_images(list(images), self.preprocess, uint8=True)
        return canvases.numpy(), [m.scale for m in metas]

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

    root = Path(__file__).resolve().parent.parent  # the efficientdet package
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


def from_model(model: EfficientDet, options: BackendOptions) -> OnnxRuntimeBackend:
    """The ``onnxruntime`` entry of :data:`~efficientdet.backends.BACKENDS`: ``model`` exported (cached)."""
    return exported_backend(model, options.device, options.threads, options.nms, options.max_detections,
                            options.spinning)


__all__ = ["session_options", "OnnxRuntimeBackend", "export_cache_key", "exported_backend", "from_model"]
