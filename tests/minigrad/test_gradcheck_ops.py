"""Every Function subclass is gradient-checked; an op without a spec fails the suite."""
from __future__ import annotations

import gc
import importlib
import pkgutil

import numpy as np
import pytest

import minigrad as mg
from minigrad.autograd import Function
from tests.minigrad.op_specs import SPECS, all_cases, draw, minigrad_lib

LIB = minigrad_lib()


def all_functions(prefix: str = "minigrad") -> set[type]:
    """Every Function subclass defined in modules under prefix (imports all minigrad modules first)."""
    import minigrad
    for mod in pkgutil.walk_packages(minigrad.__path__, "minigrad."):
        if not mod.name.endswith("__main__") and "selftest" not in mod.name:
            importlib.import_module(mod.name)
    found, stack = set(), [Function]
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            stack.append(sub)
            if sub.__module__.startswith(prefix):
                found.add(sub)
    return found


def uncovered(functions: set[type]) -> list[str]:
    return sorted(f.__name__ for f in functions if not SPECS.get(f.__name__))


def test_every_function_has_a_gradcheck_spec():
    missing = uncovered(all_functions())
    assert not missing, f"Function subclasses with no gradient-check spec in tests/minigrad/op_specs.py: {missing}"


def test_specs_name_only_real_functions():
    names = {f.__name__ for f in all_functions()}
    assert set(SPECS) <= names, f"specs for unknown ops: {sorted(set(SPECS) - names)}"


def test_discovery_catches_a_new_unspecified_op():
    class SquarePlusOne(Function):  # a new op nobody wrote a spec for
        @staticmethod
        def forward(ctx, x):
            ctx.x = x
            return x * x + 1

        @staticmethod
        def backward(ctx, g):
            return 2 * ctx.x * g

    SquarePlusOne.__module__ = "minigrad.ops.new_op"
    try:
        assert "SquarePlusOne" in uncovered(all_functions())
    finally:
        del SquarePlusOne
        gc.collect()
    assert "SquarePlusOne" not in uncovered(all_functions())


def make_inputs(case, dtype="float64", seed=0):
    rng = np.random.default_rng(seed)
    return [mg.tensor(draw(s, case.domain, rng), dtype=dtype, requires_grad=True) for s in case.shapes]


@pytest.mark.parametrize("name,i,case", all_cases(), ids=[f"{n}-{i}" for n, i, _ in all_cases()])
def test_gradcheck(name, i, case):
    inputs = make_inputs(case)
    out = case.fn(LIB, *inputs)
    assert out.grad_fn is not None
    mg.gradcheck(lambda *xs: case.fn(LIB, *xs), inputs, name=f"{name}[{i}]")


def _f32_cases():
    return [(n, i, c) for n, i, c in all_cases() if c.float32]


@pytest.mark.parametrize("name,i,case", _f32_cases(), ids=[f"{n}-{i}" for n, i, _ in _f32_cases()])
def test_float32_matches_float64(name, i, case):
    x64, x32 = make_inputs(case, "float64"), make_inputs(case, "float32")
    out64, out32 = case.fn(LIB, *x64), case.fn(LIB, *x32)
    assert out32.dtype == np.float32
    g = np.random.default_rng(1).standard_normal(out64.shape)
    out64.backward(mg.tensor(g, dtype="float64"))
    out32.backward(mg.tensor(g, dtype="float32"))
    np.testing.assert_allclose(out32.numpy(), out64.numpy(), rtol=1e-4, atol=1e-5)
    for a, b in zip(x32, x64):
        assert a.grad.dtype == np.float32 and a.grad.shape == a.shape
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-3, atol=1e-4)


