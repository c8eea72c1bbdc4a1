"""Video frames round-trip through OpenCV files; a missing OpenCV gives an error naming the package."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from efficientdet.errors import ConfigError, DataError
from efficientdet.video import VideoReader, VideoWriter, is_video

from .helpers import photo


def frames(n: int = 6, size: tuple[int, int] = (96, 128)) -> list[np.ndarray]:
    """``n`` RGB frames panning over a real photo."""
    base = np.asarray(Image.open(photo("chelsea.png")).convert("RGB"))
    return [np.ascontiguousarray(base[10 + 5 * i: 10 + 5 * i + size[0], 20: 20 + size[1]]) for i in range(n)]


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_write_then_read_keeps_count_rate_size_and_colours(tmp_path, suffix):
    clip = frames()
    path = tmp_path / f"clip{suffix}"
    with VideoWriter(path, fps=12.5, size=(96, 128)) as writer:
        for f in clip:
            writer.write(f)
    with VideoReader(path) as video:
        got = list(video)
        info = video.info
    assert is_video(path) and info.fps == pytest.approx(12.5) and info.size == (96, 128)
    assert info.frame_count == len(got) == len(clip)
    for a, b in zip(got, clip, strict=True):  # lossy codecs: close; RGB order (red and blue means differ by 70)
        assert a.shape == b.shape and np.abs(a.astype(int) - b).mean() < 6
        assert np.abs(a.reshape(-1, 3).mean(0) - b.reshape(-1, 3).mean(0)).max() < 8


def test_errors(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="not found"):
        VideoReader(tmp_path / "missing.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(DataError, match="cannot open video"):
        VideoReader(tmp_path / "bad.mp4")
    with VideoWriter(tmp_path / "ok.mp4", 10, (32, 32)) as writer, pytest.raises(DataError, match="does not fit"):
        writer.write(np.zeros((16, 32, 3), np.uint8))
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(ConfigError, match="pip install opencv-python-headless"):
        VideoReader(tmp_path / "ok.mp4")
