"""Tensor constructors and the functional forms of ops that take several tensors."""
from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

from minigrad import backend
from minigrad.arguments import check_memory_format, promote, shape_arg, to_array, wrap_dim
from minigrad.dtypes import as_dtype, get_default_dtype, int64, kind, promote_types
from minigrad.ops import elementwise
from minigrad.ops import shape as shape_ops
from minigrad.tensor import Tensor


def _float_dtype(dtype: Any) -> Any:
    return get_default_dtype() if dtype is None else as_dtype(dtype)


def tensor(data: Any, dtype: Any = None, requires_grad: bool = False, device: Any = None) -> Tensor:
    """Make a tensor from a Python number, nested list, numpy array or tensor (copies the data)."""
    dev = backend.device(device)
    arr = to_array(data, dev, None if dtype is None else as_dtype(dtype))
    if isinstance(data, (Tensor,)) or arr is data:
        arr = arr.copy()
    return Tensor(arr, device=dev, requires_grad=requires_grad, _copy=False)


def _fill(shape: tuple, value: float, dtype: Any, requires_grad: bool, device: Any) -> Tensor:
    dev = backend.device(device)
    arr = dev.xp.full(shape_arg(shape), value, dtype=_float_dtype(dtype))
    return Tensor(arr, device=dev, requires_grad=requires_grad, _copy=False)


def zeros(*shape: Any, dtype: Any = None, requires_grad: bool = False, device: Any = None) -> Tensor:
    """A tensor of zeros."""
    return _fill(shape, 0, dtype, requires_grad, device)


def ones(*shape: Any, dtype: Any = None, requires_grad: bool = False, device: Any = None) -> Tensor:
    """A tensor of ones."""
    return _fill(shape, 1, dtype, requires_grad, device)


def full(shape: Sequence[int], fill_value: float, dtype: Any = None, requires_grad: bool = False,
         device: Any = None) -> Tensor:
    """A tensor filled with one value."""
    return _fill((tuple(shape),), fill_value, dtype, requires_grad, device)


def zeros_like(t: Tensor, dtype: Any = None, requires_grad: bool = False, *, device: Any = None,
               memory_format: Any = None) -> Tensor:
    """Zeros with t's shape, and its dtype and device unless given."""
    return _like(t, 0, dtype, requires_grad, device, memory_format, "zeros_like")


def ones_like(t: Tensor, dtype: Any = None, requires_grad: bool = False, *, device: Any = None,
              memory_format: Any = None) -> Tensor:
    """Ones with t's shape, and its dtype and device unless given."""
    return _like(t, 1, dtype, requires_grad, device, memory_format, "ones_like")


def _like(t: Tensor, value: Any, dtype: Any, requires_grad: bool, device: Any, memory_format: Any, op: str) -> Tensor:
    check_memory_format(memory_format, op)
    return _fill(t.shape, value, t.dtype if dtype is None else dtype, requires_grad,
                 t.device if device is None else device)


def randn(*shape: Any, dtype: Any = None, requires_grad: bool = False, device: Any = None) -> Tensor:
    """Standard normal samples from the device's generator (reproducible under manual_seed)."""
    dev = backend.device(device)
    arr = backend.randn(dev, shape_arg(shape), _float_dtype(dtype))
    return Tensor(arr, device=dev, requires_grad=requires_grad, _copy=False)


def rand(*shape: Any, dtype: Any = None, requires_grad: bool = False, device: Any = None) -> Tensor:
    """Uniform [0, 1) samples from the device's generator."""
    dev = backend.device(device)
    arr = backend.rand(dev, shape_arg(shape), _float_dtype(dtype))
    return Tensor(arr, device=dev, requires_grad=requires_grad, _copy=False)


