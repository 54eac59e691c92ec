"""Big CPU arrays reused from step to step instead of fresh from the operating system each time.

An array of tens of megabytes (the (4096, 8000) logits and cross-entropy buffers of the tutorial) is
mapped fresh by malloc on every allocation and unmapped when freed, so every training step pays for
the kernel zeroing its pages again (measured: 30 ms per 131 MB array). ``empty`` keeps a couple of
such arrays per shape and hands one out again once nothing but this cache refers to it: no view, no
Tensor, no saved context (CPython's reference count says so). Smaller arrays come from malloc's heap
without page faults, and CuPy has its own memory pool, so both are allocated normally.
"""
from __future__ import annotations

import math
import sys
import threading
from typing import Any

MIN_BYTES = 32 << 20  # glibc's largest mmap threshold: smaller arrays are recycled by malloc itself
PER_SHAPE = 2  # a step's output may still be held by the caller while the next step runs

_cache: dict = {}  # (shape, dtype name) -> arrays this module keeps
_lock = threading.Lock()


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
