"""Tensor constructors and the functional forms of ops that take several tensors."""
from __future__ import annotations

from typing import Any, Sequence

from minigrad import backend
from minigrad.ops import elementwise as E
from minigrad.ops import shape as S
from minigrad.tensor import Tensor, _shape_arg, _to_array, as_dtype, get_default_dtype


def _float_dtype(dtype: Any) -> Any:
    return get_default_dtype() if dtype is None else as_dtype(dtype)


def tensor(data: Any, dtype: Any = None, requires_grad: bool = False, device: Any = None) -> Tensor:
    """Make a tensor from a Python number, nested list, numpy array or tensor (copies the data)."""
    dev = backend.device(device)
    arr = _to_array(data, dev, None if dtype is None else as_dtype(dtype))
    if isinstance(data, (Tensor,)) or arr is data:
        arr = arr.copy()
    return Tensor(arr, device=dev, requires_grad=requires_grad, _copy=False)


def _fill(shape: tuple, value: float, dtype: Any, requires_grad: bool, device: Any) -> Tensor:
    dev = backend.device(device)
    arr = dev.xp.full(_shape_arg(shape), value, dtype=_float_dtype(dtype))
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


def zeros_like(t: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Zeros with t's shape, dtype and device."""
    return zeros(t.shape, dtype=dtype or t.dtype, requires_grad=requires_grad, device=t.device)


def ones_like(t: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Ones with t's shape, dtype and device."""
    return ones(t.shape, dtype=dtype or t.dtype, requires_grad=requires_grad, device=t.device)


def randn(*shape: Any, dtype: Any = None, requires_grad: bool = False, device: Any = None) -> Tensor:
    """Standard normal samples from the device's generator (reproducible under manual_seed)."""
    dev = backend.device(device)
    arr = backend.randn(dev, _shape_arg(shape), _float_dtype(dtype))
    return Tensor(arr, device=dev, requires_grad=requires_grad, _copy=False)


def rand(*shape: Any, dtype: Any = None, requires_grad: bool = False, device: Any = None) -> Tensor:
    """Uniform [0, 1) samples from the device's generator."""
    dev = backend.device(device)
    arr = backend.rand(dev, _shape_arg(shape), _float_dtype(dtype))
    return Tensor(arr, device=dev, requires_grad=requires_grad, _copy=False)


def randint(low: int, high: int, size: Sequence[int], device: Any = None) -> Tensor:
    """Uniform integers in [low, high) as int64."""
    dev = backend.device(device)
    return Tensor(backend.randint(dev, low, high, tuple(size)), device=dev, _copy=False)


def arange(start: float, end: float | None = None, step: float = 1, dtype: Any = None, device: Any = None) -> Tensor:
    """Evenly spaced values in [start, end); integers give int64 like PyTorch."""
    if end is None:
        start, end = 0, start
    dev = backend.device(device)
    if dtype is None:
        is_int = all(isinstance(v, int) for v in (start, end, step))
        dtype = "int64" if is_int else get_default_dtype()
    return Tensor(dev.xp.arange(start, end, step, dtype=as_dtype(dtype)), device=dev, _copy=False)


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Concatenate along an existing dim."""
    tensors = list(tensors)
    _check_same(tensors, "cat")
    return S.Cat.apply(*tensors, axis=dim % tensors[0].ndim)


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Stack along a new dim."""
    tensors = list(tensors)
    _check_same(tensors, "stack")
    return S.Stack.apply(*tensors, axis=dim % (tensors[0].ndim + 1))


def where(condition: Any, x: Any, y: Any) -> Tensor:
    """Elementwise choice: x where condition is true, else y (differentiable in x and y)."""
    ref = x if isinstance(x, Tensor) else y
    if not isinstance(ref, Tensor):
        raise TypeError("where: at least one of x and y must be a Tensor")
    x = ref._operand(x, "where")
    y = ref._operand(y, "where")
    cond = condition.data if isinstance(condition, Tensor) else _to_array(condition, ref.device, None)
    return E.Where.apply(x, y, cond=cond.astype(bool, copy=False))


def maximum(x: Tensor, y: Any) -> Tensor:
    """Elementwise max; ties share the gradient."""
    return x.maximum(y)


def minimum(x: Tensor, y: Any) -> Tensor:
    """Elementwise min; ties share the gradient."""
    return x.minimum(y)


def _check_same(tensors: list, op: str) -> None:
    if not tensors:
        raise ValueError(f"{op}: expected a non-empty list of tensors")
    t0 = tensors[0]
    for t in tensors[1:]:
        if t.dtype != t0.dtype:
            raise TypeError(f"{op}: dtype mismatch {t0.dtype} vs {t.dtype}")
        if t.device is not t0.device:
            raise RuntimeError(f"{op}: expected all tensors on one device, got {t0.device} and {t.device}")
