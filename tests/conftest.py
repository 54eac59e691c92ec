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


def _require_cuda() -> bool:
    return os.environ.get("MINIGRAD_REQUIRE_CUDA") == "1"


def pytest_collection_modifyitems(config, items):
    if not any(item.get_closest_marker("cuda") for item in items):
        return
    if _has_gpu():
        return
    if _require_cuda():
        return  # let them run and fail loudly
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU with cupy (MINIGRAD_REQUIRE_CUDA=1 turns this into a failure)")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With MINIGRAD_REQUIRE_CUDA=1 a cuda test that skips (for any reason) is a failure: a GPU run cannot pass by skipping."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and _require_cuda() and item.get_closest_marker("cuda"):
        report.outcome = "failed"
        report.longrepr = f"MINIGRAD_REQUIRE_CUDA=1 but this cuda test skipped: {report.longrepr}"


@pytest.fixture
def shakespeare_path():
    if not SHAKESPEARE.exists():
        pytest.skip(f"{SHAKESPEARE} not present")
    return SHAKESPEARE
