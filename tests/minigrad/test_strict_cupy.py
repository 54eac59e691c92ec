"""The op code runs unchanged on a strict CuPy stand-in (a numpy-backed SIMULATION, see tests/strict_cupy.py).

This proves device/host discipline and API existence in the installed cupy, not CUDA numerics.
"""
from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import minigrad as mg
from tests.minigrad.op_specs import all_cases, draw, minigrad_lib

pytest.importorskip("cupy", reason="the stand-in takes its name lists from the installed cupy ([cuda-check] extra)")
from tests.strict_cupy import StrictArray, Syncs, make_device  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dev():
    return make_device()


def lib_on(dev):
    base = minigrad_lib()
    return SimpleNamespace(**{**vars(base), "tensor": lambda a: mg.tensor(a, device=dev)})


def test_stand_in_refuses_implicit_host_conversion_and_numpy_mixing(dev):
    a = mg.randn(3, device=dev)
    assert isinstance(a.data, StrictArray)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(a.data)
    with pytest.raises(TypeError, match="numpy array"):
        a.data + np.ones(3, dtype=np.float32)
    with pytest.raises(AttributeError, match="normal"):
        dev.rng.normal(size=3)
    with pytest.raises(AttributeError, match="vecdot"):
        dev.xp.vecdot
    with pytest.raises(NotImplementedError):
        dev.xp.maximum.at(a.data, dev.xp.asarray(np.array([0])), 1.0)


CASES = all_cases()


@pytest.mark.parametrize("name,i,case", CASES, ids=[f"{n}-{i}" for n, i, _ in CASES])
def test_op_matches_numpy_on_the_stand_in(dev, name, i, case):
    rng = np.random.default_rng(0)
    arrays = [draw(s, case.domain, rng) for s in case.shapes]
    cpu = [mg.tensor(a, dtype="float64", requires_grad=True) for a in arrays]
    gpu = [mg.tensor(a, dtype="float64", requires_grad=True, device=dev) for a in arrays]
    out_c, out_g = case.fn(minigrad_lib(), *cpu), case.fn(lib_on(dev), *gpu)
    assert isinstance(out_g.data, StrictArray) and out_g.device == dev
    g = rng.standard_normal(out_c.shape)
    out_c.backward(mg.tensor(g, dtype="float64"))
    out_g.backward(mg.tensor(g, dtype="float64", device=dev))
    np.testing.assert_allclose(out_g.numpy(), out_c.numpy(), rtol=1e-12, atol=1e-12)
    for a, b in zip(gpu, cpu):
        assert isinstance(a.grad.data, StrictArray)
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_cpu_tensors_do_not_mix_silently_with_device_tensors(dev):
    with pytest.raises(RuntimeError, match="cpu and cuda:99"):
        mg.randn(3) + mg.randn(3, device=dev)


def test_device_to_host_syncs_are_counted(dev):
    x = mg.randn(4, 5, device=dev, requires_grad=True)
    before = Syncs.count
    loss = (x * x).sum()
    loss.backward()
    assert Syncs.count == before  # no host round trip in forward or backward
    loss.item()
    assert Syncs.count == before + 1


NUMPY_FREE = ["minigrad/autograd.py", "minigrad/ops", "minigrad/nn", "minigrad/optim"]


def test_op_nn_and_optim_code_never_calls_numpy_directly():
    offenders = []
    for entry in NUMPY_FREE:
        path = ROOT / entry
        for file in ([path] if path.is_file() else sorted(path.rglob("*.py"))):
            tree = ast.parse(file.read_text())
            for node in ast.walk(tree):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                    if any(m == "numpy" or m.startswith("numpy.") for m in mods):
                        offenders.append(f"{file.relative_to(ROOT)}:{node.lineno} imports numpy")
    assert not offenders, "use the device's array module (ctx.xp / t.device.xp) instead:\n" + "\n".join(offenders)
