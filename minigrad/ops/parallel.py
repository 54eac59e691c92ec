"""Row blocks for the fused ops' CPU kernels (ops/cpu_kernels.py, cpu_attention.py): cache-sized pieces, over the cores.

A fused op on the CPU runs its chain of array passes on one block of rows at a time, so the
block's temporaries stay in cache (L2 or L3) between passes, and hands the blocks to one Python
thread per core: NumPy ufuncs, reductions and matmul release the GIL, so the threads run in
parallel (only the few microseconds of Python per call are serialised). On other devices
(CuPy) the whole array is one block: the GPU parallelises each call itself.

Each op's block function must only touch rows [start, stop) of its outputs, so the blocks are
independent and the result does not depend on how they are scheduled.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable, Iterator

try:  # optional: lets the matrix products run one single-threaded BLAS call per thread of ours
    from threadpoolctl import ThreadpoolController
except ImportError:  # pragma: no cover - then BLAS keeps its own threads
    ThreadpoolController = None

BLOCK_BYTES = 1 << 20  # 1 MiB of one array per block. Smaller blocks keep the temporaries in L2, but each
# block costs ~3-15 NumPy calls of Python and GIL hand-offs; measured against 256 KiB (2 threads, in one process):
# cross-entropy (4096, 8000) fwd+bwd 88 -> 77 ms, GELU (32, 128, 512) 11.4 -> 8.9 ms, layer norm 2.7 -> 2.0 ms,
# attention per layer 18-20 -> 12 ms (there one block of one batch entry looped over only 4 heads per call)
PARALLEL_MIN_BYTES = 4 << 20  # below this the hand-off to a thread does not pay (measured: layer norm's 2 MB)
SPLIT_MIN_MACS = 1 << 26  # smaller products stay one BLAS call on its own threads (measured: the baby GPT's
# 768-row GEMMs run 25% slower split on our threads or on one thread)

_threads: int | None = None  # None: one per usable core
_pool: ThreadPoolExecutor | None = None  # created on first parallel use, reused by every op
_blas: tuple | None = None  # threadpoolctl's controllers of the loaded BLAS libraries, () without threadpoolctl


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


_CORES = _usable_cores()


def num_threads() -> int:
    """How many threads the CPU kernels split big work across (default: the usable cores at import)."""
    return _threads if _threads is not None else _CORES


def set_num_threads(n: int | None) -> None:
    """Use n threads for the CPU kernels (1: single-threaded; None: one per usable core)."""
    global _threads, _pool
    if n is not None and n < 1:
        raise ValueError(f"set_num_threads: need at least 1 thread, got {n}")
    _threads = n
    if _pool is not None:
        _pool.shutdown(wait=True)
        _pool = None


def _get_pool(n: int) -> ThreadPoolExecutor:
    global _pool
    if _pool is None or _pool._max_workers < n - 1:  # the calling thread does one share itself
        _pool = ThreadPoolExecutor(max_workers=n - 1, thread_name_prefix="minigrad")
    return _pool


def block_rows(row_bytes: int) -> int:
    """Rows per block so that one block of an array with rows of row_bytes is about BLOCK_BYTES."""
    return max(1, BLOCK_BYTES // max(1, row_bytes))


def for_row_blocks(device: Any, n_rows: int, row_bytes: int, fn: Callable[[int, int], Any],
                   parallel: bool = True) -> None:
    """Call fn(start, stop) on consecutive row blocks covering [0, n_rows), in parallel on the CPU.

    The rows are cut into one contiguous span per thread; each thread walks its span block by block
    (all on the calling thread with parallel=False). On a non-CPU device fn(0, n_rows) is called once.
    """
    if n_rows <= 0:
        return
    if device.type != "cpu":
        fn(0, n_rows)
        return
    rows = block_rows(row_bytes)
    n = min(num_threads(), -(-n_rows // rows))
    if n_rows * row_bytes < PARALLEL_MIN_BYTES or not parallel:
        n = 1

    def walk(start: int, stop: int) -> None:
        for s in range(start, stop, rows):
            fn(s, min(s + rows, stop))

    if n <= 1:
        walk(0, n_rows)
        return
    # spans of whole blocks, as equal as possible
    n_blocks = -(-n_rows // rows)
    cuts = [min(n_rows, (n_blocks * i // n) * rows) for i in range(n + 1)]
    pool = _get_pool(n)
    futures = [pool.submit(walk, cuts[i], cuts[i + 1]) for i in range(1, n)]
    try:
        walk(cuts[0], cuts[1])
    finally:
        for f in futures:  # wait for every worker before returning or raising (they write into our arrays)
            f.exception()
    for f in futures:
        f.result()  # re-raises an exception from a worker


# ---------------------------------------------------------------- matrix products on our threads
# OpenBLAS's own worker threads spin for a while after each call before they sleep; on a 2-core machine
# they then compete with the threads that run the elementwise blocks above (measured: those blocks stopped
# scaling inside a training step). So where threadpoolctl is installed, the big products of the fused ops
# run as one single-threaded BLAS call per thread of ours, on a slice of the rows, and OpenBLAS's pool
# stays asleep. Without threadpoolctl they are plain calls and BLAS threads them itself.

def _blas_controllers() -> tuple:
    global _blas
    if _blas is None:
        _blas = () if ThreadpoolController is None else \
            tuple(ThreadpoolController().select(user_api="blas").lib_controllers)
    return _blas


def splits_blas(device: Any) -> bool:
    """Whether big matrix products on device run on our threads (CPU, several threads, threadpoolctl present)."""
    return device.type == "cpu" and num_threads() > 1 and bool(_blas_controllers())


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """BLAS on one thread per call inside the block (restored after), so each of our threads gets one core."""
    libs = _blas_controllers()
    before = [lib.get_num_threads() for lib in libs]
    for lib in libs:
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, n in zip(libs, before):
            lib.set_num_threads(n)


def matmul(device: Any, a: Any, b: Any, out: Any) -> Any:
    """out[...] = a @ b for 2-D a and b (views welcome); big CPU products are cut into row slices, one per thread."""
    xp = device.xp
    n, k, m = a.shape[0], a.shape[1], b.shape[1]
    threads = num_threads()
    if not splits_blas(device) or n < 2 * threads or n * k * m < SPLIT_MIN_MACS:
        return xp.matmul(a, b, out=out)
    cuts = [n * i // threads for i in range(threads + 1)]
    pool = _get_pool(threads)
    with single_threaded_blas():
        futures = [pool.submit(xp.matmul, a[cuts[i]:cuts[i + 1]], b, out=out[cuts[i]:cuts[i + 1]])
                   for i in range(1, threads)]
        try:
            xp.matmul(a[:cuts[1]], b, out=out[:cuts[1]])
        finally:
            for f in futures:
                f.exception()
        for f in futures:
            f.result()
    return out
