"""A strict CuPy stand-in: a SIMULATION of a device array library, backed by numpy.

It is not CuPy and runs no CUDA. It checks the discipline that CuPy enforces and a CPU
test run would otherwise miss:
- arrays refuse implicit conversion to numpy (``np.asarray(dev)`` raises TypeError, as CuPy);
- raw numpy arrays mixed into device ops (ufuncs, functions, indexing, assignment) raise TypeError;
- only names the installed cupy has resolve: module functions, ndarray methods and
  Generator methods (cupy's Generator has no normal, choice or permutation);
- device-to-host synchronisations (``.get()``, ``.item()``, ``float()``, ``bool()``, ...) are counted;
- a ufunc that turns float32 device arrays into a float64 result (a hidden upcast) raises TypeError;
- ``a[idx] = v`` with repeated integer indices raises (cupy stores an undefined one of the values);
- float16/bfloat16 arithmetic as cupy's: a matmul of bfloat16 arrays gives bfloat16 (numpy with ml_dtypes gives
  float32), and sum/mean of float16/bfloat16 accumulate in float32 and round once (numpy sums them in their
  own precision along an axis), as cupy's reductions and cuBLAS (float32 compute) do.
Numerical results are numpy's. Build it with ``make_device()``; needs ``import cupy`` to work
(the name lists come from the installed cupy; no GPU is needed).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from minigrad import backend
from minigrad.cuda_kernels import ReferenceKernels


def cupy_or_skip(what: str = "this test") -> Any:
    """Import cupy (the [cuda-check] extra) or skip; with MINIGRAD_REQUIRE_CUDA_CHECK=1 (set by .ci/run), fail instead."""
    import os

    import pytest
    try:
        import cupy
        return cupy
    except ImportError:
        msg = f"{what} needs cupy: pip install -e \".[cuda-check]\" (no GPU needed)"
        if os.environ.get("MINIGRAD_REQUIRE_CUDA_CHECK") == "1":
            pytest.fail(msg + " [MINIGRAD_REQUIRE_CUDA_CHECK=1]")
        pytest.skip(msg)


class Syncs:
    """How many device-to-host synchronisations happened."""

    count = 0


def _refuse(what: str) -> TypeError:
    return TypeError(f"strict cupy stand-in: {what} (a numpy array cannot be mixed into device operations; "
                     "move it with backend.from_numpy first)")


def _unwrap(x: Any, where: str) -> Any:
    if isinstance(x, StrictArray):
        return x._a
    if isinstance(x, np.ndarray):
        raise _refuse(f"numpy array passed to {where}")
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, where) for v in x)
    return x


_FLOAT32_ACCUMULATED = frozenset({"sum", "mean"})  # cupy reduces float16/bfloat16 in float32 ("float" code)


def _call(name: str, fn: Any, args: tuple, kwargs: dict) -> Any:
    """fn(*args, **kwargs) on host arrays, with cupy's float32 accumulation for sums of float16/bfloat16."""
    a = args[0] if args else None
    if (name in _FLOAT32_ACCUMULATED and isinstance(a, np.ndarray) and a.dtype.itemsize == 2
            and a.dtype.name in ("float16", "bfloat16") and kwargs.get("dtype") is None and kwargs.get("out") is None):
        return fn(a.astype(np.float32), *args[1:], **kwargs).astype(a.dtype)
    return fn(*args, **kwargs)


