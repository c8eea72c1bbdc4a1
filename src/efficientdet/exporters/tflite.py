"""LiteRT (TFLite) export, plain and ready for MediaPipe: ``efficientdet export --format tflite | mediapipe``.

The graph is :class:`~efficientdet.export.DetectionGraph` (the batch graph) converted
by ``litert-torch`` (PyTorch -> LiteRT) and run by the LiteRT interpreter (``ai-edge-litert``). What changes
for LiteRT, and only here:

- **NMS** is the fixed-shape greedy loop of :func:`~efficientdet.ops.nms.greedy_nms` (LiteRT has no
  ``torchvision::nms``; the loop's IoUs are float32): the format's ``hard_nms="greedy"``,
  the same kernel the ExecuTorch graph uses. Same selections as hard NMS, unrolled once per output slot.
- **float32 only**: LiteRT kernels have no float64, so the steps the library rounds through float64 for
  bit-exactness with TF (the correctly rounded score sigmoid, the soft-NMS decay) run in float32 in the
  converted file (:func:`float32_graph`): scores can differ from PyTorch's in their last bit.
- **int64 -> int32**: LiteRT downcasts 64-bit integers, so ``labels`` and ``num_detections`` are int32.
- **fixed shapes**: the batch graph is converted at batch 1 (or the fixed ``--batch``). The raw-image graph
  (``--input raw``) is refused: litert-torch 0.10 cannot lower its dynamic height and width.
- ``--half``: float16 weights (convolutions and matrix products, dequantised to float32 when the model
  loads: half the file, float32 arithmetic), written by ``ai-edge-quantizer``'s float casting.

Outputs of the ``tflite`` format, in this order: ``boxes [B, D, 4]`` float32 xyxy input pixels, ``scores
[B, D]``, ``labels [B, D]`` int32 (-1 padding), ``num_detections [B]`` int32. The file carries the metadata of
:func:`~efficientdet.export.export_metadata` as the TFLite metadata entry :data:`METADATA_NAME` (JSON; read
it with :func:`~efficientdet.export.read_metadata`).

The ``mediapipe`` format (:class:`MediaPipeGraph`) is the batch graph shaped as MediaPipe's ObjectDetector
expects a model with post-processing inside (``TFLite_Detection_PostProcess``'s four outputs) and carries
MediaPipe's metadata (``metadata_writers.object_detector``: labels, input normalisation): input ``uint8 [1,
H, W, 3]`` RGB (normalised inside the graph: MediaPipe's float path takes one mean / std for all channels),
outputs ``location [1, D, 4]`` float32 ``(ymin, xmin, ymax, xmax)`` as fractions of the input, ``category [1,
D]`` float32 class index, ``score [1, D]``, ``number of detections [1]`` float32. MediaPipe resizes the whole
image to the input (a stretch, no letterbox): pad a photo at the bottom / right to the input's aspect ratio
(with the metadata's ``pad_value``) and MediaPipe sees the letterboxed image :class:`~efficientdet.predict.Predictor`
sees; the README's deploy section shows it.

Needs ``pip install litert-torch ai-edge-litert`` (``efficientdet[tflite]``), and ``mediapipe`` for the
``mediapipe`` format.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from efficientdet.errors import ConfigError
from efficientdet.export import DetectionGraph, ExportJob

METADATA_NAME = "efficientdet"
"""Name of the TFLite metadata entry that holds :func:`~efficientdet.export.export_metadata` (JSON)."""
MEDIAPIPE_OUTPUTS = ("location", "category", "score", "number of detections")
"""MediaPipe's names of the four outputs of a detector with post-processing inside, in output order."""


def _requires_litert() -> Any:
    try:
        import litert_torch
    except ImportError as err:
        raise ConfigError("TFLite export needs litert-torch and ai-edge-litert: pip install litert-torch "
                          "ai-edge-litert (or pip install 'efficientdet[tflite]')") from err
    return litert_torch


class MediaPipeGraph(nn.Module):
    """``image [1, H, W, 3]`` uint8 -> MediaPipe's four detection outputs (see the module docstring)."""

    scale: Tensor

    def __init__(self, graph: DetectionGraph) -> None:
        super().__init__()
        self.detector = graph
        h, w = graph.image_size
        scale = torch.tensor([h, w, h, w], dtype=torch.float32, device=graph.anchors.device)
        self.register_buffer("scale", scale, persistent=False)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        boxes, scores, labels, counts = self.detector(image.permute(0, 3, 1, 2))
        location = boxes[..., [1, 0, 3, 2]] / self.scale  # (ymin, xmin, ymax, xmax) fractions of the input
        return location, labels.clamp(min=0).float(), scores, counts.float()


