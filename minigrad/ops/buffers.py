"""Big CPU arrays reused from step to step instead of fresh from the operating system each time.

An array of tens of megabytes (the (4096, 8000) logits and cross-entropy buffers of the tutorial) is
mapped fresh by malloc on every allocation and unmapped when freed, so every training step pays for
the kernel zeroing its pages again (measured: 30 ms per 131 MB array). ``empty`` keeps a couple of
such arrays per shape and hands one out again once nothing but this cache refers to it: no view, no
Tensor, no saved context (CPython's reference count says so). CuPy has its own memory pool.

Smaller arrays come from malloc's heap, but glibc gives freed memory back to the system as soon as
more than 128 KB is free at the top of the heap, so a step's many short-lived temporaries (256 KB to
8 MB) were faulted in again and again (measured: 5,000-14,000 page faults and 100-160 ms of system
time per tutorial step; 0 faults and ~50 ms with the settings below). ``keep_freed_memory()``
(exported as ``minigrad.tune_malloc()``) therefore asks glibc (mallopt, Linux only) to serve arrays up
to 32 MB from the heap and to keep up to 256 MB of freed heap for reuse. It changes the whole process's
malloc settings, so importing minigrad never does it: a program calls it explicitly, as
``python -m tinygpt.train`` and the benchmarks do. MINIGRAD_MALLOC_TUNING=0 makes it a no-op, and so do
glibc's own MALLOC_TRIM_THRESHOLD_ / MALLOC_MMAP_THRESHOLD_ variables when set. Where there is no glibc
(macOS, Windows, musl) it returns False and changes nothing.
"""
from __future__ import annotations

import ctypes
import math
import os
import sys
import threading
from typing import Any

MIN_BYTES = 32 << 20  # glibc's largest mmap threshold: smaller arrays are recycled by malloc itself
PER_SHAPE = 2  # a step's output may still be held by the caller while the next step runs

_cache: dict = {}  # (shape, dtype name) -> arrays this module keeps
_lock = threading.Lock()
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory(trim_bytes: int = 256 << 20, mmap_bytes: int = 32 << 20) -> bool:
    """Ask glibc to keep freed heap memory for reuse (see the module docstring); True if it took the settings."""
    if os.environ.get("MINIGRAD_MALLOC_TUNING") == "0" or "MALLOC_TRIM_THRESHOLD_" in os.environ \
            or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library the process already uses
        return bool(libc.mallopt(_M_TRIM_THRESHOLD, trim_bytes)) and bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_bytes))
    except (OSError, AttributeError, TypeError):  # no glibc: macOS, musl without mallopt; Windows (CDLL(None))
        return False


def empty(device: Any, shape: tuple, dtype: Any) -> Any:
    """An uninitialised array like xp.empty(shape, dtype), recycled when it is big and on the CPU."""
    xp = device.xp
    shape = tuple(int(n) for n in shape)
    dtype = xp.dtype(dtype)
    if device.type != "cpu" or math.prod(shape) * dtype.itemsize < MIN_BYTES:
        return xp.empty(shape, dtype=dtype)
    with _lock:
        pool = _cache.setdefault((shape, dtype.name), [])
        for arr in pool:
            # referenced only by the pool list, the loop variable and getrefcount's argument: free to reuse
            if sys.getrefcount(arr) == 3:
                return arr
        arr = xp.empty(shape, dtype=dtype)
        if len(pool) < PER_SHAPE:
            pool.append(arr)
        return arr


def clear() -> None:
    """Drop every kept array (their memory goes back to the system once nothing else uses them)."""
    with _lock:
        _cache.clear()