def _wrap(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return StrictArray(x)
    if isinstance(x, np.generic) and not isinstance(x, np.dtype):
        return StrictArray(np.asarray(x))  # device reductions give 0-d arrays, not host scalars
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


class StrictArray(NDArrayOperatorsMixin):
    """A device array that behaves like cupy.ndarray where it matters for minigrad."""

    __slots__ = ("_a",)
    names: frozenset = frozenset()  # cupy.ndarray's attributes, set by make_device

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    T = property(lambda self: StrictArray(self._a.T))

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct "
                        "a NumPy array explicitly. (strict cupy stand-in)")

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        return _call_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        if func.__name__ not in StrictModule.names:
            raise AttributeError(f"cupy has no function {func.__name__!r} (strict cupy stand-in)")
        return _wrap(_call(func.__name__, func, _unwrap(args, func.__name__),
                           {k: _unwrap(v, func.__name__) for k, v in kwargs.items()}))

    def __getitem__(self, index: Any) -> "StrictArray":
        return _wrap(self._a[_unwrap(index, "indexing")])

    def __setitem__(self, index: Any, value: Any) -> None:
        index = _unwrap(index, "indexing")
        ints = [part for part in (index if isinstance(index, tuple) else (index,))
                if isinstance(part, np.ndarray) and part.dtype.kind in "iu"]
        if ints:  # the positions written are the broadcast tuples of the integer index arrays
            rows = np.stack([b.reshape(-1) for b in np.broadcast_arrays(*ints)])
            if np.unique(rows, axis=1).shape[1] != rows.shape[1]:
                raise ValueError("strict cupy stand-in: a[idx] = v writes one element twice, which stores an "
                                 "undefined one of the values on cupy (numpy: the last wins); use a scatter-add")
        self._a[index] = _unwrap(value, "item assignment")

    def __len__(self) -> int:
        return len(self._a)

    def __repr__(self) -> str:
        return f"StrictArray({self._a!r})"

    # device -> host: each one is a synchronisation
    def get(self) -> np.ndarray:
        Syncs.count += 1
        return self._a.copy()

    def item(self) -> Any:
        Syncs.count += 1
        return self._a.item()

    def tolist(self) -> Any:
        Syncs.count += 1
        return self._a.tolist()

    def __float__(self) -> float:
        Syncs.count += 1
        return float(self._a)

    def __int__(self) -> int:
        Syncs.count += 1
        return int(self._a)

    def __bool__(self) -> bool:
        Syncs.count += 1
        return bool(self._a)

    def __getattr__(self, name: str) -> Any:
        if name not in StrictArray.names:
            raise AttributeError(f"cupy.ndarray has no attribute {name!r} (strict cupy stand-in)")
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)
        unbound = getattr(np.ndarray, name, None)

        def method(*args: Any, **kwargs: Any) -> Any:
            args, kwargs = _unwrap(args, f"ndarray.{name}"), {k: _unwrap(v, f"ndarray.{name}") for k, v in kwargs.items()}
            if unbound is not None and name in _FLOAT32_ACCUMULATED:
                return _wrap(_call(name, unbound, (self._a, *args), kwargs))
            return _wrap(attr(*args, **kwargs))
        return method


def _call_ufunc(ufunc: Any, method: str, inputs: tuple, kwargs: dict) -> Any:
    name = ufunc.__name__
    if name not in StrictModule.names:
        raise AttributeError(f"cupy has no ufunc {name!r} (strict cupy stand-in)")
    if method == "at" and name not in ("add", "subtract", "bitwise_and", "bitwise_or", "bitwise_xor"):
        raise NotImplementedError(f"cupy.{name}.at is not supported by cupy (strict cupy stand-in)")
    args = _unwrap(inputs, f"ufunc {name}")
    if "out" in kwargs:
        kwargs = dict(kwargs, out=_unwrap(kwargs["out"], f"ufunc {name} out="))
    result = getattr(ufunc, method)(*args, **kwargs)
    _refuse_hidden_float64(name, args, result)
    if name == "matmul" and "out" not in kwargs and result.dtype == np.float32 and all(
            getattr(a, "dtype", None) is not None and a.dtype.name == "bfloat16" for a in args):
        result = result.astype(args[0].dtype)  # cupy: bfloat16 @ bfloat16 is bfloat16 (numpy + ml_dtypes: float32)
    return _wrap(result)


