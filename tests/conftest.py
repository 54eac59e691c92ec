"""Shared test setup: the cuda marker skips without a GPU unless MINIGRAD_REQUIRE_CUDA=1."""
import os
from pathlib import Path

import pytest

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


def _has_gpu() -> bool:
    try:
        from minigrad import backend
        backend.device("cuda")
        return True
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    if not any("cuda" in item.keywords for item in items):
        return
    if _has_gpu():
        return
    if os.environ.get("MINIGRAD_REQUIRE_CUDA") == "1":
        return  # let them run and fail loudly
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU with cupy (MINIGRAD_REQUIRE_CUDA=1 turns this into a failure)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def shakespeare_path():
    if not SHAKESPEARE.exists():
        pytest.skip(f"{SHAKESPEARE} not present")
    return SHAKESPEARE
