"""Tensor: a backend array plus what autograd needs (grad, requires_grad, the op that made it)."""
from __future__ import annotations

import numbers
import operator
from typing import Any, NamedTuple, Sequence

import numpy as np

from minigrad import autograd, backend
from minigrad.backend import Device
from minigrad.ops import elementwise, fused, linalg, reduce
from minigrad.ops import shape as shape_ops

float16 = np.dtype("float16")
float32 = np.dtype("float32")
float64 = np.dtype("float64")
int64 = np.dtype("int64")
int32 = np.dtype("int32")
bool_ = np.dtype("bool")
_DTYPES = {"float32": float32, "float64": float64, "float": float32, "double": float64,
           "int64": int64, "long": int64, "int32": int32, "int": int32, "bool": bool_,
           "float16": np.dtype("float16"), "half": np.dtype("float16"), "uint8": np.dtype("uint8"),
           "uint16": np.dtype("uint16"), "int8": np.dtype("int8"), "int16": np.dtype("int16"),
           "short": np.dtype("int16")}
_default_dtype = float32


def as_dtype(dtype: Any) -> np.dtype:
    """Normalise a dtype given as a name, numpy type or np.dtype."""
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise TypeError(f"unknown dtype {dtype!r}; expected one of {sorted(_DTYPES)}")
        return _DTYPES[dtype]
    return np.dtype(dtype)


def set_default_dtype(dtype: Any) -> None:
    """Set the float dtype that new float tensors get (float32 unless changed)."""
    global _default_dtype
    dtype = as_dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"default dtype must be floating point, got {dtype}")
    _default_dtype = dtype


def get_default_dtype() -> np.dtype:
    """The float dtype that new float tensors get."""
    return _default_dtype


class MaxResult(NamedTuple):
    values: "Tensor"
    indices: "Tensor"


