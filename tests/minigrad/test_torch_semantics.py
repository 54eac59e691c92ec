"""PyTorch's semantics where minigrad used to differ: argument conventions, 0-d and empty tensors, dtype
promotion, tensor bounds, masks, clean refusals. Each case runs the same call in minigrad and in torch and
compares values, dtypes and gradients in float64 (skipped without torch)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import minigrad as mg

torch = pytest.importorskip("torch")

TORCH_DTYPES = {np.dtype("float64"): torch.float64, np.dtype("float32"): torch.float32,
                np.dtype("int64"): torch.int64, np.dtype("int32"): torch.int32, np.dtype("bool"): torch.bool,
                np.dtype("uint8"): torch.uint8, np.dtype("int16"): torch.int16}


def pair(a, requires_grad: bool = None):
    """The same array as a minigrad and a torch tensor (float arrays require grad unless told otherwise)."""
    a = np.asarray(a)
    rg = a.dtype.kind == "f" if requires_grad is None else requires_grad
    return mg.tensor(a, dtype=a.dtype, requires_grad=rg), torch.tensor(a, requires_grad=rg)


def check(fn_mg, fn_torch, *arrays, grad_seed=0, atol=1e-12):
    """Outputs (values, dtypes, shapes) and input gradients of fn_mg and fn_torch on the same inputs."""
    ours, theirs = zip(*[pair(a) for a in arrays]) if arrays else ((), ())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out, ref = fn_mg(*ours), fn_torch(*theirs)
    assert TORCH_DTYPES[out.dtype] == ref.dtype, (out.dtype, ref.dtype)
    assert out.shape == tuple(ref.shape), (out.shape, tuple(ref.shape))
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-10, atol=atol, equal_nan=True)
    if ref.requires_grad:
        assert out.requires_grad
        g = np.random.default_rng(grad_seed).standard_normal(tuple(ref.shape))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out.backward(mg.tensor(g, dtype=out.dtype))
            ref.backward(torch.tensor(g, dtype=ref.dtype))
    for k, (a, b) in enumerate(zip(ours, theirs)):
        if not b.requires_grad:
            continue
        expected = np.zeros(tuple(b.shape)) if b.grad is None else b.grad.numpy()
        got = np.zeros(a.shape) if a.grad is None else a.grad.numpy()
        assert a.grad is None or a.grad.dtype == a.dtype, f"input {k}: gradient dtype {a.grad.dtype} for {a.dtype}"
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=atol, equal_nan=True, err_msg=f"input {k}")
    return out, ref


X = np.random.default_rng(0).standard_normal((4, 5))
X3 = np.random.default_rng(1).standard_normal((3, 4, 5))
S0 = np.array(1.5)


# ---------------------------------------------------------------- 1. var / std arguments

@pytest.mark.parametrize("name", ["var", "std"])
@pytest.mark.parametrize("call", [
    lambda f, x: f(x)(True), lambda f, x: f(x)(False), lambda f, x: f(x)(), lambda f, x: f(x)(1),
    lambda f, x: f(x)(1, True), lambda f, x: f(x)(1, False, True), lambda f, x: f(x)(0, unbiased=False),
    lambda f, x: f(x)(unbiased=False), lambda f, x: f(x)(dim=None, correction=None),
    lambda f, x: f(x)(dim=(0, 1), correction=2, keepdim=True), lambda f, x: f(x)(correction=0.5),
    lambda f, x: f(x)(dim=-1, correction=-1)],
    ids=["(True)", "(False)", "()", "(1)", "(1,True)", "(1,False,True)", "(0,unbiased=F)", "(unbiased=F)",
         "correction=None", "dims+corr2+keepdim", "corr0.5", "corr-1"])
def test_var_std_arguments_as_torch(name, call):
    check(lambda x: call(lambda t: getattr(t, name), x), lambda x: call(lambda t: getattr(t, name), x), X)


@pytest.mark.parametrize("name", ["var", "std"])
def test_var_std_dim_empty_tuple_reduces_everything(name):
    """dim=() reduces all dims in torch too; torch's gradient then divides by 1 - correction instead of
    N - correction (its _safe_size of no dims), minigrad's is the derivative of the value (docs/torch-differences.md)."""
    x = mg.tensor(X, requires_grad=True)
    out = getattr(x, name)(dim=(), correction=0)
    np.testing.assert_allclose(out.numpy(), getattr(torch.tensor(X), name)(dim=(), correction=0).numpy(), rtol=1e-12)
    out.backward()
    ref = mg.tensor(X, requires_grad=True)
    getattr(ref, name)(correction=0).backward()
    np.testing.assert_allclose(x.grad.numpy(), ref.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("name", ["var", "std"])
@pytest.mark.parametrize("arr,kw", [(np.array([3.0]), {}), (np.array([1.0, 2.0]), {"correction": 2}),
                                    (np.array([1.0, 2.0]), {"dim": 0, "correction": 2}),
                                    (np.array([2.0, 2.0, 2.0]), {}), (np.array([1.0, 2.0, 4.0]), {"correction": 5}),
                                    (np.array([1.0, 2.0, 4.0]), {"dim": 0, "correction": 5}),
                                    (S0, {}), (S0, {"dim": 0}), (np.zeros((0, 3)), {"dim": 0}),
                                    (np.zeros((0, 3)), {})],
                         ids=["n=1", "n=corr", "n=corr-dim", "constant", "corr>n", "corr>n-dim", "0-d", "0-d-dim0",
                              "empty-dim", "empty"])
def test_var_std_without_degrees_of_freedom_match_torch(name, arr, kw):
    check(lambda x: getattr(x, name)(**kw), lambda x: getattr(x, name)(**kw), arr)


def test_var_std_refuse_integers_and_double_unbiased():
    with pytest.raises(RuntimeError, match="floating point"):
        mg.tensor([1, 2, 3]).var()
    with pytest.raises(TypeError, match="not both"):
        mg.tensor([1.0, 2.0]).std(0, True, correction=1)


# ---------------------------------------------------------------- 3. dims: 0-d tensors, tuples, ranges

@pytest.mark.parametrize("call", [
    lambda x: x.sum(0), lambda x: x.sum(-1), lambda x: x.sum((0,)), lambda x: x.sum((0,), keepdim=True),
    lambda x: x.mean(0), lambda x: x.mean((-1,)), lambda x: x.amax(0), lambda x: x.amin((0,)),
    lambda x: x.logsumexp(0), lambda x: x.logsumexp((0,), True), lambda x: x.var(0),
    lambda x: x.max(0)[0], lambda x: x.min(-1, keepdim=True)[0], lambda x: x.transpose(0, 0),
    lambda x: x.transpose(-1, 0), lambda x: x.squeeze(0), lambda x: x.squeeze((0,)), lambda x: x.squeeze(()),
    lambda x: x.unsqueeze(0), lambda x: x.unsqueeze(-1), lambda x: x.flatten(), lambda x: x.permute(()),
    lambda x: x.gather(0, _idx(x, [0, 0, 0])), lambda x: x.gather(-1, _idx(x, 0)), lambda x: x.gather(0, _idx(x, [])),
    lambda x: x.sum(dim=())])
def test_0d_tensors_take_dim_0_and_minus_1(call):
    check(call, call, S0)


def _idx(x, v):
    return (torch.tensor(v, dtype=torch.int64) if isinstance(x, torch.Tensor) else mg.tensor(np.array(v, dtype=np.int64)))


@pytest.mark.parametrize("call", [lambda x: x.argmax(0), lambda x: x.argmin(-1, keepdim=True), lambda x: x.argmax(),
                                  lambda x: x.max(0)[1]])
def test_0d_index_reductions(call):
    a, b = mg.tensor(1.5), torch.tensor(1.5)
    assert call(a).shape == tuple(call(b).shape) and call(a).item() == call(b).item()


@pytest.mark.parametrize("call", [lambda x: x.sum(2), lambda x: x.sum(-3), lambda x: x.mean((0, 0)),
                                  lambda x: x.sum((1, -1)), lambda x: x.squeeze(5), lambda x: x.transpose(0, 2),
                                  lambda x: x.unsqueeze(3), lambda x: x.amax(7), lambda x: x.var((0, -2))])
def test_bad_dims_raise_like_torch(call):
    with pytest.raises((IndexError, RuntimeError)) as ours:
        call(mg.tensor(X))
    with pytest.raises((IndexError, RuntimeError)) as theirs:
        call(torch.tensor(X))
    assert type(ours.value) is type(theirs.value)


def test_0d_dim_out_of_range():
    with pytest.raises(IndexError, match=r"\[-1, 0\], but got 1"):
        mg.tensor(1.0).sum(1)
    with pytest.raises(RuntimeError, match="appears multiple times"):
        mg.tensor(1.0).sum((0, -1))


@pytest.mark.parametrize("dims", [(), (1,), (-1,), (1, 3), (1, 2), (3, 1), [1]])
def test_squeeze_tuple_of_dims(dims):
    a = np.ones((5, 1, 5, 1))
    check(lambda x: x.squeeze(dims), lambda x: x.squeeze(dims), a)
    check(lambda x: x.squeeze(dims), lambda x: x.squeeze(dims), np.ones((1, 1, 1, 1)))


@pytest.mark.parametrize("shape,call", [
    ((0, 3), lambda x: x.mean()), ((0, 3), lambda x: x.mean(0)), ((3, 0), lambda x: x.mean(1)),
    ((3, 0), lambda x: x.mean(0)), ((0,), lambda x: x.mean(0, keepdim=True)), ((2, 0, 3), lambda x: x.sum((0, 1))),
    ((0, 3), lambda x: x.amax(1)), ((0, 4), lambda x: x.logsumexp(1))])
def test_empty_tensors_reduce_like_torch(shape, call):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy "mean of empty slice" or division warnings
        check(call, call, np.zeros(shape))


def test_max_of_an_empty_dim_raises_like_torch():
    with pytest.raises(IndexError, match="non-zero size"):
        mg.zeros(0, 3).amax(0)
    with pytest.raises(IndexError, match="non-zero size"):
        mg.zeros(0, 3).max(0)
    with pytest.raises(RuntimeError, match="numel"):
        mg.zeros(0).max()


@pytest.mark.parametrize("name", ["max", "min"])
@pytest.mark.parametrize("shapes", [[(4, 5), (4, 5)], [(4, 5), (5,)], [(), (3,)], [(2, 1, 3), (4, 1)]])
def test_max_min_with_a_tensor_are_maximum_minimum(name, shapes):
    rng = np.random.default_rng(3)
    a, b = (rng.integers(-2, 3, s).astype(np.float64) for s in shapes)  # ties included: torch splits them
    check(lambda x, y: getattr(x, name)(y), lambda x, y: getattr(x, name)(y), a, b)


@pytest.mark.parametrize("a,b", [((5, 5, 0), (0, 5)), ((0,), (0,)), ((0,), (0, 4)), ((3, 0), (0,)),
                                 ((2, 3, 0), (2, 0, 4)), ((0, 3), (3, 2)), ((2, 0, 3), (3,))])
def test_matmul_with_empty_dims(a, b):
    rng = np.random.default_rng(0)
    check(lambda x, y: x @ y, lambda x, y: x @ y, rng.standard_normal(a), rng.standard_normal(b))


@pytest.mark.parametrize("x_shape,dim,idx", [((5,), 0, np.zeros((0,), np.int64)), ((5,), 0, np.zeros((2, 0), np.int64)),
                                             ((3, 4), 1, np.zeros((0,), np.int64)), ((3, 4), 1, np.zeros((5, 0), np.int64)),
                                             ((3, 4), 0, np.zeros((0, 4), np.int64)),
                                             ((3, 4), 1, np.array([[0, 3, 3], [1, 1, 2]]))])
def test_gather_with_empty_and_small_indices(x_shape, dim, idx):
    rng = np.random.default_rng(0)
    check(lambda x: x.gather(dim, mg.tensor(idx)), lambda x: x.gather(dim, torch.tensor(idx)), rng.standard_normal(x_shape))


def test_gather_refuses_float_index_and_ndim_mismatch():
    with pytest.raises(TypeError, match="integer index"):
        mg.ones(3, 4).gather(1, mg.tensor([[0.0]]))
    with pytest.raises(RuntimeError, match="same number of dimensions"):
        mg.ones(3, 4).gather(1, mg.tensor([0, 1]))
    with pytest.raises(RuntimeError, match="no larger than"):
        mg.ones(3, 4).gather(1, mg.zeros(4, 2, dtype="int64"))


@pytest.mark.parametrize("shapes,dim", [([(0,), (2, 3)], 0), ([(0,), (2, 3)], 1), ([(2, 3), (0,), (1, 3)], 0),
                                        ([(0,), (0,)], 0), ([(0,), (2, 3), (0,)], -1)])
def test_cat_skips_legacy_empty_1d_tensors(shapes, dim):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s) for s in shapes]
    check(lambda *xs: mg.cat(list(xs), dim), lambda *xs: torch.cat(list(xs), dim), *arrays)