def test_gradcheck_reports_a_wrong_backward():
    class BadSquare(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.x = x
            return x * x

        @staticmethod
        def backward(ctx, g):
            return ctx.x * g  # should be 2 x g

    BadSquare.__module__ = "tests.bad"
    x = mg.randn(3, dtype="float64", requires_grad=True)
    with pytest.raises(mg.GradcheckError, match=r"BadSquare.*input 0.*analytic.*numeric"):
        mg.gradcheck(lambda t: BadSquare.apply(t), [x])


def test_gradcheck_catches_zero_softmax_backward_that_sum_would_miss():
    # sum(softmax(x)) is constant: a zero backward would pass a sum-based check
    class ZeroGradSoftmax(Function):
        @staticmethod
        def forward(ctx, x):
            e = np.exp(x - x.max(-1, keepdims=True))
            return e / e.sum(-1, keepdims=True)

        @staticmethod
        def backward(ctx, g):
            return np.zeros_like(g)

    ZeroGradSoftmax.__module__ = "tests.bad"
    x = mg.randn(2, 4, dtype="float64", requires_grad=True)
    with pytest.raises(mg.GradcheckError):
        mg.gradcheck(lambda t: ZeroGradSoftmax.apply(t), [x])


class TripleWithDoubleGrad(Function):
    """y = 3x with a wrong backward (2g): the bug the checks below must find."""

    @staticmethod
    def forward(ctx, x):
        return x * 3.0

    @staticmethod
    def backward(ctx, g):
        return g * 2.0


TripleWithDoubleGrad.__module__ = "tests.bad"


def test_gradcheck_projection_mode_names_the_worst_element_on_failure():
    x = mg.randn(20, 10, dtype="float64", requires_grad=True)  # 200 elements: projection mode
    with pytest.raises(mg.GradcheckError, match=r"TripleWithDoubleGrad, input 0, gradient \(projection 0 failed.*"
                                                r"200 of 200 entries off; worst at \(\d+, \d+\)"):
        mg.gradcheck(lambda t: TripleWithDoubleGrad.apply(t), [x])


def test_gradcheck_projection_only_report_for_very_large_inputs():
    x = mg.randn(20, 10, dtype="float64", requires_grad=True)
    with pytest.raises(mg.GradcheckError, match=r"input 0, projection 0 \(grad \. u\)"):
        mg.gradcheck(lambda t: TripleWithDoubleGrad.apply(t), [x], full_on_failure=0)


def test_gradcheck_lists_the_ops_of_a_composite_and_the_failing_input():
    x, y = (mg.randn(2, 3, dtype="float64", requires_grad=True) for _ in range(2))
    with pytest.raises(mg.GradcheckError, match=r"ops in the graph, inputs first: Exp, TripleWithDoubleGrad, Mul\), "
                                                r"input 0, gradient"):
        mg.gradcheck(lambda a, b: TripleWithDoubleGrad.apply(a.exp()) * b, [x, y])


def test_gradcheck_names_the_outputs_op_even_when_its_name_came_earlier_in_the_graph():
    x = mg.randn(2, 3, dtype="float64", requires_grad=True)
    with pytest.raises(mg.GradcheckError, match=r"gradcheck failed for Mul \(ops in the graph, inputs first: "
                                                r"TripleWithDoubleGrad, Mul, Add\)"):
        mg.gradcheck(lambda a: (TripleWithDoubleGrad.apply(a) * 2.0 + 1.0) * 3.0, [x])


def test_gradcheck_of_an_input_passed_through_is_true():
    x = mg.randn(3, dtype="float64", requires_grad=True)
    assert mg.gradcheck(lambda t: t, [x])


def test_gradcheck_passes_a_correct_composite_and_accepts_non_tensor_inputs():
    x = mg.randn(3, 4, dtype="float64", requires_grad=True)
    w = mg.randn(4, 2, dtype="float64")  # no grad: a constant of the check
    assert mg.gradcheck(lambda a, b, scale: ((a @ b).tanh() * scale).softmax(-1), [x, w, 2.0])


def test_gradcheck_needs_float64():
    x = mg.randn(3, requires_grad=True)
    with pytest.raises(TypeError, match="float64"):
        mg.gradcheck(lambda t: t.exp(), [x])
