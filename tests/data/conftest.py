"""Fixtures of the data tests: third-party example files (labelme), a tiny sample dataset, image factories."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
LABELME_VERSION = "6.3.1"
LABELME_CACHE = REPO_ROOT / ".cache" / "labelme"


def _extract_examples(archive: Path, dest: Path) -> None:
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if "/examples/" in m.name and m.isfile()]
        tar.extractall(dest, members=members, filter="data")


@pytest.fixture(scope="session")
def labelme_examples() -> Path:
    """The ``examples/`` folder of the labelme sdist (files made by others: VOC XML, a COCO json whose category 0
    is ``_background_``). Fetched once with ``pip download`` into ``.cache/labelme``; skipped when unavailable."""
    examples = LABELME_CACHE / f"labelme-{LABELME_VERSION}" / "examples"
    if not examples.is_dir():
        archive = LABELME_CACHE / f"labelme-{LABELME_VERSION}.tar.gz"
        if not archive.is_file():
            LABELME_CACHE.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                   f"labelme=={LABELME_VERSION}", "-d", str(LABELME_CACHE), "-q"]
            try:
                subprocess.run(cmd, check=True, timeout=180, capture_output=True)
            except (subprocess.SubprocessError, OSError) as err:
                pytest.skip(f"labelme=={LABELME_VERSION} sdist not available (pip download failed: {err}); the "
                            "real-file parser tests need it once, with network access")
        try:
            _extract_examples(archive, LABELME_CACHE)
        except (tarfile.TarError, OSError) as err:
            pytest.skip(f"cannot unpack {archive}: {err}")
    return examples


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny built-in sample dataset (12 train, 4 val images, longest side <= 192)."""
    from efficientdet.data.sample import make_sample_dataset

    root = tmp_path_factory.mktemp("sample")
    make_sample_dataset(root, seed=3, train=12, val=4, size=192)
    return root


def write_image(path: Path, size: tuple[int, int] = (48, 64), seed: int = 0, mode: str = "RGB",
                fmt: str | None = None, **save_kwargs: object) -> np.ndarray:
    """Write a random image of ``size`` (H, W) and return its RGB pixels as drawn (before compression)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
    img = Image.fromarray(pixels, "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt, **save_kwargs)
    return pixels


def assert_same_dataset(a, b, atol: float = 1e-4, check_paths: bool = True) -> None:
    """Two parsed datasets hold the same classes and the same annotations per image (image order kept)."""
    assert a.label_names == b.label_names
    assert a.category_ids == b.category_ids
    assert len(a.records) == len(b.records)
    for ra, rb in zip(a.records, b.records, strict=True):
        if check_paths:
            assert ra.path.name == rb.path.name
        assert (ra.size is None or rb.size is None) or tuple(ra.size) == tuple(rb.size)
        np.testing.assert_allclose(ra.boxes, rb.boxes, atol=atol, rtol=0)
        np.testing.assert_array_equal(ra.labels, rb.labels)
        np.testing.assert_array_equal(ra.ignore, rb.ignore)
