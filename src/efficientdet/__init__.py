"""EfficientDet object detection in PyTorch."""

__version__ = "0.1.0"
