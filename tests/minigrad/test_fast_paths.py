"""The CPU fast paths (row blocks on several threads, causal attention tiles) equal the plain math.

Shapes are chosen so that the arrays span several blocks with a ragged last one, and are big enough
for the blocks to be handed to more than one thread (ops/parallel.py); every result is compared with
a straightforward float64 NumPy reference and with the single-threaded run of the same op.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import minigrad as mg
from minigrad.nn import functional as F
from minigrad.ops import cpu_attention, parallel


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """256 KiB blocks, and threads for any size: the shapes below were sized for those blocks (the default, 1 MiB,
    would leave some in one block), and under the default 4 MiB threshold they would all stay on one thread."""
    monkeypatch.setattr(parallel, "BLOCK_BYTES", 1 << 18)
    monkeypatch.setattr(parallel, "PARALLEL_MIN_BYTES", 0)


def run(fn, arrays, g, dtype="float64", retain=False):
    """(output, input grads) of fn on fresh leaves; with retain, backward runs twice on the same graph."""
    leaves = [mg.tensor(a, dtype=dtype, requires_grad=True) for a in arrays]
    out = fn(*leaves)
    gt = mg.tensor(g, dtype=dtype)
    out.backward(gt, retain_graph=retain)
    if retain:
        first = [t.grad.numpy().copy() for t in leaves]
        for t in leaves:
            t.grad = None
        out.backward(gt)
        for a, t in zip(first, leaves):  # the saved buffers were not overwritten by the first backward
            np.testing.assert_array_equal(a, t.grad.numpy())
    return out.numpy(), [t.grad.numpy() for t in leaves]


def test_blocks_cover_every_row_once_and_spread_over_threads(threads):
    seen = np.zeros(1000, dtype=int)

    def fn(a, b):
        seen[a:b] += 1

    parallel.for_row_blocks(mg.device("cpu"), 1000, 4096, fn)  # 64 rows per block, 16 blocks
    assert seen.tolist() == [1] * 1000


def test_a_failing_block_raises_in_the_caller():
    parallel.set_num_threads(2)
    try:
        def fn(a, b):
            if a >= 500:
                raise ValueError("block failed")
        with pytest.raises(ValueError, match="block failed"):
            parallel.for_row_blocks(mg.device("cpu"), 1000, 4096, fn)
    finally:
        parallel.set_num_threads(None)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("retain", [False, True])
def test_cross_entropy_blocks_equal_the_plain_formula(threads, reduction, retain):
    rng = np.random.default_rng(0)
    n, c = 1003, 300  # 109 rows per block, 2.4 MB: 10 blocks, on two threads with the 2-threads param
    z = rng.standard_normal((n, c)) * 3
    t = rng.integers(0, c, n)
    t[::7] = -100
    g = rng.standard_normal(n) if reduction == "none" else np.array(1.7)
    out, (dz,) = run(lambda x: F.cross_entropy(x, mg.tensor(t), reduction=reduction), [z], g, retain=retain)
    valid = t != -100
    lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
    loss = (lse - z[np.arange(n), np.where(valid, t, 0)]) * valid
    ref = {"mean": loss.sum() / valid.sum(), "sum": loss.sum(), "none": loss}[reduction]
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    w = {"mean": g / valid.sum() * valid, "sum": g * valid, "none": g * valid}[reduction]
    probs = np.exp(z - lse[:, None])
    onehot = np.zeros_like(z)
    onehot[np.arange(n), np.where(valid, t, 0)] = 1.0
    np.testing.assert_allclose(dz, (probs - onehot) * w[:, None], rtol=1e-10, atol=1e-14)


def test_cross_entropy_float32_matches_float64_and_needs_no_buffer_under_no_grad(threads):
    rng = np.random.default_rng(1)
    z = rng.standard_normal((2000, 700)) * 4
    t = rng.integers(0, 700, 2000)
    out32, (d32,) = run(lambda x: F.cross_entropy(x, mg.tensor(t)), [z], np.array(1.0), dtype="float32")
    out64, (d64,) = run(lambda x: F.cross_entropy(x, mg.tensor(t)), [z], np.array(1.0))
    np.testing.assert_allclose(out32, out64, rtol=1e-5)
    np.testing.assert_allclose(d32, d64, atol=1e-8)
    from minigrad.ops import buffers
    calls = []
    real_empty = buffers.empty
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(buffers, "empty", lambda *a: calls.append(a) or real_empty(*a))
        with mg.no_grad():
            np.testing.assert_allclose(F.cross_entropy(mg.tensor(z, requires_grad=True), mg.tensor(t)).item(), out64,
                                       rtol=1e-12)
        assert calls == []  # no (N, C) buffer without grad
        F.cross_entropy(mg.tensor(z, requires_grad=True), mg.tensor(t))
        assert len(calls) == 1  # ... and one with it (the spy sees the allocation)


@pytest.mark.parametrize("retain", [False, True])
def test_layer_norm_blocks_equal_the_plain_formula(threads, retain):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((9, 113, 130)) * 2 + 1
    w, b = rng.standard_normal(130), rng.standard_normal(130)
    g = rng.standard_normal(x.shape)
    out, (dx, dw, db) = run(lambda x, w, b: F.layer_norm(x, 130, w, b), [x, w, b], g, retain=retain)
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    xhat = (x - mean) / np.sqrt(var + 1e-5)
    np.testing.assert_allclose(out, xhat * w + b, rtol=1e-10, atol=1e-12)
    gh = g * w
    ref_dx = (gh - gh.mean(-1, keepdims=True) - xhat * (gh * xhat).mean(-1, keepdims=True)) / np.sqrt(var + 1e-5)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(dw, (g * xhat).sum((0, 1)), rtol=1e-10)
    np.testing.assert_allclose(db, g.sum((0, 1)), rtol=1e-10)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("retain", [False, True])
def test_gelu_blocks_equal_the_plain_formula(threads, approximate, retain):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 50_001)) * 3  # 1.2 MB in float64: several blocks, a ragged last one
    g = rng.standard_normal(x.shape)
    out, (dx,) = run(lambda x: F.gelu(x, approximate), [x], g, retain=retain)
    erf = np.vectorize(math.erf)
    if approximate == "tanh":
        u = math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)
        t = np.tanh(u)
        ref = 0.5 * x * (1 + t)
        dref = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * x * x)
    else:
        cdf = 0.5 * (1 + erf(x / math.sqrt(2)))
        ref = x * cdf
        dref = cdf + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, g * dref, rtol=1e-11, atol=1e-13)


def plain_attention(q, k, v, causal, mask=None, cached=False):
    """softmax(q k^T / sqrt(d) + mask) v in float64 NumPy, causal aligned at the top left (as torch), or at the
    end (cached: a key/value cache's queries are the last positions); and its vjp."""
    s = q @ k.swapaxes(-1, -2) / math.sqrt(q.shape[-1])
    tq, tk = s.shape[-2:]
    allowed = np.ones((tq, tk), bool)
    if causal:
        allowed = np.arange(tk)[None, :] <= np.arange(tq)[:, None] + (tk - tq if cached else 0)
    if mask is not None:
        allowed = allowed & mask
    s = np.where(allowed, s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return p, p @ v


@pytest.mark.parametrize("tq,tk,causal", [(tq, tk, c) for tq, tk in [(150, 150), (64, 64), (3, 150), (130, 200), (200, 130)]
                                          for c in (True, False, "cached")
                                          if not (c == "cached" and tq > tk)])  # a cache holds all query positions
def test_attention_tiles_and_blocks_equal_the_plain_formula(threads, tq, tk, causal):
    rng = np.random.default_rng(4)
    b, h, d = 5, 3, 16
    q, k, v = rng.standard_normal((b, h, tq, d)), rng.standard_normal((b, h, tk, d)), rng.standard_normal((b, h, tk, d))
    g = rng.standard_normal((b, h, tq, d))
    if causal == "cached":
        fn = F.cached_causal_attention
    else:
        fn = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # noqa: E731
    out, (dq, dk, dv) = run(fn, [q, k, v], g)
    p, ref = plain_attention(q, k, v, bool(causal), cached=causal == "cached")
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)
    # dv = P^T g, dS = P (g v^T - rowsum(P g v^T)), dq = dS k / sqrt(d), dk = dS^T q / sqrt(d)
    dp = g @ v.swapaxes(-1, -2)
    ds = p * (dp - (p * dp).sum(-1, keepdims=True)) / math.sqrt(d)
    np.testing.assert_allclose(dv, p.swapaxes(-1, -2) @ g, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(dq, ds @ k, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(dk, ds.swapaxes(-1, -2) @ q, rtol=1e-9, atol=1e-11)


def test_causal_tiles_skip_only_keys_after_the_diagonal():
    assert cpu_attention._tiles(150, 150, True) == [(0, 64, 64), (64, 128, 128), (128, 150, 150)]
    assert cpu_attention._tiles(1, 40, True, offset=39) == [(0, 1, 40)]  # a cached decoding step sees every key
    assert cpu_attention._tiles(1, 40, True) == [(0, 1, 1)]  # top left (torch's is_causal): query 0 sees key 0
    assert cpu_attention._tiles(130, 200, True) == [(0, 64, 64), (64, 128, 128), (128, 130, 130)]
    assert cpu_attention._tiles(130, 200, True, offset=70) == [(0, 64, 134), (64, 128, 198), (128, 130, 200)]
    assert cpu_attention._tiles(150, 150, False) == [(0, 150, 150)]


def test_packed_attention_equals_separate_heads_with_dropout_off(threads):
    rng = np.random.default_rng(5)
    b, t, h, d = 6, 130, 4, 8
    qkv = rng.standard_normal((b, t, 3 * h * d))
    g = rng.standard_normal((b, t, h * d))
    out, (dqkv,) = run(lambda x: F.packed_self_attention(x, h), [qkv], g)

    def separate(x):
        q, k, v = (part.reshape(b, t, h, d).transpose(1, 2) for part in x.split(h * d, dim=-1))
        return F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, h * d)

    out2, (dqkv2,) = run(separate, [qkv], g)
    np.testing.assert_allclose(out, out2, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dqkv, dqkv2, rtol=1e-11, atol=1e-12)


def test_attention_with_a_mask_and_broadcast_heads_equals_the_plain_formula():
    rng = np.random.default_rng(6)
    q = rng.standard_normal((2, 3, 5, 4))
    k, v = rng.standard_normal((1, 3, 7, 4)), rng.standard_normal((1, 3, 7, 4))  # broadcast over the batch
    mask = rng.random((5, 7)) > 0.3
    mask[:, 0] = True
    g = rng.standard_normal((2, 3, 5, 4))
    out, (dq, dk, dv) = run(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mg.tensor(mask)),
                            [q, k, v], g)
    p, ref = plain_attention(q, k, v, False, mask)
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dv, (p.swapaxes(-1, -2) @ g).sum(0, keepdims=True), rtol=1e-9, atol=1e-11)


