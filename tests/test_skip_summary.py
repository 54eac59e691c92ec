"""The last line of a test run names the groups of skipped tests and what enables each (tests/conftest.py)."""
from pathlib import Path

from tests.conftest import CUDA_SKIP, skip_summary_line

CONFTEST = Path(__file__).resolve().parent / "conftest.py"


def test_reasons_are_grouped_by_what_enables_them():
    reasons = [CUDA_SKIP] * 3 + [
        "could not import 'torch': No module named 'torch'",
        "could not import 'tiktoken': No module named 'tiktoken'",
        "the strict cupy stand-in needs cupy: pip install -e \".[cuda-check]\" (no GPU needed)",
        "/x/shared/data/tinyshakespeare.txt not present",
        "something else entirely",
    ]
    line = skip_summary_line(reasons)
    assert line == ('skipped: 3 cuda (need an NVIDIA GPU + cupy: pip install -e ".[cuda]"), '
                    '1 cuda-check (CPU-side CUDA checks, no GPU needed: pip install -e ".[cuda-check]"), '
                    '2 ref (no tiktoken, torch: pip install -e ".[ref]"), '
                    '1 data (need ../shared/data/tinyshakespeare.txt), 1 other (see pytest -rs)')
    assert skip_summary_line([]) == "skipped: none"


def test_the_run_ends_with_the_skip_line(pytester, monkeypatch):
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # faster: no hypothesis plugin in the inner runs
    pytester.makeconftest(CONFTEST.read_text(encoding="utf-8"))
    pytester.makeini("[pytest]\nmarkers =\n    cuda: needs a GPU\n")
    pytester.makepyfile(
        test_a="""
        import pytest

        def test_runs():
            pass

        def test_needs_torch():
            pytest.importorskip("no_such_module_torch_stand_in")
            import torch

        def test_odd():
            pytest.skip("for no known reason")
        """,
        test_b="""
        import pytest
        pytest.importorskip("torch_missing_here", reason="could not import 'torch': simulated")
        def test_parity():
            pass
        """)
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    lines = result.outlines
    assert lines[-1] == 'skipped: 1 ref (no torch: pip install -e ".[ref]"), 2 other (see pytest -rs)', lines
    assert "1 passed, 3 skipped" in lines[-2]

    pytester.makepyfile(test_a="def test_runs():\n    pass\n", test_b="")
    assert pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider").outlines[-1] == "skipped: none"
