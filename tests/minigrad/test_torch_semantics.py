"""PyTorch's semantics where minigrad used to differ: argument conventions, 0-d and empty tensors, dtype
promotion, tensor bounds, masks, clean refusals. Each case runs the same call in minigrad and in torch and
compares values, dtypes and gradients in float64 (skipped without torch)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import minigrad as mg
from minigrad.autograd import unbroadcast

torch = pytest.importorskip("torch")

TORCH_DTYPES = {np.dtype("float64"): torch.float64, np.dtype("float32"): torch.float32,
                np.dtype("int64"): torch.int64, np.dtype("int32"): torch.int32, np.dtype("bool"): torch.bool,
                np.dtype("uint8"): torch.uint8, np.dtype("int16"): torch.int16, np.dtype("int8"): torch.int8,
                np.dtype("float16"): torch.float16}


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


# ---------------------------------------------------------------- 5. dtype promotion

def check_mixed(fn, *arrays, rtol=None):
    """fn on minigrad and torch tensors of mixed dtypes: same result dtype and values, and every float
    input's gradient in its own dtype, equal to torch's."""
    ours, theirs = zip(*[pair(a) for a in arrays])
    out, ref = fn(*ours), fn(*theirs)
    assert TORCH_DTYPES[out.dtype] == ref.dtype, (out.dtype, ref.dtype)
    if rtol is None:  # torch computes float16 in float32 and rounds once: a float16 ulp apart
        rtol = 2e-3 if any(np.asarray(a).dtype == np.float16 for a in arrays) else 1e-6
    np.testing.assert_allclose(out.numpy().astype(np.float64), ref.detach().numpy().astype(np.float64), rtol=rtol,
                               atol=1e-6)
    if ref.requires_grad:
        g = np.random.default_rng(0).standard_normal(tuple(ref.shape))
        out.backward(mg.tensor(g, dtype=out.dtype))
        ref.backward(torch.tensor(g, dtype=ref.dtype))
    for a, b in zip(ours, theirs):
        if b.requires_grad:
            assert a.grad is not None and a.grad.dtype == a.dtype
            np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=rtol, atol=1e-6)


def arr(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    if np.dtype(dtype).kind in "iu":
        return rng.integers(1, 5, shape).astype(dtype)
    return rng.uniform(0.5, 2.0, shape).astype(dtype)


DTYPE_PAIRS = [("float32", (3,), "float64", (3,)), ("float64", (2, 3), "float32", (3,)),
               ("float32", (3,), "float64", ()), ("float64", (), "float32", (3,)), ("float16", (3,), "float32", ()),
               ("int32", (3,), "float32", (3,)), ("int64", (3,), "float64", ()), ("int32", (), "float32", (3,)),
               ("bool", (3,), "int32", (3,)), ("bool", (3,), "float32", ()), ("uint8", (3,), "int16", (3,)),
               ("int32", (3,), "int64", ()), ("int32", (3,), "int64", (3,)), ("int64", (), "int32", ())]
BINARY = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y, "div": lambda x, y: x / y,
          "rdiv": lambda x, y: y / x, "maximum": lambda x, y: x.maximum(y), "minimum": lambda x, y: x.minimum(y),
          "max": lambda x, y: x.max(y), "pow": lambda x, y: x ** y,
          "where": lambda x, y: (mg if isinstance(x, mg.Tensor) else torch).where(x > 1, x, y)}


@pytest.mark.parametrize("op", list(BINARY))
@pytest.mark.parametrize("dt1,s1,dt2,s2", DTYPE_PAIRS, ids=[f"{a}{list(b)}-{c}{list(d)}" for a, b, c, d in DTYPE_PAIRS])
def test_binary_ops_promote_like_torch(op, dt1, s1, dt2, s2):
    if op == "sub" and "bool" in (dt1, dt2):
        with pytest.raises(RuntimeError, match="bool tensor is not supported"):
            BINARY[op](*pair(arr(s1, dt1))[:1], pair(arr(s2, dt2, seed=1))[0])
        return
    check_mixed(BINARY[op], arr(s1, dt1), arr(s2, dt2, seed=1))


SCALARS = {"int": 2, "float": 2.5, "bool": True, "np.float64": np.float64(2.5), "np.int64": np.int64(3)}
# with a bool tensor or a True scalar, torch refuses or fails an internal assert for rsub, pow and rpow: no reference
SCALAR_CASES = [(op, dtype, name) for op in ["add", "mul", "div", "rdiv", "rsub", "pow", "rpow"]
                for dtype in ["float32", "float64", "int32", "int64", "bool", "uint8"] for name in SCALARS
                if not ((dtype == "bool" or name == "bool") and op in ("rsub", "pow", "rpow"))]


@pytest.mark.parametrize("op,dtype,scalar_name", SCALAR_CASES, ids=["-".join(c) for c in SCALAR_CASES])
def test_python_and_numpy_scalars_promote_like_torch(op, dtype, scalar_name):
    scalar = SCALARS[scalar_name]
    fn = {"add": lambda x: x + scalar, "mul": lambda x: scalar * x, "div": lambda x: x / scalar,
          "rdiv": lambda x: scalar / x, "rsub": lambda x: scalar - x, "pow": lambda x: x ** scalar,
          "rpow": lambda x: scalar ** x}[op]
    check_mixed(fn, arr((4,), dtype))


def test_default_dtype_decides_integer_division_and_float_only_ops():
    i = mg.tensor([1, 2, 3])
    for fn in (lambda t: t / 2, lambda t: t / t, lambda t: t.exp(), lambda t: t.log(), lambda t: t.sqrt(),
               lambda t: t.tanh(), lambda t: t.sigmoid(), lambda t: t.logsumexp(0), lambda t: t ** 0.5,
               lambda t: t + 0.5, lambda t: 1.5 / t):
        assert fn(i).dtype == mg.float32
        ti = torch.tensor([1, 2, 3])
        assert fn(ti).dtype == torch.float32
        np.testing.assert_allclose(fn(i).numpy(), fn(ti).numpy(), rtol=1e-6)
    mg.set_default_dtype("float64")
    try:
        assert (i / 2).dtype == mg.float64 and i.exp().dtype == mg.float64 and (i * 0.5).dtype == mg.float64
        assert (mg.ones(2, dtype="float32") * 0.5).dtype == mg.float32  # a float32 tensor keeps its dtype
    finally:
        mg.set_default_dtype("float32")


@pytest.mark.parametrize("fn,exc,match", [
    (lambda: mg.tensor([1, 2]).mean(), RuntimeError, "could not infer output dtype"),
    (lambda: mg.tensor([1, 2]) ** -1, RuntimeError, "negative integer powers"),
    (lambda: mg.ones(2, 2) @ mg.ones(2, 2, dtype="float64"), RuntimeError, "float != double"),
    (lambda: mg.ones(2, 2, dtype="int64") @ mg.ones(2, 2), RuntimeError, "long int != float"),
    (lambda: mg.ones(2) @ mg.ones(2, dtype="float64"), RuntimeError, "same dtype")])
def test_dtype_refusals_match_torch(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


def test_integer_mean_with_dtype_and_integer_sum():
    assert mg.tensor([1, 2]).mean(dtype="float64").item() == 1.5
    for dt in ("int32", "int64", "bool"):
        a = np.array([1, 0, 1]).astype(dt)
        assert TORCH_DTYPES[mg.tensor(a).sum().dtype] == torch.tensor(a).sum().dtype


@pytest.mark.parametrize("dts", [("float32", "float64"), ("int32", "float32"), ("float64", "float32", "int64")])
def test_cat_and_stack_promote(dts):
    arrays = [arr((2, 3), dt, seed=i) for i, dt in enumerate(dts)]
    check_mixed(lambda *xs: (mg if isinstance(xs[0], mg.Tensor) else torch).cat(list(xs), 1), *arrays)
    check_mixed(lambda *xs: (mg if isinstance(xs[0], mg.Tensor) else torch).stack(list(xs)), *arrays)


def test_inplace_ops_keep_the_tensor_dtype():
    x = mg.ones(3)
    x += mg.ones(3, dtype="float64")
    x *= mg.tensor(2.0, dtype="float64")
    assert x.dtype == mg.float32 and x.tolist() == [4.0, 4.0, 4.0]
    w = mg.ones(3, requires_grad=True)
    y = w * 1.0
    y += mg.ones(3, dtype="float64")  # recorded in the graph: the result is cast back to float32
    assert y.dtype == mg.float32
    y.sum().backward()
    assert w.grad.dtype == mg.float32


def test_result_type_and_promote_types_match_torch():
    cases = [(torch.ones(2), torch.ones(2, dtype=torch.float64)), (torch.ones(2), torch.tensor(1.0, dtype=torch.float64)),
             (torch.ones(2, dtype=torch.int32), 2.5), (torch.ones(2, dtype=torch.bool), 3),
             (torch.tensor(1, dtype=torch.int64), torch.ones(2, dtype=torch.int32)),
             (torch.tensor(1.0, dtype=torch.float64), torch.ones(2, dtype=torch.int32)),
             (torch.ones(2, dtype=torch.uint8), torch.ones(2, dtype=torch.int8))]
    for a, b in cases:
        conv = [mg.tensor(v.numpy()) if isinstance(v, torch.Tensor) else v for v in (a, b)]
        assert TORCH_DTYPES[mg.result_type(*conv)] == torch.result_type(a, b), (a, b)
    for a, b in [("float32", "float64"), ("int32", "float16"), ("uint8", "int8"), ("bool", "int16"), ("int64", "int32")]:
        assert TORCH_DTYPES.get(mg.promote_types(a, b), mg.promote_types(a, b)) == \
            torch.promote_types(getattr(torch, a), getattr(torch, b)) or str(mg.promote_types(a, b)) == "float16"


# ---------------------------------------------------------------- 2. clamp with tensor bounds

TIES = np.array([[-1.0, 0.0, 0.5, 1.0, 2.0, 3.0]])
LO = np.array([[0.0, 0.0, 1.0, 1.0, 2.5, -1.0]])  # ties with x at 0.0, 1.0; min > max in column 4
HI = np.array([[1.0, 0.0, 0.5, 0.5, 2.0, 2.0]])   # ties at 0.0, 0.5, 2.0; min == max in column 1


@pytest.mark.parametrize("name", ["clamp", "clip"])
@pytest.mark.parametrize("kind", ["both", "min", "max", "min-scalar-max", "scalar-min-max"])
def test_clamp_tensor_bounds_gradients_at_ties_as_torch(name, kind):
    calls = {"both": lambda x, lo, hi: getattr(x, name)(lo, hi),
             "min": lambda x, lo, hi: getattr(x, name)(min=lo) + 0 * hi.sum(),
             "max": lambda x, lo, hi: getattr(x, name)(max=hi) + 0 * lo.sum(),
             "min-scalar-max": lambda x, lo, hi: getattr(x, name)(lo, 1.5) + 0 * hi.sum(),
             "scalar-min-max": lambda x, lo, hi: getattr(x, name)(0.25, hi) + 0 * lo.sum()}
    if kind in ("min-scalar-max", "scalar-min-max"):
        try:
            calls[kind](torch.tensor(TIES), torch.tensor(LO), torch.tensor(HI))
        except TypeError:  # torch's overloads take both tensors or both numbers: minigrad accepts the mix
            x, lo, hi = (mg.tensor(a, requires_grad=True) for a in (TIES, LO, HI))
            ref = torch.clamp(torch.tensor(TIES), torch.tensor(LO) if kind[0] == "m" else torch.tensor(0.25, dtype=torch.float64),
                              torch.tensor(1.5, dtype=torch.float64) if kind[0] == "m" else torch.tensor(HI))
            np.testing.assert_allclose(calls[kind](x, lo, hi).numpy(), ref.numpy())
            return
    check(calls[kind], calls[kind], TIES, LO, HI)


@pytest.mark.parametrize("shapes", [[(5, 10, 5), (10, 5), (10, 5)], [(5, 4, 5), (4, 5), (5, 1, 1)], [(3,), (), ()],
                                    [(0, 10, 3), (0, 1, 3), (1,)]])
def test_clamp_broadcasts_bounds(shapes):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(-2, 3, s).astype(np.float64) for s in shapes]  # many ties
    check(lambda x, lo, hi: x.clamp(lo, hi), lambda x, lo, hi: x.clamp(lo, hi), *arrays)
    check(lambda x, lo, hi: x.clamp(min=lo) + 0 * hi.sum(), lambda x, lo, hi: x.clamp(min=lo) + 0 * hi.sum(), *arrays)


@pytest.mark.parametrize("shapes", [[(5, 1, 5), (4, 5), (5, 1, 1)], [(), (3,), ()], [(0, 1, 3), (0, 10, 3), (1,)]])
def test_clamp_broadcasts_the_input_up(shapes):
    """torch computes the value but its backward refuses an input smaller than the result; minigrad sums the
    gradient back to the input's shape, as for any broadcast operand."""
    rng = np.random.default_rng(0)
    arrays = [rng.integers(-2, 3, s).astype(np.float64) for s in shapes]
    ours = [mg.tensor(a, requires_grad=True) for a in arrays]
    out = ours[0].clamp(ours[1], ours[2])
    ref = torch.tensor(arrays[0]).clamp(torch.tensor(arrays[1]), torch.tensor(arrays[2]))
    np.testing.assert_array_equal(out.numpy(), ref.numpy())
    out.sum().backward()
    x, lo, hi = (torch.tensor(np.broadcast_to(a, ref.shape).copy(), requires_grad=True) for a in arrays)
    x.clamp(lo, hi).sum().backward()
    for a, b in zip(ours, (x, lo, hi)):
        np.testing.assert_array_equal(a.grad.numpy(), unbroadcast(b.grad.numpy(), a.shape))


