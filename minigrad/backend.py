"""Devices and the few things NumPy and CuPy do differently.

Every op reaches its array library through ``Device.xp`` (numpy on "cpu", cupy on
"cuda"), so the same op code runs on both. What cannot be written once for both
(scatter-add, erf, random numbers, host transfer, synchronisation, memory statistics,
the optional fused CUDA kernels) lives here and nowhere else.

cupy is imported only when a "cuda" device is first asked for. Status of the CUDA path:
API- and compile-checked in CI (on a numpy-backed stand-in and with NVRTC), not yet
verified on a GPU; see docs/cuda.md.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np


class Device:
    """A place where arrays live: its name, index, array module (``xp``) and the hooks that differ.

    The hooks are the only code that is not written once for both libraries:
    erf(x), scatter_add(target, indices, values), to_host(array), from_host(numpy_array),
    default_rng(seed), synchronize() and memory_stats(). ``kernels`` is None or an object
    with fused kernels (minigrad.cuda_kernels: gelu_forward, gelu_backward, adamw_step) that
    ops use when it is set, i.e. on "cuda" only.

    ``Device("cuda")``, ``Device("cuda:1")`` or ``Device("cuda", 1)`` (no array module given)
    returns the same cached object as ``minigrad.device(...)``, as torch.device does.
    """

    __slots__ = ("type", "index", "xp", "rng", "erf", "scatter_add", "to_host", "from_host", "default_rng",
                 "synchronize", "memory_stats", "kernels")

    def __new__(cls, type: str, index: "int | None" = None, xp: Any = None, **hooks: Any) -> "Device":
        if xp is None:
            return device(type if index is None else f"{type}:{index}")
        return super().__new__(cls)

    def __init__(self, type: str, index: "int | None" = None, xp: Any = None, *, erf: Any = None,
                 scatter_add: Any = None, to_host: Any = None, from_host: Any = None, default_rng: Any = None,
                 synchronize: Any = None, memory_stats: Any = None, kernels: Any = None) -> None:
        if xp is None:
            return  # Device("cuda"): __new__ returned the cached, initialised device
        self.type = type
        self.index = index
        self.xp = xp
        self.rng = None  # set by manual_seed / seed_device
        self.erf = erf or _erf_cpu
        self.scatter_add = scatter_add or _scatter_add_cpu
        self.to_host = to_host or (lambda a: np.asarray(a))
        self.from_host = from_host or (lambda a: a)
        self.default_rng = default_rng or np.random.default_rng
        self.synchronize = synchronize or (lambda: None)
        self.memory_stats = memory_stats or (lambda: {})
        self.kernels = kernels

    def __repr__(self) -> str:
        return f"device(type='{self.type}', index={self.index})" if self.type == "cuda" else "device(type='cpu')"

    def __str__(self) -> str:
        return f"cuda:{self.index}" if self.type == "cuda" else "cpu"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):  # compared by name: no cupy import, no error on a machine without a GPU
            try:
                return (self.type, self.index) == _parse_spec(other)
            except ValueError:
                return False
        return isinstance(other, Device) and (self.type, self.index) == (other.type, other.index)

    def __reduce__(self) -> tuple:
        return device, (str(self),)  # pickling or copying gives the process's own cached device

    def __hash__(self) -> int:
        return hash((self.type, self.index))


_DEVICES: dict[tuple[str, int], Device] = {}
_SEED: int | None = None


class CudaUnavailableError(RuntimeError):
    """Raised when a CUDA device is requested but cupy or a GPU is missing."""


def _load_cupy() -> Any:
    try:
        import cupy  # noqa: F401
    except ImportError as e:
        raise CudaUnavailableError(
            "device 'cuda' needs cupy, which is not installed: pip install -e \".[cuda]\" (cupy-cuda12x; "
            "cupy-cuda13x for CUDA 13 drivers; see docs/cuda.md)") from e
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDARuntimeError without a driver
        raise CudaUnavailableError(f"device 'cuda': cupy is installed but no usable GPU/driver was found ({e})") from e
    if n == 0:
        raise CudaUnavailableError("device 'cuda': cupy is installed but no GPU was found")
    return cupy


def cuda_unavailable_reason() -> "str | None":
    """None when device 'cuda' can be used, else the one-line reason (cupy or a GPU missing)."""
    try:
        device("cuda")
    except CudaUnavailableError as e:
        return str(e)
    return None


def _parse_spec(spec: str) -> tuple[str, int]:
    """(type, index) of "cpu", "cpu:N" (all one CPU device, index 0), "cuda" or "cuda:N"; ValueError otherwise."""
    name, _, idx = spec.partition(":")
    if name not in ("cpu", "cuda") or (idx and not idx.isdigit()):
        raise ValueError(f"unknown device {spec!r}: expected 'cpu', 'cuda' or 'cuda:N'")
    return name, int(idx) if idx and name == "cuda" else 0


def device(spec: "str | Device | None" = None) -> Device:
    """Return the Device for "cpu", "cuda" or "cuda:N" (cached, one object per device)."""
    if isinstance(spec, Device):
        return spec
    if spec is None:
        spec = "cpu"
    if not isinstance(spec, str):
        raise TypeError(f"device must be a string like 'cpu' or 'cuda:0', got {spec!r}")
    key = _parse_spec(spec)
    name, index = key
    dev = _DEVICES.get(key)
    if dev is None:
        if name == "cpu":
            dev = Device("cpu", 0, np)
        else:
            cupy = _load_cupy()
            if index >= cupy.cuda.runtime.getDeviceCount():
                raise CudaUnavailableError(f"device {spec!r}: only {cupy.cuda.runtime.getDeviceCount()} GPU(s) found")
            # cupy allocates and launches on the thread's current GPU, and minigrad does not switch it per op
            in_use = [d for d in _DEVICES.values() if d.xp is cupy]
            if in_use:
                raise CudaUnavailableError(
                    f"device {spec!r}: minigrad uses one GPU per process and {in_use[0]} is already in use; "
                    f"start another process (e.g. with CUDA_VISIBLE_DEVICES={index}) for the other GPU")
            cupy.cuda.Device(index).use()
            dev = _cupy_device(cupy, index)
        seed_device(dev, _SEED)
        _DEVICES[key] = dev
    return dev


def _cupy_device(cupy: Any, index: int) -> Device:
    """A CUDA device: cupy plus the few cupy-specific calls."""
    import os

    import cupyx
    import cupyx.scipy.special

    from minigrad.cuda_kernels import CudaKernels

    def synchronize() -> None:
        cupy.cuda.Device(index).synchronize()

    def memory_stats() -> dict:
        pool = cupy.get_default_memory_pool()
        return {"used_bytes": int(pool.used_bytes()), "total_bytes": int(pool.total_bytes())}

    erf = cupyx.scipy.special.erf
    kernels = None if os.environ.get("MINIGRAD_CUDA_KERNELS") == "0" else CudaKernels(cupy, erf)
    return Device("cuda", index, cupy, erf=erf, scatter_add=cupyx.scatter_add,
                  to_host=lambda a: a.get(), from_host=cupy.asarray, default_rng=cupy.random.default_rng,
                  synchronize=synchronize, memory_stats=memory_stats, kernels=kernels)


def register_device(dev: Device) -> Device:
    """Make a custom Device (e.g. a test stand-in) reachable as its type name."""
    seed_device(dev, _SEED)
    _DEVICES[(dev.type, dev.index)] = dev
    return dev


def device_of(array: Any) -> Device:
    """The Device an array lives on (numpy arrays are on the CPU)."""
    if isinstance(array, np.ndarray):
        return device("cpu")
    for dev in _DEVICES.values():
        if dev.type != "cpu" and isinstance(array, dev.xp.ndarray):
            return dev
    raise TypeError(f"not an array of a known device: {type(array).__name__}")


# ---------------------------------------------------------------- random numbers

def seed_device(dev: Device, seed: int | None) -> None:
    """(Re)create a device's random generator from a seed (None: fresh entropy)."""
    dev.rng = dev.default_rng(seed)


