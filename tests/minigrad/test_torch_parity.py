"""Each op's forward and backward against PyTorch on the same float64 inputs (skips without torch)."""
from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
from tests.minigrad.op_specs import all_cases, draw, minigrad_lib, torch_lib

torch = pytest.importorskip("torch")
MG, TORCH = minigrad_lib(), torch_lib()
CASES = [(n, i, c) for n, i, c in all_cases() if c.torch]


@pytest.mark.parametrize("name,i,case", CASES, ids=[f"{n}-{i}" for n, i, _ in CASES])
def test_matches_torch(name, i, case):
    rng = np.random.default_rng(0)
    arrays = [draw(s, case.domain, rng) for s in case.shapes]
    ours = [mg.tensor(a, dtype="float64", requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out, ref = case.fn(MG, *ours), case.fn(TORCH, *theirs)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = rng.standard_normal(ref.shape)
    out.backward(mg.tensor(g, dtype="float64"))
    ref.backward(torch.tensor(g))
    for k, (a, b) in enumerate(zip(ours, theirs)):
        expected = np.zeros(a.shape) if b.grad is None else b.grad.numpy()
        got = np.zeros(a.shape) if a.grad is None else a.grad.numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12, err_msg=f"{name}[{i}] input {k}")


# ---------------------------------------------------------------- edge cases against torch

def both(fn_mg, fn_torch, *arrays, grad_seed=0):
    """(outputs, input grads) of minigrad and torch on the same float64 inputs and upstream gradient."""
    ours = [mg.tensor(a, dtype="float64", requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    with np.errstate(all="ignore"):  # inf and nan are what these cases are about
        out, ref = fn_mg(*ours), fn_torch(*theirs)
        g = np.random.default_rng(grad_seed).standard_normal(tuple(ref.shape))
        out.backward(mg.tensor(g, dtype="float64"))
    ref.backward(torch.tensor(g))
    return (out.numpy(), ref.detach().numpy()), [(a.grad.numpy(), b.grad.numpy()) for a, b in zip(ours, theirs)]


def assert_both_equal(pairs, atol=1e-12):
    for a, b in pairs:
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=atol, equal_nan=True)


EDGE = {
    "logsumexp of a row of -inf": (lambda x: x.logsumexp(1), lambda x: x.logsumexp(1),
                                   [np.array([[-np.inf, -np.inf], [0.0, 1.0]])]),
    "sqrt at 0": (lambda x: x.sqrt(), lambda x: x.sqrt(), [np.array([0.0, 1.0])]),
    "abs and relu at 0": (lambda x: x.abs() + x.relu(), lambda x: x.abs() + x.relu(), [np.array([0.0, -1.0, 2.0])]),
    "sigmoid and tanh saturate": (lambda x: x.sigmoid() + x.tanh(), lambda x: x.sigmoid() + x.tanh(),
                                  [np.array([-800.0, 800.0, 0.0])]),
    "gelu tanh at large |x|": (lambda x: mg.nn.functional.gelu(x, approximate="tanh"),
                               lambda x: torch.nn.functional.gelu(x, approximate="tanh"),
                               [np.array([-30.0, 30.0, -1e3, 1e3])]),
    # x - mean cancels 4 digits: both libraries are only good to about 1e-16 * 1e4 here
    "layer_norm of large offset": (lambda x: mg.nn.functional.layer_norm(x, (4,)),
                                   lambda x: torch.nn.functional.layer_norm(x, (4,)),
                                   [1e4 + np.random.default_rng(0).standard_normal((2, 3, 4))], 1e-10),
    "max ties, both forms": (lambda x: x.max(1)[0] + x.amax(1), lambda x: x.max(1)[0] + x.amax(1),
                             [np.array([[1.0, 1.0, 0.0], [2.0, 3.0, 3.0]])]),
    "negative-step slice": (lambda x: x[::-1], lambda x: x.flip(0), [np.arange(4.0)]),
    "matmul of a vector with a batch": (lambda a, b: a @ b, lambda a, b: a @ b,
                                        [np.ones(3), np.random.default_rng(0).standard_normal((2, 3, 4))]),
}


@pytest.mark.parametrize("name", list(EDGE))
def test_edge_cases_match_torch(name):
    fn_mg, fn_torch, arrays, *atol = EDGE[name]
    outs, grads = both(fn_mg, fn_torch, *arrays)
    assert_both_equal([outs] + grads, *atol)


def test_cross_entropy_with_every_target_ignored_has_zero_gradient_like_torch():
    outs, grads = both(lambda x: mg.nn.functional.cross_entropy(x, mg.tensor([-100, -100])),
                       lambda x: torch.nn.functional.cross_entropy(x, torch.tensor([-100, -100])),
                       np.ones((2, 3)))
    assert np.isnan(outs[0]) and np.isnan(outs[1])
    assert_both_equal(grads)


def test_attention_row_with_every_key_masked_is_zero_like_torch():
    allowed = np.array([[False, False], [True, True]])
    q = np.random.default_rng(0).standard_normal((1, 2, 3))
    outs, grads = both(lambda q, k, v: mg.nn.functional.scaled_dot_product_attention(q, k, v,
                                                                                     attn_mask=mg.tensor(allowed)),
                       lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(q, k, v,
                                                                                        attn_mask=torch.tensor(allowed)),
                       q, q + 1.0, q - 1.0)
    assert_both_equal([outs] + grads)


@pytest.mark.filterwarnings("ignore:var.*degrees of freedom:UserWarning")
def test_var_of_one_element_is_nan_like_torch():
    outs, grads = both(lambda x: x.var(), lambda x: x.var(), np.array([1.0]))
    assert_both_equal([outs] + grads)


def test_pow_exponent_gradient_at_zero_base_is_zero_like_torch():
    outs, grads = both(lambda x, y: x ** y, lambda x, y: x ** y, np.array([0.0, 2.0]), np.array([2.0, 3.0]))
    assert_both_equal([outs] + grads)


def test_pow_base_gradient_at_zero_base_and_zero_exponent_is_zero_like_torch():
    # 0 ** 0: y x^(y-1) would be 0 * inf = nan; torch masks it to 0
    outs, grads = both(lambda x, y: x ** y, lambda x, y: x ** y, np.array([0.0, 0.0, 2.0]), np.array([0.0, 2.0, 0.0]))
    assert_both_equal([outs] + grads)


def test_causal_attention_with_fewer_queries_than_keys_aligns_at_the_top_left_like_torch():
    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((1, 2, 4)), rng.standard_normal((1, 5, 4)), rng.standard_normal((1, 5, 4))
    outs, grads = both(lambda q, k, v: mg.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True),
                       lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True),
                       q, k, v)
    assert_both_equal([outs] + grads)


def test_cached_causal_attention_aligns_the_last_query_with_the_last_key():
    # a key/value cache: the 2 queries are positions 3 and 4 of 5, so query i sees keys 0..3 + i
    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((1, 2, 4)), rng.standard_normal((1, 5, 4)), rng.standard_normal((1, 5, 4))
    bottom_right = torch.ones(2, 5, dtype=torch.bool).tril(diagonal=5 - 2)
    outs, grads = both(lambda q, k, v: mg.nn.functional.cached_causal_attention(q, k, v),
                       lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(q, k, v,
                                                                                        attn_mask=bottom_right),
                       q, k, v)
    assert_both_equal([outs] + grads)