def float32_graph(module: nn.Module, example: Tensor, dynamic_shapes: Any = None) -> torch.fx.GraphModule:
    """``module`` captured by ``torch.export`` with every float64 step done in float32 (LiteRT has no float64).

    Also spells ``add(x, y, alpha=a)`` as ``x + y * a``: litert-torch 0.10 has no lowering for ``alpha``.
    Returns the graph as a module, which litert-torch converts like any other.
    """
    program = torch.export.export(module, (example,), dynamic_shapes=dynamic_shapes)
    gm = program.module()
    aten = torch.ops.aten
    for node in list(gm.graph.nodes):
        if node.op != "call_function":
            continue
        node.args = tuple(torch.float32 if a is torch.float64 else a for a in node.args)
        node.kwargs = {k: torch.float32 if v is torch.float64 else v for k, v in node.kwargs.items()}
        if node.target in (aten.add.Tensor, aten.add_.Tensor) and node.kwargs.get("alpha", 1) != 1:
            with gm.graph.inserting_before(node):
                scaled = gm.graph.call_function(aten.mul.Tensor, (node.args[1], node.kwargs["alpha"]))
            node.args, node.kwargs = (node.args[0], scaled), {}
    gm.graph.lint()
    gm.recompile()
    return gm


def convert(module: nn.Module, example: Tensor, dynamic_shapes: Any = None, half: bool = False) -> bytes:
    """The LiteRT flatbuffer of ``module`` traced on ``example`` (float16 weights with ``half``)."""
    litert_torch = _requires_litert()
    gm = float32_graph(module, example, dynamic_shapes)
    dims = None if dynamic_shapes is None else tuple(dynamic_shapes.values())
    content = bytes(litert_torch.convert(gm, (example,), dynamic_shapes=dims).model_content())
    return float16_weights(content) if half else content


def float16_weights(content: bytes) -> bytes:
    """``content`` with float16 weights (convolutions, depthwise convolutions, matrix products), dequantised
    to float32 when the model loads (``ai-edge-quantizer``'s float casting)."""
    from ai_edge_quantizer import algorithm_manager, qtyping, quantizer

    q = quantizer.Quantizer(bytearray(content))
    for op in (qtyping.TFLOperationName.CONV_2D, qtyping.TFLOperationName.DEPTHWISE_CONV_2D,
               qtyping.TFLOperationName.FULLY_CONNECTED):
        q.add_weight_only_config(".*", op, 16, algorithm_key=algorithm_manager.AlgorithmName.FLOAT_CASTING)
    result = q.quantize(enable_progress_report=False)
    if result.quantized_model is None:
        raise RuntimeError("ai-edge-quantizer returned no model for the float16 weights")
    return bytes(result.quantized_model)


def add_metadata(content: bytes, name: str, data: bytes) -> bytes:
    """``content`` (a TFLite flatbuffer) with the metadata entry ``name`` set to ``data``."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(content, 0))
    buffer = schema.BufferT()
    buffer.data = list(data)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = name, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name.decode() != name] + [entry]
    builder = flatbuffers.Builder(len(content) + len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def read_tflite_metadata(path: str | Path) -> dict[str, str]:
    """The :data:`METADATA_NAME` entry of a ``.tflite`` file (strings, as written)."""
    from ai_edge_litert import schema_py_generated as schema

    content = Path(path).read_bytes()
    model = schema.Model.GetRootAs(content, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name().decode() == METADATA_NAME:
            data = model.Buffers(entry.Buffer()).DataAsNumpy()
            return json.loads(bytes(data).decode())
    raise ConfigError(f"{path} carries no efficientdet metadata; export it with efficientdet export --format tflite")


def _tflite_meta(job: ExportJob, batch: int | None, half: bool) -> dict[str, str]:
    """The job's metadata with LiteRT's dtypes (int32 labels and counts) and the converted batch size."""
    meta = dict(job.meta)
    for key in ("inputs", "outputs"):
        entries = json.loads(meta[key])
        entries = {k: v.replace("int64", "int32").replace("[B,", f"[{batch},").replace("[B]", f"[{batch}]")
                   if batch else v.replace("int64", "int32") for k, v in entries.items()}
        meta[key] = json.dumps(entries)
    meta["weights"] = json.dumps("float16" if half else "float32")
    return meta


def write_tflite(job: ExportJob) -> None:
    """Write ``job``'s graph as a LiteRT flatbuffer with its metadata (see the module docstring)."""
    graph = job.graph
    if not isinstance(graph, DetectionGraph):
        raise ConfigError("LiteRT export of the raw-image graph is not available: litert-torch 0.10 cannot lower "
                          "its dynamic height and width; drop --input raw (the batch graph takes the letterboxed "
                          "uint8 [1, 3, H, W] image, see the README's LiteRT example)")
    _requires_litert()
    example = job.example[:1] if job.dynamic_shapes is not None else job.example
    batch = len(example)
    content = convert(graph, example, None, half=job.half)
    meta = _tflite_meta(job, batch, job.half)
    _write(job.path, add_metadata(content, METADATA_NAME, json.dumps(meta).encode()))


