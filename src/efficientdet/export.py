"""Export a detector as one graph: uint8 images in, padded detections out (ONNX, torch.export, TorchScript).

The exported graph holds the whole inference path after letterboxing: normalisation, the network, anchor
decoding, clipping and NMS. A deployer only resizes and pads the image to the model input size.

Graph signature (``D`` = ``max_detections``, ``B`` dynamic unless a fixed batch was asked for):

==================  ===========================  ==================================================
name                shape, type                  meaning
==================  ===========================  ==================================================
``images``          ``[B, 3, H, W]`` uint8       RGB, letterboxed: resized by ``scale = min(H / h,
                                                 W / w)`` and placed top-left, padding bottom / right
``boxes``           ``[B, D, 4]`` float32        xyxy in input pixels, clipped to the input
``scores``          ``[B, D]`` float32           descending; 0 in padding rows
``labels``          ``[B, D]`` int64             ``0 .. K-1``; -1 in padding rows
``num_detections``  ``[B]`` int64                valid rows per image
==================  ===========================  ==================================================

Other graphs and formats, built around this one (:mod:`efficientdet.exporters`): ``input="raw"`` takes one
decoded ``uint8 [H, W, 3]`` image of any size and letterboxes inside; ``format="executorch"`` writes an
ExecuTorch ``.pte`` program; ``format="tflite"`` / ``"mediapipe"`` write LiteRT files (the latter with
MediaPipe ObjectDetector metadata, :mod:`efficientdet.exporters.tflite`); ``efficientdet export --int8`` quantises an ONNX file
(:func:`~efficientdet.exporters.quantize.quantize_onnx`). Each format is one entry of :data:`EXPORT_FORMATS`.

Divide the boxes by ``scale`` to get original-image pixels. The ONNX file carries its label names and
preprocessing in ``metadata_props`` (keys :data:`METADATA_KEYS`; lists and numbers as JSON); TorchScript
and ``.pt2`` files carry the same as an extra file ``efficientdet.json``.

NMS inside the graph:

- ``hard`` (default for export): ONNX files use the ONNX ``NonMaxSuppression`` operator per image and per
  class (exact float32 IoUs, fast); ``.pt2`` and TorchScript files use ``torchvision.ops.nms`` (the op
  ``torchvision::nms``, so they need ``import torchvision`` before loading).
- ``soft`` (Gaussian, the official evaluation setting): the fixed-shape greedy loop of
  :func:`~efficientdet.ops.nms.greedy_nms`, unrolled once per output slot. It works in every format and
  gives the same detections as PyTorch, but the graph is larger and NMS costs ``D`` passes over all
  candidates (all anchors in ``global`` mode): expect it to take longer than the network on small models.
  ONNX files with soft-NMS are written by the TorchScript-based exporter (seconds; the dynamo exporter
  needs minutes for the unrolled loop), see :data:`ONNX_EXPORTERS`.

Every graph breaks exact score ties as PyTorch does, which is TF's order (lower anchor, then class, first; see
:mod:`efficientdet.postprocess`): the ONNX operator is given tie-free ranks instead of the scores.

Running an exported ONNX file with onnxruntime, numpy and Pillow alone (no torch, no efficientdet): the
README's "Export and deploy" section has the example (letterbox with the ``pad_value`` and ``interpolation``
of the metadata, as the model's own preprocessing does); ``tests/export/test_export.py`` runs it and checks
that it gives :class:`~efficientdet.predict.Predictor`'s detections.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from efficientdet.config import DetectorConfig, PostprocessConfig
from efficientdet.data.preprocess import fill_values
from efficientdet.errors import ConfigError
from efficientdet.modeling.detector import EfficientDet
from efficientdet.ops.nms import batched_nms
from efficientdet.pipeline import DetectionPipeline
from efficientdet.postprocess import override

INPUT_NAME = "images"
INPUTS = ("batch", "raw")
"""Graph inputs: ``batch`` (letterboxed ``uint8 [B, 3, H, W]``, this module's graph) or ``raw`` (one decoded
``uint8 [H, W, 3]`` image of any size, letterboxed inside: :mod:`efficientdet.exporters.raw`)."""
OUTPUT_NAMES = ("boxes", "scores", "labels", "num_detections")
DEFAULT_OPSET = 18
"""ONNX opset of exported files (17 is the lowest accepted)."""
MIN_OPSET = 17
ONNX_EXPORTERS = ("auto", "dynamo", "torchscript")
"""Which ``torch.onnx.export`` writes ONNX files: ``dynamo`` (built on torch.export, PyTorch's current
exporter) or ``torchscript`` (the older tracer, deprecated by PyTorch; it converts the unrolled soft-NMS loop
in seconds where the dynamo exporter takes minutes). ``auto``: dynamo for hard NMS, torchscript for soft."""
MAX_DYNAMIC_BATCH = 1024
"""Upper bound of the dynamic batch dimension (torch.export needs one)."""
METADATA_FILE = "efficientdet.json"
"""Name of the extra file holding the metadata in TorchScript and ``.pt2`` archives."""
METADATA_KEYS = ("format", "model", "label_names", "category_ids", "num_classes", "image_size", "mean", "std", "fill",
                 "pad_value", "interpolation", "postprocess", "inputs", "outputs", "input")
"""``pad_value``: the letterbox padding as three 0..255 integers (the model's mean colour unless its ``fill``
says otherwise), what the graph expects in the padded area; ``interpolation``: the resize the model was
trained with (``bilinear``: half-pixel centres, no antialiasing, as TF's ``tf.image.resize``)."""


@dataclasses.dataclass(frozen=True)
class ExportJob:
    """What a format's writer gets: the graph, an example input, where to write and the metadata to embed.

    ``dynamic_shapes`` is ``torch.export``'s spec for the input (``None``: fixed shapes);
    ``dynamic_axes`` the same for the TorchScript-based ONNX exporter.
    """

    graph: nn.Module
    example: Tensor
    path: Path
    input_name: str
    dynamic_shapes: dict[str, Any] | None
    dynamic_axes: dict[str, dict[int, str]] | None
    meta: dict[str, str]
    opset: int = DEFAULT_OPSET
    exporter: str = "dynamo"
    half: bool = False
    """Store the weights in float16 (formats with ``ExportFormat.half``)."""


@dataclasses.dataclass(frozen=True)
class ExportFormat:
    """One export format: file suffix and writer, a function taking an :class:`ExportJob` or its
    ``"module:function"`` path (imported on use, so an optional runtime is imported only when asked for). ``hard_nms``: the graph's hard NMS kernel (:data:`~efficientdet.postprocess.HARD_NMS`:
    ``torchvision``, the ONNX operator ``onnx``, or the ``greedy`` loop for runtimes without an NMS kernel)."""

    suffix: str
    writer: str | Callable[[ExportJob], None]
    hard_nms: str = "torchvision"
    half: bool = False
    """The writer can store float16 weights (``export_model(half=True)``)."""

    def write(self, job: ExportJob) -> None:
        import importlib

        if callable(self.writer):
            self.writer(job)
            return
        module, name = self.writer.split(":")
        getattr(importlib.import_module(module), name)(job)


EXPORT_FORMATS: dict[str, ExportFormat] = {
    "onnx": ExportFormat(".onnx", "efficientdet.export:_write_onnx", hard_nms="onnx"),
    "torchscript": ExportFormat(".torchscript", "efficientdet.export:_write_torchscript"),
    "pt2": ExportFormat(".pt2", "efficientdet.export:_write_pt2"),
    "executorch": ExportFormat(".pte", "efficientdet.exporters.executorch:write_executorch", hard_nms="greedy"),
    "tflite": ExportFormat(".tflite", "efficientdet.exporters.tflite:write_tflite", hard_nms="greedy", half=True),
    "mediapipe": ExportFormat(".tflite", "efficientdet.exporters.tflite:write_mediapipe", hard_nms="greedy", half=True),
}
"""The formats of :func:`export_model` (one entry per format; writers of optional runtimes live in
:mod:`efficientdet.exporters`)."""
FORMATS = tuple(EXPORT_FORMATS)
SUFFIXES = {name: fmt.suffix for name, fmt in EXPORT_FORMATS.items()}


def register_export_format(name: str, fmt: ExportFormat) -> None:
    """Make ``export_model(..., format=name)`` (and ``efficientdet export --format name`` once the module that
    calls this is imported) write files with ``fmt`` (replacing a format of that name). The writer gets the
    finished :class:`~efficientdet.pipeline.DetectionPipeline` graph in its :class:`ExportJob`."""
    if not name or not isinstance(name, str):
        raise ConfigError(f"an export format needs a non-empty name, got {name!r}")
    if not isinstance(fmt, ExportFormat):
        raise ConfigError(f"register_export_format({name!r}, ...) takes an ExportFormat, got {type(fmt).__name__}")
    EXPORT_FORMATS[name] = fmt
    SUFFIXES[name] = fmt.suffix


DetectionGraph = DetectionPipeline
"""The exportable inference graph is the inference pipeline itself: ``images [B, 3, H, W]`` uint8 (letterboxed)
-> ``(boxes [B, D, 4] float32 xyxy input pixels, scores [B, D] float32, labels [B, D] int64 with -1 padding,
num_detections [B] int64)``; see :class:`~efficientdet.pipeline.DetectionPipeline`.

Boxes are clipped to the input size (the graph does not know the original image size): in ``topk`` mode,
where boxes are clipped before NMS, a box reaching into the letterbox padding keeps its part in the padding,
so NMS around the image's far edge can differ slightly from :class:`~efficientdet.predict.Predictor`, which
clips to the image (measured: 2 of 800 detections on 8 photos; ``benchmarks/compare_effdet.py``);
``forward``'s ``clip_to`` (given by the raw-image graph, which knows the image size) clips to the image
instead. The format's ``hard_nms`` picks the NMS kernel (:data:`~efficientdet.postprocess.HARD_NMS`)."""


def onnx_nms_mask(boxes: Tensor, scores: Tensor, groups: Tensor | None, num_groups: int, iou_threshold: float,
                   score_threshold: float, max_per_group: int) -> Tensor:
    """``kept [B, C]`` bool via the ONNX ``NonMaxSuppression`` operator (per image, per group).

    ``scores [B, C]`` sorted best first, equal scores in TF's tie order (as :class:`CandidateSource` gives
    them). The operator sees ranks ``C - position`` instead of the scores: the same order, but no two equal,
    so it cannot break a tie differently (the ONNX spec leaves tie order open). Candidates at or below
    ``score_threshold`` get rank 0, and so do the entries outside a candidate's own group of ``[B, G, C]``;
    the operator's threshold of 0.5 drops them.
    """
    b, c = scores.shape
    position = torch.ones_like(scores, dtype=torch.int64).cumsum(1)  # 1 .. C (tensor ops: dynamic shapes)
    rank = torch.where(scores > score_threshold, (c + 1 - position).to(scores.dtype), 0.0)  # exact below 2^24
    if groups is None:
        per_group = rank[:, None, :]
    else:  # one write per candidate (a scatter), not a compare and select over all G x C entries
        per_group = rank.new_zeros(b, num_groups, c).scatter(1, groups[:, None, :], rank[:, None, :])
    selected = _onnx_nms_op()(boxes, per_group, float(iou_threshold), 0.5, int(max_per_group))
    kept = torch.zeros(b, c, dtype=torch.bool, device=scores.device)
    return kept.index_put((selected[:, 0], selected[:, 2]), torch.ones_like(selected[:, 0], dtype=torch.bool))


_ONNX_NMS: Any = None


def _onnx_nms_op() -> Any:
    """The custom op ``efficientdet::onnx_nms`` (registered on first use), exported as ``NonMaxSuppression``.

    ``(boxes [B, C, 4] xyxy, scores [B, G, C], iou_threshold, score_threshold, max_per_group) -> selected
    [M, 3]`` int64 rows ``(image, group, candidate)``, with the ONNX operator's semantics: candidates need
    a score ``> score_threshold``; a box is suppressed by an earlier selection of its image and group with
    IoU ``> iou_threshold``; at most ``max_per_group`` per image and group.
    """
    global _ONNX_NMS
    if _ONNX_NMS is not None:
        return _ONNX_NMS

    @torch.library.custom_op("efficientdet::onnx_nms", mutates_args=())
    def onnx_nms(boxes: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float,
                 max_per_group: int) -> Tensor:
        b, g, c = scores.shape
        image = torch.arange(b, device=scores.device)[:, None, None].expand(b, g, c)
        group = torch.arange(g, device=scores.device)[None, :, None].expand(b, g, c)
        candidate = torch.arange(c, device=scores.device)[None, None, :].expand(b, g, c)
        valid = scores > score_threshold
        image, group, candidate, flat_scores = image[valid], group[valid], candidate[valid], scores[valid]
        keep = batched_nms(boxes[image, candidate], flat_scores, image * g + group, iou_threshold)
        rows = torch.stack([image[keep], group[keep], candidate[keep]], dim=1)
        # keep is sorted by descending score: the rank within its (image, group) caps the count
        key = rows[:, 0] * g + rows[:, 1]
        order = torch.sort(key, stable=True).indices
        rows, key = rows[order], key[order]
        first = torch.searchsorted(key, key)
        return rows[torch.arange(len(key), device=key.device) - first < max_per_group]

    @onnx_nms.register_fake
    def _(boxes: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float, max_per_group: int) -> Tensor:
        m = torch.library.get_ctx().new_dynamic_size()
        return boxes.new_empty((m, 3), dtype=torch.int64)

    _ONNX_NMS = onnx_nms
    return onnx_nms


def _onnx_translation(opset: int) -> dict[Any, Any]:
    """The dynamo exporter's translation of ``efficientdet::onnx_nms`` into ``NonMaxSuppression``."""
    import onnxscript

    op = onnxscript.values.Opset("", opset)

    def onnx_nms(boxes: Any, scores: Any, iou_threshold: float, score_threshold: float, max_per_group: int) -> Any:
        return op.NonMaxSuppression(
            boxes,
            scores,
            op.Constant(value_ints=[max_per_group]),
            op.Constant(value_floats=[iou_threshold]),
            op.Constant(value_floats=[score_threshold]),
        )

    def stable_sort(x: Any, stable: bool | None = None, dim: int = -1, descending: bool = False) -> Any:
        # ONNX TopK with sorted output puts equal values in index order: a stable sort when k is the whole axis.
        k = op.Shape(x, start=dim, end=dim + 1 if dim != -1 else None)
        return op.TopK(x, k, axis=dim, largest=1 if descending else 0, sorted=1)

    _onnx_nms_op()
    return {torch.ops.efficientdet.onnx_nms.default: onnx_nms, torch.ops.aten.sort.stable: stable_sort}


def export_config(config: DetectorConfig, *, nms: str | None = None, max_detections: int | None = None,
                  score_threshold: float | None = None, iou_threshold: float | None = None) -> PostprocessConfig:
    """The post-processing baked into an export: the model's, with the given changes (``None`` keeps a value)."""
    return override(config.postprocess, nms=nms, max_detections=max_detections, score_threshold=score_threshold,
                    iou_threshold=iou_threshold)


def export_metadata(config: DetectorConfig, image_size: tuple[int, int], postprocess: PostprocessConfig,
                    format: str) -> dict[str, str]:
    """What a deployer needs to know about an exported graph, as strings (JSON for lists and numbers)."""
    names = list(config.label_names) if config.label_names is not None else [str(i) for i in range(config.num_classes)]
    pre = config.preprocess
    return {
        "format": f"efficientdet-{format}",
        "model": config.name,
        "label_names": json.dumps(names),
        "category_ids": json.dumps(list(config.category_ids) if config.category_ids is not None else None),
        "num_classes": json.dumps(config.num_classes),
        "image_size": json.dumps(list(image_size)),
        "mean": json.dumps(list(pre.mean)),
        "std": json.dumps(list(pre.std)),
        "fill": json.dumps(pre.fill),
        "pad_value": json.dumps([round(v) for v in fill_values(pre.fill, pre.mean)]),
        "interpolation": json.dumps(pre.interpolation),
        "postprocess": json.dumps(dataclasses.asdict(postprocess)),
        "inputs": json.dumps({INPUT_NAME: "uint8 [B, 3, H, W] RGB, letterboxed (top-left, pad bottom/right)"}),
        "outputs": json.dumps({
            "boxes": "float32 [B, D, 4] xyxy input pixels (divide by the letterbox scale)",
            "scores": "float32 [B, D] descending, 0 in padding",
            "labels": "int64 [B, D] class index, -1 in padding",
            "num_detections": "int64 [B] valid rows",
        }),
        "input": "batch",
    }


def _parse_batch(batch: int | str) -> int | None:
    """``None`` for a dynamic batch, else the fixed batch size."""
    if isinstance(batch, str):
        if batch == "dynamic":
            return None
        if not batch.isdigit():
            raise ConfigError(f"batch={batch!r}: use 'dynamic' or a positive number")
        batch = int(batch)
    if batch < 1:
        raise ConfigError(f"batch must be 'dynamic' or >= 1, got {batch}")
    return batch


def export_model(
    model: EfficientDet,
    path: str | os.PathLike[str],
    format: str = "onnx",
    *,
    image_size: int | tuple[int, int] | None = None,
    batch: int | str = "dynamic",
    nms: str | None = None,
    max_detections: int | None = None,
    score_threshold: float | None = None,
    opset: int = DEFAULT_OPSET,
    exporter: str = "auto",
    optimize: bool = True,
    input: str = "batch",
    half: bool = False,
) -> Path:
    """Export ``model`` with normalisation, decoding and NMS inside (see the module docstring for the graph).

    Args:
        model: the detector (a float32 copy is exported, on the model's device; the model is not changed).
        path: output file; its folder is created.
        format: ``onnx`` (needs ``onnx``; ``onnxscript`` for the dynamo exporter), ``pt2``
            (``torch.export``) or ``torchscript`` (``torch.jit.trace``).
        image_size: input ``(H, W)`` (or one int); default the model's preprocessing size.
        batch: ``"dynamic"`` or a fixed batch size. TorchScript traces a fixed batch (the given one, else 1).
        nms / max_detections / score_threshold: override the model's post-processing (``hard`` / ``soft``).
        opset: ONNX opset (>= 17).
        exporter: ONNX exporter, see :data:`ONNX_EXPORTERS`.
        optimize: export the inference copy of :func:`~efficientdet.fast.optimize_for_inference` (BatchNorm
            folded, copy-free TF padding, fixed fusion weights; same outputs to float rounding, a smaller
            and faster graph) instead of the model as built.
        input: ``batch`` (letterboxed ``uint8 [B, 3, H, W]``) or ``raw`` (one ``uint8 [H, W, 3]`` image of any
            size, letterboxed inside, boxes in its pixels; see :mod:`efficientdet.exporters.raw`).
        half: float16 weights (``tflite`` and ``mediapipe``, see :mod:`efficientdet.exporters.tflite`).

    Returns the path written.
    """
    if format not in EXPORT_FORMATS:
        raise ConfigError(f"export format {format!r} is unknown; use one of {', '.join(EXPORT_FORMATS)}")
    if input not in INPUTS:
        raise ConfigError(f"input {input!r} is unknown; use one of {', '.join(INPUTS)}")
    if exporter not in ONNX_EXPORTERS:
        raise ConfigError(f"exporter {exporter!r} is unknown; use one of {', '.join(ONNX_EXPORTERS)}")
    if half and not EXPORT_FORMATS[format].half:
        raise ConfigError(f"half (float16 weights) is for {', '.join(n for n, f in EXPORT_FORMATS.items() if f.half)}"
                          f"; drop it for {format}")
    if format == "onnx" and opset < MIN_OPSET:
        raise ConfigError(f"opset {opset} is too old; use {MIN_OPSET} or newer")
    size = model.config.image_size if image_size is None else image_size
    size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if min(size) < 1:
        raise ConfigError(f"image_size must be positive, got {size}")
    fixed_batch = _parse_batch(batch)
    if input == "raw" and fixed_batch is not None:
        raise ConfigError("a raw-image graph takes one image [H, W, 3] (no batch dimension); drop --batch")
    cfg = export_config(model.config, nms=nms, max_detections=max_detections, score_threshold=score_threshold)
    if exporter == "auto":
        exporter = "torchscript" if cfg.nms == "soft" else "dynamo"
    # A float32 copy without gradients: the user's model stays as it is, the graph records no autograd.
    model = copy.deepcopy(model).float().eval().requires_grad_(False)
    if optimize:
        from efficientdet.fast import optimize_for_inference

        model = optimize_for_inference(model, channels_last=False, for_onnx=format == "onnx")
    fmt = EXPORT_FORMATS[format]
    graph = DetectionPipeline(model, size, cfg, hard_nms=fmt.hard_nms).eval()
    device = next(model.parameters()).device
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = export_metadata(model.config, size, cfg, format)
    if input == "raw":
        from efficientdet.exporters.raw import raw_job

        job = dataclasses.replace(raw_job(graph, path, meta, opset, exporter), half=half)
    else:
        example = torch.zeros(fixed_batch or 2, 3, *size, dtype=torch.uint8, device=device)
        if format == "torchscript" and fixed_batch is None:
            example = example[:1]  # traced at a fixed batch
        dynamic = fixed_batch is None
        job = ExportJob(graph.eval(), example, path, INPUT_NAME,
                        {INPUT_NAME: {0: _dynamic_batch()}} if dynamic else None,
                        {name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)} if dynamic else None,
                        meta, opset, exporter, half)
    started = time.perf_counter()
    progress(f"exporting {model.config.name} to {format} -> {path} (can take a minute on a CPU) ...")
    with torch.no_grad():
        fmt.write(job)
    progress(f"exported {model.config.name} to {format} in {time.perf_counter() - started:.1f} s")
    return path