def test_cat_and_stack_shape_errors_are_clean():
    with pytest.raises(RuntimeError, match="sizes of tensors must match"):
        mg.cat([mg.zeros(0, 1), mg.ones(2, 3)])
    with pytest.raises(RuntimeError, match="zero-dimensional"):
        mg.cat([mg.tensor(1.0), mg.tensor(2.0)])
    with pytest.raises(RuntimeError, match="equal size"):
        mg.stack([mg.zeros(2), mg.zeros(3)])


@pytest.mark.parametrize("args", [(0, 5, 1.5), (0.5, 5, 1.5), (0, 1, 0.3), (1, -2, -1.5), (2.9, -3.9, -1.2),
                                  (-2.7, 3.2, 2.5), (0.1, 3.9, 1), (-1, 2, 1), (10,), (2.5,)])
@pytest.mark.parametrize("dtype", ["int64", "int32", "int16", "uint8"])
def test_arange_with_float_arguments_and_an_integer_dtype(args, dtype):
    try:
        ref = torch.arange(*args, dtype=getattr(torch, dtype))
    except (RuntimeError, ValueError) as e:
        with pytest.raises(type(e)):
            mg.arange(*args, dtype=dtype)
        return
    out = mg.arange(*args, dtype=dtype)
    assert out.dtype == np.dtype(dtype) and out.tolist() == ref.tolist()


def test_arange_errors():
    with pytest.raises(RuntimeError, match="nonzero"):
        mg.arange(0, 5, 0)
    with pytest.raises(RuntimeError, match="inconsistent"):
        mg.arange(0, 5, -1)
    with pytest.raises(RuntimeError, match="bool"):
        mg.arange(3, dtype="bool")