@pytest.mark.parametrize("x_dt,lo_dt,hi_dt", [("float32", "int32", None), ("float32", "float32", "int32"),
                                              ("float32", "float64", None), ("float64", None, "float32"),
                                              ("int64", "float32", None), ("int32", "int64", "int64"),
                                              ("float32", (), "float64")])
def test_clamp_result_dtype_and_gradient_dtypes(x_dt, lo_dt, hi_dt):
    x = arr((3, 4), x_dt)
    lo = None if lo_dt is None else (np.array(1.0) if lo_dt == () else arr((4,), lo_dt, 1) - 1)
    hi = None if hi_dt is None else arr((3, 1), hi_dt, 2) + 1
    given = [a for a in (lo, hi) if a is not None]

    def fn(x, *b):
        it = iter(b)
        return x.clamp(None if lo is None else next(it), None if hi is None else next(it))
    check_mixed(fn, x, *given)


@pytest.mark.parametrize("x,args", [(np.array([1, 5, 9]), (2, 6)), (np.array([1, 5, 9]), (2.5,)),
                                    (np.array([1.0, 5, 9], dtype=np.float32), (2, 6)), (np.array([1, 5, 9]), (None, 6.5))])
def test_clamp_with_numbers_promotes_like_torch(x, args):
    out, ref = mg.tensor(x).clamp(*args), torch.tensor(x).clamp(*args)
    assert TORCH_DTYPES[out.dtype] == ref.dtype and out.tolist() == ref.tolist()


