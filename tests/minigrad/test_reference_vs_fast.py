"""Fast = reference on every fused op that has a fast version (minigrad/ops/cpu_kernels.py against the whole-array
math in each Function of minigrad/ops/fused.py and minigrad/ops/attention.py).

Each case runs the op's Function twice on the same inputs, once as the CPU device picks it (the fast version) and
once under ``kernels.reference()`` (the reference math), and compares the output and every input gradient:

- float64: |fast - ref| <= 1e-12 * (|ref| + max |ref|), elementwise (measured: below 1e-15 of the largest entry);
- float32: the same with 1e-5 (measured: below 1e-6 of the largest entry; the fast float32 GELU uses a fitted
  polynomial where the reference calls erf, each within 5e-7 of the float64 truth).

Blocks are 64 KiB and every size goes to the threads (and every matrix product is split by rows), so each shape
below spans several row blocks, and with the 2-threads parameter, two threads; ``retain`` runs the backward twice
on one graph (the fast backward must not overwrite what it saved while the graph is kept).
"""
from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
from minigrad.ops import attention, cpu_kernels, fused, kernels, parallel  # noqa: F401

TOL = {"float64": 1e-12, "float32": 1e-5}


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(parallel, "BLOCK_BYTES", 1 << 16)
    monkeypatch.setattr(parallel, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(parallel, "SPLIT_MIN_MACS", 0)


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request):
    parallel.set_num_threads(request.param)
    yield request.param
    parallel.set_num_threads(None)


def blocks(n_rows: int, row_bytes: int) -> int:
    return -(-n_rows // parallel.block_rows(row_bytes))


def run(fn, arrays, g, dtype, retain=False, grad=True):
    """fn on fresh leaves (float arrays; others pass through as they are): [output, input grads]."""
    leaves = [mg.tensor(a, dtype=dtype, requires_grad=grad) if a.dtype.kind == "f" else a for a in arrays]
    out = fn(*leaves)
    if not grad:
        return [out.numpy()]
    gt = mg.tensor(g, dtype=dtype)
    out.backward(gt, retain_graph=retain)
    grads = [t.grad.numpy().copy() for t in leaves if isinstance(t, mg.Tensor)]
    if retain:  # a second backward through the same graph gives the same gradients
        for t in leaves:
            if isinstance(t, mg.Tensor):
                t.grad = None
        out.backward(gt)
        for a, t in zip(grads, [t for t in leaves if isinstance(t, mg.Tensor)]):
            np.testing.assert_array_equal(a, t.grad.numpy())
    return [out.numpy(), *grads]


def assert_fast_equals_reference(fn, arrays, g, dtype="float64", retain=False, grad=True):
    picked = []

    def spy(device, op):
        picked.append(kernels.kernels_for(device, op))
        return picked[-1]

    with pytest.MonkeyPatch.context() as mp:  # which version each Function picked
        mp.setattr(fused, "kernels_for", spy)
        fast = run(fn, arrays, g, dtype, retain, grad)
        fast_picked, picked[:] = list(picked), []
        with kernels.reference():
            ref = run(fn, arrays, g, dtype, retain, grad)
    assert fast_picked and all(p is cpu_kernels for p in fast_picked)  # each path really ran
    assert picked and all(p is None for p in picked)
    tol = TOL[dtype]
    for name, a, b in zip(["output"] + [f"grad {i}" for i in range(len(ref) - 1)], fast, ref):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        scale = float(np.abs(b).max()) if b.size else 0.0
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * scale, err_msg=name)


@pytest.fixture(params=["float64", "float32"])
def dtype(request):
    return request.param


# ------------------------------------------------------------------------------------------------------ Linear

@pytest.mark.parametrize("shape,bias", [((5, 67, 33), True), ((5, 67, 33), False), ((700, 45), True), ((1, 9), True)])
def test_linear(threads, dtype, shape, bias):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal(shape), rng.standard_normal((41, shape[-1])), rng.standard_normal(41)
    g = rng.standard_normal((*shape[:-1], 41))
    if bias:
        assert_fast_equals_reference(lambda x, w, b: fused.Linear.apply(x, w, b), [x, w, b], g, dtype)
    else:
        assert_fast_equals_reference(lambda x, w: fused.Linear.apply(x, w), [x, w], g, dtype)