def _refuse_hidden_float64(name: str, args: Any, result: Any) -> None:
    """float32 device arrays in, float64 out: a silent upcast (1/2 to 1/64 of the speed on a GPU)."""
    arrays = [a for a in args if isinstance(a, np.ndarray)]
    floats = [a.dtype for a in arrays if a.dtype.kind == "f"]
    outs = result if isinstance(result, tuple) else (result,)
    if any(d == np.float32 for d in floats) and any(
            getattr(o, "dtype", None) == np.float64 for o in outs):
        kinds = ", ".join(f"{a.dtype}{tuple(a.shape)}" for a in arrays)
        raise TypeError(f"strict cupy stand-in: {name}({kinds}) gives float64: a hidden float64 upcast "
                        "(a numpy float64 scalar or array in float32 math?)")


class _UfuncProxy:
    def __init__(self, ufunc: Any) -> None:
        self._u = ufunc
        self.__name__ = ufunc.__name__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _call_ufunc(self._u, "__call__", args, kwargs)

    def at(self, *args: Any, **kwargs: Any) -> Any:
        return _call_ufunc(self._u, "at", args, kwargs)

    def reduce(self, *args: Any, **kwargs: Any) -> Any:
        return _call_ufunc(self._u, "reduce", args, kwargs)


class StrictGenerator:
    """cupy.random.Generator's methods only, drawing with numpy's Generator."""

    names: frozenset = frozenset()

    def __init__(self, seed: Any = None) -> None:
        self._g = np.random.default_rng(seed)

    @property
    def bit_generator(self) -> Any:
        return self._g.bit_generator

    def __getattr__(self, name: str) -> Any:
        if name not in StrictGenerator.names:
            raise AttributeError(f"cupy.random.Generator has no method {name!r} (strict cupy stand-in)")
        fn = getattr(self._g, name)
        return lambda *a, **k: _wrap(np.asarray(fn(*a, **k)))


class _Random:
    default_rng = StrictGenerator


class _Cuda:
    class Device:
        def __init__(self, index: int = 0) -> None:
            self.index = index

        def synchronize(self) -> None:
            pass


class StrictModule:
    """The stand-in's `xp`: numpy functions restricted to the names the installed cupy has."""

    __name__ = "strict_cupy"
    names: frozenset = frozenset()
    ndarray = StrictArray
    random = _Random
    cuda = _Cuda
    _HOST_INPUT = frozenset({"asarray", "array", "ascontiguousarray"})  # explicit host-to-device copies

    def __getattr__(self, name: str) -> Any:
        if name not in StrictModule.names:
            raise AttributeError(f"cupy has no attribute {name!r} (strict cupy stand-in)")
        obj = getattr(np, name)
        if isinstance(obj, np.ufunc):
            return _UfuncProxy(obj)
        if isinstance(obj, type) or not callable(obj):
            return obj
        if name in self._HOST_INPUT:
            return lambda a, *args, **kw: StrictArray(np.array(_unwrap_host(a), *args, **kw))

        def fn(*args: Any, **kwargs: Any) -> Any:
            return _wrap(_call(name, obj, _unwrap(args, name), {k: _unwrap(v, name) for k, v in kwargs.items()}))
        return fn


def _unwrap_host(a: Any) -> Any:
    return a._a if isinstance(a, StrictArray) else a


def make_device(index: int = 99) -> backend.Device:
    """Register the stand-in as device 'cuda:<index>' and return it (needs cupy importable; once per index)."""
    known = backend._DEVICES.get(("cuda", index))
    if known is not None and isinstance(known.xp, StrictModule):
        return known
    import cupy
    StrictModule.names = frozenset(dir(cupy))
    StrictArray.names = frozenset(dir(cupy.ndarray))
    StrictGenerator.names = frozenset(dir(cupy.random.Generator))
    xp = StrictModule()

    def erf(x: StrictArray) -> StrictArray:
        return StrictArray(backend._erf_cpu(x._a))

    # fused kernels run as their array-namespace references (tests/minigrad/test_cuda_kernels.py runs the
    # CUDA sources themselves as host-compiled C++)
    dev = backend.Device("cuda", index, xp, erf=erf, scatter_add=lambda t, i, v: xp.add.at(t, i, v),
                         to_host=lambda a: a.get(), from_host=xp.asarray, default_rng=StrictGenerator,
                         kernels=ReferenceKernels(xp, erf))
    return backend.register_device(dev)
