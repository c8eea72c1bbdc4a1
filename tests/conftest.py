"""Shared test fixtures. Tests never touch the network."""

import atexit
import os
import shutil
import tempfile

# Before torch loads OpenMP: busy-waiting threads slow 2-core machines down many times under contention.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Caches (exported ONNX files of Predictor(backend="onnxruntime"), downloads) go to a fresh folder, not ~/.cache.
if "EFFICIENTDET_CACHE" not in os.environ:
    os.environ["EFFICIENTDET_CACHE"] = tempfile.mkdtemp(prefix="efficientdet-test-cache-")
    atexit.register(shutil.rmtree, os.environ["EFFICIENTDET_CACHE"], True)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
# The official-TF fixtures: $EFFICIENTDET_REFERENCE, else ../shared/reference next to the checkout, else the
# project's shared folder (a clone elsewhere, e.g. CI's fresh clone, still finds them).
_CANDIDATES = [Path(p) for p in (os.environ.get("EFFICIENTDET_REFERENCE"),) if p] + [
    REPO_ROOT.parent / "shared" / "reference",
    Path("/work/shared/reference"),
]
SHARED_REFERENCE = next((p for p in _CANDIDATES if p.is_dir()), _CANDIDATES[0])


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The official-TF fixtures (``../shared/reference``); tests that need them skip when absent."""
    if not SHARED_REFERENCE.is_dir():
        pytest.skip(f"reference fixtures not found (looked in {', '.join(map(str, _CANDIDATES))}; "
                    "set EFFICIENTDET_REFERENCE)")
    return SHARED_REFERENCE
