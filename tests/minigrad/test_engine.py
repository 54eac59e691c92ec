"""The autograd engine's contract: accumulation, graph freeing, no_grad, errors, edge cases."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import minigrad as mg


def leaf(values, dtype="float64"):
    return mg.tensor(values, dtype=dtype, requires_grad=True)


def test_reused_node_gets_all_paths():
    a = leaf(3.0)
    b = a + a
    c = b + b
    c.backward()
    assert a.grad.item() == 4.0


def test_shared_subexpression_in_a_diamond():
    x = leaf([1.0, 2.0])
    y = x * x  # used twice below
    z = (y * 3.0 + y.exp()).sum()
    z.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.array([1.0, 2.0]) * (3 + np.exp([1.0, 4.0])))


def test_grad_accumulates_across_backward_calls_and_zero_resets():
    x = leaf([1.0, -2.0])
    (x * x).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, -8.0])
    x.grad = None
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0])


def test_first_grad_is_not_an_alias_of_the_upstream_gradient():
    x = leaf([1.0, 2.0])
    g = mg.tensor([1.0, 1.0], dtype="float64")
    (x + 0.0).backward(g)
    (x + 0.0).backward(g)
    np.testing.assert_allclose(g.numpy(), [1.0, 1.0])  # accumulation did not write into g
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0])


def test_second_backward_without_retain_graph_raises():
    x = leaf([1.0, 2.0])
    y = (x.exp() * 2.0).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    x = leaf([1.0, 2.0])
    y = (x.exp() * 2.0).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 4 * np.exp([1.0, 2.0]))


def test_graph_is_freed_after_backward():
    x = leaf(np.ones(4))
    h = x * 2.0
    y = h.sum()
    y.backward()
    assert h._ctx.freed and not hasattr(h._ctx, "x") and not hasattr(h._ctx, "inputs")


def test_no_grad_builds_no_graph_and_works_as_decorator():
    x = leaf([1.0])
    with mg.no_grad():
        y = x * 2.0
    assert not y.requires_grad and y.grad_fn is None

    @mg.no_grad()
    def f(t):
        return t * 3.0

    assert f(x).grad_fn is None
    assert (x * 2.0).grad_fn is not None  # restored afterwards
    with mg.no_grad():
        with mg.enable_grad():
            assert (x * 2.0).requires_grad


def test_detach_cuts_the_graph():
    x = leaf([2.0])
    y = (x * x).detach() * x
    y.backward(mg.tensor([1.0], dtype="float64"))
    assert x.grad.item() == 4.0  # only the non-detached path


def test_deep_chain_does_not_hit_the_recursion_limit():
    x = leaf(1.0)
    y = x
    for _ in range(100_000):
        y = y * 1.0
    assert 100_000 > sys.getrecursionlimit()
    y.backward()
    assert x.grad.item() == 1.0


def test_non_scalar_backward_needs_a_grad():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match="only for scalar outputs"):
        (x * 2.0).backward()


def test_backward_on_tensor_that_does_not_require_grad_says_so():
    x = mg.tensor([1.0, 2.0])
    with pytest.raises(RuntimeError, match="does not require grad"):
        (x * 2.0).sum().backward()


def test_matmul_shape_error_names_both_shapes():
    a, b = mg.randn(3, 4), mg.randn(5, 2)
    with pytest.raises(RuntimeError, match=r"\(3, 4\) and \(5, 2\)"):
        a @ b


def test_mixing_float_dtypes_promotes_like_torch_but_matmul_names_both():
    a, b = mg.randn(2, requires_grad=True), mg.randn(2, dtype="float64")
    out = a + b
    assert out.dtype == mg.float64  # torch's promotion; the gradient comes back in a's dtype
    out.sum().backward()
    assert a.grad.dtype == mg.float32
    with pytest.raises(RuntimeError, match="float != double"):
        a @ b


def test_mixing_devices_names_both():
    from minigrad.backend import Device, register_device
    other = register_device(Device("cuda", 7, np))  # a numpy-backed stand-in device
    a = mg.randn(2)
    b = mg.Tensor(np.ones(2, dtype=np.float32), device=other)
    with pytest.raises(RuntimeError, match=r"cpu and cuda:7"):
        a + b


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(RuntimeError, match="floating point"):
        mg.tensor([1, 2], requires_grad=True)


def test_repr_shows_the_op_that_made_it():
    x = leaf([1.0, 2.0])
    assert "grad_fn=<MatMul>" in repr(x @ x)
    assert "requires_grad=True" in repr(x)


def test_python_scalars_and_numpy_arrays_on_either_side():
    x = leaf([1.0, 2.0], dtype="float32")
    y = 2.0 * x + np.array([1.0, 1.0]) - 1 / (x + 1)
    assert y.dtype == np.float32  # scalars and arrays take the tensor's dtype
    z = np.array([3.0, 4.0]) * x
    assert isinstance(z, mg.Tensor)
    z.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 4.0])


def test_comparisons_return_bool_tensors_without_grad():
    x = leaf([1.0, -2.0])
    m = x > 0
    assert m.dtype == np.bool_ and not m.requires_grad
    assert m.tolist() == [True, False]


# ---------------------------------------------------------------- exact tests at kinks and ties

def test_relu_gradient_at_zero_is_zero():
    x = leaf([-1.0, 0.0, 1.0])
    x.relu().sum().backward()
    assert x.grad.tolist() == [0.0, 0.0, 1.0]


def test_abs_gradient_at_zero_is_zero():
    x = leaf([-1.0, 0.0, 2.0])
    x.abs().sum().backward()
    assert x.grad.tolist() == [-1.0, 0.0, 1.0]


def test_max_ties_split_the_gradient_evenly_like_torch_amax():
    x = leaf([1.0, 3.0, 3.0, 2.0])
    x.max().backward()
    assert x.grad.tolist() == [0.0, 0.5, 0.5, 0.0]
    y = leaf([[5.0, 5.0, 5.0], [1.0, 2.0, 2.0]])
    y.amax(dim=1).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), [[1 / 3] * 3, [0.0, 0.5, 0.5]])


def test_max_along_dim_routes_to_the_returned_index_like_torch():
    x = leaf([[2.0, 7.0, 7.0], [4.0, 1.0, 4.0]])
    values, indices = x.max(dim=1)
    assert indices.tolist() == [1, 0] and values.tolist() == [7.0, 4.0]
    values.sum().backward()
    assert x.grad.tolist() == [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]


def test_min_ties_split_evenly():
    x = leaf([1.0, 1.0, 2.0])
    x.min().backward()
    assert x.grad.tolist() == [0.5, 0.5, 0.0]


def test_maximum_ties_give_half_to_each_side():
    a, b = leaf([1.0, 2.0, 3.0]), leaf([1.0, 5.0, 0.0])
    a.maximum(b).sum().backward()
    assert a.grad.tolist() == [0.5, 0.0, 1.0] and b.grad.tolist() == [0.5, 1.0, 0.0]


def test_clamp_gradient_includes_the_bounds():
    x = leaf([-2.0, -1.0, 0.0, 1.0, 2.0])
    x.clamp(-1.0, 1.0).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_division_by_zero_propagates_inf_and_nan_like_numpy():
    x = leaf([1.0, 0.0, -1.0])
    y = leaf([0.0, 0.0, 0.0])
    with np.errstate(divide="ignore", invalid="ignore"):
        out = x / y
        expected = np.array([1.0, 0.0, -1.0]) / np.zeros(3)
        np.testing.assert_array_equal(out.numpy(), expected)
        out.backward(mg.tensor([1.0, 1.0, 1.0], dtype="float64"))
    assert np.isinf(x.grad.numpy()).all()
    assert np.isnan(y.grad.numpy()[1]) and np.isinf(y.grad.numpy()[0])


def test_log_of_zero_is_minus_inf_with_inf_gradient():
    x = leaf([0.0])
    with np.errstate(divide="ignore"):
        y = x.log()
        y.backward(mg.tensor([1.0], dtype="float64"))
    assert y.item() == -np.inf and x.grad.item() == np.inf


def test_manual_seed_makes_draws_reproducible():
    mg.manual_seed(123)
    a = mg.randn(5).numpy().copy()
    mg.manual_seed(123)
    np.testing.assert_array_equal(a, mg.randn(5).numpy())


def test_profiler_counts_forward_and_backward_per_op():
    x = leaf(np.ones((3, 4)))
    with mg.profile() as p:
        y = (x.exp() * 2.0).sum()
        y.backward()
    assert p.stats[("Exp", "forward")][0] == 1 and p.stats[("Exp", "backward")][0] == 1
    assert p.stats[("Mul", "forward")][0] == 1 and ("Sum", "backward") in p.stats
    table = p.table()
    assert "Exp" in table and "total" in table.splitlines()[-1]
    z = x.exp()  # profiling is off again outside the block
    assert p.stats[("Exp", "forward")][0] == 1 and z is not None


# ---------------------------------------------------------------- operators with non-tensors on either side

@pytest.mark.parametrize("op", ["+", "-", "*", "/", "**", "@"])
def test_every_operator_takes_scalars_and_numpy_arrays_on_either_side(op):
    x = leaf([[1.5, 2.0], [0.5, 1.0]])
    a = np.array([[2.0, 0.5], [1.0, 3.0]])
    f = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "**": np.power, "@": np.matmul}[op]
    other_sides = [a] if op == "@" else [a, 2.0, 3]
    for other in other_sides:
        for left, right in ((x, other), (other, x)):
            out = eval(f"left {op} right")
            assert isinstance(out, mg.Tensor) and out.dtype == x.dtype and out.grad_fn is not None, (op, other)
            expected = f(np.asarray(left), np.asarray(right))
            np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)
    y = eval(f"x {op} a")
    y.backward(mg.tensor(np.ones((2, 2)), dtype="float64"))
    assert x.grad.shape == (2, 2)


def test_numpy_scalars_do_not_upcast_a_float32_tensor():
    x = mg.randn(3)
    for out in (np.float64(2.0) * x, x * np.float64(2.0), x + np.ones(3), np.ones(3) - x):
        assert out.dtype == mg.float32


def test_comparisons_work_with_numpy_on_the_left():
    x = mg.tensor([1.0, 2.0, 3.0])
    m = np.array([2.0, 2.0, 2.0]) < x
    assert isinstance(m, mg.Tensor) and m.tolist() == [False, False, True]
    assert (x == 2.0).tolist() == [False, True, False] and (x >= 2).tolist() == [False, True, True]


def test_getitem_basic_slices_and_integer_arrays():
    x = leaf(np.arange(12.0).reshape(3, 4))
    assert x[1].tolist() == [4.0, 5.0, 6.0, 7.0] and x[-1, ::2].tolist() == [8.0, 10.0]
    assert x[..., 0].tolist() == [0.0, 4.0, 8.0] and x[None].shape == (1, 3, 4)
    picked = x[[0, 0, 2], [1, 1, 3]]
    assert picked.tolist() == [1.0, 1.0, 11.0]
    picked.sum().backward()
    assert x.grad.numpy()[0, 1] == 2.0 and x.grad.numpy()[2, 3] == 1.0 and x.grad.numpy().sum() == 3.0


# ---------------------------------------------------------------- the engine's un-broadcasting and checks

def test_broadcast_inputs_get_gradients_of_their_own_shape():
    x, row, col, s = leaf(np.ones((2, 3))), leaf(np.ones(3)), leaf(np.ones((2, 1))), leaf(2.0)
    out = x * row + col * s
    out.backward(mg.tensor(np.arange(6.0).reshape(2, 3), dtype="float64"))
    assert row.grad.shape == (3,) and col.grad.shape == (2, 1) and s.grad.shape == ()
    np.testing.assert_allclose(row.grad.numpy(), [3.0, 5.0, 7.0])
    np.testing.assert_allclose(col.grad.numpy(), [[6.0], [24.0]])
    assert s.grad.item() == 15.0


def doubling_op(name, backward):
    """A Function y = 2x whose backward is the given (deliberately wrong) function of g."""
    from minigrad.autograd import Function
    return type(name, (Function,), {"forward": staticmethod(lambda ctx, x: x * 2),
                                    "backward": staticmethod(lambda ctx, g: backward(g))})


def test_backward_returning_the_wrong_dtype_is_named():
    op = doubling_op("WrongDtype", lambda g: g.astype(np.float32))
    with pytest.raises(RuntimeError, match=r"WrongDtype.backward returned a float32 gradient for a float64 input"):
        op.apply(leaf([1.0, 2.0])).sum().backward()


def test_backward_returning_a_smaller_gradient_is_named():
    op = doubling_op("TooFewDims", lambda g: g.sum(axis=0))
    with pytest.raises(RuntimeError, match=r"TooFewDims.backward returned a gradient of shape \(3,\) "
                                           r"for an input of shape \(2, 3\)"):
        op.apply(leaf(np.ones((2, 3)))).sum().backward()


def test_backward_returning_a_wrong_size_gradient_is_named():
    op = doubling_op("WrongSize", lambda g: g[:1])
    with pytest.raises(RuntimeError, match=r"WrongSize.backward returned a gradient of shape \(1,\)"):
        op.apply(leaf([1.0, 2.0, 3.0])).sum().backward()


def test_no_grad_works_as_a_bare_decorator():
    @mg.no_grad
    def f(t):
        return t * 3.0

    assert f(leaf([1.0])).grad_fn is None


def test_reductions_accept_axis_as_an_alias_of_dim():
    x = mg.randn(2, 3)
    assert x.sum(axis=1).shape == (2,) and x.mean(axis=0, keepdim=True).shape == (1, 3)


def test_integer_inputs_get_no_gradient():
    w = leaf(np.ones((4, 2)))
    ids = mg.tensor([0, 3, 3])
    w[ids].sum().backward()
    assert ids.grad is None and not ids.requires_grad
    assert w.grad.numpy()[3].tolist() == [2.0, 2.0]


def test_no_grad_restores_the_mode_after_an_exception():
    with pytest.raises(ValueError):
        with mg.no_grad():
            raise ValueError
    assert mg.is_grad_enabled()