def progress(message: str) -> None:
    """A progress line for steps that take tens of seconds (exports): on stderr at once, and to the log."""
    print(message, file=sys.stderr, flush=True)
    logging.getLogger(__name__).info(message)


class _DropMessage(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


@contextlib.contextmanager
def _quiet_onnx_ir() -> Iterator[None]:
    """Drop one notice of onnx_ir (used by torch's dynamo ONNX exporter) during an export: "Attribute type is
    ambiguous because it is an empty sequence ... Defaulted to INTS". It is printed for an empty integer-list
    attribute of our graph, which INTS is right for (the exported file's outputs equal PyTorch's, see the tests);
    every other message of that logger still shows."""
    logger = logging.getLogger("onnx_ir._convenience")
    drop = _DropMessage("Attribute type is ambiguous because it is an empty sequence")
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _dynamic_batch() -> Any:
    return torch.export.Dim("batch", min=1, max=MAX_DYNAMIC_BATCH)


def _write_onnx(job: ExportJob) -> None:
    graph, example, path, opset, meta, exporter = job.graph, job.example, job.path, job.opset, job.meta, job.exporter
    try:
        import onnx
    except ImportError as err:
        raise ConfigError("ONNX export needs onnx and onnxscript: pip install onnx onnxscript "
                          "(or pip install 'efficientdet[export]')") from err
    tmp = path.with_name(path.name + ".tmp")
    if exporter == "dynamo":
        with _quiet_onnx_ir():
            program = torch.onnx.export(
                graph,
                (example,),
                None,
                dynamo=True,
                opset_version=opset,
                input_names=[job.input_name],
                output_names=list(OUTPUT_NAMES),
                dynamic_shapes=job.dynamic_shapes,
                custom_translation_table=_onnx_translation(opset),
                verbose=False,
            )
            if program is None:  # only without a file name and dynamo=False
                raise RuntimeError("torch.onnx.export returned no ONNX program")
            proto = program.model_proto
    else:
        import warnings

        with _torchscript_symbolics(opset), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its deprecation notice, and tracer notes on fixed shapes
            torch.onnx.export(
                graph,
                (example,),
                str(tmp),
                dynamo=False,
                opset_version=opset,
                input_names=[job.input_name],
                output_names=list(OUTPUT_NAMES),
                dynamic_axes=job.dynamic_axes,
            )
        proto = onnx.load(str(tmp))
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save_model(proto, str(tmp))
    os.replace(tmp, path)


@contextlib.contextmanager
def _torchscript_symbolics(opset: int) -> Iterator[None]:
    """Teach the TorchScript-based ONNX exporter our two ops, for the duration of one export.

    ``efficientdet::onnx_nms`` becomes ``NonMaxSuppression``; ``aten::sort`` with ``stable=True`` (which that
    exporter rejects) becomes ``TopK`` over the whole axis, which keeps equal values in index order.
    """
    from torch.onnx import register_custom_op_symbolic, unregister_custom_op_symbolic
    from torch.onnx.symbolic_helper import parse_args

    @parse_args("v", "v", "f", "f", "i")
    def onnx_nms(g: Any, boxes: Any, scores: Any, iou_threshold: float, score_threshold: float,
                 max_per_group: int) -> Any:
        return g.op(
            "NonMaxSuppression",
            boxes,
            scores,
            g.op("Constant", value_t=torch.tensor([max_per_group], dtype=torch.int64)),
            g.op("Constant", value_t=torch.tensor([iou_threshold], dtype=torch.float32)),
            g.op("Constant", value_t=torch.tensor([score_threshold], dtype=torch.float32)),
        )

    @parse_args("v", "none", "i", "b")
    def stable_sort(g: Any, x: Any, stable: Any, dim: int, descending: bool) -> Any:
        k = g.op("Gather", g.op("Shape", x), g.op("Constant", value_t=torch.tensor([dim], dtype=torch.int64)))
        return g.op("TopK", x, k, axis_i=dim, largest_i=int(descending), sorted_i=1, outputs=2)

    _onnx_nms_op()
    register_custom_op_symbolic("efficientdet::onnx_nms", onnx_nms, opset)
    register_custom_op_symbolic("aten::sort", stable_sort, opset)
    try:
        yield
    finally:
        unregister_custom_op_symbolic("efficientdet::onnx_nms", opset)
        unregister_custom_op_symbolic("aten::sort", opset)


def _write_pt2(job: ExportJob) -> None:
    dynamic = None if job.dynamic_shapes is None else tuple(job.dynamic_shapes.values())
    program = torch.export.export(job.graph, (job.example,), dynamic_shapes=dynamic)
    torch.export.save(program, job.path, extra_files={METADATA_FILE: json.dumps(job.meta)})


def _write_torchscript(job: ExportJob) -> None:
    import warnings

    graph, example, path, meta = job.graph, job.example, job.path, job.meta

    with warnings.catch_warnings():
        # tracer notes about Python values (shapes are fixed by design) and TorchScript's deprecation notice
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(graph, (example,), check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={METADATA_FILE: json.dumps(meta)})


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of an exported file (any format), with JSON values decoded."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        raw = {p.key: p.value for p in proto.metadata_props}
    elif path.suffix == ".pte":  # ExecuTorch: metadata next to the program
        from efficientdet.exporters.executorch import metadata_path

        raw = json.loads(metadata_path(path).read_text())
    elif path.suffix == ".tflite":  # LiteRT: a metadata entry of the flatbuffer
        from efficientdet.exporters.tflite import read_tflite_metadata

        raw = read_tflite_metadata(path)
    elif path.suffix == ".pt2":
        files = {METADATA_FILE: ""}
        torch.export.load(path, extra_files=files)
        raw = json.loads(files[METADATA_FILE])
    else:
        import warnings

        files = {METADATA_FILE: ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice
            torch.jit.load(str(path), _extra_files=files, map_location="cpu")
        raw = json.loads(files[METADATA_FILE])
    out: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            out[key] = json.loads(value)
        except (TypeError, ValueError):
            out[key] = value
    return out


__all__ = [
    "FORMATS",
    "SUFFIXES",
    "register_export_format",
    "INPUT_NAME",
    "INPUTS",
    "EXPORT_FORMATS",
    "ExportFormat",
    "ExportJob",
    "OUTPUT_NAMES",
    "DEFAULT_OPSET",
    "METADATA_FILE",
    "METADATA_KEYS",
    "DetectionGraph",
    "onnx_nms_mask",
    "export_config",
    "export_metadata",
    "export_model",
    "read_metadata",
]
