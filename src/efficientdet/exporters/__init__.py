"""Export formats and graph variants built around :mod:`efficientdet.export`.

- :mod:`~efficientdet.exporters.raw`: the raw-image graph (one decoded ``uint8 [H, W, 3]`` image of any size in,
  boxes in that image's pixels out; ``efficientdet export --input raw``).
- :mod:`~efficientdet.exporters.quantize`: int8 post-training quantisation of ONNX files (``--int8``).
- :mod:`~efficientdet.exporters.tensorrt`: which ONNX operators TensorRT's parser takes (a CPU-side check).
"""
