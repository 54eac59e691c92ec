"""Each fused op equals the same function composed from primitive ops, values and gradients."""
from __future__ import annotations

import math

import numpy as np
import pytest

import minigrad as mg
from minigrad.nn import functional as F


def leaves(*shapes, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    return [mg.tensor(rng.standard_normal(s), dtype=dtype, requires_grad=True) for s in shapes]


def assert_same(fused, composed, inputs_a, inputs_b, seed=1):
    out_a, out_b = fused(*inputs_a), composed(*inputs_b)
    np.testing.assert_allclose(out_a.numpy(), out_b.numpy(), rtol=1e-10, atol=1e-12)
    g = np.random.default_rng(seed).standard_normal(out_a.shape)
    out_a.backward(mg.tensor(g, dtype="float64"))
    out_b.backward(mg.tensor(g, dtype="float64"))
    assert out_a.grad_fn is not out_b.grad_fn
    for a, b in zip(inputs_a, inputs_b):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-9, atol=1e-11)


def twice(*shapes, seed=0):
    return leaves(*shapes, seed=seed), leaves(*shapes, seed=seed)


def test_softmax_equals_composed():
    a, b = twice((4, 7))
    assert_same(lambda x: F.softmax(x, -1),
                lambda x: (x - x.amax(-1, keepdim=True)).exp() / (x - x.amax(-1, keepdim=True)).exp().sum(-1, keepdim=True),
                a, b)


def test_log_softmax_equals_composed():
    a, b = twice((4, 7))
    assert_same(lambda x: F.log_softmax(x, -1), lambda x: x - x.logsumexp(-1, keepdim=True), a, b)


def test_cross_entropy_equals_composed_with_ignore_index():
    targets = np.array([3, -100, 0, 6, 6])
    a, b = twice((5, 7))
    valid = targets != -100

    def composed(x):
        logp = x - x.logsumexp(-1, keepdim=True)
        picked = logp[mg.tensor(np.arange(5)), mg.tensor(np.where(valid, targets, 0))]
        return -(picked * mg.tensor(valid.astype(np.float64), dtype="float64")).sum() / float(valid.sum())

    assert_same(lambda x: F.cross_entropy(x, mg.tensor(targets)), composed, a, b)


def test_layer_norm_equals_composed():
    a, b = twice((3, 5, 8), (8,), (8,))

    def composed(x, w, bias):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) * (x - mu)).mean(-1, keepdim=True)
        return (x - mu) / (var + 1e-5).sqrt() * w + bias

    assert_same(lambda x, w, bias: F.layer_norm(x, 8, w, bias), composed, a, b)


def test_gelu_tanh_equals_composed():
    a, b = twice((4, 9))
    c = math.sqrt(2 / math.pi)
    assert_same(lambda x: F.gelu(x, approximate="tanh"),
                lambda x: 0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh()), a, b)


def test_gelu_exact_matches_math_erf():
    xs = np.linspace(-6, 6, 101)
    out = F.gelu(mg.tensor(xs, dtype="float64")).numpy()
    expected = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in xs])
    np.testing.assert_allclose(out, expected, rtol=1e-13, atol=1e-15)


def test_gelu_exact_float32_fast_path_is_float32_accurate():
    # float32 uses a fitted erfc form instead of backend.erf: absolute errors of y and dy/dx against the float64
    # truth across the whole range (measured: 4.5e-7 and 2.4e-7 at most on [-12, 12]), with and without grad
    xs = np.concatenate([np.linspace(-12, 12, 300_001), [0.0, -0.0, 1e-30, -1e-30, 30.0, -30.0]]).astype(np.float32)
    x64 = xs.astype(np.float64)
    cdf = 0.5 * (1 + np.vectorize(math.erf)(x64 / math.sqrt(2)))
    t = mg.tensor(xs, requires_grad=True)
    y = F.gelu(t)
    y.backward(mg.ones(*xs.shape))
    assert y.dtype == "float32" and t.grad.dtype == "float32"
    assert np.abs(y.numpy() - x64 * cdf).max() < 5e-7
    assert np.abs(t.grad.numpy() - (cdf + x64 * np.exp(-x64 * x64 / 2) / math.sqrt(2 * math.pi))).max() < 3e-7
    assert np.abs(y.numpy() - x64 * cdf)[np.abs(xs) < 1].max() < 1e-7  # on this grid; 1.11e-7 at most on a denser one
    with mg.no_grad():
        np.testing.assert_array_equal(F.gelu(mg.tensor(xs)).numpy(), y.numpy())
    assert F.gelu(mg.tensor(np.array([np.inf, 0.0], np.float32))).numpy().tolist() == [np.inf, 0.0]


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gelu_without_grad_saves_no_derivative_and_gives_the_same_values(approximate, dtype):
    xs = np.random.default_rng(2).standard_normal(20_000) * 3
    t = mg.tensor(xs, dtype=dtype, requires_grad=True)
    y = F.gelu(t, approximate)
    assert y._ctx.d is not None
    with mg.no_grad():
        y0 = F.gelu(mg.tensor(xs, dtype=dtype), approximate)
    assert y0._ctx is None
    np.testing.assert_array_equal(y0.numpy(), y.numpy())


