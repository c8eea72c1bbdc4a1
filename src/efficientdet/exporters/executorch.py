"""ExecuTorch ``.pte`` export (XNNPACK): ``efficientdet export --format executorch``.

The graph is the :class:`~efficientdet.pipeline.DetectionPipeline` (uint8 letterboxed batch in, padded
detections out), captured by ``torch.export`` at batch 1 (ExecuTorch plans memory for fixed shapes), lowered
with the XNNPACK partitioner (convolutions, pooling and elementwise work run in XNNPACK; the post-processing runs
in ExecuTorch's portable kernels) and written as a ``.pte`` program.

ExecuTorch has no NMS kernel, so hard NMS runs as the fixed-shape greedy loop of
:func:`~efficientdet.ops.nms.greedy_nms` with no score decay (the format's ``hard_nms="greedy"``: the same
selections as hard NMS, unrolled once per output slot: keep ``max_detections`` small for a small program); soft NMS is that loop with its
Gaussian decay. A ``.pte`` file has no room for metadata: it goes next to it as ``<file>.json`` (the keys of
:func:`~efficientdet.export.export_metadata`, read back by :func:`~efficientdet.export.read_metadata`).

Needs ``pip install executorch`` (``pip install 'efficientdet[executorch]'``). Running the file::

    from executorch.runtime import Runtime
    method = Runtime.get().load_program("model.pte").load_method("forward")
    boxes, scores, labels, num_detections = method.execute([images])  # uint8 [1, 3, H, W] torch tensor
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from efficientdet.errors import ConfigError
from efficientdet.export import ExportJob
from efficientdet.pipeline import DetectionPipeline


def metadata_path(path: str | Path) -> Path:
    """Where the metadata of a ``.pte`` file lives: ``<file>.json`` next to it."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def write_executorch(job: ExportJob) -> None:
    """Write ``job``'s graph as an ExecuTorch program lowered to XNNPACK, plus its metadata file."""
    try:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
    except ImportError as err:
        raise ConfigError("ExecuTorch export needs executorch: pip install executorch "
                          "(or pip install 'efficientdet[executorch]')") from err
    graph = job.graph
    if not isinstance(graph, DetectionPipeline):
        raise ConfigError("ExecuTorch export takes the batch input (drop --input raw)")
    example = job.example[:1] if job.dynamic_shapes is not None else job.example
    program = torch.export.export(graph, (example,))
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
    meta = dict(job.meta)
    inputs = json.loads(meta["inputs"])
    meta["inputs"] = json.dumps({k: v.replace("[B,", f"[{len(example)},") for k, v in inputs.items()})
    tmp = job.path.with_name(job.path.name + ".tmp")
    tmp.write_bytes(lowered.buffer)
    metadata_path(job.path).write_text(json.dumps(meta, indent=1))
    tmp.replace(job.path)


__all__ = ["metadata_path", "write_executorch"]
