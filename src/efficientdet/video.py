"""Reading and writing video frames with OpenCV (``opencv-python-headless``, the ``video`` extra).

Frames are ``uint8`` RGB arrays ``[H, W, 3]`` (OpenCV's BGR is converted at the edges). Sizes are
``(height, width)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import numpy as np

from efficientdet.errors import ConfigError, DataError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")
"""File name endings treated as videos."""

FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG", ".webm": "VP80"}
"""The codec written for each container (all available in the OpenCV wheels)."""

DEFAULT_FPS = 25.0
"""Frame rate assumed when a file does not state one."""


def is_video(path: str | os.PathLike[str]) -> bool:
    """True when the file name ends like a video (:data:`VIDEO_EXTENSIONS`)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _cv2() -> ModuleType:
    try:
        import cv2
    except ImportError as err:
        raise ConfigError("reading and writing video needs OpenCV: pip install opencv-python-headless "
                          "(or pip install 'efficientdet[video]')") from err
    return cv2


@dataclass(frozen=True)
class VideoInfo:
    """``fps``, ``frame_count`` (as the container states it; 0 when unknown) and frame ``size`` ``(H, W)``."""

    fps: float
    frame_count: int
    size: tuple[int, int]


class VideoReader:
    """Iterate over the frames of a video file as ``uint8`` RGB arrays ``[H, W, 3]``.

    Use as a context manager (or call :meth:`close`)::

        with VideoReader("clip.mp4") as video:
            for frame in video:
                ...
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        cv2 = _cv2()
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"video file not found: {self.path}; check the path")
        self._capture = cv2.VideoCapture(str(self.path))
        if not self._capture.isOpened():
            raise DataError(f"cannot open video {self.path}: OpenCV has no decoder for it; convert it to mp4 "
                            "(e.g. ffmpeg -i input output.mp4)")
        fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.info = VideoInfo(
            fps=fps if fps > 0 else DEFAULT_FPS,
            frame_count=max(0, int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)),
            size=(int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH))),
        )
        self._cv2 = cv2

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            ok, frame = self._capture.read()
            if not ok:
                return
            yield self._cv2.cvtColor(frame, self._cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self._capture.release()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class VideoWriter:
    """Write ``uint8`` RGB frames ``[H, W, 3]`` (all of ``size`` ``(H, W)``) to a video file at ``fps``.

    The codec follows the file name ending (:data:`FOURCC`). Use as a context manager (or call :meth:`close`).
    """

    def __init__(self, path: str | os.PathLike[str], fps: float, size: tuple[int, int]) -> None:
        cv2 = _cv2()
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in FOURCC:
            raise ConfigError(f"cannot write video {self.path}: use one of {', '.join(FOURCC)}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.size = (int(size[0]), int(size[1]))
        self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*FOURCC[suffix]), float(fps),
                                       (self.size[1], self.size[0]))
        if not self._writer.isOpened():
            raise DataError(f"cannot write video {self.path} with codec {FOURCC[suffix]}; write .mp4 or .avi instead")
        self._cv2 = cv2

    def write(self, frame: np.ndarray | Any) -> None:
        """Append one RGB frame (``[H, W, 3]`` uint8 array or PIL image of the writer's size)."""
        frame = np.asarray(frame)
        if frame.shape[:2] != self.size or frame.ndim != 3 or frame.shape[2] != 3:
            raise DataError(f"frame of shape {frame.shape} does not fit video {self.path} of size {self.size} (H, W)")
        self._writer.write(self._cv2.cvtColor(np.ascontiguousarray(frame, dtype=np.uint8), self._cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        self._writer.release()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


__all__ = ["VIDEO_EXTENSIONS", "FOURCC", "DEFAULT_FPS", "is_video", "VideoInfo", "VideoReader", "VideoWriter"]
