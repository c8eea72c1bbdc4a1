"""int8 post-training quantisation of exported ONNX files, calibrated on the user's own images.

``efficientdet export --int8 --calibration-data DATA [--calibration-images N]`` exports the float32 graph
(:func:`~efficientdet.export.export_model`), then :func:`quantize_onnx` rewrites its network part with
onnxruntime's static quantisation in QDQ form (``QuantizeLinear`` / ``DequantizeLinear`` pairs, which
onnxruntime fuses into integer kernels such as ``QLinearConv``):

- weights: int8, symmetric, one scale per output channel (per-tensor scales lose the small depthwise
  filters);
- activations: uint8 with ranges measured on the calibration images (min / max of each tensor,
  :data:`CALIBRATION_METHOD`), the images letterboxed exactly as at inference (or fed whole to a raw-image
  graph).

What stays in float32, and why:

- the input normalisation (``(x - mean) / std`` on the uint8 image: two cheap elementwise ops, and the
  first convolution's input is quantised right after it);
- the last convolution of the class and box heads (:data:`KEEP_HEADS_FLOAT`): their outputs are logits and
  box deltas, which NMS ranks and decodes; rounding them to 256 levels per tensor reorders close scores
  and moves boxes, for a small share of the compute;
- max pooling (its input carries the ``-inf`` padding of TF "same" pooling, which has no int8 range; the
  comparisons cost little);
- everything after the network: sigmoid, top-k, anchor decoding, clipping and NMS (exact float32, same
  code as the float graph; these are not matrix products and gain nothing from int8).

Calibration data (:func:`calibration_images`): any dataset the library reads (COCO json, VOC, YOLO,
OpenImages, CSV; only the images are used) or a folder of images; ``count`` images spread evenly over it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from efficientdet.errors import ConfigError, DataError

DEFAULT_CALIBRATION_IMAGES = 100
"""Calibration images used when ``count`` is not given (ranges settle after a few dozen images)."""
CALIBRATION_METHOD = "MinMax"
"""onnxruntime's calibration method: the min and max of each activation over the calibration images."""
KEEP_HEADS_FLOAT = True
"""Keep the heads' prediction convolutions in float32 (see the module docstring)."""
QUANTIZED_OPS = ("Conv", "Resize", "Add", "Concat", "Clip", "Relu")
"""Operator types quantised inside the network (the rest of the network runs in float between them)."""


