"""minigrad against PyTorch's own operator test database (OpInfo samples from torch.testing._internal).

One test per matched OpInfo and dtype (float64, float32): every sample PyTorch's CI feeds that op (0-d and
empty tensors, negative and tuple dims, keyword arguments, ...) goes through every minigrad spelling of the
op; outputs, their dtypes and the input gradients must match torch's. The rules (tolerances, what counts as
a mismatch, an error or a clean "unsupported") are in opinfo_harness.py. A test fails on any mismatch or
error; samples minigrad cleanly refuses (an argument it does not take) are counted, not failed.

KNOWN_FAILURES lists the ops that fail today, as strict xfails: fixing one makes its test XPASS, which
fails the run until the entry is removed. The module ends by printing the sample totals; the per-op table
and every failing sample: python tools/opinfo_report.py.
"""
from __future__ import annotations

import os
import random
from contextlib import nullcontext

import numpy as np
import pytest

import minigrad as mg

torch = pytest.importorskip("torch")

from tests.minigrad import opinfo_harness as H  # noqa: E402

try:
    OP_DB = H.load_op_db()
except Exception as e:  # noqa: BLE001 - torch's test helpers need extras in some torch builds
    pytest.skip(f"could not import 'torch.testing._internal.common_methods_invocations': {e}", allow_module_level=True)

MATCHED = H.match_ops(OP_DB)
CASES = [(m, dt) for m in MATCHED for dt in H.dtypes_for(m)]

# op key (or "key[dtype]" for one dtype) -> why it fails today. Regenerate the evidence with
# python tools/opinfo_report.py --op KEY
KNOWN_FAILURES: dict[str, str] = {
    # (file:line as of commit d563122)
}


def _marks(key: str, dtype: str) -> list:
    reason = KNOWN_FAILURES.get(f"{key}[{dtype}]") or KNOWN_FAILURES.get(key)
    return [pytest.mark.xfail(strict=True, reason=reason)] if reason else []


_RESULTS: list = []


@pytest.fixture(scope="module", autouse=True)
def _summary(request):
    """After the module: one totals line per dtype (samples: pass / mismatch / error / unsupported)."""
    yield
    if not _RESULTS:
        return
    lines = [f"OpInfo differential test: {len(MATCHED)} OpInfos matched, samples per dtype:"]
    lines += ["  " + line for line in H.totals_table(_RESULTS)]
    if os.environ.get("MINIGRAD_OPINFO_TABLE"):
        lines += ["  " + line for line in H.op_table(_RESULTS)]
    else:
        lines.append("  (per-op table: MINIGRAD_OPINFO_TABLE=1, or python tools/opinfo_report.py)")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture else nullcontext():
        reporter.write_line("")
        for line in lines:
            reporter.write_line(line)


@pytest.mark.parametrize("m,dtype", [pytest.param(m, dt, id=f"{m.key}-{dt}", marks=_marks(m.key, dt))
                                     for m, dt in CASES])
def test_op_matches_torch(m, dtype):
    result = H.run_op(m, dtype)
    _RESULTS.append(result)
    bad = [s for s in result.samples if s.outcome in ("mismatch", "error")]
    assert not bad, (f"{m.key} [{dtype}]: {len(bad)} of {len(result.samples)} samples fail "
                     f"(minigrad: {', '.join(result.variants)})\n" + "\n".join(H.failure_lines(result, 8)))


def test_known_failures_name_matched_ops():
    keys = {m.key for m in MATCHED}
    stale = [k for k in KNOWN_FAILURES if k.split("[")[0] not in keys]
    assert not stale, f"KNOWN_FAILURES entries that are no matched OpInfo: {stale}"


def test_alias_table_names_are_in_op_db():
    names = {op.name for op in OP_DB}
    assert not [n for n in H.ALIASES if n not in names]