def randint(*args: Any, low: int | None = None, high: int | None = None, size: Sequence[int] | None = None,
            dtype: Any = None, device: Any = None, requires_grad: bool = False, generator: Any = None) -> Tensor:
    """Uniform integers in [low, high), as torch.randint(high, size) / randint(low, high, size): int64 unless
    dtype= says otherwise (a float dtype holds the integer values)."""
    args = list(args)
    if size is None and args and isinstance(args[-1], (tuple, list)):
        size = args.pop()
    if len(args) > 2 or (len(args) == 2 and (low is not None or high is not None)) or \
            (len(args) == 1 and high is not None and low is not None):
        raise TypeError("randint() takes (high, size) or (low, high, size)")
    if len(args) == 2:
        low, high = args
    elif len(args) == 1:
        if high is None:
            high = args[0]
        else:
            low = args[0]
    if high is None or size is None:
        raise TypeError("randint() missing required arguments: high and size, as randint(high, size) or "
                        "randint(low, high, size)")
    if generator is not None:
        raise NotImplementedError("randint: generator= is not supported; seed with minigrad.manual_seed")
    low = 0 if low is None else low
    if low >= high:
        raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}")
    dev = backend.device(device)
    dt = int64 if dtype is None else as_dtype(dtype)
    arr = backend.randint(dev, int(low), int(high), shape_arg((size,)))
    return Tensor(arr if dt == int64 else arr.astype(dt), device=dev, requires_grad=requires_grad, _copy=False)


def arange(start: float, end: float | None = None, step: float = 1, dtype: Any = None, device: Any = None, *,
           requires_grad: bool = False) -> Tensor:
    """Evenly spaced values in [start, end); integers give int64 like PyTorch, and an integer dtype with
    float bounds or step gives torch's values (bounds and step truncated, torch's length)."""
    if end is None:
        start, end = 0, start
    start, end, step = (v.item() if isinstance(v, Tensor) else v for v in (start, end, step))
    dev = backend.device(device)
    if step == 0:
        raise RuntimeError("arange: step must be nonzero")
    if (step > 0 and end < start) or (step < 0 and end > start):
        raise RuntimeError(f"arange: upper bound and lower bound inconsistent with step sign "
                           f"(start {start}, end {end}, step {step})")
    all_int = all(isinstance(v, numbers.Integral) for v in (start, end, step))
    if dtype is None:
        dtype = "int64" if all_int else get_default_dtype()
    dt = as_dtype(dtype)
    if kind(dt) == "b":
        raise RuntimeError("arange: not implemented for dtype bool (as torch)")
    if kind(dt) in "iu" and not (all_int and dt == int64):
        arr = _int_arange(dev.xp, start, end, step, dt)
    else:
        arr = dev.xp.arange(start, end, step, dtype=dt)
    return Tensor(arr, device=dev, requires_grad=requires_grad, _copy=False)


def _int_arange(xp: Any, start: float, end: float, step: float, dt: Any) -> Any:
    """torch.arange's integer kernel: values start + i * step with start and step truncated to integers;
    the length from the truncated bounds for int64, from the float ones for other integer dtypes."""
    xs, xt = int(start), int(step)
    if dt == int64:
        xe = int(end)
        if xt == 0:
            raise ValueError(f"arange: step must be nonzero (step {step} truncated to 0 for int64)")
        num = xe - xs + xt - (1 if xt > 0 else -1)
        n = abs(num) // abs(xt) * (1 if (num >= 0) == (xt > 0) else -1)  # C's truncating division
    else:
        n = math.ceil((end - start) / step)
    return (xs + xp.arange(max(n, 0), dtype=int64) * xt).astype(dt)


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Concatenate along an existing dim. As torch, 1-D tensors of shape (0,) are skipped (legacy empties)."""
    tensors = _check_same(list(tensors), "cat")
    kept = [t for t in tensors if t.shape != (0,)] or tensors[:1]
    ref = kept[0]
    for i, t in enumerate(tensors):
        if t.ndim == 0:
            raise RuntimeError(f"cat(): zero-dimensional tensor (at position {i}) cannot be concatenated")
    d = wrap_dim(dim, ref.ndim)
    kept_ids = {id(t) for t in kept}
    for i, t in enumerate(tensors):
        if id(t) in kept_ids and (t.ndim != ref.ndim or any(a != b for k, (a, b) in enumerate(zip(t.shape, ref.shape))
                                                   if k != d)):
            raise RuntimeError(f"cat(): sizes of tensors must match except in dimension {d}: shape {ref.shape} "
                               f"and shape {t.shape} (tensor number {i} in the list)")
    return shape_ops.Cat.apply(*kept, axis=d)


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Stack along a new dim."""
    tensors = _check_same(list(tensors), "stack")
    for i, t in enumerate(tensors[1:], 1):
        if t.shape != tensors[0].shape:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {list(tensors[0].shape)} at "
                               f"entry 0 and {list(t.shape)} at entry {i}")
    return shape_ops.Stack.apply(*tensors, axis=wrap_dim(dim, tensors[0].ndim + 1))