def test_threaded_and_single_threaded_runs_give_identical_bits():
    rng = np.random.default_rng(7)
    z = rng.standard_normal((3000, 500)).astype(np.float32)
    t = rng.integers(0, 500, 3000)
    x = rng.standard_normal((8, 256, 128)).astype(np.float32)
    results = []
    for n in (1, 2):
        parallel.set_num_threads(n)
        try:
            ce = run(lambda a: F.cross_entropy(a, mg.tensor(t)), [z], np.array(1.0), dtype="float32")
            ln = run(lambda a: F.layer_norm(a, 128), [x], np.ones(x.shape), dtype="float32")
            ge = run(lambda a: F.gelu(a), [x], np.ones(x.shape), dtype="float32")
        finally:
            parallel.set_num_threads(None)
        results.append([ce[0], *ce[1], ln[0], *ln[1], ge[0], *ge[1]])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_big_buffers_are_reused_only_when_nothing_else_holds_them():
    from minigrad.ops import buffers
    cpu, shape = mg.device("cpu"), (1024, 8193)  # 33.6 MB of float32: above the recycling threshold
    buffers.clear()
    try:
        a = buffers.empty(cpu, shape, np.float32)
        b = buffers.empty(cpu, shape, np.float32)
        assert a is not b
        id_a, view = id(a), a[:3]
        del a
        c = buffers.empty(cpu, shape, np.float32)  # a is still seen through the view, b is held: a new one
        assert c is not b and not np.shares_memory(c, view)
        del view
        assert id(buffers.empty(cpu, shape, np.float32)) == id_a  # now nothing holds a: it comes back
        assert buffers.empty(cpu, shape, np.float64).dtype == np.float64  # another dtype, another pool
    finally:
        buffers.clear()


