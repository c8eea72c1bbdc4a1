"""Which ONNX graphs TensorRT's ONNX parser takes: a check that runs on the CPU, without TensorRT.

TensorRT builds engines from ONNX files (``trtexec --onnx=FILE`` or ``tensorrt.OnnxParser``); the exported
graph is built with NMS as the ONNX ``NonMaxSuppression`` operator, which the parser maps to TensorRT's
own NMS layer. Building an engine needs an NVIDIA GPU and the ``tensorrt`` package; this module only checks,
from the ONNX file alone, that every operator is one the parser supports (the list of
``onnx-tensorrt``'s ``docs/operators.md``, TensorRT 10) and that ``TopK`` stays within TensorRT's limit
of :data:`MAX_TOPK` per call.
"""

from __future__ import annotations

import os
from typing import Any

TENSORRT_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu Clip
Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div Dropout
Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool
GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU HardSigmoid HardSwish Hardmax
Identity If InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop
LpNormalization LpPool LRN LSTM MatMul Max MaxPool Mean Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot
Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike
Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd
ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter
ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign
SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where
Xor
""".split())
"""ONNX operators (default domain) that TensorRT 10's ONNX parser converts."""
MAX_TOPK = 3840
"""Largest ``K`` of a TensorRT TopK layer (``kMAX_TOPK_K`` in TensorRT 8's documentation; newer releases may
take more). The exported graph's first ``TopK`` keeps ``max_detection_points`` candidates (5000 in the
official settings), so an engine build needs ``max_detection_points <= 3840``."""


def tensorrt_problems(path: str | os.PathLike[str]) -> list[str]:
    """What would stop TensorRT's ONNX parser on the file at ``path`` (empty when nothing does).

    Reports operators outside :data:`TENSORRT_OPS` (or in another domain) and ``TopK`` nodes whose constant
    ``K`` exceeds :data:`MAX_TOPK` (a ``K`` computed at run time is reported too: TensorRT needs it known
    when the engine is built).
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path), load_external_data=False)
    constants: dict[str, Any] = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    constants[node.output[0]] = numpy_helper.to_array(attr.t)
    problems = []
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in TENSORRT_OPS:
            problems.append(f"operator {node.domain + '.' if node.domain else ''}{node.op_type} ({node.name}) is not "
                            "supported by TensorRT's ONNX parser")
        elif node.op_type == "TopK":
            k = constants.get(node.input[1])
            if k is None:
                problems.append(f"TopK {node.name}: K is computed at run time (TensorRT needs a build-time K)")
            elif int(k.reshape(-1)[0]) > MAX_TOPK:
                problems.append(f"TopK {node.name}: K = {int(k.reshape(-1)[0])} exceeds TensorRT's {MAX_TOPK}")
    return problems


__all__ = ["TENSORRT_OPS", "MAX_TOPK", "tensorrt_problems"]
