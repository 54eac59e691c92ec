"""Shared test setup: the cuda marker skips without a GPU unless MINIGRAD_REQUIRE_CUDA=1; the run ends
with one line naming the groups of tests that skipped and what enables each."""
import os
import re
from collections import Counter
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]  # tests/test_skip_summary.py runs pytest on a small suite

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
CUDA_SKIP = "needs an NVIDIA GPU with cupy (MINIGRAD_REQUIRE_CUDA=1 turns this into a failure)"


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
    skip = pytest.mark.skip(reason=CUDA_SKIP)
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


# ------------------------------------------------------------- the last line: which tests skipped, and why

REF_MODULES = ("torch", "tokenizers", "tiktoken", "safetensors.torch")  # the [ref] extra
_NOT_IMPORTED = re.compile(r"could not import '([\w.]+)'")

# (group, does a skip reason belong to it, what enables it), first match wins, printed in this order
SKIP_GROUPS = [
    ("cuda", lambda r: r.startswith("needs an NVIDIA GPU"), 'need an NVIDIA GPU + cupy: pip install -e ".[cuda]"'),
    ("cuda-check", lambda r: "cupy" in r or "[cuda-check]" in r or "NVRTC" in r,
     'CPU-side CUDA checks, no GPU needed: pip install -e ".[cuda-check]"'),
    ("ref", lambda r: any(f"could not import '{m}'" in r for m in REF_MODULES), None),  # names the missing modules
    ("plot", lambda r: "could not import 'matplotlib" in r, 'pip install -e ".[plot]"'),
    ("data", lambda r: "tinyshakespeare" in r, f"need {os.path.relpath(SHAKESPEARE, ROOT)}"),
    ("no-gpu-only", lambda r: "a GPU is present" in r, "they check the no-GPU messages: expected on a GPU machine"),
    ("g++", lambda r: "g++" in r, "need a C++ compiler: g++"),
    ("python", lambda r: "Python <" in r, "need Python >= 3.11"),
    ("dist", lambda r: "[dist]" in r or "mpi4py" in r or "mpiexec" in r, 'data parallel: pip install -e ".[dist]"'),
    ("dev", lambda r: '".[dev]"' in r, 'notebooks: pip install -e ".[dev]"'),
    ("bfloat16", lambda r: "ml_dtypes" in r or "ml-dtypes" in r, 'bfloat16 on the CPU: pip install -e ".[bfloat16]"'),
]


def skip_reason(report) -> str:
    """The reason text of a skipped test or module report (pytest stores (path, line, 'Skipped: reason'))."""
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason.removeprefix("Skipped: ")


def skip_group(reason: str) -> str:
    return next((name for name, match, _ in SKIP_GROUPS if match(reason)), "other")


def skip_summary_line(reasons: "list[str]") -> str:
    """'skipped: 17 cuda (need an NVIDIA GPU + cupy: pip install -e ".[cuda]"), 3 ref (...)' or 'skipped: none'."""
    if not reasons:
        return "skipped: none"
    counts = Counter(skip_group(r) for r in reasons)
    missing = sorted({m.group(1) for m in map(_NOT_IMPORTED.search, reasons) if m and m.group(1) in REF_MODULES})
    why = {name: enables for name, _, enables in SKIP_GROUPS}
    why["ref"] = f'no {", ".join(missing) or "reference library"}: pip install -e ".[ref]"'
    why["other"] = "see pytest -rs"
    order = [name for name, _, _ in SKIP_GROUPS] + ["other"]
    return "skipped: " + ", ".join(f"{counts[g]} {g} ({why[g]})" for g in order if counts[g])


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    """Printed after pytest's own counts line (tryfirst makes this wrapper the outermost), so the run ends with it."""
    yield
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        reporter.write_line(skip_summary_line([skip_reason(r) for r in reporter.stats.get("skipped", [])]))