def test_logits_of_consecutive_steps_do_not_share_memory_while_held():
    from tinygpt import TinyGPT, preset
    mg.manual_seed(0)
    model = TinyGPT(preset("tutorial", n_layers=1, block_size=8))  # (1088, 8000) logits: 34.8 MB, over MIN_BYTES
    ids = np.random.default_rng(0).integers(0, 8000, (136, 9))
    first, loss = model(ids[:, :-1], ids[:, 1:])
    loss.backward()
    kept = first.numpy().copy()
    second, loss2 = model(ids[:, 1:], ids[:, :-1])
    loss2.backward()
    np.testing.assert_array_equal(first.numpy(), kept)  # the held logits were not overwritten
    assert not np.shares_memory(first.numpy(), second.numpy())


@pytest.mark.parametrize("transposed", [False, True])
def test_row_split_matmul_equals_one_call(threads, transposed):
    rng = np.random.default_rng(8)
    a = rng.standard_normal((520, 1031)) if not transposed else rng.standard_normal((1031, 520)).T
    b = rng.standard_normal((1031, 130))
    out = np.empty((520, 130))
    before = [lib.get_num_threads() for lib in parallel._blas_controllers()]
    parallel.matmul(mg.device("cpu"), a, b, out)  # 70M multiply-adds: split when there are 2 threads
    np.testing.assert_allclose(out, a @ b, rtol=1e-12, atol=1e-12)
    assert [lib.get_num_threads() for lib in parallel._blas_controllers()] == before  # BLAS threads restored


