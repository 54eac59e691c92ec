"""TensorReductions, a mixin of Tensor (see tensor.py): sum, mean, var, std, logsumexp, amax/amin,
max/min (with their indices along a dim), argmax/argmin.

Reductions take torch's dim= and its numpy spelling axis=; a 0-d tensor takes dim 0 or -1, and dim=()
means every dim (torch's legacy rule). `arguments.numpy_axis` turns dim into the ops' numpy axis.

Tensor's mixins sit below tensor.py in the layers (tensor.py imports them, never the reverse), so tensor.py
hands its class over when it is imported, as it does to autograd: `Tensor` below is that class.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from minigrad.arguments import check_nonempty, dim_or_axis, numpy_axis, wrap_dim
from minigrad.ops import reduce
from minigrad.dtypes import kind

# The Tensor class, handed over by tensor.py (see the module docstring); None until minigrad.tensor is imported.
Tensor: Any = None


class MaxResult(NamedTuple):
    values: "Tensor"
    indices: "Tensor"


class TensorReductions:
    """Reductions over dims (mixed into Tensor)."""

    __slots__ = ()  # Tensor's instances keep their __slots__ (no __dict__)

    def sum(self, dim: Any = None, keepdim: bool = False, *, dtype: Any = None, axis: Any = None) -> "Tensor":
        x = self if dtype is None else self.type(dtype)
        return reduce.Sum.apply(x, axis=numpy_axis(dim_or_axis(dim, axis), x.ndim), keepdims=keepdim)

    def mean(self, dim: Any = None, keepdim: bool = False, *, dtype: Any = None, axis: Any = None) -> "Tensor":
        x = self if dtype is None else self.type(dtype)
        if kind(x.data.dtype) != "f":
            raise RuntimeError(f"mean(): could not infer output dtype. Input dtype must be either a floating point "
                               f"or complex dtype. Got: {x.dtype} (cast with .float() or pass dtype=)")
        return reduce.Mean.apply(x, axis=numpy_axis(dim_or_axis(dim, axis), x.ndim), keepdims=keepdim)

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
        if kind(self.data.dtype) != "f":
            raise RuntimeError(f"std and var only support floating point and complex dtypes (got {self.dtype})")
        return fn.apply(self, axis=numpy_axis(dim_or_axis(dim, axis), self.ndim), correction=correction,
                        keepdims=keepdim)

    def logsumexp(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None) -> "Tensor":
        if dim is None and axis is None:
            raise TypeError("logsumexp() missing its dim argument (as torch.logsumexp)")
        x = self._as_float()
        return reduce.LogSumExp.apply(x, axis=numpy_axis(dim_or_axis(dim, axis), x.ndim), keepdims=keepdim)

    def amax(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None) -> "Tensor":
        """Max over dims; tied maxima share the gradient evenly (torch.amax)."""
        ax = numpy_axis(dim_or_axis(dim, axis), self.ndim)
        check_nonempty(self, ax, "amax")
        return reduce.Max.apply(self, axis=ax, keepdims=keepdim)

    def amin(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None) -> "Tensor":
        """Min over dims; tied minima share the gradient evenly (torch.amin)."""
        ax = numpy_axis(dim_or_axis(dim, axis), self.ndim)
        check_nonempty(self, ax, "amin")
        return -reduce.Max.apply(-self, axis=ax, keepdims=keepdim)

    def max(self, dim: Any = None, keepdim: bool = False, *, axis: int | None = None) -> Any:
        """max() -> the maximum (ties share the gradient); max(dim) -> (values, indices) like PyTorch;
        max(other_tensor) -> maximum(self, other)."""
        if isinstance(dim, Tensor):
            return self.maximum(dim)
        dim = dim_or_axis(dim, axis)
        if dim is None:
            return self.amax()
        return self._pick_along(dim, keepdim, self.data.argmax, "max")

    def min(self, dim: Any = None, keepdim: bool = False, *, axis: int | None = None) -> Any:
        """min() -> the minimum (ties share the gradient); min(dim) -> (values, indices) like PyTorch;
        min(other_tensor) -> minimum(self, other)."""
        if isinstance(dim, Tensor):
            return self.minimum(dim)
        dim = dim_or_axis(dim, axis)
        if dim is None:
            return self.amin()
        return self._pick_along(dim, keepdim, self.data.argmin, "min")

    def _pick_along(self, dim: int, keepdim: bool, arg: Any, name: str) -> MaxResult:
        # the gradient flows to the single returned index, as torch.max(x, dim) does
        dim = wrap_dim(dim, self.ndim)
        if not self.ndim:
            return MaxResult(self.amax(), Tensor(arg(), device=self.device, _copy=False))
        check_nonempty(self, (dim,), name)
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
            check_nonempty(self, None, name)
            out = xp.asarray(fn())
            if keepdim:
                out = out.reshape((1,) * self.ndim)
        else:
            ax = wrap_dim(dim, self.ndim)
            if not self.ndim:
                out = xp.zeros((), dtype=np.int64)
            else:
                check_nonempty(self, (ax,), name)
                out = fn(axis=ax, keepdims=keepdim)
        return Tensor(out, device=self.device, _copy=False)
