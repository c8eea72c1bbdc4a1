"""Shared test fixtures. Tests never touch the network."""

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_REFERENCE = REPO_ROOT.parent / "shared" / "reference"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The official-TF fixtures (``../shared/reference``); tests that need them skip when absent."""
    if not SHARED_REFERENCE.is_dir():
        pytest.skip(f"reference fixtures not found at {SHARED_REFERENCE}")
    return SHARED_REFERENCE