def test_gelu_phi_coefficients_meet_their_stated_float64_error_bound():
    # the fitted form in float64 arithmetic: |Phi(-a) - erfc(a / sqrt 2) / 2| < 8.5e-9 for every a >= 0
    from minigrad.ops.cpu_kernels import _PHI_C, _PHI_P
    a = np.linspace(0.0, 15.0, 150_001)
    t = 1.0 / (1.0 + _PHI_P * a)
    poly = np.polyval(np.array(_PHI_C[::-1]), t)
    approx = np.exp(-a * a / 2) * t * poly
    exact = np.array([math.erfc(v / math.sqrt(2)) / 2 for v in a])
    assert np.abs(approx - exact).max() < 8.5e-9


def test_backend_erf_accuracy():
    from minigrad.backend import erf
    xs = np.concatenate([np.linspace(-7, 7, 20001), [0.0, 0.5, -0.5, 4.0, -4.0, 1e-8]])
    ref = np.array([math.erf(v) for v in xs])
    assert np.abs(erf(xs) - ref).max() < 1e-12
    assert np.abs(erf(xs.astype(np.float32)).astype(np.float64) - ref).max() < 1e-6


def test_embedding_equals_indexing_and_accumulates_repeats():
    ids = mg.tensor(np.array([[2, 2, 0], [4, 2, 1]]))
    a, b = twice((6, 3))
    assert_same(lambda w: F.embedding(ids, w), lambda w: w[ids], a, b)
    w = leaves((6, 3))[0]
    F.embedding(ids, w).sum().backward()
    assert w.grad.numpy()[2].tolist() == [3.0, 3.0, 3.0] and w.grad.numpy()[5].tolist() == [0.0] * 3


def test_attention_equals_composed_causal():
    a, b = twice((2, 3, 6, 4), (2, 3, 6, 4), (2, 3, 6, 4))
    mask = np.triu(np.ones((6, 6), dtype=bool), k=1)

    def composed(q, k, v):
        s = (q @ k.transpose(-2, -1)) * (1 / math.sqrt(4))
        s = mg.where(mg.tensor(mask), mg.tensor(-np.inf, dtype="float64"), s)
        return F.softmax(s, -1) @ v

    assert_same(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), composed, a, b)


def test_cached_causal_attention_aligns_at_the_end_for_cached_queries():
    q, k, v = leaves((1, 1, 2, 4), (1, 1, 5, 4), (1, 1, 5, 4))
    full_q = mg.tensor(np.concatenate([np.zeros((1, 1, 3, 4)), q.numpy()], axis=2), dtype="float64")
    last = F.scaled_dot_product_attention(full_q, k, v, is_causal=True).numpy()[:, :, 3:]
    np.testing.assert_allclose(F.cached_causal_attention(q, k, v).numpy(), last, rtol=1e-12)
    # is_causal itself aligns at the top left (as torch): query i sees keys 0..i
    first = F.scaled_dot_product_attention(q, k[:, :, :2], v[:, :, :2], is_causal=True)
    np.testing.assert_allclose(F.scaled_dot_product_attention(q, k, v, is_causal=True).numpy(), first.numpy(),
                               rtol=1e-12)


def test_dropout_is_reproducible_scaled_and_off_in_eval():
    x = mg.ones(1000, dtype="float64")
    mg.manual_seed(0)
    a = F.dropout(x, 0.25).numpy()
    mg.manual_seed(0)
    b = F.dropout(x, 0.25).numpy()
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a).tolist()) == {0.0, 1 / 0.75}
    assert 0.18 < (a == 0).mean() < 0.32
    assert F.dropout(x, 0.25, training=False) is x


def test_cross_entropy_rejects_out_of_range_targets():
    x = mg.randn(3, 4)
    with pytest.raises(IndexError, match=r"target ids \[4\] out of range for 4 classes"):
        F.cross_entropy(x, mg.tensor(np.array([0, 4, 1])))


def test_cross_entropy_float32_on_large_logits_is_stable():
    x = mg.tensor(np.array([[1000.0, 0.0, -1000.0]]), dtype="float32", requires_grad=True)
    loss = F.cross_entropy(x, mg.tensor(np.array([0])))
    loss.backward()
    assert loss.item() == 0.0 and np.isfinite(x.grad.numpy()).all()


