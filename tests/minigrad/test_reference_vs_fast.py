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
from minigrad.ops import attention, cpu_attention, cpu_kernels, fused, kernels, parallel

TOL = {"float64": 1e-12, "float32": 1e-5}


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(parallel, "BLOCK_BYTES", 1 << 16)
    monkeypatch.setattr(parallel, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(parallel, "SPLIT_MIN_MACS", 0)


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
        mp.setattr(attention, "kernels_for", spy)
        fast = run(fn, arrays, g, dtype, retain, grad)
        fast_picked, picked[:] = list(picked), []
        with kernels.reference():
            ref = run(fn, arrays, g, dtype, retain, grad)
    assert fast_picked and all(p in (cpu_kernels, cpu_attention) for p in fast_picked)  # each path really ran
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


# --------------------------------------------------------------------------------------------------- attention

def sdpa(**kw):
    return lambda q, k, v: attention.ScaledDotProductAttention.apply(q, k, v, **kw)


@pytest.mark.parametrize("tq,tk,mode", [(tq, tk, m) for tq, tk in [(150, 150), (64, 64), (3, 150), (130, 200), (200, 130)]
                                        for m in ("causal", "full", "cached") if not (m == "cached" and tq > tk)])
def test_attention(threads, dtype, tq, tk, mode):
    rng = np.random.default_rng(9)
    b, h, d = 5, 3, 16
    q, k, v = rng.standard_normal((b, h, tq, d)), rng.standard_normal((b, h, tk, d)), rng.standard_normal((b, h, tk, d))
    kw = {"causal": dict(is_causal=True), "full": {}, "cached": dict(is_causal=True, causal_offset=tk - tq)}[mode]
    assert_fast_equals_reference(sdpa(**kw), [q, k, v], rng.standard_normal((b, h, tq, d)), dtype)


def test_attention_retain_graph_and_other_value_width(threads):
    rng = np.random.default_rng(10)
    q, k, v = rng.standard_normal((4, 2, 90, 8)), rng.standard_normal((4, 2, 90, 8)), rng.standard_normal((4, 2, 90, 5))
    assert_fast_equals_reference(sdpa(is_causal=True, scale=0.3), [q, k, v], rng.standard_normal((4, 2, 90, 5)),
                                 retain=True)


@pytest.mark.parametrize("mask_kind", ["bool", "float", "bool rows fully masked"])
def test_attention_with_a_mask_and_broadcast_inputs(threads, mask_kind):
    rng = np.random.default_rng(11)
    q = rng.standard_normal((2, 3, 5, 4))
    k, v = rng.standard_normal((1, 3, 7, 4)), rng.standard_normal((1, 3, 7, 4))  # broadcast over the batch
    if mask_kind == "float":
        mask = rng.standard_normal((5, 7))
    else:
        mask = rng.random((5, 7)) > 0.3
        mask[:, 0] = mask_kind == "bool"  # else: row 1 has no key at all (P = 0, as torch)
        mask[1] = mask_kind == "bool" and mask[1]
    g = rng.standard_normal((2, 3, 5, 4))
    assert_fast_equals_reference(sdpa(attn_mask=mask), [q, k, v], g)


def test_attention_with_a_float_mask_that_needs_its_gradient(threads, dtype):
    rng = np.random.default_rng(12)
    q, k, v = (rng.standard_normal((3, 2, 40, 8)) for _ in range(3))
    mask = rng.standard_normal((3, 1, 40, 40))
    fn = lambda q, k, v, m: attention.ScaledDotProductAttention.apply(q, k, v, m)  # noqa: E731
    assert_fast_equals_reference(fn, [q, k, v, mask], rng.standard_normal((3, 2, 40, 8)), dtype)


@pytest.mark.parametrize("causal", [True, False])
def test_attention_with_dropout_draws_the_same_mask(threads, causal):
    rng = np.random.default_rng(13)
    q, k, v = (rng.standard_normal((3, 2, 70, 8)) for _ in range(3))
    g = rng.standard_normal((3, 2, 70, 8))

    def fn(q, k, v):
        mg.manual_seed(5)  # both paths draw their keep mask in one call of the device's generator
        return attention.ScaledDotProductAttention.apply(q, k, v, is_causal=causal, dropout_p=0.3)

    assert_fast_equals_reference(fn, [q, k, v], g)


@pytest.mark.parametrize("causal,dropout", [(True, 0.0), (False, 0.0), (True, 0.2)])
def test_packed_self_attention(threads, dtype, causal, dropout):
    rng = np.random.default_rng(14)
    b, t, h, d = 6, 130, 4, 8
    qkv, g = rng.standard_normal((b, t, 3 * h * d)), rng.standard_normal((b, t, h * d))

    def fn(x):
        mg.manual_seed(6)
        return attention.PackedSelfAttention.apply(x, n_heads=h, is_causal=causal, dropout_p=dropout)

    assert_fast_equals_reference(fn, [qkv], g, dtype)


def test_attention_without_grad(threads):
    rng = np.random.default_rng(15)
    q, k, v = (rng.standard_normal((2, 2, 100, 8)) for _ in range(3))
    assert_fast_equals_reference(sdpa(is_causal=True), [q, k, v], None, grad=False)


# ---------------------------------------------------------------------------------------------------- dispatch

class _Device:
    def __init__(self, type, kernels=None):
        self.type, self.kernels = type, kernels


def test_each_device_gets_its_fast_versions_and_reference_turns_them_off():
    cpu = mg.device("cpu")
    for op, module in sorted(kernels.CPU_OPS.items()):
        assert kernels.kernels_for(cpu, op) is module
        assert module is (cpu_attention if op == "attention" else cpu_kernels)
        assert hasattr(module, f"{op}_forward") and hasattr(module, f"{op}_backward")
    assert kernels.kernels_for(cpu, "softmax") is None  # no fast version: the reference everywhere
    with kernels.reference():
        assert kernels.kernels_for(cpu, "gelu") is None
        with kernels.reference():
            pass
        assert kernels.kernels_for(cpu, "gelu") is None  # nested: still off
    assert kernels.kernels_for(cpu, "gelu") is cpu_kernels
    gpu = _Device("cuda", kernels=object())
    assert isinstance(kernels.kernels_for(gpu, "gelu"), kernels.CudaOps)
    assert kernels.kernels_for(gpu, "layer_norm") is None
    assert kernels.kernels_for(_Device("cuda"), "gelu") is None  # MINIGRAD_CUDA_KERNELS=0


def test_the_cuda_kernels_path_runs_the_device_kernels_unchanged():
    from tests.strict_cupy import cupy_or_skip, make_device
    cupy_or_skip("the strict cupy stand-in")
    dev = make_device()
    x = np.random.default_rng(16).standard_normal((4, 300)).astype(np.float32) * 3
    g = np.random.default_rng(17).standard_normal((4, 300)).astype(np.float32)
    for approximate in ("none", "tanh"):
        t = mg.tensor(x, device=dev, requires_grad=True)
        y = fused.Gelu.apply(t, approximate=approximate)
        assert isinstance(y._ctx.fast, kernels.CudaOps)
        y.backward(mg.tensor(g, device=dev))
        xd, gd = mg.tensor(x, device=dev).data, mg.tensor(g, device=dev).data
        np.testing.assert_array_equal(y.numpy(), dev.kernels.gelu_forward(xd, approximate).get())
        np.testing.assert_array_equal(t.grad.numpy(), dev.kernels.gelu_backward(xd, gd, approximate).get())


def test_reference_math_stays_short():
    """Each fused op's reference forward and backward: at most 25 lines of code (the fast dispatch included)."""
    import ast
    import inspect
    import textwrap
    functions = [getattr(cls, name) for cls in (fused.Linear, fused.Embedding, fused.Softmax, fused.LogSoftmax,
                                                fused.CrossEntropy, fused.NLLLoss, fused.LayerNorm, fused.Gelu,
                                                fused.Dropout, attention.ScaledDotProductAttention,
                                                attention.PackedSelfAttention)
                 for name in ("forward", "backward")] + [attention.sdpa_forward, attention.sdpa_backward]
    for fn in functions:  # code lines: the signature and body, without the docstring, comments and blank lines
        source = textwrap.dedent(inspect.getsource(fn))
        node = ast.parse(source).body[0]
        doc = node.body[0] if isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant) \
            else None
        skip = set(range(doc.lineno, doc.end_lineno + 1)) if doc else set()
        lines = [ln for i, ln in enumerate(source.splitlines(), 1)
                 if i not in skip and ln.strip() and not ln.strip().startswith(("#", "@"))]
        assert len(lines) <= 25, (fn.__qualname__, len(lines))