def test_clamp_without_bounds_raises():
    with pytest.raises(RuntimeError, match="At least one"):
        mg.ones(2).clamp()


# ---------------------------------------------------------------- 4. what a PyTorch user reaches for

A = np.random.default_rng(5).standard_normal((3, 4))
B = np.random.default_rng(6).standard_normal((4,))


@pytest.mark.parametrize("call", [
    lambda m, x, y: x.add(y, alpha=2.5), lambda m, x, y: x.sub(y, alpha=-3), lambda m, x, y: x.add(2.0, alpha=3),
    lambda m, x, y: m.add(x, y, alpha=0.5), lambda m, x, y: m.sub(x, y, alpha=2), lambda m, x, y: x.__add__(y, alpha=2),
    lambda m, x, y: x.__sub__(y, alpha=0.25), lambda m, x, y: m.subtract(x, y), lambda m, x, y: m.multiply(x, y),
    lambda m, x, y: x.mul(y), lambda m, x, y: m.div(x, y), lambda m, x, y: x.true_divide(y), lambda m, x, y: x.add(y)])
def test_add_sub_alpha_and_the_method_spellings(call):
    check(lambda x, y: call(mg, x, y), lambda x, y: call(torch, x, y), A, B)


def test_rsub_alpha_and_integer_alpha_rules():
    check(lambda x, y: x.__rsub__(y, alpha=2), lambda x, y: torch.rsub(x, y, alpha=2), A, B)
    for ours, theirs in ((mg.tensor([1, 2]), torch.tensor([1, 2])),):
        assert ours.add(ours, alpha=3).tolist() == theirs.add(theirs, alpha=3).tolist()
        with pytest.raises(RuntimeError, match="alpha must not be a floating point"):
            ours.add(ours, alpha=1.5)


