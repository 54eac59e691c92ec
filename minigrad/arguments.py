"""What Tensor methods and creation functions are given, turned into what the ops take.

- arrays and operands: `to_array` (a Python value, array or Tensor as a backend array on a device),
  `is_operand` and `promote` (the other side of `a + b` as a Tensor in torch's result dtype);
- dims and shapes: `dim_or_axis` (torch's dim= or numpy's axis=), `wrap_dim` (negative dims),
  `numpy_axis` (a reduction's dims), `shape_arg` (`x.reshape(2, 3)` or `x.reshape((2, 3))`), `check_nonempty`;
- indices: `index_arg` (what `x[...]` is given: Tensors, lists, bool masks);
- `.to()`'s overloads (`to_arguments`, for Tensor.to and Module.to) and `check_memory_format`.

These are minigrad's internal helpers, shared by tensor.py, its mixins, creation.py, nn.module and nn.functional (so
none of them imports another module's private names). They sit below tensor.py in the layers (tensor.py
imports them, never the reverse), so tensor.py hands its class over when it is imported, as it does to
autograd: `Tensor` below is that class.
"""
from __future__ import annotations

import numbers
import operator
from typing import Any

import numpy as np

from minigrad import backend
from minigrad.backend import Device
from minigrad.dtypes import DTYPES, get_default_dtype, kind, result_type

# The Tensor class, handed over by tensor.py (see the module docstring); None until minigrad.tensor is imported.
Tensor: Any = None


# ------------------------------------------------------------------ arrays and operands
def to_array(data: Any, dev: Device, dtype: Any) -> Any:
    """Make a backend array on dev; Python floats get the default dtype, arrays keep theirs."""
    if isinstance(data, Tensor):
        data = data.data
    python_value = isinstance(data, (int, float, bool, list, tuple))
    if dev.type == "cpu":
        arr = np.asarray(data if python_value or isinstance(data, np.generic) else backend.to_numpy(data))
    else:
        arr = dev.xp.asarray(data)
    if dtype is None and python_value and kind(arr.dtype) == "f":
        dtype = get_default_dtype()
    return arr if dtype is None else arr.astype(dtype, copy=False)


def is_operand(x: Any) -> bool:
    """Whether x can be the other side of an arithmetic or comparison operator: a Tensor, number or array-like."""
    return isinstance(x, Tensor) or isinstance(x, _COMMON_OPERANDS) \
        or isinstance(x, (numbers.Number, np.generic, list, tuple)) \
        or hasattr(x, "__array__") or hasattr(x, "__cuda_array_interface__")


_COMMON_OPERANDS = (float, int, np.ndarray)  # with Tensor, two cheap isinstance calls for the usual cases


_WEAK = {"f": 0.0, "i": 0, "u": 0, "b": False}  # an array operand counts as a Python number of its kind


def promote(name: str, *operands: Any) -> list:
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
            o = to_array(o, dev, None)
            if kind(o.dtype) not in _WEAK:
                raise TypeError(f"{name}: unsupported operand dtype {o.dtype}")
            typing.append(_WEAK[kind(o.dtype)])
        elif isinstance(o, complex) or not isinstance(o, numbers.Number):
            raise TypeError(f"{name}: unsupported operand of type {type(o).__name__}")
        else:
            typing.append(o)
        items.append(o)
    dt = result_type(*typing)
    return [o.type(dt) if isinstance(o, Tensor)
            else Tensor(to_array(o, dev, dt), device=dev, _copy=False) for o in items]


# ------------------------------------------------------------------ dims, shapes and indices
def dim_or_axis(dim: Any, axis: Any) -> Any:
    """dim, or its alias axis when given (both at once is an error, as in torch)."""
    if axis is None:
        return dim
    if dim is not None:
        raise TypeError("got both dim and its alias axis; pass one")
    return axis


def wrap_dim(dim: Any, ndim: int) -> int:
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


def numpy_axis(dim: Any, ndim: int) -> Any:
    """A reduction's dim argument as numpy's axis: None for all dims (dim None or (), or a 0-d tensor),
    an int, or a tuple of distinct ints. Out-of-range dims raise IndexError, as in torch."""
    if dim is None:
        return None
    if type(dim) is int:
        if -ndim <= dim < ndim:
            return dim + ndim if dim < 0 else dim
        wrap_dim(dim, ndim)  # a 0-d tensor's 0 / -1, or the IndexError
        return None
    if isinstance(dim, (tuple, list)):
        dims = tuple(wrap_dim(d, ndim) for d in dim)
        if len(set(dims)) != len(dims):
            dup = next(d for d in dims if dims.count(d) > 1)
            raise RuntimeError(f"dim {dup} appears multiple times in the list of dims")
        return dims if dims and ndim else None
    d = wrap_dim(dim, ndim)
    return d if ndim else None


def check_nonempty(t: "Tensor", axes: Any, name: str) -> None:
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


def shape_arg(shape: tuple) -> tuple:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    try:
        return tuple(operator.index(s) for s in shape)
    except TypeError:
        raise TypeError(f"expected a shape of ints, got {shape!r} (minigrad has no view(dtype) / reinterpreting "
                        "casts; use .to(dtype))") from None


def index_arg(index: Any, dev: Device, shape: tuple = ()) -> tuple:
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


# ------------------------------------------------------------------ .to() and memory_format
def check_memory_format(memory_format: Any, op: str) -> None:
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
        return a in DTYPES
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
    check_memory_format(memory_format, "to")
    return device, dtype, non_blocking, copy