def test_embedding_rejects_out_of_range_ids():
    w = mg.randn(5, 2)
    with pytest.raises(IndexError, match=r"\[0, 5\)"):
        F.embedding(mg.tensor(np.array([0, 5])), w)


def test_packed_self_attention_equals_split_heads_and_sdpa():
    a, b = twice((2, 5, 12))

    def composed(qkv):
        q, k, v = qkv.split(4, dim=-1)
        heads = [t.reshape(2, 5, 2, 2).transpose(1, 2) for t in (q, k, v)]
        y = F.scaled_dot_product_attention(*heads, is_causal=True)
        return y.transpose(1, 2).reshape(2, 5, 4)

    assert_same(lambda qkv: F.packed_self_attention(qkv, 2), composed, a, b)


def test_linear_equals_matmul_plus_bias():
    a, b = twice((2, 3, 4), (5, 4), (5,))
    assert_same(lambda x, w, bias: F.linear(x, w, bias), lambda x, w, bias: x @ w.T + bias, a, b)


def _composed_cross_entropy(targets, ignore_index, reduction):
    valid = targets != ignore_index

    def composed(x):
        logp = x - x.logsumexp(-1, keepdim=True)
        picked = logp[mg.tensor(np.arange(len(targets))), mg.tensor(np.where(valid, targets, 0))]
        losses = -(picked * mg.tensor(valid.astype(np.float64), dtype="float64"))
        return losses if reduction == "none" else losses.sum()

    return composed


@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_cross_entropy_other_reductions_equal_composed(reduction):
    targets = np.array([3, 5, 0, -1, 6])
    a, b = twice((5, 7))
    assert_same(lambda x: F.cross_entropy(x, mg.tensor(targets), ignore_index=-1, reduction=reduction),
                _composed_cross_entropy(targets, -1, reduction), a, b)


def test_layer_norm_without_affine_equals_composed():
    a, b = twice((4, 6))

    def composed(x):
        mu = x.mean(-1, keepdim=True)
        return (x - mu) / (x.var(-1, keepdim=True, correction=0) + 1e-5).sqrt()

    assert_same(lambda x: F.layer_norm(x, (6,)), composed, a, b)


def test_dropout_equals_composed_mask_under_the_same_seed():
    a, b = twice((6, 5))

    def fused(x):
        mg.manual_seed(3)
        return F.dropout(x, 0.4)

    def composed(x):
        mg.manual_seed(3)
        keep = mg.rand(*x.shape, dtype=x.dtype) >= 0.4
        return x * mg.tensor(keep.numpy(), dtype=x.dtype) * (1 / 0.6)

    assert_same(fused, composed, a, b)


def test_attention_with_bool_mask_and_dropout_equals_composed():
    a, b = twice((2, 2, 5, 3), (2, 2, 5, 3), (2, 2, 5, 3))
    allowed = np.random.default_rng(4).random((5, 5)) < 0.7
    allowed[:, 0] = True  # every query sees at least one key

    def fused(q, k, v):
        mg.manual_seed(5)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mg.tensor(allowed), dropout_p=0.3)

    def composed(q, k, v):
        s = (q @ k.transpose(-2, -1)) * (1 / math.sqrt(3))
        p = F.softmax(mg.where(mg.tensor(allowed), s, -math.inf), -1)
        mg.manual_seed(5)
        keep = mg.rand(*p.shape, dtype=p.dtype) >= 0.3
        return (p * mg.tensor(keep.numpy(), dtype=p.dtype) * (1 / 0.7)) @ v

    assert_same(fused, composed, a, b)


def test_gelu_exact_gradient_matches_its_formula():
    x = leaves((50,))[0]
    F.gelu(x).backward(mg.ones(50, dtype="float64"))
    v = x.numpy()
    cdf = np.array([0.5 * (1 + math.erf(t / math.sqrt(2))) for t in v])
    pdf = np.exp(-v * v / 2) / math.sqrt(2 * math.pi)
    np.testing.assert_allclose(x.grad.numpy(), cdf + v * pdf, rtol=1e-12, atol=1e-14)


def test_backend_erf_propagates_nan_like_math_erf():
    from minigrad.backend import erf
    np.ones(4096)  # leave finite numbers in freed memory for np.empty to hand back
    xs = np.tile([0.1, np.nan, 2.0, np.nan, 7.0, -np.nan], 500)
    out = erf(xs)
    assert np.isnan(out[np.isnan(xs)]).all() and not np.isnan(out[~np.isnan(xs)]).any()