def test_mapping_covers_the_core_ops():
    """The name matching finds minigrad's core ops (a torch upgrade that renames OpInfos shows up here)."""
    keys = {m.key for m in MATCHED}
    for key in ["add", "mul", "div.no_rounding_mode", "matmul", "sum", "mean", "var", "max.reduction_with_dim",
                "softmax", "log_softmax", "logsumexp", "reshape", "permute", "transpose", "__getitem__", "cat",
                "stack", "where", "gather", "nn.functional.gelu", "nn.functional.layer_norm",
                "nn.functional.cross_entropy", "nn.functional.linear", "nn.functional.embedding"]:
        assert key in keys, key
    hows = {v.how for m in MATCHED for v in m.variants}
    assert hows == {"method", "function", "functional", "alias"}


# ---------------------------------------------------------------- the harness's own rules

def _raise_from_minigrad(src: str, name: str = "f"):
    """Run src's function as if it were minigrad code (its frames carry a minigrad file name)."""
    import linecache
    fname = os.path.join(H.MINIGRAD_DIR, "_opinfo_fake.py")
    linecache.cache[fname] = (len(src), None, src.splitlines(True), fname)
    ns: dict = {}
    exec(compile(src, fname, "exec"), ns)
    try:
        ns[name]()
    except Exception as e:  # noqa: BLE001
        return H.classify_exception(e)
    finally:
        linecache.cache.pop(fname, None)
    raise AssertionError("did not raise")


def test_exception_rules():
    x = mg.tensor([1.0, 2.0])
    with pytest.raises(TypeError) as e:
        x.sum(alpha=2)
    assert H.classify_exception(e.value)[:2] == ("unsupported", "signature")
    refused = ("unsupported", "refused")
    assert _raise_from_minigrad("def f():\n    raise NotImplementedError('f: x is not supported')\n")[:2] == refused
    assert _raise_from_minigrad("def f():\n    raise TypeError('f: dtype mismatch')\n")[:2] == refused
    assert _raise_from_minigrad("def f():\n    raise ValueError('f: bad shape')\n")[:2] == ("error", "raised")
    assert _raise_from_minigrad("def f():\n    return (1,) % 2\n")[:2] == ("error", "raw")  # a TypeError, not raised
    assert _raise_from_minigrad("import numpy as np\ndef f():\n    np.zeros(2).reshape(3)\n")[:2] == ("error", "raw")
    # a binding TypeError inside minigrad (minigrad calling itself wrongly) is a crash, not "unsupported"
    assert _raise_from_minigrad("def g(a):\n    pass\ndef f():\n    g(1, 2)\n")[:2] == ("error", "raw")


def test_running_ops_leaves_global_state_alone():
    """The run reseeds torch/numpy/random and minigrad's generator and narrows torch's thread pool;
    the rest of a pytest session must see none of that."""
    m = next(m for m in MATCHED if m.key == "nn.functional.dropout")
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate(), torch.get_num_threads())
    rng = mg.backend.device("cpu").rng
    H.run_op(m, "float32")
    assert torch.equal(before[0], torch.get_rng_state())
    assert (before[1] == np.random.get_state()[1]).all()
    assert before[2] == random.getstate() and before[3] == torch.get_num_threads()
    assert mg.backend.device("cpu").rng is rng
    assert not torch.backends.flags_frozen()


def test_float32_tolerance_uses_torchs_own_error():
    t64 = np.array([1.0, 2.0, 3.0])
    t32 = (t64 + np.array([0.0, 1e-3, 0.0])).astype(np.float32)
    H._close("x", t64.astype(np.float32) + np.float32(5e-3), t32, t64, torch.float32)  # 5e-3 <= 10 * 1e-3
    with pytest.raises(H.Mismatch):
        H._close("x", t64.astype(np.float32) + np.float32(2e-2), t32, t64, torch.float32)
    with pytest.raises(H.Mismatch):
        H._close("x", t64 + 1e-6, t64, t64, torch.float64)
    with pytest.raises(H.Mismatch, match="inf/nan"):
        H._close("x", np.array([np.inf]), np.array([1.0]), np.array([1.0]), torch.float64)
