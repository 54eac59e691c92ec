"""Tensor: a backend array plus what autograd needs (grad, requires_grad, the op that made it).

The class is spread over a few files, each short enough to read on its own:

  tensor.py          the core: the data and its device, properties, conversions (.numpy(), .item(), .to(),
                     .float(), ...), the autograd API (backward, detach, requires_grad_, retain_grad), and
                     `_binary`, where `a * b` becomes `Mul.apply(a, b)` with torch's type promotion
  tensor_math.py     TensorMath: the operators (+ - * / // ** @ and comparisons) and their torch method names,
                     unary math (exp, log, ...), clamp, softmax
  tensor_reduce.py   TensorReductions: sum, mean, var, std, logsumexp, amax, max, argmax, ...
  tensor_shape.py    TensorShape: reshape/view, squeeze, permute, transpose, expand, gather, split, x[...]
  tensor_inplace.py  TensorInPlace: +=, add_, zero_, copy_, ... and the version counter they bump
  arguments.py       what the methods are given (dims, shapes, indices, .to()'s overloads, operands),
                     turned into what the ops take
  dtypes.py          dtype names, the default dtype, torch's type promotion

Each method calls an op (minigrad/ops): a Function whose forward and backward work on raw arrays. The dtype
names and functions (float32, as_dtype, result_type, ...), MaxResult and to_arguments can still be imported
from here.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from minigrad import arguments, autograd, backend, tensor_inplace, tensor_math, tensor_reduce, tensor_shape
from minigrad.arguments import check_memory_format, is_operand, promote, to_array, to_arguments
from minigrad.backend import Device
from minigrad.dtypes import (as_dtype, bfloat16, bool_, float16, float32, float64, get_default_dtype, int32,  # noqa: F401
                             int64, kind, promote_types, result_type, set_default_dtype)
from minigrad.ops import elementwise
from minigrad.tensor_inplace import TensorInPlace
from minigrad.tensor_math import TensorMath
from minigrad.tensor_reduce import MaxResult, TensorReductions  # noqa: F401
from minigrad.tensor_shape import TensorShape


class Tensor(TensorMath, TensorReductions, TensorShape, TensorInPlace):
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
            data = to_array(data, dev, None)
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
        if self.dtype != get_default_dtype() and kind(self.dtype) == "f":
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
        check_memory_format(memory_format, "clone")
        return elementwise.Clone.apply(self)

    def retain_grad(self) -> None:
        """Keep this non-leaf tensor's gradient in .grad after backward (leaves always keep theirs), as torch."""
        if not self.requires_grad:
            raise RuntimeError("can't retain_grad on a tensor that has requires_grad=False")
        if self._ctx is not None:
            self.retains_grad = True

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        if requires_grad and kind(self.dtype) not in "fc":
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
        if self.requires_grad and kind(dtype) == "f":
            return elementwise.Cast.apply(self, dtype=dtype)
        return Tensor(self.data.astype(dtype), device=self.device, _copy=False)

    def float(self, memory_format: Any = None) -> "Tensor":
        check_memory_format(memory_format, "float")
        return self.type(float32)

    def double(self, memory_format: Any = None) -> "Tensor":
        check_memory_format(memory_format, "double")
        return self.type(float64)

    def half(self, memory_format: Any = None) -> "Tensor":
        check_memory_format(memory_format, "half")
        return self.type(float16)

    def long(self, memory_format: Any = None) -> "Tensor":
        check_memory_format(memory_format, "long")
        return self.type(int64)

    def int(self, memory_format: Any = None) -> "Tensor":
        check_memory_format(memory_format, "int")
        return self.type(int32)

    def bool(self, memory_format: Any = None) -> "Tensor":
        check_memory_format(memory_format, "bool")
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
        if kind(self.data.dtype) == "f":
            return self
        return Tensor(self.data.astype(get_default_dtype()), device=self.device, _copy=False)

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
            if kind(dt) == "f":  # the number takes the tensor's dtype
                o = Tensor(self.device.xp.array(other, dtype=dt), device=self.device, _copy=False)
                return fn.apply(o, self) if reverse else fn.apply(self, o)
            if t is int and kind(dt) in "iu":  # (wrapping out-of-range ints, as torch)
                o = Tensor(to_array(other, self.device, dt), device=self.device, _copy=False)
                return fn.apply(o, self) if reverse else fn.apply(self, o)
        elif not is_operand(other):  # a str, None, ...: Python then raises its own "unsupported operand" TypeError
            return NotImplemented
        x, y = promote(name, self, other)
        return fn.apply(y, x) if reverse else fn.apply(x, y)


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


# autograd, arguments and the mixins build Tensors but sit below this module in the layers (they must not import
# it): hand them the class, which each holds as its module-level `Tensor` (see autograd.py).
for _below in (autograd, arguments, tensor_math, tensor_reduce, tensor_shape, tensor_inplace):
    _below.Tensor = Tensor
del _below