Q = np.array([[-7.0, 7.0, 3.5, -0.5, 0.0, 5.0], [1e300, -2.0, np.inf, -np.inf, np.nan, 9.0]])
D = np.array([[2.0, -2.0, 0.0, 0.25, -3.0, 0.0], [1e-300, 3.0, 2.0, 2.0, 1.0, -0.0]])


@pytest.mark.parametrize("mode", ["trunc", "floor"])
def test_div_rounding_mode_floats_with_zero_gradient(mode):
    for call in (lambda x, y: x.div(y, rounding_mode=mode), lambda x, y: x / y if mode is None else
                 x.__truediv__(y, rounding_mode=mode), lambda x, y: (mg if isinstance(x, mg.Tensor) else torch).div(
                     x, y, rounding_mode=mode)):
        with np.errstate(all="ignore"):
            check(call, call, Q, D)
    if mode == "floor":  # torch has no derivative for floor_divide (backward raises); minigrad's is div's zero
        for call in (lambda x, y: x // y, lambda x, y: 2.5 // y + x.floor_divide(1.5)):
            ours, ref = call(mg.tensor(A), mg.tensor(B + 3)), call(torch.tensor(A), torch.tensor(B + 3))
            np.testing.assert_array_equal(ours.numpy(), ref.numpy())


@pytest.mark.parametrize("mode", ["trunc", "floor"])
@pytest.mark.parametrize("dtype", ["int64", "int32"])
def test_div_rounding_mode_integers(mode, dtype):
    a = np.array([-7, 7, -6, 6, 0, -1, 5, -9]).astype(dtype)
    b = np.array([2, -2, 3, -4, 5, 3, -1, 4]).astype(dtype)
    out, ref = mg.tensor(a).div(mg.tensor(b), rounding_mode=mode), torch.tensor(a).div(torch.tensor(b), rounding_mode=mode)
    assert TORCH_DTYPES[out.dtype] == ref.dtype and out.tolist() == ref.tolist()
    out, ref = mg.tensor(a).div(2.5, rounding_mode=mode), torch.tensor(a).div(2.5, rounding_mode=mode)
    assert TORCH_DTYPES[out.dtype] == ref.dtype and out.tolist() == ref.tolist()
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        mg.tensor(a).div(mg.tensor(np.zeros_like(a)), rounding_mode=mode)
    with pytest.raises(RuntimeError, match="rounding_mode"):
        mg.tensor(a).div(2, rounding_mode="round")


M3 = np.random.default_rng(7).standard_normal((3, 4, 5))
MASK_CASES = [lambda r: r.standard_normal((3, 4, 5)) > 0, lambda r: r.standard_normal((3,)) > 0,
              lambda r: r.standard_normal((3, 4)) > 0, lambda r: np.zeros((3,), bool), lambda r: np.ones((3, 4, 5), bool)]


@pytest.mark.parametrize("make", MASK_CASES)
def test_bool_mask_indexing_scatters_the_gradient_back(make):
    mask = make(np.random.default_rng(0))
    check(lambda x: x[mg.tensor(mask)], lambda x: x[torch.tensor(mask)], M3)


@pytest.mark.parametrize("index", [
    lambda T, r: (slice(None), T(r.standard_normal((4,)) > 0)), lambda T, r: (Ellipsis, T(r.standard_normal((5,)) > 0)),
    lambda T, r: (T(r.standard_normal((3,)) > 0), slice(1, 3)), lambda T, r: (0, T(r.standard_normal((4, 5)) > 0)),
    lambda T, r: (T(r.standard_normal((3, 4)) > 0), T(np.array([0, 0, 1, 4, 2, 3, 0, 1, 2, 3, 4, 0])[:0] + 1)[:0]),
    lambda T, r: (None, T(r.standard_normal((3,)) > 0))])
def test_bool_masks_mixed_with_other_indices(index):
    def call(x):
        T = (lambda a: mg.tensor(a)) if isinstance(x, mg.Tensor) else torch.tensor
        idx = index(T, np.random.default_rng(1))
        try:
            return x[idx]
        except (IndexError, RuntimeError):
            return None
    ref = call(torch.tensor(M3))
    if ref is None:  # torch refuses this combination: so must minigrad
        assert call(mg.tensor(M3)) is None
        return
    check(call, call, M3)


def test_bool_mask_shape_mismatch_and_list_masks():
    with pytest.raises(IndexError, match="shape of the mask"):
        mg.tensor(M3)[mg.tensor(np.ones(2, bool))]
    x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x[[True, False, True]]
    y.sum().backward()
    assert y.tolist() == [1.0, 3.0] and x.grad.tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(NotImplementedError, match="0-d bool"):
        x[mg.tensor(True)]


@pytest.mark.parametrize("fn", ["zeros_like", "ones_like"])
@pytest.mark.parametrize("kw", [{}, {"dtype": "float64"}, {"device": "cpu"}, {"dtype": "int32", "device": "cpu"},
                                {"requires_grad": True}, {"memory_format": "preserve_format"}])
def test_zeros_ones_like_take_device_and_dtype(fn, kw):
    src = mg.ones(2, 3, dtype="float32")
    out = getattr(mg, fn)(src, **kw)
    tkw = {k: (getattr(torch, v) if k in ("dtype", "memory_format") else v) for k, v in kw.items()}
    ref = getattr(torch, fn)(torch.ones(2, 3), **tkw)
    assert TORCH_DTYPES[out.dtype] == ref.dtype and out.shape == tuple(ref.shape) and out.tolist() == ref.tolist()
    assert out.requires_grad == ref.requires_grad and str(out.device) == str(ref.device)
    with pytest.raises(NotImplementedError, match="memory_format"):
        getattr(mg, fn)(src, memory_format=torch.channels_last)
    assert getattr(mg, fn)(src, mg.float64).dtype == mg.float64  # dtype positionally, a numpy dtype (falsy!)


@pytest.mark.parametrize("args,kw", [((10, (3, 4)), {}), ((2, 10, (5,)), {}), ((10, ()), {}),
                                     ((3, 7, (2, 2)), {"dtype": "float64"}), ((5,), {"size": (4,)}),
                                     ((), {"low": 2, "high": 9, "size": (6,)}), ((), {"high": 3, "size": [2, 3]}),
                                     ((-5, 5, (100,)), {"dtype": "int32"}), ((0, 4, (0, 5)), {})])
def test_randint_signatures(args, kw):
    out = mg.randint(*args, **kw)
    tkw = {k: (getattr(torch, v) if k == "dtype" else v) for k, v in kw.items()}
    ref = torch.randint(*args, **tkw)
    assert TORCH_DTYPES[out.dtype] == ref.dtype and out.shape == tuple(ref.shape)
    low = kw.get("low", args[0] if len(args) == 3 else 0)
    high = kw.get("high", args[1] if len(args) == 3 else (args[0] if args else None))
    assert out.numel() == 0 or (low <= out.numpy().min() and out.numpy().max() < high)
    assert np.all(out.numpy() == np.round(out.numpy()))


def test_randint_refusals():
    with pytest.raises(TypeError, match="missing"):
        mg.randint(10)
    with pytest.raises(RuntimeError, match="less than"):
        mg.randint(5, 5, (2,))
    with pytest.raises(NotImplementedError, match="generator"):
        mg.randint(5, (2,), generator=object())


# ---------------------------------------------------------------- 6. .to() and clean refusals

@pytest.mark.parametrize("args,kw,dtype,copied", [
    (("float64", True, True), {}, "float64", True), (("float64", False, False), {}, "float64", True),
    (("float32", False, True), {}, "float32", True), (("float32",), {}, "float32", False),
    (("cpu", "float64", False, False), {"memory_format": "preserve_format"}, "float64", True),
    (("cpu",), {"copy": True}, "float32", True), ((), {"dtype": "float64", "non_blocking": True}, "float64", True),
    (("cpu", False, True), {}, "float32", True)])
def test_to_reads_torchs_positional_non_blocking_and_copy(args, kw, dtype, copied):
    x = mg.tensor(A.astype(np.float32), requires_grad=True)
    out = x.to(*args, **kw)
    assert out.dtype == np.dtype(dtype) and (out is not x) == copied
    if copied:
        assert not np.shares_memory(out.data, x.data) and out.requires_grad and out.grad_fn is not None
        out.sum().backward()
        assert x.grad.dtype == x.dtype and np.all(x.grad.numpy() == 1)
    other = mg.zeros(2, dtype="float64")
    assert x.to(other).dtype == mg.float64 and x.to(other, False, True).dtype == mg.float64


@pytest.mark.parametrize("call,exc,match", [
    (lambda x: x.to("float64", 3), TypeError, "non_blocking and copy"),
    (lambda x: x.to("float64", memory_format="channels_last"), NotImplementedError, "to: memory_format"),
    (lambda x: x.to(foo=1), TypeError, "foo"),
    (lambda x: x.double(memory_format="channels_last"), NotImplementedError, "double: memory_format"),
    (lambda x: x.contiguous(memory_format="channels_last"), NotImplementedError, "contiguous: memory_format"),
    (lambda x: x.clone(memory_format="channels_last"), NotImplementedError, "clone: memory_format"),
    (lambda x: x.sum(out=x), TypeError, "out"), (lambda x: mg.cat([x, x], out=x), TypeError, "out"),
    (lambda x: x.view(mg.float64), TypeError, "view\\(dtype\\)"),
    (lambda x: x.sum().backward(create_graph=True), NotImplementedError, "create_graph"),
    (lambda x: x.sum().backward(inputs=[x]), NotImplementedError, "inputs"),
    (lambda x: x.reshape(7), RuntimeError, "invalid for input of size 12")])
def test_clean_refusals_name_the_op_and_argument(call, exc, match):
    x = mg.tensor(A, requires_grad=True)
    with pytest.raises(exc, match=match):
        call(x)


def test_backward_takes_torchs_gradient_argument():
    x = mg.tensor(A, requires_grad=True)
    (x * 2).backward(gradient=mg.ones(3, 4), retain_graph=None)
    assert np.all(x.grad.numpy() == 2)
    (x * 2).backward(mg.ones(3, 4))
    assert np.all(x.grad.numpy() == 4)