def where(condition: Any, x: Any, y: Any) -> Tensor:
    """Elementwise choice: x where condition is true, else y (differentiable in x and y; torch's promotion)."""
    ref = x if isinstance(x, Tensor) else y
    if not isinstance(ref, Tensor):
        raise TypeError("where: at least one of x and y must be a Tensor")
    x, y = promote("where", ref, x, y)[1:]
    cond = condition.data if isinstance(condition, Tensor) else to_array(condition, ref.device, None)
    return elementwise.Where.apply(x, y, cond=cond.astype(bool, copy=False))


def _tensor_input(x: Any, op: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}(): argument 'input' must be a Tensor, not {type(x).__name__}")
    return x


def add(input: Tensor, other: Any, *, alpha: Any = 1) -> Tensor:
    """input + alpha * other (torch.add)."""
    return _tensor_input(input, "add").add(other, alpha=alpha)


def sub(input: Tensor, other: Any, *, alpha: Any = 1) -> Tensor:
    """input - alpha * other (torch.sub)."""
    return _tensor_input(input, "sub").sub(other, alpha=alpha)


subtract = sub


def mul(input: Tensor, other: Any) -> Tensor:
    """input * other (torch.mul)."""
    return _tensor_input(input, "mul").mul(other)


multiply = mul


def div(input: Tensor, other: Any, *, rounding_mode: str | None = None) -> Tensor:
    """input / other, or rounded with rounding_mode='trunc' / 'floor' (torch.div)."""
    return _tensor_input(input, "div").div(other, rounding_mode=rounding_mode)


divide = div


def true_divide(input: Tensor, other: Any) -> Tensor:
    return _tensor_input(input, "true_divide").div(other)


def floor_divide(input: Tensor, other: Any) -> Tensor:
    """input / other rounded down (torch.floor_divide)."""
    return _tensor_input(input, "floor_divide").div(other, rounding_mode="floor")


def clamp(input: Tensor, min: Any = None, max: Any = None) -> Tensor:
    """torch.clamp: numbers or tensors as bounds."""
    return _tensor_input(input, "clamp").clamp(min, max)


clip = clamp


def maximum(x: Tensor, y: Any) -> Tensor:
    """Elementwise max; ties share the gradient."""
    return x.maximum(y)


def minimum(x: Tensor, y: Any) -> Tensor:
    """Elementwise min; ties share the gradient."""
    return x.minimum(y)


def _check_same(tensors: list, op: str) -> list:
    """The tensors on one device, promoted to their torch.result_type (torch.cat/stack promote)."""
    if not tensors:
        raise ValueError(f"{op}: expected a non-empty list of tensors")
    for t in tensors:
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: expected a sequence of Tensors, got {type(t).__name__}")
    t0 = tensors[0]
    if all(t.data.dtype == t0.data.dtype and t.device is t0.device for t in tensors):
        return tensors
    for t in tensors[1:]:
        if t.device is not t0.device:
            raise RuntimeError(f"{op}: expected all tensors on one device, got {t0.device} and {t.device}")
    dt = promote_all_types(tensors)
    return [t.type(dt) for t in tensors]


def promote_all_types(tensors: list) -> Any:
    out = tensors[0].dtype
    for t in tensors[1:]:
        out = promote_types(out, t.dtype)
    return out