def manual_seed(seed: int) -> None:
    """Seed every device's generator so all random draws are reproducible."""
    global _SEED
    _SEED = int(seed)
    for dev in _DEVICES.values():
        seed_device(dev, _SEED)


def randn(dev: Device, shape: tuple[int, ...], dtype: Any) -> Any:
    """Standard normal draws of a float dtype on a device."""
    return _draw(dev.rng.standard_normal, shape, dtype)


def rand(dev: Device, shape: tuple[int, ...], dtype: Any) -> Any:
    """Uniform [0, 1) draws of a float dtype on a device."""
    return _draw(dev.rng.random, shape, dtype)


def _draw(fn: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    """The generators draw float32 and float64 only: 16-bit floats (float16, bfloat16) are drawn in float32 and
    rounded."""
    dtype = np.dtype(dtype)
    if dtype.itemsize >= 4:
        return fn(shape, dtype=dtype)
    return fn(shape, dtype=np.float32).astype(dtype)


def randint(dev: Device, low: int, high: int, shape: tuple[int, ...]) -> Any:
    """Uniform integers in [low, high) as int64."""
    return dev.rng.integers(low, high, size=shape, dtype=np.int64)


# ---------------------------------------------------------------- differing kernels

def scatter_add(target: Any, indices: Any, values: Any) -> None:
    """target[indices] += values, accumulating repeated indices (embedding backward)."""
    device_of(target).scatter_add(target, indices, values)


def _scatter_add_cpu(target: np.ndarray, indices: Any, values: np.ndarray) -> None:
    if isinstance(indices, np.ndarray) and target.ndim == 2 and indices.ndim == 1 and values.ndim == 2:
        # sort rows by id and sum runs: much faster than np.add.at for embedding gradients
        order = np.argsort(indices, kind="stable")
        sorted_ids = indices[order]
        starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
        sums = np.add.reduceat(values[order], starts, axis=0)
        target[sorted_ids[starts]] += sums
    else:
        np.add.at(target, indices, values)


_ERF_P = 0.3275911
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def erf(x: Any) -> Any:
    """Vectorised error function: ~2e-16 in float64, ~5e-7 in float32 (numpy has none; cupy uses cupyx)."""
    return device_of(x).erf(x)


def _erf_cpu(x: np.ndarray) -> np.ndarray:
    return _erf_float32(x) if x.dtype == np.float32 else _erf_numpy(x)


# Eigen's float32 erf: x * P(x^2) / Q(x^2) on [-4, 4] (erf is +-1 in float32 beyond)
_ERF32_P = tuple(np.float32(c) for c in (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06,
                                         -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03,
                                         -1.60960333262415e-02))
_ERF32_Q = tuple(np.float32(c) for c in (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
                                         -7.37332916720468e-03, -1.42647390514189e-02))
CHUNK = 1 << 16  # elements per block in chained elementwise math: the temporaries stay in L2 cache


def _erf_float32(x: np.ndarray) -> np.ndarray:
    out = np.empty(x.shape, x.dtype)  # C order, so dst is a view of it whatever x's layout (a transpose, say)
    src, dst = x.reshape(-1), out.reshape(-1)
    for s in range(0, src.size, CHUNK):
        v = np.clip(src[s:s + CHUNK], -4.0, 4.0)
        x2 = v * v
        p = x2 * _ERF32_P[0]  # Horner: ((P0 x2 + P1) x2 + P2) ...
        p += _ERF32_P[1]
        for c in _ERF32_P[2:]:
            p *= x2
            p += c
        p *= v
        q = x2 * _ERF32_Q[0]
        q += _ERF32_Q[1]
        for c in _ERF32_Q[2:]:
            q *= x2
            q += c
        np.divide(p, q, out=dst[s:s + CHUNK])
    return out


def _erf_numpy(x: np.ndarray) -> np.ndarray:
    # W. J. Cody's rational approximations (as in many libm's): |x| < 0.5 a series in x^2,
    # 0.5 <= |x| < 4 erfc via a rational function, |x| >= 4 erfc via an asymptotic form.
    x64 = x.astype(np.float64, copy=False)
    ax = np.abs(x64)
    out = np.empty_like(x64)
    small = ax < 0.5
    mid = (~small) & (ax < 4.0)
    big = ~(small | mid)  # |x| >= 4, and NaN (which then propagates)
    if small.any():
        xs = x64[small]
        z = xs * xs
        num = (((0.185777706184603153 * z + 3.16112374387056560) * z + 113.864154151050156) * z
               + 377.485237685302021) * z + 3209.37758913846947
        den = (((z + 23.6012909523441209) * z + 244.024637934444173) * z + 1282.61652607737228) * z \
            + 2844.23683343917062
        out[small] = xs * num / den
    if mid.any():
        y = ax[mid]
        p = (0.564188496988670089, 8.88314979438837594, 66.1191906371416295, 298.635138197400131,
             881.952221241769090, 1712.04761263407058, 2051.07837782607147, 1230.33935479799725,
             2.15311535474403846e-8)
        q = (15.7449261107098347, 117.693950891312499, 537.181101862009858, 1621.38957456669019,
             3290.79923573345963, 4362.61909014324716, 3439.36767414372164, 1230.33935480374942)
        num = p[8] * y
        den = y.copy()
        for i in range(7):
            num = (num + p[i]) * y
            den = (den + q[i]) * y
        erfc = np.exp(-y * y) * (num + p[7]) / (den + q[7])
        out[mid] = np.copysign(1.0 - erfc, x64[mid])
    if big.any():
        y = ax[big]
        p = (0.305326634961232344, 0.360344899949804439, 0.125781726111229246, 0.0160837851487422766,
             6.58749161529837803e-4, 0.0163153871373020978)
        q = (2.56852019228982242, 1.87295284992346725, 0.527905102951428412, 0.0605183413124413191,
             0.00233520497626869185)
        z = 1.0 / (y * y)
        num = p[5] * z
        den = z.copy()
        for i in range(4):
            num = (num + p[i]) * z
            den = (den + q[i]) * z
        r = z * (num + p[4]) / (den + q[4])
        r = (1.0 / math.sqrt(math.pi) - r) / y
        erfc = np.exp(-y * y) * r
        out[big] = np.copysign(1.0 - erfc, x64[big])
    return out.astype(x.dtype, copy=False)


def to_numpy(array: Any) -> np.ndarray:
    """Copy an array to host memory as a numpy array (the one sanctioned host transfer)."""
    if isinstance(array, (np.ndarray, np.generic)):
        return np.asarray(array)
    return device_of(array).to_host(array)


def from_numpy(dev: Device, array: np.ndarray) -> Any:
    """Move a host numpy array onto a device."""
    return dev.from_host(array)


def nccl_module() -> Any:
    """cupy.cuda.nccl, NCCL's bindings that CuPy ships (for minigrad.distributed's GPU all-reduce)."""
    from cupy.cuda import nccl
    return nccl