METADATA_SCHEMA_VERSION = "1.5.0"
"""Version of MediaPipe's metadata schema (``metadata_schema.fbs``), the newest the writer's fields need."""


def _metadata_version_shim() -> None:
    """Some ``mediapipe`` wheels (1.2.x) ship the metadata writer without its one C++ helper, which computes the
    metadata's minimum parser version; the schema's version (an upper bound that MediaPipe's parser accepts)
    stands in for it then."""
    import importlib
    import sys
    import types

    name = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"
    try:
        importlib.import_module(name)
        return
    except ImportError:
        pass
    module = types.ModuleType(name)
    module.GetMinimumMetadataParserVersion = lambda buffer: METADATA_SCHEMA_VERSION  # type: ignore[attr-defined]
    parent = None
    for part in ("mediapipe.tasks.cc", "mediapipe.tasks.cc.metadata", "mediapipe.tasks.cc.metadata.python", name):
        current = sys.modules.setdefault(part, module if part == name else types.ModuleType(part))
        if parent is not None:
            setattr(parent, part.rsplit(".", 1)[1], current)
        parent = current


def write_mediapipe(job: ExportJob) -> None:
    """Write ``job``'s batch graph as a LiteRT file for MediaPipe's ObjectDetector (see the module docstring).

    Experimental: MediaPipe 1.2's ObjectDetector refuses the file litert-torch 0.10 writes ("Expected a model
    with a single subgraph, found 21"); the export warns. The file runs in LiteRT's interpreter."""
    _requires_litert()
    from efficientdet.export import progress

    progress("warning: the mediapipe format is experimental: MediaPipe 1.2's ObjectDetector does not load the "
             "file litert-torch 0.10 writes yet (21 subgraphs, it wants one); LiteRT's interpreter runs it")
    try:
        _metadata_version_shim()
        from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer, object_detector
    except ImportError as err:
        raise ConfigError("the mediapipe format needs mediapipe for its metadata writer: pip install mediapipe "
                          "(or pip install 'efficientdet[tflite]')") from err
    graph = job.graph
    if not isinstance(graph, DetectionGraph):
        raise ConfigError("the mediapipe format takes the batch input (MediaPipe resizes the image itself); drop "
                          "--input raw")
    if job.dynamic_shapes is None and len(job.example) != 1:
        raise ConfigError("MediaPipe runs one image at a time; drop --batch")
    example = job.example[:1].permute(0, 2, 3, 1).contiguous()  # [1, H, W, 3]
    content = convert(MediaPipeGraph(graph).eval(), example, half=job.half)
    meta = dict(job.meta)
    names = json.loads(meta["label_names"])
    meta["input"] = "mediapipe"
    meta["inputs"] = json.dumps({"image": "uint8 [1, H, W, 3] RGB (MediaPipe stretches the image to it)"})
    meta["outputs"] = json.dumps({
        "location": "float32 [1, D, 4] (ymin, xmin, ymax, xmax) fractions of the input",
        "category": "float32 [1, D] class index (0 in padding rows)",
        "score": "float32 [1, D] descending, 0 in padding",
        "number of detections": "float32 [1] valid rows",
    })
    meta["weights"] = json.dumps("float16" if job.half else "float32")
    # uint8 input: MediaPipe feeds 0..255 and the graph normalises; mean 0 / std 1 says "no normalisation here"
    writer = object_detector.MetadataWriter.create_for_models_with_nms(
        bytearray(content), [0.0], [1.0], metadata_writer.Labels().add(list(names)))
    content, _ = writer.populate()
    _write(job.path, add_metadata(bytes(content), METADATA_NAME, json.dumps(meta).encode()))


def _write(path: Path, content: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(content)
    tmp.replace(path)


__all__ = ["METADATA_NAME", "MEDIAPIPE_OUTPUTS", "MediaPipeGraph", "add_metadata", "convert", "float16_weights",
           "float32_graph", "read_tflite_metadata", "write_mediapipe", "write_tflite"]
