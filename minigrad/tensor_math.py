"""TensorMath, a mixin of Tensor (see tensor.py): the operators and the math methods.

`a * b` calls `Tensor.__mul__`, which hands `elementwise.Mul` to `Tensor._binary` (tensor.py): the operands
meet in torch's result dtype and `Mul.apply(a, b)` runs the op and records it for backward. The torch method
spellings (add, mul, div, ...) call the operators; comparisons return bool tensors and are not
differentiable. Then the unary math (exp, log, tanh, ...), clamp, and the softmax shortcuts.

Tensor's mixins sit below tensor.py in the layers (tensor.py imports them, never the reverse), so tensor.py
hands its class over when it is imported, as it does to autograd: `Tensor` below is that class.
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from minigrad import amp
from minigrad.arguments import is_operand, promote, to_array
from minigrad.dtypes import get_default_dtype, kind, result_type
from minigrad.ops import elementwise, fused, linalg

# The Tensor class, handed over by tensor.py (see the module docstring); None until minigrad.tensor is imported.
Tensor: Any = None


class TensorMath:
    """Operators, their torch method names, unary math, clamp and softmax (mixed into Tensor)."""

    __slots__ = ()  # Tensor's instances keep their __slots__ (no __dict__)

    # ------------------------------------------------------------------ arithmetic
    def __add__(self, o: Any, *, alpha: Any = 1) -> "Tensor":
        if alpha != 1 or type(alpha) is not int:
            return self._with_alpha(o, alpha, elementwise.Add, "add", False)
        return self._binary(o, elementwise.Add, "add")

    def __radd__(self, o: Any) -> "Tensor":
        return self._binary(o, elementwise.Add, "add", reverse=True)

    def __sub__(self, o: Any, *, alpha: Any = 1) -> "Tensor":
        if kind(self.data.dtype) == "b" or _is_bool(o):
            _refuse_bool_sub()
        if alpha != 1 or type(alpha) is not int:
            return self._with_alpha(o, alpha, elementwise.Sub, "sub", False)
        return self._binary(o, elementwise.Sub, "sub")

    def __rsub__(self, o: Any, *, alpha: Any = 1) -> "Tensor":
        """o - self, or with alpha torch.rsub(self, o, alpha) = o - alpha * self."""
        if kind(self.data.dtype) == "b" or _is_bool(o):
            _refuse_bool_sub()
        if alpha != 1 or type(alpha) is not int:
            return self._with_alpha(o, alpha, elementwise.Sub, "rsub", True)
        return self._binary(o, elementwise.Sub, "sub", reverse=True)

    def _with_alpha(self, o: Any, alpha: Any, fn: Any, name: str, reverse: bool) -> "Tensor":
        """torch's add/sub(x, y, alpha=a) = x +- a * y (rsub: y - a * x), in the promoted dtype."""
        if not is_operand(o):
            return NotImplemented
        if isinstance(alpha, Tensor) or not isinstance(alpha, numbers.Number) or isinstance(alpha, complex):
            raise TypeError(f"{name}(): alpha must be a Python number, got {type(alpha).__name__}")
        x, y = promote(name, self, o)
        if kind(x.data.dtype) in "iub" and not isinstance(alpha, numbers.Integral):
            raise RuntimeError("For integral input tensors, argument alpha must not be a floating point number.")
        if kind(x.data.dtype) == "b" and not isinstance(alpha, (bool, np.bool_)):
            raise RuntimeError("Boolean alpha only supported for Boolean results.")
        if reverse:
            return fn.apply(y, x * alpha)
        return fn.apply(x, y * alpha)

    # torch's method and function spellings of the operators
    def add(self, other: Any, *, alpha: Any = 1) -> "Tensor":
        return _operator_result(self.__add__(other, alpha=alpha), "add", other)

    def sub(self, other: Any, *, alpha: Any = 1) -> "Tensor":
        return _operator_result(self.__sub__(other, alpha=alpha), "sub", other)

    subtract = sub

    def mul(self, other: Any) -> "Tensor":
        return _operator_result(self.__mul__(other), "mul", other)

    multiply = mul

    def div(self, other: Any, *, rounding_mode: str | None = None) -> "Tensor":
        """torch.div: true division, or rounded toward zero ('trunc') or down ('floor'); a rounded quotient is
        piecewise constant, so its gradient is zero (as torch)."""
        if rounding_mode is None:
            return _operator_result(self.__truediv__(other), "div", other)
        if rounding_mode not in ("trunc", "floor"):
            raise RuntimeError(f"div expected rounding_mode to be one of None, 'trunc', or 'floor' but found "
                               f"{rounding_mode!r}")
        if not is_operand(other):
            raise TypeError(f"div(): unsupported operand of type {type(other).__name__}")
        x, y = promote("div", self, other)
        return elementwise.DivRounded.apply(x, y, mode=rounding_mode)

    divide = div

    def true_divide(self, other: Any) -> "Tensor":
        return self.div(other)

    def floor_divide(self, other: Any) -> "Tensor":
        return self.div(other, rounding_mode="floor")

    def __floordiv__(self, o: Any) -> "Tensor":
        if not is_operand(o):
            return NotImplemented
        return self.div(o, rounding_mode="floor")

    def __rfloordiv__(self, o: Any) -> "Tensor":
        if not is_operand(o):
            return NotImplemented
        x, y = promote("floor_divide", self, o)
        return elementwise.DivRounded.apply(y, x, mode="floor")

    def __mul__(self, o: Any) -> "Tensor":
        return self._binary(o, elementwise.Mul, "mul")

    def __rmul__(self, o: Any) -> "Tensor":
        return self._binary(o, elementwise.Mul, "mul", reverse=True)

    def __truediv__(self, o: Any, *, rounding_mode: str | None = None) -> "Tensor":
        if rounding_mode is not None:  # torch's Tensor.__truediv__ is Tensor.div
            return self.div(o, rounding_mode=rounding_mode)
        if kind(self.data.dtype) == "f":  # the result is float whatever o is
            return self._binary(o, elementwise.Div, "div")
        return self._true_divide(o, False)

    def __rtruediv__(self, o: Any) -> "Tensor":
        if kind(self.data.dtype) == "f":
            return self._binary(o, elementwise.Div, "div", reverse=True)
        return self._true_divide(o, True)

    def _true_divide(self, o: Any, reverse: bool) -> "Tensor":
        """/ with an integer or bool tensor: the promoted dtype, or the default float dtype if that is
        not a float (torch's true division)."""
        if not is_operand(o):
            return NotImplemented
        x, y = promote("div", self, o)
        if kind(x.data.dtype) != "f":
            x, y = x.type(get_default_dtype()), y.type(get_default_dtype())
        return elementwise.Div.apply(y, x) if reverse else elementwise.Div.apply(x, y)

    def __pow__(self, o: Any) -> "Tensor":
        if isinstance(o, numbers.Real) and not isinstance(o, (bool, np.bool_)):
            if isinstance(o, np.generic):  # a numpy scalar is a Python number here (it must not upcast)
                o = o.item()
            x = self
            if kind(x.data.dtype) != "f":
                if not isinstance(o, numbers.Integral):  # int tensor ** 0.5: the default float dtype, as torch
                    x = x._as_float()
                elif o < 0:
                    raise RuntimeError(f"pow: Integers to negative integer powers are not allowed "
                                       f"({self.dtype} tensor ** {o}); use a float tensor")
            return elementwise.PowScalar.apply(x, exponent=o)
        return self._binary(o, elementwise.Pow, "pow")

    def __rpow__(self, o: Any) -> "Tensor":
        return self._binary(o, elementwise.Pow, "pow", reverse=True)

    def __matmul__(self, o: Any) -> "Tensor":
        # no type promotion: mismatched dtypes raise in MatMul.forward, as torch.matmul
        return self._matmul(o, False)

    def __rmatmul__(self, o: Any) -> "Tensor":
        return self._matmul(o, True)

    def _matmul(self, o: Any, reverse: bool) -> "Tensor":
        if type(o) is not Tensor:
            if not is_operand(o):
                return NotImplemented
            o = Tensor(to_array(o, self.device, None), device=self.device, _copy=False)
        a, b = amp.to_low(self, o)  # under autocast: in float16/bfloat16
        return linalg.MatMul.apply(b, a) if reverse else linalg.MatMul.apply(a, b)

    def __neg__(self) -> "Tensor":
        return elementwise.Neg.apply(self)

    # comparisons are not differentiable: they return bool tensors
    def _compare(self, o: Any, name: str) -> "Tensor":
        if not is_operand(o):
            return NotImplemented
        other = o.data if isinstance(o, Tensor) else o
        return Tensor(getattr(self.data, name)(other), device=self.device, _copy=False)

    def __eq__(self, o: Any) -> "Tensor":  # type: ignore[override]
        return self._compare(o, "__eq__")

    def __ne__(self, o: Any) -> "Tensor":  # type: ignore[override]
        return self._compare(o, "__ne__")

    def __lt__(self, o: Any) -> "Tensor":
        return self._compare(o, "__lt__")

    def __le__(self, o: Any) -> "Tensor":
        return self._compare(o, "__le__")

    def __gt__(self, o: Any) -> "Tensor":
        return self._compare(o, "__gt__")

    def __ge__(self, o: Any) -> "Tensor":
        return self._compare(o, "__ge__")

    __hash__ = object.__hash__

    # ------------------------------------------------------------------ unary math
    def exp(self) -> "Tensor":
        return elementwise.Exp.apply(self._as_float())

    def log(self) -> "Tensor":
        return elementwise.Log.apply(self._as_float())

    def sqrt(self) -> "Tensor":
        return elementwise.Sqrt.apply(self._as_float())

    def tanh(self) -> "Tensor":
        return elementwise.Tanh.apply(self._as_float())

    def sigmoid(self) -> "Tensor":
        return elementwise.Sigmoid.apply(self._as_float())

    def relu(self) -> "Tensor":
        return elementwise.Relu.apply(self)

    def abs(self) -> "Tensor":
        return elementwise.Abs.apply(self)

    def pow(self, exponent: Any) -> "Tensor":
        return self ** exponent

    def maximum(self, other: Any) -> "Tensor":
        return self._binary(other, elementwise.Maximum, "maximum")

    def minimum(self, other: Any) -> "Tensor":
        return self._binary(other, elementwise.Minimum, "minimum")

    def clip(self, min: Any = None, max: Any = None) -> "Tensor":
        """torch.clamp: numbers or tensors (broadcast) as bounds; torch's result dtype and gradients (the
        bound tensors get theirs too); where min > max the result is max."""
        if min is None and max is None:
            raise RuntimeError("clamp: At least one of 'min' or 'max' must not be None")
        scalar = (min is None or (isinstance(min, numbers.Real) and not isinstance(min, bool))) and \
                 (max is None or (isinstance(max, numbers.Real) and not isinstance(max, bool)))
        bounds = [b for b in (min, max) if b is not None]
        if scalar:
            x = self
            dt = result_type(self, *bounds)
            if dt != x.data.dtype:
                x = x.type(dt)
            return elementwise.Clip.apply(x, min=min, max=max)
        x, *bounds = promote("clamp", self, *bounds)
        return elementwise.ClampTensor.apply(x, *bounds, has_min=min is not None, has_max=max is not None)

    def clamp_min(self, min: Any) -> "Tensor":
        return self.clip(min=min)

    def clamp_max(self, max: Any) -> "Tensor":
        return self.clip(max=max)

    clamp = clip

    # ------------------------------------------------------------------ nn-ish shortcuts
    # as nn.functional.softmax / log_softmax with an explicit dim (the ops check dims, 0-d and empty inputs)
    def softmax(self, dim: int = -1, dtype: Any = None) -> "Tensor":
        x = self if dtype is None else self.to(dtype)  # torch: cast first
        return fused.Softmax.apply(x, axis=dim)

    def log_softmax(self, dim: int = -1, dtype: Any = None) -> "Tensor":
        x = self if dtype is None else self.to(dtype)
        return fused.LogSoftmax.apply(x, axis=dim)


def _operator_result(out: Any, name: str, other: Any) -> "Tensor":
    """A method spelling's result: the operator's NotImplemented (a str operand, ...) becomes a TypeError."""
    if out is NotImplemented:
        raise TypeError(f"{name}(): unsupported operand of type {type(other).__name__}")
    return out


def _is_bool(o: Any) -> bool:
    return o is True or o is False or (type(o) is Tensor and kind(o.data.dtype) == "b")


def _refuse_bool_sub() -> None:
    raise RuntimeError("Subtraction, the `-` operator, with a bool tensor is not supported. If you are trying to "
                       "invert a mask, use the `~` or `logical_not()` operator instead.")