def test_attention_with_dropout_equals_the_plain_formula_with_the_same_mask():
    from minigrad import backend
    rng = np.random.default_rng(9)
    b, h, t, d = 3, 2, 70, 8
    q, k, v = (rng.standard_normal((b, h, t, d)) for _ in range(3))
    g = rng.standard_normal((b, h, t, d))
    mg.manual_seed(5)
    out, (dq, dk, dv) = run(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=0.3),
                            [q, k, v], g)
    mg.manual_seed(5)  # the op draws its keep mask in one call of the device's generator
    keep = backend.rand(mg.device("cpu"), (b, h, t, t), np.float64) >= 0.3
    p, _ = plain_attention(q, k, v, True)
    used = p * keep / 0.7
    np.testing.assert_allclose(out, used @ v, rtol=1e-10, atol=1e-12)
    dp = (g @ v.swapaxes(-1, -2)) * keep / 0.7
    ds = p * (dp - (p * dp).sum(-1, keepdims=True)) / math.sqrt(d)
    np.testing.assert_allclose(dv, used.swapaxes(-1, -2) @ g, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(dq, ds @ k, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(dk, ds.swapaxes(-1, -2) @ q, rtol=1e-9, atol=1e-11)


def test_default_block_size_gives_the_same_bits_as_small_blocks(monkeypatch):
    rng = np.random.default_rng(11)
    z = rng.standard_normal((700, 3000)).astype(np.float32)
    t = rng.integers(0, 3000, 700)
    x = rng.standard_normal((16, 256, 128)).astype(np.float32)
    results = []
    for block_bytes in (1 << 18, 1 << 20):
        monkeypatch.setattr(parallel, "BLOCK_BYTES", block_bytes)
        ce = run(lambda a: F.cross_entropy(a, mg.tensor(t)), [z], np.array(1.0), dtype="float32")
        ln = run(lambda a: F.layer_norm(a, 128), [x], np.ones(x.shape), dtype="float32")
        ge = run(lambda a: F.gelu(a), [x], np.ones(x.shape), dtype="float32")
        results.append([ce[0], *ce[1], ln[0], *ln[1], ge[0], *ge[1]])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