class Tensor:
    """An n-dimensional array that records the ops applied to it for reverse-mode autograd."""

    # _vc: the version counter, a one-item list shared by every tensor that views the same memory;
    # each in-place change bumps it, and backward refuses arrays changed after an op saved them.
    # _base: the tensor this one is a view of (None for tensors that own their memory)
    __slots__ = ("data", "grad", "requires_grad", "_ctx", "device", "_vc", "_base", "retains_grad", "__weakref__")
    __array_priority__ = 1000  # so numpy_array + tensor calls Tensor.__radd__

    def __init__(self, data: Any, device: "str | Device | None" = None, requires_grad: bool = False,
                 _copy: bool = True) -> None:
        if isinstance(data, Tensor):
            data = data.data
        dev = backend.device(device) if not isinstance(device, Device) else device
        if _copy:
            data = _to_array(data, dev, None)
        self.data = data
        self.device = dev
        self.grad: Tensor | None = None
        self.requires_grad = False
        self._ctx = None
        self._vc = [0]
        self._base = None
        self.retains_grad = False  # retain_grad(): backward keeps this non-leaf's gradient in .grad
        if requires_grad:
            self.requires_grad_(True)

    # ------------------------------------------------------------------ properties
    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def grad_fn(self) -> Any:
        return None if self._ctx is None else self._ctx.fn

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def _version(self) -> int:
        """How many in-place changes this tensor's memory has seen (torch's Tensor._version)."""
        return self._vc[0]

    @property
    def T(self) -> "Tensor":
        return self.permute(*reversed(range(self.ndim)))

    def size(self, dim: int | None = None) -> Any:
        """The shape, or one of its entries (PyTorch's Tensor.size)."""
        return self.shape if dim is None else self.shape[dim]

    def numel(self) -> int:
        return int(self.data.size)

    def dim(self) -> int:
        return self.data.ndim

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __repr__(self) -> str:
        body = np.array2string(self.numpy(), separator=", ", precision=4, threshold=50, prefix="tensor(")
        extras = []
        if self.device.type != "cpu":
            extras.append(f"device='{self.device}'")
        if self.dtype != _default_dtype and self.dtype.kind == "f":
            extras.append(f"dtype={self.dtype}")
        if self._ctx is not None:
            extras.append(f"grad_fn=<{self._ctx.fn.__name__}>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + ", ".join([body] + extras) + ")"

    # ------------------------------------------------------------------ conversion
    def item(self) -> Any:
        if self.data.size != 1:
            raise ValueError(f"item(): only one-element tensors can be converted, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def numpy(self) -> np.ndarray:
        """A host numpy array of the data (shares memory on the CPU)."""
        return backend.to_numpy(self.data)

    def tolist(self) -> Any:
        return self.numpy().tolist()

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __bool__(self) -> bool:
        return bool(self.item())

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def detach(self) -> "Tensor":
        """A tensor sharing the data (and its version counter), cut from the graph."""
        out = Tensor(self.data, device=self.device, _copy=False)
        out._vc = self._vc
        return out

    def clone(self, memory_format: Any = None) -> "Tensor":
        """A copy with its own memory; gradients flow back to self."""
        _check_memory_format(memory_format, "clone")
        return elementwise.Clone.apply(self)

    def retain_grad(self) -> None:
        """Keep this non-leaf tensor's gradient in .grad after backward (leaves always keep theirs), as torch."""
        if not self.requires_grad:
            raise RuntimeError("can't retain_grad on a tensor that has requires_grad=False")
        if self._ctx is not None:
            self.retains_grad = True

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        if requires_grad and self.dtype.kind not in "fc":
            raise RuntimeError(f"only tensors of floating point dtype can require gradients, got {self.dtype}")
        if not requires_grad and self._ctx is not None:
            raise RuntimeError("requires_grad_(False) on a non-leaf tensor: use detach()")
        self.requires_grad = requires_grad
        return self

    def to(self, *args: Any, **kwargs: Any) -> "Tensor":
        """torch's overloads: .to(dtype, non_blocking=False, copy=False), .to(device=None, dtype=None,
        non_blocking=False, copy=False), .to(other_tensor, non_blocking=False, copy=False), each with
        memory_format=. Copies between devices are synchronous (non_blocking is accepted as the hint it is);
        copy=True always returns a new tensor (differentiable, as torch)."""
        device, dtype, non_blocking, copy = to_arguments(args, kwargs)
        out = self
        if dtype is not None and as_dtype(dtype) != self.dtype:
            out = out.type(dtype)
        if device is not None and backend.device(device) != out.device:
            out = _to_device(out, backend.device(device))
        if copy and out is self:
            out = elementwise.Clone.apply(self)
        return out

    def cpu(self, memory_format: Any = None) -> "Tensor":
        return self.to("cpu", memory_format=memory_format)

    def cuda(self, index: int = 0, non_blocking: bool = False, memory_format: Any = None) -> "Tensor":
        return self.to(f"cuda:{index}", non_blocking=non_blocking, memory_format=memory_format)

    def type(self, dtype: Any) -> "Tensor":
        """Cast to another dtype (differentiable between float dtypes)."""
        dtype = as_dtype(dtype)
        if dtype == self.dtype:
            return self
        if self.requires_grad and dtype.kind == "f":
            return elementwise.Cast.apply(self, dtype=dtype)
        return Tensor(self.data.astype(dtype), device=self.device, _copy=False)

    def float(self, memory_format: Any = None) -> "Tensor":
        _check_memory_format(memory_format, "float")
        return self.type(float32)

    def double(self, memory_format: Any = None) -> "Tensor":
        _check_memory_format(memory_format, "double")
        return self.type(float64)

    def half(self, memory_format: Any = None) -> "Tensor":
        _check_memory_format(memory_format, "half")
        return self.type(float16)

    def long(self, memory_format: Any = None) -> "Tensor":
        _check_memory_format(memory_format, "long")
        return self.type(int64)

    def int(self, memory_format: Any = None) -> "Tensor":
        _check_memory_format(memory_format, "int")
        return self.type(int32)

    def bool(self, memory_format: Any = None) -> "Tensor":
        _check_memory_format(memory_format, "bool")
        return self.type(bool_)

    def backward(self, gradient: Any = None, retain_graph: bool | None = None, create_graph: bool = False,
                 inputs: Any = None, *, grad: Any = None) -> None:
        """Backpropagate from this tensor, accumulating into .grad of leaves that require grad (torch's
        arguments; grad= is minigrad's older name of gradient=). Higher-order gradients (create_graph=True)
        and inputs= are not supported."""
        if create_graph:
            raise NotImplementedError("backward: create_graph=True is not supported (minigrad's backward works on "
                                      "raw arrays and builds no graph; higher-order gradients are out of scope)")
        if inputs is not None:
            raise NotImplementedError("backward: inputs= is not supported; gradients go to every leaf that "
                                      "requires grad (use detach() to cut others off)")
        if grad is not None:
            if gradient is not None:
                raise TypeError("backward: pass gradient= or grad=, not both")
            gradient = grad
        autograd.backward(self, gradient, bool(retain_graph))

    def _as_float(self) -> "Tensor":
        """self, or for an integer/bool tensor a copy in the default float dtype (float-only ops, as torch)."""
        if self.data.dtype.kind == "f":
            return self
        return Tensor(self.data.astype(_default_dtype), device=self.device, _copy=False)

    # ------------------------------------------------------------------ operand handling
    def _binary(self, other: Any, fn: Any, name: str, reverse: bool = False) -> "Tensor":
        """fn(self, other) (or fn(other, self)) with torch's type promotion. The common cases (a tensor of
        the same dtype, a Python number that cannot change the dtype) cost one comparison."""
        t = type(other)
        if t is Tensor:
            if other.data.dtype == self.data.dtype and other.device is self.device:
                return fn.apply(other, self) if reverse else fn.apply(self, other)
        elif t is float or t is int:
            dt = self.data.dtype
            if dt.kind == "f":  # the number takes the tensor's dtype
                o = Tensor(self.device.xp.array(other, dtype=dt), device=self.device, _copy=False)
                return fn.apply(o, self) if reverse else fn.apply(self, o)
            if t is int and dt.kind in "iu":  # (wrapping out-of-range ints, as torch)
                o = Tensor(_to_array(other, self.device, dt), device=self.device, _copy=False)
                return fn.apply(o, self) if reverse else fn.apply(self, o)
        elif not _is_operand(other):  # a str, None, ...: Python then raises its own "unsupported operand" TypeError
            return NotImplemented
        x, y = _promote(name, self, other)
        return fn.apply(y, x) if reverse else fn.apply(x, y)

    # ------------------------------------------------------------------ arithmetic
    def __add__(self, o: Any, *, alpha: Any = 1) -> "Tensor":
        if alpha != 1 or type(alpha) is not int:
            return self._with_alpha(o, alpha, elementwise.Add, "add", False)
        return self._binary(o, elementwise.Add, "add")

    def __radd__(self, o: Any) -> "Tensor":
        return self._binary(o, elementwise.Add, "add", reverse=True)

    def __sub__(self, o: Any, *, alpha: Any = 1) -> "Tensor":
        if self.data.dtype.kind == "b" or _is_bool(o):
            _refuse_bool_sub()
        if alpha != 1 or type(alpha) is not int:
            return self._with_alpha(o, alpha, elementwise.Sub, "sub", False)
        return self._binary(o, elementwise.Sub, "sub")

    def __rsub__(self, o: Any, *, alpha: Any = 1) -> "Tensor":
        """o - self, or with alpha torch.rsub(self, o, alpha) = o - alpha * self."""
        if self.data.dtype.kind == "b" or _is_bool(o):
            _refuse_bool_sub()
        if alpha != 1 or type(alpha) is not int:
            return self._with_alpha(o, alpha, elementwise.Sub, "rsub", True)
        return self._binary(o, elementwise.Sub, "sub", reverse=True)

    def _with_alpha(self, o: Any, alpha: Any, fn: Any, name: str, reverse: bool) -> "Tensor":
        """torch's add/sub(x, y, alpha=a) = x +- a * y (rsub: y - a * x), in the promoted dtype."""
        if not _is_operand(o):
            return NotImplemented
        if isinstance(alpha, Tensor) or not isinstance(alpha, numbers.Number) or isinstance(alpha, complex):
            raise TypeError(f"{name}(): alpha must be a Python number, got {type(alpha).__name__}")
        x, y = _promote(name, self, o)
        if x.data.dtype.kind in "iub" and not isinstance(alpha, numbers.Integral):
            raise RuntimeError("For integral input tensors, argument alpha must not be a floating point number.")
        if x.data.dtype.kind == "b" and not isinstance(alpha, (bool, np.bool_)):
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
        if not _is_operand(other):
            raise TypeError(f"div(): unsupported operand of type {type(other).__name__}")
        x, y = _promote("div", self, other)
        return elementwise.DivRounded.apply(x, y, mode=rounding_mode)

    divide = div

    def true_divide(self, other: Any) -> "Tensor":
        return self.div(other)

    def floor_divide(self, other: Any) -> "Tensor":
        return self.div(other, rounding_mode="floor")

    def __floordiv__(self, o: Any) -> "Tensor":
        if not _is_operand(o):
            return NotImplemented
        return self.div(o, rounding_mode="floor")

    def __rfloordiv__(self, o: Any) -> "Tensor":
        if not _is_operand(o):
            return NotImplemented
        x, y = _promote("floor_divide", self, o)
        return elementwise.DivRounded.apply(y, x, mode="floor")

    def __mul__(self, o: Any) -> "Tensor":
        return self._binary(o, elementwise.Mul, "mul")

    def __rmul__(self, o: Any) -> "Tensor":
        return self._binary(o, elementwise.Mul, "mul", reverse=True)

    def __truediv__(self, o: Any, *, rounding_mode: str | None = None) -> "Tensor":
        if rounding_mode is not None:  # torch's Tensor.__truediv__ is Tensor.div
            return self.div(o, rounding_mode=rounding_mode)
        if self.data.dtype.kind == "f":  # the result is float whatever o is
            return self._binary(o, elementwise.Div, "div")
        return self._true_divide(o, False)

    def __rtruediv__(self, o: Any) -> "Tensor":
        if self.data.dtype.kind == "f":
            return self._binary(o, elementwise.Div, "div", reverse=True)
        return self._true_divide(o, True)

    def _true_divide(self, o: Any, reverse: bool) -> "Tensor":
        """/ with an integer or bool tensor: the promoted dtype, or the default float dtype if that is
        not a float (torch's true division)."""
        if not _is_operand(o):
            return NotImplemented
        x, y = _promote("div", self, o)
        if x.data.dtype.kind != "f":
            x, y = x.type(_default_dtype), y.type(_default_dtype)
        return elementwise.Div.apply(y, x) if reverse else elementwise.Div.apply(x, y)

    def __pow__(self, o: Any) -> "Tensor":
        if isinstance(o, numbers.Real) and not isinstance(o, (bool, np.bool_)):
            if isinstance(o, np.generic):  # a numpy scalar is a Python number here (it must not upcast)
                o = o.item()
            x = self
            if x.data.dtype.kind != "f":
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
            if not _is_operand(o):
                return NotImplemented
            o = Tensor(_to_array(o, self.device, None), device=self.device, _copy=False)
        return linalg.MatMul.apply(o, self) if reverse else linalg.MatMul.apply(self, o)

    def __neg__(self) -> "Tensor":
        return elementwise.Neg.apply(self)

    def __iadd__(self, o: Any) -> "Tensor":
        return _inplace(self, o, "add")

    def __isub__(self, o: Any) -> "Tensor":
        return _inplace(self, o, "sub")

    def __imul__(self, o: Any) -> "Tensor":
        return _inplace(self, o, "mul")

    def __itruediv__(self, o: Any) -> "Tensor":
        return _inplace(self, o, "truediv")

    # comparisons are not differentiable: they return bool tensors
    def _compare(self, o: Any, name: str) -> "Tensor":
        if not _is_operand(o):
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
        x, *bounds = _promote("clamp", self, *bounds)
        return elementwise.ClampTensor.apply(x, *bounds, has_min=min is not None, has_max=max is not None)

    def clamp_min(self, min: Any) -> "Tensor":
        return self.clip(min=min)

    def clamp_max(self, max: Any) -> "Tensor":
        return self.clip(max=max)

    clamp = clip

    # ------------------------------------------------------------------ reductions
    # reductions take dim= and, as torch does, its numpy spelling axis=; a 0-d tensor takes dim 0 or -1,
    # and dim=() means every dim (torch's legacy rule)
    def sum(self, dim: Any = None, keepdim: bool = False, *, dtype: Any = None, axis: Any = None) -> "Tensor":
        x = self if dtype is None else self.type(dtype)
        return reduce.Sum.apply(x, axis=_axis(_dim(dim, axis), x.ndim), keepdims=keepdim)

    def mean(self, dim: Any = None, keepdim: bool = False, *, dtype: Any = None, axis: Any = None) -> "Tensor":
        x = self if dtype is None else self.type(dtype)
        if x.data.dtype.kind != "f":
            raise RuntimeError(f"mean(): could not infer output dtype. Input dtype must be either a floating point "
                               f"or complex dtype. Got: {x.dtype} (cast with .float() or pass dtype=)")
        return reduce.Mean.apply(x, axis=_axis(_dim(dim, axis), x.ndim), keepdims=keepdim)

    def var(self, dim: Any = None, unbiased: bool | None = None, keepdim: bool = False, *,
            correction: float | None = None, axis: Any = None) -> "Tensor":
        """torch.var: x.var(), x.var(unbiased), x.var(dim, unbiased, keepdim), x.var(dim, correction=, keepdim=)."""
        return self._var_like(reduce.Var, "var", dim, unbiased, keepdim, correction, axis)

    def std(self, dim: Any = None, unbiased: bool | None = None, keepdim: bool = False, *,
            correction: float | None = None, axis: Any = None) -> "Tensor":
        """torch.std, with var's arguments."""
        return self._var_like(reduce.Std, "std", dim, unbiased, keepdim, correction, axis)

    def _var_like(self, fn: Any, name: str, dim: Any, unbiased: Any, keepdim: bool, correction: Any,
                  axis: Any) -> "Tensor":
        if isinstance(dim, bool):  # x.var(True): torch's var(unbiased) overload, not dim 1
            if unbiased is not None:
                raise TypeError(f"{name}(): a bool first argument is unbiased, and unbiased was given twice")
            dim, unbiased = None, dim
        if unbiased is not None:
            if correction is not None:
                raise TypeError(f"{name}(): pass unbiased or correction, not both")
            correction = 1 if unbiased else 0
        elif correction is None:  # torch: None means the default, 1
            correction = 1
        if self.data.dtype.kind != "f":
            raise RuntimeError(f"std and var only support floating point and complex dtypes (got {self.dtype})")
        return fn.apply(self, axis=_axis(_dim(dim, axis), self.ndim), correction=correction, keepdims=keepdim)

    def logsumexp(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None) -> "Tensor":
        if dim is None and axis is None:
            raise TypeError("logsumexp() missing its dim argument (as torch.logsumexp)")
        x = self._as_float()
        return reduce.LogSumExp.apply(x, axis=_axis(_dim(dim, axis), x.ndim), keepdims=keepdim)

    def amax(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None) -> "Tensor":
        """Max over dims; tied maxima share the gradient evenly (torch.amax)."""
        ax = _axis(_dim(dim, axis), self.ndim)
        _check_nonempty(self, ax, "amax")
        return reduce.Max.apply(self, axis=ax, keepdims=keepdim)

    def amin(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None) -> "Tensor":
        """Min over dims; tied minima share the gradient evenly (torch.amin)."""
        ax = _axis(_dim(dim, axis), self.ndim)
        _check_nonempty(self, ax, "amin")
        return -reduce.Max.apply(-self, axis=ax, keepdims=keepdim)

    def max(self, dim: Any = None, keepdim: bool = False, *, axis: int | None = None) -> Any:
        """max() -> the maximum (ties share the gradient); max(dim) -> (values, indices) like PyTorch;
        max(other_tensor) -> maximum(self, other)."""
        if isinstance(dim, Tensor):
            return self.maximum(dim)
        dim = _dim(dim, axis)
        if dim is None:
            return self.amax()
        return self._pick_along(dim, keepdim, self.data.argmax, "max")

    def min(self, dim: Any = None, keepdim: bool = False, *, axis: int | None = None) -> Any:
        """min() -> the minimum (ties share the gradient); min(dim) -> (values, indices) like PyTorch;
        min(other_tensor) -> minimum(self, other)."""
        if isinstance(dim, Tensor):
            return self.minimum(dim)
        dim = _dim(dim, axis)
        if dim is None:
            return self.amin()
        return self._pick_along(dim, keepdim, self.data.argmin, "min")

    def _pick_along(self, dim: int, keepdim: bool, arg: Any, name: str) -> MaxResult:
        # the gradient flows to the single returned index, as torch.max(x, dim) does
        dim = _wrap_dim(dim, self.ndim)
        if not self.ndim:
            return MaxResult(self.amax(), Tensor(arg(), device=self.device, _copy=False))
        _check_nonempty(self, (dim,), name)
        idx = arg(axis=dim, keepdims=True)
        values = self.gather(dim, Tensor(idx, device=self.device, _copy=False))
        idx_t = Tensor(idx, device=self.device, _copy=False)
        if not keepdim:
            values, idx_t = values.squeeze(dim), idx_t.squeeze(dim)
        return MaxResult(values, idx_t)

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> "Tensor":
        return self._arg(self.data.argmax, dim, keepdim, "argmax")

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> "Tensor":
        return self._arg(self.data.argmin, dim, keepdim, "argmin")

    def _arg(self, fn: Any, dim: Any, keepdim: bool, name: str) -> "Tensor":
        xp = self.device.xp
        if dim is None:  # the index into the flattened tensor
            _check_nonempty(self, None, name)
            out = xp.asarray(fn())
            if keepdim:
                out = out.reshape((1,) * self.ndim)
        else:
            ax = _wrap_dim(dim, self.ndim)
            if not self.ndim:
                out = xp.zeros((), dtype=np.int64)
            else:
                _check_nonempty(self, (ax,), name)
                out = fn(axis=ax, keepdims=keepdim)
        return Tensor(out, device=self.device, _copy=False)

    # ------------------------------------------------------------------ shape
    def reshape(self, *shape: Any) -> "Tensor":
        shape = _shape_arg(shape)
        if shape == self.shape:
            return self
        try:
            return shape_ops.Reshape.apply(self, shape=shape)
        except ValueError:  # numpy's "cannot reshape array of size ...": torch's error instead
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {self.numel()}") from None

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> "Tensor":
        s, e = _wrap_dim(start_dim, self.ndim), _wrap_dim(end_dim, self.ndim)
        if self.ndim == 0:
            return self.reshape(1)
        if s > e:
            raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
        shape = self.shape
        n = 1
        for k in shape[s:e + 1]:
            n *= k
        return self.reshape(shape[:s] + (n,) + shape[e + 1:])

    def squeeze(self, dim: Any = None) -> "Tensor":
        """Drop size-1 dims: all of them, one (dim) or several (a tuple of dims; () drops none), as torch."""
        if dim is None:
            return self.reshape(tuple(n for n in self.shape if n != 1))
        if isinstance(dim, (tuple, list)):
            dims = _axis(tuple(dim), self.ndim) if dim else ()
            dims = () if dims is None else dims
        else:
            dims = (_wrap_dim(dim, self.ndim),)
        if self.ndim == 0:
            return self
        return self.reshape(tuple(n for i, n in enumerate(self.shape) if n != 1 or i not in dims))

    def unsqueeze(self, dim: int) -> "Tensor":
        dim = _wrap_dim(dim, self.ndim + 1)
        return self.reshape(self.shape[:dim] + (1,) + self.shape[dim:])

    def permute(self, *dims: Any) -> "Tensor":
        dims = _shape_arg(dims)
        if len(dims) != self.ndim:
            raise RuntimeError(f"permute: the number of dims ({len(dims)}) does not match the {self.ndim} dims "
                               f"of shape {self.shape}")
        dims = tuple(_wrap_dim(d, self.ndim) for d in dims)
        if sorted(dims) != list(range(self.ndim)):
            raise RuntimeError(f"permute: {dims} is not a permutation of the {self.ndim} dims of shape {self.shape}")
        return shape_ops.Permute.apply(self, dims=dims)

    def transpose(self, dim0: int, dim1: int) -> "Tensor":
        d0, d1 = _wrap_dim(dim0, self.ndim), _wrap_dim(dim1, self.ndim)
        dims = list(range(self.ndim))
        if self.ndim:
            dims[d0], dims[d1] = dims[d1], dims[d0]
        return shape_ops.Permute.apply(self, dims=tuple(dims))

    def expand(self, *shape: Any) -> "Tensor":
        shape = _shape_arg(shape)
        lead = len(shape) - self.ndim
        shape = tuple(self.shape[i - lead] if n == -1 else n for i, n in enumerate(shape))
        try:
            np.broadcast_shapes(self.shape, shape)
        except ValueError:
            raise ValueError(f"expand: shape {self.shape} cannot be broadcast to {shape}") from None
        return shape_ops.Expand.apply(self, shape=shape)

    def broadcast_to(self, shape: Sequence[int]) -> "Tensor":
        return self.expand(*shape)

    def gather(self, dim: int, index: "Tensor") -> "Tensor":
        """out[i][j] = self[i][index[i][j]] along dim (torch.gather / take_along_dim)."""
        idx = index.data if isinstance(index, Tensor) else _to_array(index, self.device, None)
        d = _wrap_dim(dim, self.ndim)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"gather(): expected an integer index, got {idx.dtype}")
        if self.ndim == 0:  # torch: a 0-d input acts as shape (1,); the index is 0-d or 1-D
            if idx.ndim > 1:
                raise RuntimeError(f"gather(): index of shape {tuple(idx.shape)} for a 0-d input")
            return self.reshape(1).gather(0, idx.reshape(-1)).reshape(idx.shape)
        if idx.size:
            if idx.ndim != self.ndim:
                raise RuntimeError(f"gather(): Index tensor must have the same number of dimensions as input tensor "
                                   f"(index shape {tuple(idx.shape)}, input shape {self.shape})")
            if any(i > n for k, (i, n) in enumerate(zip(idx.shape, self.shape)) if k != d):
                raise RuntimeError(f"gather(): Size does not match: expected index {list(idx.shape)} to be no larger "
                                   f"than self {list(self.shape)} apart from dimension {d}")
        return shape_ops.Gather.apply(self, index=idx, axis=d)

    def split(self, split_size: Any, dim: int = 0) -> tuple:
        """Split into pieces of split_size (or of the given sizes) along dim."""
        dim = _wrap_dim(dim, self.ndim)
        n = self.shape[dim]
        sizes = [split_size] * (n // split_size) + ([n % split_size] if n % split_size else []) \
            if isinstance(split_size, int) else list(split_size)
        if sum(sizes) != n:
            raise ValueError(f"split: sizes {sizes} do not add up to {n} (dim {dim} of shape {self.shape})")
        out, start = [], 0
        for size in sizes:
            index = [slice(None)] * self.ndim
            index[dim] = slice(start, start + size)
            out.append(self[tuple(index)])
            start += size
        return tuple(out)

    def chunk(self, chunks: int, dim: int = 0) -> tuple:
        n = self.shape[_wrap_dim(dim, self.ndim)]
        return self.split(-(-n // chunks), dim)

    def __getitem__(self, index: Any) -> "Tensor":
        index, advanced = _index_arg(index, self.device, self.data.shape)
        return shape_ops.GetItem.apply(self, index=index, advanced=advanced)

    def contiguous(self, memory_format: Any = None) -> "Tensor":
        _check_memory_format(memory_format, "contiguous")
        return self

    # ------------------------------------------------------------------ nn-ish shortcuts
    # as nn.functional.softmax / log_softmax with an explicit dim (the ops check dims, 0-d and empty inputs)
    def softmax(self, dim: int = -1, dtype: Any = None) -> "Tensor":
        x = self if dtype is None else self.to(dtype)  # torch: cast first
        return fused.Softmax.apply(x, axis=dim)

    def log_softmax(self, dim: int = -1, dtype: Any = None) -> "Tensor":
        x = self if dtype is None else self.to(dtype)
        return fused.LogSoftmax.apply(x, axis=dim)

    # ------------------------------------------------------------------ in-place ops
    # Each writes into this tensor's memory and bumps its version. On a tensor in the graph the change
    # is recorded like the out-of-place op (torch's semantics); on a leaf that requires grad it is
    # refused unless grad mode is off (as optimizers do).
    def zero_(self) -> "Tensor":
        return _inplace_apply(self, lambda x: elementwise.Fill.apply(x, value=0), "zero_")

    def fill_(self, value: Any) -> "Tensor":
        if isinstance(value, Tensor):
            if value.ndim:
                raise RuntimeError(f"fill_ only supports 0-dimension value tensor, got shape {value.shape}")
            value = value.item()
        return _inplace_apply(self, lambda x: elementwise.Fill.apply(x, value=value), "fill_")

    def copy_(self, src: Any) -> "Tensor":
        src = src if isinstance(src, Tensor) else Tensor(_to_array(src, self.device, self.dtype), device=self.device,
                                                         _copy=False)
        return _inplace_apply(self, lambda x: elementwise.CopyInto.apply(x, src.type(x.dtype) if src.dtype.kind == "f"
                                                               and x.dtype.kind == "f" else src), "copy_", src)

    def clip_(self, min: Any = None, max: Any = None) -> "Tensor":
        return _inplace_apply(self, lambda x: x.clip(min, max), "clip_", min, max)

    clamp_ = clip_

    def add_(self, other: Any, *, alpha: Any = 1) -> "Tensor":
        return _inplace_apply(self, lambda x: x + (other if alpha == 1 else other * alpha), "add_", other)

    def sub_(self, other: Any, *, alpha: Any = 1) -> "Tensor":
        return _inplace_apply(self, lambda x: x - (other if alpha == 1 else other * alpha), "sub_", other)

    def mul_(self, other: Any) -> "Tensor":
        return _inplace_apply(self, lambda x: x * other, "mul_", other)

    def div_(self, other: Any) -> "Tensor":
        return _inplace_apply(self, lambda x: x / other, "div_", other)


_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2, "c": 3}


def promote_types(type1: Any, type2: Any) -> np.dtype:
    """torch.promote_types: the dtype of the higher category (bool < integer < float) wins; within a
    category the wider one (numpy's rule: int32 + int64 -> int64, uint8 + int8 -> int16)."""
    a, b = as_dtype(type1), as_dtype(type2)
    if a == b:
        return a
    ca, cb = _CATEGORY[a.kind], _CATEGORY[b.kind]
    if ca != cb:
        return a if ca > cb else b
    return np.promote_types(a, b)


def _promote_opt(a: Any, b: Any) -> Any:
    return b if a is None else (a if b is None else promote_types(a, b))


def _combine_categories(higher: Any, lower: Any) -> Any:
    """c10's combine_categories: a lower-priority group of operands only counts when its category is higher."""
    if higher is None:
        return lower
    if lower is None or higher.kind in "fc":
        return higher
    if higher.kind == "b" or lower.kind in "fc":
        return promote_types(higher, lower)
    return higher


def result_type(*operands: Any) -> np.dtype:
    """torch.result_type of tensors and Python numbers: tensors with dims decide; a 0-d tensor, then a Python
    number, only counts if its category (bool < int < float) is higher than theirs. A Python float is the
    default dtype, an int int64. float32 tensor + float64 tensor -> float64, float32 tensor + 0-d float64
    tensor -> float32, int32 tensor + 2.5 -> float32."""
    dims = zero = wrapped = None
    for o in operands:
        dt = getattr(o, "dtype", None)
        if dt is not None and not isinstance(o, np.generic):
            if o.ndim:
                dims = _promote_opt(dims, as_dtype(dt))
            else:
                zero = _promote_opt(zero, as_dtype(dt))
        elif isinstance(o, (bool, np.bool_)):
            wrapped = _promote_opt(wrapped, bool_)
        elif isinstance(o, numbers.Integral):
            wrapped = _promote_opt(wrapped, int64)
        elif isinstance(o, numbers.Real):
            wrapped = _promote_opt(wrapped, _default_dtype)
        else:
            raise TypeError(f"result_type: unsupported operand of type {type(o).__name__}")
    out = _combine_categories(dims, _combine_categories(zero, wrapped))
    if out is None:
        raise TypeError("result_type: no operands")
    return out


_WEAK = {"f": 0.0, "i": 0, "u": 0, "b": False}  # an array operand counts as a Python number of its kind


def _promote(name: str, *operands: Any) -> list:
    """The operands as Tensors on the first one's device, all in their torch.result_type. A cast of a
    float tensor that requires grad is recorded (the gradient is cast back to its dtype).

    numpy arrays and lists are weak operands, like Python and numpy numbers: they take the tensors' dtype
    within their category (float32 tensor + float64 array -> float32; torch would give float64)."""
    dev = operands[0].device
    items, typing = [], []
    for o in operands:
        if isinstance(o, Tensor):
            if o.device is not dev:
                raise RuntimeError(f"{name}: expected all tensors on one device, got {dev} and {o.device}")
            typing.append(o)
        elif isinstance(o, (list, tuple)) or (hasattr(o, "__array__") and not isinstance(o, np.generic)) or \
                hasattr(o, "__cuda_array_interface__"):
            o = _to_array(o, dev, None)
            if o.dtype.kind not in _WEAK:
                raise TypeError(f"{name}: unsupported operand dtype {o.dtype}")
            typing.append(_WEAK[o.dtype.kind])
        elif isinstance(o, complex) or not isinstance(o, numbers.Number):
            raise TypeError(f"{name}: unsupported operand of type {type(o).__name__}")
        else:
            typing.append(o)
        items.append(o)
    dt = result_type(*typing)
    return [o.type(dt) if isinstance(o, Tensor) else Tensor(_to_array(o, dev, dt), device=dev, _copy=False)
            for o in items]


def _operator_result(out: Any, name: str, other: Any) -> Tensor:
    """A method spelling's result: the operator's NotImplemented (a str operand, ...) becomes a TypeError."""
    if out is NotImplemented:
        raise TypeError(f"{name}(): unsupported operand of type {type(other).__name__}")
    return out


def _is_bool(o: Any) -> bool:
    return o is True or o is False or (type(o) is Tensor and o.data.dtype.kind == "b")


def _refuse_bool_sub() -> None:
    raise RuntimeError("Subtraction, the `-` operator, with a bool tensor is not supported. If you are trying to "
                       "invert a mask, use the `~` or `logical_not()` operator instead.")


def _check_memory_format(memory_format: Any, op: str) -> None:
    """minigrad tensors have no strides to lay out: torch's preserve/contiguous formats are what they always
    are; channels_last and the like are refused."""
    if memory_format is None:
        return
    name = str(memory_format).rsplit(".", 1)[-1]
    if name not in ("preserve_format", "contiguous_format"):
        raise NotImplementedError(f"{op}: memory_format={memory_format} is not supported (minigrad tensors have one "
                                  "layout; only preserve_format / contiguous_format are accepted)")


def _is_device_arg(a: Any) -> bool:
    return isinstance(a, Device) or (isinstance(a, str) and a.split(":")[0] in ("cpu", "cuda"))


def _is_dtype_arg(a: Any) -> bool:
    if isinstance(a, (bool, np.bool_)) or a is None:
        return False
    if isinstance(a, str):
        return a in _DTYPES
    if isinstance(a, (np.dtype, type)):
        try:
            np.dtype(a)
            return True
        except TypeError:
            return False
    return False


def to_arguments(args: tuple, kwargs: dict) -> tuple:
    """(device, dtype, non_blocking, copy) from torch's .to() overloads, for Tensor.to and Module.to alike."""
    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    non_blocking, copy = kwargs.pop("non_blocking", False), kwargs.pop("copy", False)
    memory_format = kwargs.pop("memory_format", None)
    if kwargs:
        raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
    rest = list(args)
    if rest and isinstance(rest[0], Tensor):
        other = rest.pop(0)
        device, dtype = other.device, other.dtype
    else:
        if rest and _is_device_arg(rest[0]):
            device = rest.pop(0)
        if rest and _is_dtype_arg(rest[0]):
            dtype = rest.pop(0)
    if len(rest) > 2 or any(not isinstance(a, (bool, np.bool_)) for a in rest):
        raise TypeError(f"to(): after the device/dtype/tensor come non_blocking and copy (bools), got "
                        f"{', '.join(repr(a) for a in rest)}")
    if rest:
        non_blocking = rest.pop(0)
    if rest:
        copy = rest.pop(0)
    for name, flag in (("non_blocking", non_blocking), ("copy", copy)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"to(): {name} must be a bool, got {flag!r}")
    _check_memory_format(memory_format, "to")
    return device, dtype, non_blocking, copy


def _to_device(t: Tensor, dev: Device) -> Tensor:
    """Copy a tensor to another device (not differentiable across devices)."""
    if t.requires_grad and t._ctx is not None:
        raise RuntimeError(f"to({dev}): moving a non-leaf tensor between devices is not differentiable; "
                           "detach() it first")
    host = backend.to_numpy(t.data)
    out = Tensor(backend.from_numpy(dev, host), device=dev, _copy=False)
    if t.requires_grad:
        out.requires_grad = True
    return out


def _inplace(t: Tensor, o: Any, name: str) -> Tensor:
    """`t += o` and friends: in place, as torch (see _inplace_apply)."""
    if not _is_operand(o):
        return NotImplemented  # Python falls back to t.__op__(o), which raises its "unsupported operand" TypeError
    if not _records_inplace(t, o):  # the common, fast case: numpy's own in-place ufunc
        other = o.data if isinstance(o, Tensor) else o
        if isinstance(o, Tensor) and o.device is not t.device:
            raise RuntimeError(f"{name}: expected both tensors on one device, got {t.device} and {o.device}")
        if t.dtype.kind in "iub" and (getattr(other, "dtype", None) is not None and other.dtype.kind == "f"
                                      or isinstance(other, float) or (name == "truediv")):
            raise RuntimeError(f"result type float can't be cast to the desired output type {t.dtype} "
                               f"(in-place {name} on an integer tensor)")
        getattr(t.data, f"__i{name}__")(other)
        t._vc[0] += 1
        return t
    return _inplace_apply(t, lambda x: getattr(x, f"__{name}__")(o), f"__i{name}__", o)


def _records_inplace(t: Tensor, *others: Any) -> bool:
    """Whether an in-place op on t goes into the graph (grad mode on and t or an operand needs grad)."""
    return autograd.is_grad_enabled() and (t.requires_grad or any(isinstance(o, Tensor) and o.requires_grad
                                                                   for o in others))


def _inplace_apply(t: Tensor, compute: Any, name: str, *others: Any) -> Tensor:
    """Write compute(t) into t's memory and bump its version; record it in the graph when t is part of one.

    Recorded, the op runs on a copy of t's old value (so what it saves cannot change under it) and t
    takes over the new node: gradients reaching t flow through the op to t's old graph.
    """
    if not _records_inplace(t, *others):
        with autograd.no_grad():
            new = compute(t)
        _write_into(t, new, name)
        return t
    if t.requires_grad and t._ctx is None:
        raise RuntimeError(f"a leaf tensor that requires grad is being used in an in-place operation ({name}); "
                           "do it under `with minigrad.no_grad():` (as optimizers do) or use the out-of-place op")
    if t._base is not None and (t._base.requires_grad or t.requires_grad):
        raise RuntimeError(f"{name} on a view of a tensor in the graph is not supported (the viewed tensor's "
                           "gradient would be wrong); clone() the view first or use out-of-place ops")
    old = Tensor(t.data.copy(), device=t.device, _copy=False)
    old.requires_grad, old._ctx = t.requires_grad, t._ctx
    new = _write_into(t, compute(old), name)
    t._ctx, t.requires_grad = new._ctx, new.requires_grad
    return t


def _write_into(t: Tensor, new: Tensor, name: str) -> Tensor:
    """Copy new into t's memory (cast to t's dtype, recorded when new is in the graph); returns what was
    written, whose node t takes over."""
    if new.dtype != t.dtype and new.dtype.kind == "f" and t.dtype.kind in "iub":
        raise RuntimeError(f"result type {new.dtype} can't be cast to the desired output type {t.dtype} "
                           f"(in-place {name})")
    if new.shape != t.shape:
        raise RuntimeError(f"{name}: output with shape {t.shape} doesn't match the broadcast shape {new.shape}")
    if new.dtype != t.dtype and new._ctx is not None:
        new = new.type(t.dtype)
    t.data[...] = new.data
    t._vc[0] += 1
    return new


def _to_array(data: Any, dev: Device, dtype: Any) -> Any:
    """Make a backend array on dev; Python floats get the default dtype, arrays keep theirs."""
    if isinstance(data, Tensor):
        data = data.data
    python_value = isinstance(data, (int, float, bool, list, tuple))
    if dev.type == "cpu":
        arr = np.asarray(data if python_value or isinstance(data, np.generic) else backend.to_numpy(data))
    else:
        arr = dev.xp.asarray(data)
    if dtype is None and python_value and arr.dtype.kind == "f":
        dtype = _default_dtype
    return arr if dtype is None else arr.astype(dtype, copy=False)


def _dim(dim: Any, axis: Any) -> Any:
    """dim, or its alias axis when given (both at once is an error, as in torch)."""
    if axis is None:
        return dim
    if dim is not None:
        raise TypeError("got both dim and its alias axis; pass one")
    return axis


def _wrap_dim(dim: Any, ndim: int) -> int:
    """torch's dim wrapping: dim in [-n, n) with n = max(ndim, 1) (a 0-d tensor takes 0 and -1) -> 0..n-1."""
    n = ndim if ndim else 1
    if type(dim) is int and -n <= dim < n:  # the common case
        return dim + n if dim < 0 else dim
    try:
        d = operator.index(dim)
    except TypeError:
        raise TypeError(f"dim must be an int, got {type(dim).__name__}") from None
    if not -n <= d < n:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {d})")
    return d + n if d < 0 else d


def _axis(dim: Any, ndim: int) -> Any:
    """A reduction's dim argument as numpy's axis: None for all dims (dim None or (), or a 0-d tensor),
    an int, or a tuple of distinct ints. Out-of-range dims raise IndexError, as in torch."""
    if dim is None:
        return None
    if type(dim) is int:
        if -ndim <= dim < ndim:
            return dim + ndim if dim < 0 else dim
        _wrap_dim(dim, ndim)  # a 0-d tensor's 0 / -1, or the IndexError
        return None
    if isinstance(dim, (tuple, list)):
        dims = tuple(_wrap_dim(d, ndim) for d in dim)
        if len(set(dims)) != len(dims):
            dup = next(d for d in dims if dims.count(d) > 1)
            raise RuntimeError(f"dim {dup} appears multiple times in the list of dims")
        return dims if dims and ndim else None
    d = _wrap_dim(dim, ndim)
    return d if ndim else None


def _check_nonempty(t: "Tensor", axes: Any, name: str) -> None:
    """max/min/argmax-style reductions have no value over zero elements: torch's errors, not numpy's."""
    if t.data.size:
        return
    if type(axes) is int:
        axes = (axes,)
    if axes is None:
        raise RuntimeError(f"{name}(): Expected reduction dim to be specified for input.numel() == 0. "
                           "Specify the reduction dim with the 'dim' argument.")
    for a in axes:
        if t.shape[a] == 0:
            raise IndexError(f"{name}(): Expected reduction dim {a} to have non-zero size.")


def _shape_arg(shape: tuple) -> tuple:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    try:
        return tuple(operator.index(s) for s in shape)
    except TypeError:
        raise TypeError(f"expected a shape of ints, got {shape!r} (minigrad has no view(dtype) / reinterpreting "
                        "casts; use .to(dtype))") from None


def _index_arg(index: Any, dev: Device, shape: tuple = ()) -> tuple:
    """Convert Tensor / list indices to arrays; report whether numpy advanced indexing applies.

    A boolean mask (an index array of dtype bool, as torch) becomes the integer arrays of its True
    positions (numpy's own rule), so the gradient scatters back through the integer path; its shape must
    match the dims it covers."""
    items = index if isinstance(index, tuple) else (index,)
    out, advanced, masks = [], False, False
    for it in items:
        if isinstance(it, Tensor):
            it = it.data
            advanced = True
        elif isinstance(it, list):
            it = dev.xp.asarray(it)
            advanced = True
        elif isinstance(it, np.ndarray) or (dev.type != "cpu" and isinstance(it, dev.xp.ndarray)):
            advanced = True
        elif it is True or it is False or isinstance(it, np.bool_):
            raise NotImplementedError("indexing with a Python/0-d bool is not supported; use x[None] or "
                                      "x[mg.tensor([...], dtype=bool)]")
        if getattr(it, "dtype", None) is not None and it.dtype == np.bool_:
            if it.ndim == 0:
                raise NotImplementedError("indexing with a 0-d bool tensor is not supported; use x[None]")
            masks = True
        out.append(it)
    if masks:
        out = _expand_masks(out, shape)
    return (tuple(out) if isinstance(index, tuple) or masks else out[0]), advanced


def _expand_masks(items: list, shape: tuple) -> list:
    """Check each bool mask against the dims it covers (torch's IndexError) and replace it by mask.nonzero()."""
    def covers(it: Any) -> int:
        if it is None or it is Ellipsis:
            return 0
        return it.ndim if getattr(it, "dtype", None) is not None and it.dtype == np.bool_ else 1

    sizes = [covers(it) for it in items]
    out, pos = [], 0
    for k, it in enumerate(items):
        if it is Ellipsis:
            pos = len(shape) - sum(sizes[k + 1:])
        elif getattr(it, "dtype", None) is not None and it.dtype == np.bool_:
            if tuple(it.shape) != tuple(shape[pos:pos + it.ndim]):
                raise IndexError(f"The shape of the mask {list(it.shape)} at index {k} does not match the shape of "
                                 f"the indexed tensor {list(shape)} at index {pos}")
            out.extend(it.nonzero())
            pos += sizes[k]
            continue
        pos += sizes[k]
        out.append(it)
    return out


def _is_operand(x: Any) -> bool:
    """Whether x can be the other side of an arithmetic or comparison operator: a Tensor, number or array-like."""
    return isinstance(x, _COMMON_OPERANDS) or isinstance(x, (numbers.Number, np.generic, list, tuple)) \
        or hasattr(x, "__array__") or hasattr(x, "__cuda_array_interface__")


_COMMON_OPERANDS = (Tensor, float, int, np.ndarray)  # one cheap isinstance for the usual cases


autograd.Tensor = Tensor  # autograd builds Tensors but must not import this module (see autograd.py)