def calibration_images(data: str | os.PathLike[str], count: int | None = None) -> list[Path]:
    """``count`` image files (default :data:`DEFAULT_CALIBRATION_IMAGES`) spread evenly over ``data``.

    ``data``: a dataset in any format :func:`~efficientdet.data.parsers.load_dataset` reads, or a folder
    holding images (searched recursively).
    """
    from efficientdet.data.images import IMAGE_EXTENSIONS
    from efficientdet.data.parsers import load_dataset

    count = DEFAULT_CALIBRATION_IMAGES if count is None else int(count)
    if count < 1:
        raise ConfigError(f"--calibration-images must be >= 1, got {count}")
    path = Path(data)
    if not path.exists():
        raise DataError(f"calibration data {path} does not exist; give a dataset (COCO json, VOC / YOLO folder, "
                        "CSV ...) or a folder of images")
    try:
        files = [record.path for record in load_dataset(path).records]
    except DataError:
        if not path.is_dir():
            raise
        files = sorted(f for f in path.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DataError(f"calibration data {path}: no images found; give a dataset or a folder of "
                        f"{'/'.join(IMAGE_EXTENSIONS)} files")
    if len(files) <= count:
        return files
    return [files[i * len(files) // count] for i in range(count)]


class _Reader:
    """onnxruntime's ``CalibrationDataReader``: the graph input of each calibration image, one at a time."""

    def __init__(self, files: Sequence[Path], meta: dict[str, str], input_name: str) -> None:
        self.files, self.meta, self.input_name = list(files), meta, input_name
        self._items: Iterator[dict[str, np.ndarray]] | None = None

    def _inputs(self) -> Iterator[dict[str, np.ndarray]]:
        import torch

        from efficientdet.data.images import read_image
        from efficientdet.data.preprocess import fill_values, letterbox

        raw = self.meta.get("input") == "raw"
        size = tuple(json.loads(self.meta["image_size"]))
        fill = fill_values(json.loads(self.meta.get("fill", '"mean"')), json.loads(self.meta["mean"]))
        for file in self.files:
            image = np.array(read_image(file))  # uint8 [H, W, 3], writable
            if raw:
                yield {self.input_name: image}
            else:
                canvas, _ = letterbox(torch.from_numpy(image).permute(2, 0, 1), size, fill, uint8=True)
                yield {self.input_name: canvas[None].numpy()}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._items is None:
            self._items = self._inputs()
        return next(self._items, None)

    def rewind(self) -> None:
        self._items = None


def network_nodes(model: Any, keep_heads_float: bool = KEEP_HEADS_FLOAT) -> tuple[list[str], list[str]]:
    """``(quantised, float)`` node names of the network part of an exported graph.

    The network part is every node from which a ``Conv`` can be reached, the convolutions included (the
    post-processing comes after the last convolution). With ``keep_heads_float`` the last convolution on
    each path to the outputs (the heads' prediction layers) moves to the float list.
    """
    nodes = list(model.graph.node)
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for name in node.input:
            consumers.setdefault(name, []).append(i)
    reaches_conv = [node.op_type == "Conv" for node in nodes]
    for i in reversed(range(len(nodes))):  # nodes are in topological order
        if not reaches_conv[i]:
            reaches_conv[i] = any(reaches_conv[j] for out in nodes[i].output for j in consumers.get(out, ()))
    heads = set()
    if keep_heads_float:
        for i, node in enumerate(nodes):
            downstream = [j for out in node.output for j in consumers.get(out, ())]
            if node.op_type == "Conv" and not any(reaches_conv[j] for j in downstream):
                heads.add(i)
    quantised = [n.name for i, n in enumerate(nodes) if reaches_conv[i] and i not in heads]
    kept = [nodes[i].name for i in sorted(heads)]
    return quantised, kept


@contextlib.contextmanager
def _quiet_onnxruntime() -> Iterator[None]:
    """Silence onnxruntime's quantiser advice ("consider pre-processing", logged at WARNING on the root logger)."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def quantize_onnx(source: str | os.PathLike[str], output: str | os.PathLike[str], calibration_data: str | os.PathLike[str],
                  count: int | None = None, *, keep_heads_float: bool = KEEP_HEADS_FLOAT) -> Path:
    """Write an int8 (QDQ) copy of the exported float32 ONNX file ``source`` to ``output``.

    Calibrated on :func:`calibration_images` of ``calibration_data``; see the module docstring for what is
    quantised. The copy keeps the source's inputs, outputs and metadata and adds ``quantization`` (JSON:
    scheme, calibration images, float layers). Returns ``output``.
    """
    try:
        import onnx
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
        from onnxruntime.quantization import quantize_static as _quantize_static
    except ImportError as err:
        raise ConfigError("int8 export needs onnx and onnxruntime: pip install onnx onnxruntime "
                          "(or pip install 'efficientdet[export]')") from err
    source, output = Path(source), Path(output)
    model = onnx.load(str(source))
    meta = {p.key: p.value for p in model.metadata_props}
    if "image_size" not in meta:
        raise ConfigError(f"{source} was not written by efficientdet export (no metadata); export it first")
    files = calibration_images(calibration_data, count)
    quantised, kept = network_nodes(model, keep_heads_float)
    reader = _Reader(files, meta, model.graph.input[0].name)
    tmp = output.with_name(output.name + ".tmp")
    output.parent.mkdir(parents=True, exist_ok=True)
    # onnxruntime measures every tensor of a quantisable op type, post-processing ones included (never
    # quantised: ``nodes_to_quantize``); ranges of -inf there (masked scores) make numpy warn, harmlessly.
    with np.errstate(invalid="ignore", divide="ignore"), _quiet_onnxruntime():
        _quantize_static(
            model, tmp, reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS),
            nodes_to_quantize=quantised,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, CALIBRATION_METHOD),
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
        )
    quant = onnx.load(str(tmp))
    del quant.metadata_props[:]
    info = {"scheme": "int8 QDQ (onnxruntime static quantisation)", "weights": "int8 per-channel symmetric",
            "activations": f"uint8 per-tensor, {CALIBRATION_METHOD} calibration", "calibration_images": len(files),
            "calibration_data": str(calibration_data), "float_layers": kept,
            "float_parts": ["input normalisation", "heads' prediction convolutions" if kept else None,
                            "post-processing (decoding, NMS)"]}
    info["float_parts"] = [p for p in info["float_parts"] if p]
    for key, value in {**meta, "quantization": json.dumps(info)}.items():
        entry = quant.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save_model(quant, str(tmp))
    os.replace(tmp, output)
    return output


__all__ = ["DEFAULT_CALIBRATION_IMAGES", "CALIBRATION_METHOD", "KEEP_HEADS_FLOAT", "QUANTIZED_OPS",
           "calibration_images", "network_nodes", "quantize_onnx"]
