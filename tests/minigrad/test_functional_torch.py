"""minigrad.nn.functional against torch.nn.functional in float64: values and gradients of every input.

Losses (nll_loss, cross_entropy with class weights, ignore_index, label smoothing, probability targets, every
input layout), softmax/log_softmax (dtype=, 0-d, empty, the legacy implicit dim), scaled_dot_product_attention
(top-left causal mask, float masks with gradients, broadcast masks, scale, dropout_p, GQA) and the key/value
cache's cached_causal_attention.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import minigrad as mg
from minigrad.nn import functional as F
from minigrad.ops import attention as A
from minigrad.ops import fused

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def run_both(mg_fn, torch_fn, *arrays, grad=None, seed=0):
    """(minigrad output, torch output, minigrad grads, torch grads): arrays are float inputs that require grad
    (None in grad marks one that does not) or anything else, passed as it is (as tensors when numpy arrays)."""
    grad = grad or [a is not None and isinstance(a, np.ndarray) and a.dtype.kind == "f" for a in arrays]
    mgs = [mg.tensor(a, dtype=a.dtype, requires_grad=g) if isinstance(a, np.ndarray) else a
           for a, g in zip(arrays, grad)]
    ts = [torch.tensor(a, requires_grad=bool(g)) if isinstance(a, np.ndarray) else a for a, g in zip(arrays, grad)]
    out, ref = mg_fn(*mgs), torch_fn(*ts)
    cot = np.random.default_rng(seed).standard_normal(tuple(ref.shape))
    leaves = [(m, t) for m, t, g in zip(mgs, ts, grad) if g]
    if leaves:
        out.backward(mg.tensor(cot, dtype=out.dtype))
        tgrads = torch.autograd.grad(ref, [t for _, t in leaves], grad_outputs=torch.tensor(cot, dtype=ref.dtype),
                                     allow_unused=True)
    else:
        tgrads = []
    mgrads = [m.grad.numpy() if m.grad is not None else np.zeros(m.shape) for m, _ in leaves]
    tgrads = [t.numpy() if t is not None else np.zeros(m.shape) for t, (m, _) in zip(tgrads, leaves)]
    return out, ref, mgrads, tgrads


def assert_match(mg_fn, torch_fn, *arrays, grad=None, rtol=1e-10, atol=1e-12):
    out, ref, mgrads, tgrads = run_both(mg_fn, torch_fn, *arrays, grad=grad)
    assert tuple(out.shape) == tuple(ref.shape), (out.shape, ref.shape)
    assert str(out.dtype) == str(ref.dtype).removeprefix("torch.")
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=rtol, atol=atol)
    for i, (a, b) in enumerate(zip(mgrads, tgrads)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"gradient of input {i}")
    return out


RNG = np.random.default_rng(0)
LAYOUTS = {  # input shape -> target shape
    "(C,)": ((5,), ()),
    "(N,C)": ((6, 5), (6,)),
    "(N,C,d)": ((3, 5, 4), (3, 4)),
    "(N,C,d1,d2)": ((2, 5, 3, 2), (2, 3, 2)),
}


def _targets(shape, ignore=True, seed=1):
    t = np.random.default_rng(seed).integers(0, 5, shape)
    if ignore and t.ndim:
        t.reshape(-1)[::3] = -1  # every third position ignored
    return np.asarray(t, dtype=np.int64)


# ---------------------------------------------------------------------------------------------- nll_loss

@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_loss_matches_torch(layout, reduction, weighted):
    xs, ts = LAYOUTS[layout]
    x = RNG.standard_normal(xs)
    t = _targets(ts)
    w = np.array([0.5, 2.0, 1.0, 3.0, 0.25]) if weighted else None
    assert_match(lambda x, t, w: F.nll_loss(x, t, weight=w, ignore_index=-1, reduction=reduction),
                 lambda x, t, w: TF.nll_loss(x, t, weight=w, ignore_index=-1, reduction=reduction),
                 x, t, w, grad=[True, False, False])


def test_nll_loss_mean_divides_by_the_summed_target_weights():
    x = mg.tensor(np.log(np.full((3, 2), 0.5)))
    w = mg.tensor(np.array([1.0, 3.0]))
    # (1 + 3 + 3) * log 2 / (1 + 3 + 3): the weighted mean of log 2 is log 2
    assert F.nll_loss(x, mg.tensor([0, 1, 1]), weight=w).item() == pytest.approx(np.log(2))
    assert F.nll_loss(x, mg.tensor([0, 1, 1]), weight=w, reduction="sum").item() == pytest.approx(7 * np.log(2))


def test_nll_loss_with_every_target_ignored_is_nan_with_a_zero_gradient_like_torch():
    x = RNG.standard_normal((3, 4))
    t = np.full(3, -100)
    out, ref, mgrads, tgrads = run_both(lambda x, t: F.nll_loss(x, t), lambda x, t: TF.nll_loss(x, t), x, t,
                                        grad=[True, False])
    assert np.isnan(out.item()) and np.isnan(ref.item())
    np.testing.assert_array_equal(mgrads[0], tgrads[0])
    np.testing.assert_array_equal(mgrads[0], 0.0)


def test_nll_loss_errors_are_clean():
    x = mg.randn(3, 4, requires_grad=True)
    with pytest.raises(IndexError, match=r"nll_loss: target ids \[4\] out of range for 4 classes"):
        F.nll_loss(x, mg.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match=r"needs targets of shape \(3,\)"):
        F.nll_loss(x, mg.tensor([0, 1]))
    with pytest.raises(TypeError, match="integer class ids"):
        F.nll_loss(x, mg.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="weight of shape"):
        F.nll_loss(x, mg.tensor([0, 1, 2]), weight=mg.ones(3))
    with pytest.raises(RuntimeError, match="not differentiable with respect to argument 'weight'"):
        F.nll_loss(x, mg.tensor([0, 1, 2]), weight=mg.ones(4, requires_grad=True))
    with pytest.raises(ValueError, match="reduction"):
        F.nll_loss(x, mg.tensor([0, 1, 2]), reduction="avg")


def test_legacy_size_average_and_reduce_map_to_reduction_like_torch():
    x = RNG.standard_normal((4, 3))
    t = np.array([0, 2, 1, 1])
    for size_average, reduce in [(None, None), (False, None), (True, False), (None, False), (False, True)]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert_match(lambda x, t: F.cross_entropy(x, t, size_average=size_average, reduce=reduce),
                         lambda x, t: TF.cross_entropy(x, t, size_average=size_average, reduce=reduce),
                         x, t, grad=[True, False])


# ---------------------------------------------------------------------------------------------- cross_entropy

@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_cross_entropy_with_class_ids_matches_torch(layout, reduction, weighted, smoothing):
    xs, ts = LAYOUTS[layout]
    x = RNG.standard_normal(xs) * 2
    t = _targets(ts)
    w = np.array([0.5, 2.0, 1.0, 3.0, 0.25]) if weighted else None
    assert_match(lambda x, t, w: F.cross_entropy(x, t, weight=w, ignore_index=-1, reduction=reduction,
                                                 label_smoothing=smoothing),
                 lambda x, t, w: TF.cross_entropy(x, t, weight=w, ignore_index=-1, reduction=reduction,
                                                  label_smoothing=smoothing),
                 x, t, w, grad=[True, False, False])


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_with_class_probabilities_matches_torch(layout, reduction, weighted, smoothing):
    xs, _ = LAYOUTS[layout]
    x = RNG.standard_normal(xs)
    p = RNG.random(xs)
    p /= p.sum(axis=0 if len(xs) == 1 else 1, keepdims=True)
    w = np.array([0.5, 2.0, 1.0, 3.0, 0.25]) if weighted else None
    # the target and the weight get gradients too (torch differentiates both here)
    assert_match(lambda x, p, w: F.cross_entropy(x, p, weight=w, reduction=reduction, label_smoothing=smoothing),
                 lambda x, p, w: TF.cross_entropy(x, p, weight=w, reduction=reduction, label_smoothing=smoothing),
                 x, p, w, grad=[True, True, weighted])


def test_cross_entropy_label_smoothing_follows_torchs_formula():
    # loss = (1 - eps) * nll + eps / C * sum_c (-log p_c), averaged over the kept targets
    x = RNG.standard_normal((4, 3))
    t = np.array([0, 2, -100, 1])
    eps = 0.25
    logp = x - np.log(np.exp(x).sum(1, keepdims=True))
    keep = t != -100
    nll = -logp[np.arange(4), np.where(keep, t, 0)]
    want = ((1 - eps) * nll + eps / 3 * -logp.sum(1))[keep].mean()
    assert F.cross_entropy(mg.tensor(x), mg.tensor(t), label_smoothing=eps).item() == pytest.approx(want, rel=1e-12)


def test_cross_entropy_all_ignored_and_zero_weights_match_torch():
    x = RNG.standard_normal((3, 4))
    for t, w, eps in [(np.full(3, -100), None, 0.0), (np.full(3, -100), None, 0.2),
                      (np.array([0, 1, 2]), np.zeros(4), 0.0), (np.array([0, 1, -100]), np.array([0.0, 0, 1, 1]), 0.1)]:
        out, ref, mgrads, tgrads = run_both(
            lambda x, t, w: F.cross_entropy(x, t, weight=w, label_smoothing=eps),
            lambda x, t, w: TF.cross_entropy(x, t, weight=w, label_smoothing=eps), x, t, w, grad=[True, False, False])
        np.testing.assert_array_equal(np.isnan(out.numpy()), np.isnan(ref.detach().numpy()))
        np.testing.assert_allclose(mgrads[0], tgrads[0], rtol=1e-12, equal_nan=True)


def test_cross_entropy_empty_batch_is_nan_like_torch():
    x = np.zeros((0, 4))
    for target in (np.zeros(0, dtype=np.int64), np.zeros((0, 4))):
        for eps in (0.0, 0.1):
            got = F.cross_entropy(mg.tensor(x, requires_grad=True), mg.tensor(target), label_smoothing=eps)
            want = TF.cross_entropy(torch.tensor(x), torch.tensor(target), label_smoothing=eps)
            assert np.isnan(got.item()) and np.isnan(want.item())


def test_the_fused_fast_path_serves_only_2d_logits_with_plain_class_ids():
    x = mg.randn(4, 5, requires_grad=True)
    t = mg.tensor([0, 1, 2, 3])
    assert F.cross_entropy(x, t)._ctx.fn is fused.CrossEntropy
    assert F.cross_entropy(x, t, reduction="none")._ctx.fn is fused.CrossEntropy
    assert F.cross_entropy(x, t, weight=mg.ones(5))._ctx.fn is fused.NLLLoss
    assert F.cross_entropy(x, t, label_smoothing=0.1)._ctx.fn is fused.NLLLoss
    assert F.cross_entropy(x.reshape(2, 5, 2), mg.tensor([[0, 1], [2, 3]]))._ctx.fn is fused.NLLLoss


def test_cross_entropy_errors_are_clean():
    x = mg.randn(3, 4, requires_grad=True)
    with pytest.raises(IndexError, match=r"target ids \[4\] out of range for 4 classes"):
        F.cross_entropy(x, mg.tensor([0, 4, 1]), weight=mg.ones(4))
    with pytest.raises(ValueError, match="probability targets must have the input's shape"):
        F.cross_entropy(x, mg.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(x, mg.tensor([0, 1, 2]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="class dimension"):
        F.cross_entropy(mg.tensor(1.0), mg.tensor(0))


# ---------------------------------------------------------------------------------------------- softmax

@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape,dim", [((5,), 0), ((3, 4), 0), ((3, 4), -1), ((2, 3, 4), 1), ((), 0), ((), -1),
                                       ((5, 0, 0), -1), ((0, 3), 1), ((3, 0), 1)])
def test_softmax_shapes_match_torch(name, shape, dim):
    x = RNG.standard_normal(shape)
    assert_match(lambda x: getattr(F, name)(x, dim), lambda x: getattr(TF, name)(x, dim), x)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_dtype_casts_first_like_torch(name):
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    out = assert_match(lambda x: getattr(F, name)(x, -1, dtype=np.float64),
                       lambda x: getattr(TF, name)(x, -1, dtype=torch.float64), x, rtol=1e-6, atol=1e-7)
    assert out.dtype == np.float64
    x64 = mg.tensor(x, requires_grad=True)
    getattr(F, name)(x64, 0, dtype="float64").sum().backward()
    assert x64.grad.dtype == np.float32  # the gradient comes back through the cast
    with pytest.raises(TypeError, match="floating point"):
        getattr(F, name)(x64, 0, dtype="int64")


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape", [(), (4,), (2, 3), (2, 3, 4), (2, 3, 4, 5)])
def test_softmax_without_dim_takes_torchs_legacy_dim(name, shape):
    x = RNG.standard_normal(shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_match(lambda x: getattr(F, name)(x), lambda x: getattr(TF, name)(x), x)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_dim_out_of_range_is_an_index_error(name):
    for shape, dim in [((3, 4), 2), ((3, 4), -3), ((), 1)]:
        with pytest.raises(IndexError, match="dim out of range"):
            getattr(F, name)(mg.randn(*shape), dim)
    with pytest.raises(IndexError, match="dim out of range"):  # the Function checks too (Tensor methods use it)
        getattr(fused, "Softmax" if name == "softmax" else "LogSoftmax").apply(mg.randn(3), axis=1)


# ---------------------------------------------------------------------------------------------- attention

def _qkv(b, h, tq, tk, d=8, dv=None, hk=None):
    rng = np.random.default_rng(3)
    hk = hk or h
    return (rng.standard_normal((b, h, tq, d)), rng.standard_normal((b, hk, tk, d)),
            rng.standard_normal((b, hk, tk, dv or d)))


@pytest.mark.parametrize("tq,tk", [(3, 7), (7, 3), (5, 5), (1, 9), (70, 150), (150, 70)])
def test_causal_attention_aligns_at_the_top_left_like_torch(tq, tk):
    q, k, v = _qkv(2, 3, tq, tk)
    assert_match(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                 lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, is_causal=True), q, k, v)


@pytest.mark.parametrize("tq,tk", [(3, 7), (5, 5), (1, 9), (70, 150)])
def test_cached_causal_attention_aligns_at_the_bottom_right(tq, tk):
    q, k, v = _qkv(2, 3, tq, tk)
    allowed = torch.ones(tq, tk, dtype=torch.bool).tril(diagonal=tk - tq)
    assert_match(lambda q, k, v: F.cached_causal_attention(q, k, v),
                 lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, attn_mask=allowed), q, k, v)
    with pytest.raises(ValueError, match="queries must be the last"):
        F.cached_causal_attention(*(mg.tensor(a) for a in _qkv(1, 1, 4, 3)))


@pytest.mark.parametrize("mask_shape", [(4, 6), (2, 1, 4, 6), (1, 3, 4, 6), (3, 4, 6), (2, 3, 4, 6), (1, 6)])
def test_float_mask_gets_its_gradient_like_torch(mask_shape):
    q, k, v = _qkv(2, 3, 4, 6)
    m = np.random.default_rng(7).standard_normal(mask_shape)
    assert_match(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m),
                 lambda q, k, v, m: TF.scaled_dot_product_attention(q, k, v, attn_mask=m), q, k, v, m)


def test_float_mask_gradient_with_scale_and_minus_inf_entries_matches_torch():
    q, k, v = _qkv(2, 3, 4, 6)
    m = np.random.default_rng(8).standard_normal((4, 6))
    m[:, 0] = -np.inf  # a key nobody may see: 0 weight, 0 gradient
    assert_match(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=0.7),
                 lambda q, k, v, m: TF.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=0.7), q, k, v, m)


def test_a_float_mask_that_needs_no_gradient_stays_a_constant():
    q, k, v = (mg.tensor(a, requires_grad=True) for a in _qkv(1, 2, 3, 5))
    m = mg.tensor(np.zeros((3, 5)))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
    assert len(out._ctx.inputs) == 3
    m.requires_grad_()
    with mg.no_grad():
        assert F.scaled_dot_product_attention(q, k, v, attn_mask=m)._ctx is None
    assert len(F.scaled_dot_product_attention(q, k, v, attn_mask=m)._ctx.inputs) == 4


@pytest.mark.parametrize("mask_shape", [(4, 6), (2, 1, 4, 6), (3, 1, 6)])
def test_bool_masks_broadcast_like_torch(mask_shape):
    q, k, v = _qkv(2, 3, 4, 6)
    m = np.random.default_rng(9).random(mask_shape) > 0.4
    m[..., 0] = True
    assert_match(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m),
                 lambda q, k, v, m: TF.scaled_dot_product_attention(q, k, v, attn_mask=m), q, k, v, m)


def test_attention_scale_value_dim_and_3d_inputs_match_torch():
    q, k, v = _qkv(2, 3, 5, 4, d=8, dv=6)
    assert_match(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, scale=0.25, is_causal=True),
                 lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, scale=0.25, is_causal=True), q, k, v)
    assert_match(lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
                 lambda q, k, v: TF.scaled_dot_product_attention(q, k, v), q[0], k[0], v[0])


def test_grouped_query_attention_matches_torch():
    q, k, v = _qkv(2, 6, 5, 5, hk=2)
    assert_match(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True),
                 lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True), q, k, v)


def test_attention_dropout_p_one_drops_everything_like_torch():
    q, k, v = _qkv(1, 2, 3, 4)
    assert_match(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, dropout_p=1.0),
                 lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, dropout_p=1.0), q, k, v)


def test_attention_dropout_keeps_or_drops_whole_weights():
    q, k, v = (mg.tensor(a, requires_grad=True) for a in _qkv(2, 2, 5, 5))
    mg.manual_seed(3)
    dropped = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    mg.manual_seed(3)
    again = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    np.testing.assert_array_equal(dropped.numpy(), again.numpy())
    plain = F.scaled_dot_product_attention(q, k, v)
    assert not np.allclose(dropped.numpy(), plain.numpy())


def test_attention_argument_errors_are_clean():
    q, k, v = (mg.tensor(a) for a in _qkv(1, 2, 3, 3))
    with pytest.raises(ValueError, match="either attn_mask or is_causal"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=mg.ones(3, 3), is_causal=True)
    with pytest.raises(ValueError, match="dropout_p"):
        F.scaled_dot_product_attention(q, k, v, dropout_p=1.5)
    with pytest.raises(ValueError, match="incompatible shapes"):
        F.scaled_dot_product_attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match="enable_gqa"):
        F.scaled_dot_product_attention(*(mg.tensor(a) for a in _qkv(1, 3, 3, 3, hk=2)), enable_gqa=True)


def test_causal_tiles_follow_the_offset():
    from minigrad.ops import cpu_attention  # the CPU's tiled attention
    assert cpu_attention._tiles(130, 200, True) == [(0, 64, 64), (64, 128, 128), (128, 130, 130)]
    assert cpu_attention._tiles(130, 200, True, offset=70) == [(0, 64, 134), (64, 128, 198), (128, 130, 200)]
    assert cpu_attention._tiles(200, 130, True) == [(0, 64, 64), (64, 128, 128), (128, 192, 130), (192, 200, 130)]


# ---------------------------------------------------------------------------------------------- MultiheadAttention

@pytest.mark.parametrize("need_weights", [False, True])
def test_mha_is_causal_with_fewer_queries_than_keys_matches_torch(need_weights):
    mg.manual_seed(0)
    ours = mg.nn.MultiheadAttention(8, 2, batch_first=True).double()
    theirs = torch.nn.MultiheadAttention(8, 2, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            p.copy_(torch.tensor(dict(ours.named_parameters())[name].numpy()))
    rng = np.random.default_rng(1)
    query, memory = rng.standard_normal((2, 3, 8)), rng.standard_normal((2, 5, 8))
    causal = torch.ones(3, 5, dtype=torch.bool).triu(1)  # torch's MHA takes is_causal as a hint about this mask
    got, got_w = ours(mg.tensor(query), mg.tensor(memory), mg.tensor(memory), is_causal=True,
                      need_weights=need_weights)
    want, want_w = theirs(torch.tensor(query), torch.tensor(memory), torch.tensor(memory), attn_mask=causal,
                          is_causal=True, need_weights=need_weights)
    np.testing.assert_allclose(got.numpy(), want.detach().numpy(), rtol=1e-10, atol=1e-12)
    if need_weights:
        np.testing.assert_allclose(got_w.numpy(), want_w.detach().numpy(), rtol=1e-10, atol=1e-12)