def test_linear_with_a_frozen_weight(threads):
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((300, 20)), mg.tensor(rng.standard_normal((30, 20)))
    assert_fast_equals_reference(lambda x: fused.Linear.apply(x, w), [x], rng.standard_normal((300, 30)))


# ----------------------------------------------------------------------------------------------- cross-entropy

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("retain", [False, True])
def test_cross_entropy(threads, dtype, reduction, retain):
    rng = np.random.default_rng(2)
    n, c = 1003, 300
    assert blocks(n, c * 8) >= 10
    z = rng.standard_normal((n, c)) * 3
    t = rng.integers(0, c, n)
    t[::7] = -100
    g = rng.standard_normal(n) if reduction == "none" else np.array(1.7)
    assert_fast_equals_reference(lambda z: fused.CrossEntropy.apply(z, targets=t, reduction=reduction), [z], g, dtype,
                                 retain)


@pytest.mark.parametrize("n,c,ignore", [(1, 5, False), (37, 4000, False), (64, 11, True)])
def test_cross_entropy_odd_shapes_and_every_target_ignored(threads, n, c, ignore):
    rng = np.random.default_rng(3)
    z = rng.standard_normal((n, c)) * 5
    t = np.full(n, -100) if ignore else rng.integers(0, c, n)
    for reduction in ("mean", "sum", "none"):
        g = rng.standard_normal(n) if reduction == "none" else np.array(0.3)
        if ignore and reduction == "mean":  # loss nan on both paths, gradient 0
            fast = fused.CrossEntropy.apply(mg.tensor(z, requires_grad=True), targets=t)
            with kernels.reference():
                ref = fused.CrossEntropy.apply(mg.tensor(z, requires_grad=True), targets=t)
            assert np.isnan(fast.item()) and np.isnan(ref.item())
            continue
        assert_fast_equals_reference(lambda z: fused.CrossEntropy.apply(z, targets=t, reduction=reduction), [z], g)


def test_cross_entropy_without_grad(threads, dtype):
    rng = np.random.default_rng(4)
    z, t = rng.standard_normal((500, 333)), rng.integers(0, 333, 500)
    assert_fast_equals_reference(lambda z: fused.CrossEntropy.apply(z, targets=t), [z], None, dtype, grad=False)


# -------------------------------------------------------------------------------------------------- layer norm

@pytest.mark.parametrize("shape", [(9, 113, 130), (3000, 16), (1, 7), (4, 2, 1000)])
@pytest.mark.parametrize("retain", [False, True])
def test_layer_norm(threads, dtype, shape, retain):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape) * 2 + 1
    w, b = rng.standard_normal(shape[-1]), rng.standard_normal(shape[-1])
    g = rng.standard_normal(shape)
    assert_fast_equals_reference(lambda x, w, b: fused.LayerNorm.apply(x, w, b, eps=1e-5), [x, w, b], g, dtype,
                                 retain)


def test_layer_norm_spans_blocks_and_threads():
    assert blocks(9 * 113, 130 * 8) >= 10 and blocks(3000, 16 * 4) >= 2


def test_layer_norm_with_frozen_affine(threads):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((40, 50, 64))
    w, b = mg.tensor(rng.standard_normal(64)), mg.tensor(rng.standard_normal(64))
    assert_fast_equals_reference(lambda x: fused.LayerNorm.apply(x, w, b), [x], rng.standard_normal(x.shape))


# -------------------------------------------------------------------------------------------------------- GELU

@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("shape", [(7, 3001), (2, 5, 1000), (1,)])
@pytest.mark.parametrize("retain", [False, True])
def test_gelu(threads, dtype, approximate, shape, retain):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape) * 3
    x.reshape(-1)[:4] = [0.0, -9.0, 9.0, -30.0][:x.size]  # 0, far tails
    g = rng.standard_normal(shape)
    assert_fast_equals_reference(lambda x: fused.Gelu.apply(x, approximate=approximate), [x], g, dtype, retain)


def test_gelu_without_grad(threads, dtype):
    x = np.random.default_rng(8).standard_normal(20_000) * 4
    for approximate in ("none", "tanh"):
        assert_fast_equals_reference(lambda x: fused.Gelu.apply(x, approximate=approximate), [x], None, dtype,
                                     grad=False)
