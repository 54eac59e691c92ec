"""The Python side of tools/gpu_check.sh: small measurements and launchers that no benchmark offers yet.

    python tools/gpu_check.py [--standin] [--one-rank-mpi] run (-m MODULE | SCRIPT) [ARGS...]
    python tools/gpu_check.py env
    python tools/gpu_check.py nccl-probe
    python tools/gpu_check.py [--standin] memory [--device cuda] [--dtypes float32,bfloat16,float16] [--steps 3]
    python tools/gpu_check.py [--standin] profile [--device cuda] [--dtype float32] [--steps 3]
    python tools/gpu_check.py compare RUN_A RUN_B [--steps 20]

--standin registers the strict CuPy stand-in (tests/strict_cupy.py, a numpy-backed SIMULATION) as cuda:0, so a
command written for the GPU (`--device cuda`) runs unchanged on a machine without one: the CPU rehearsal of
gpu_check.sh. --one-rank-mpi puts a one-rank mpi4py.MPI in place of the real one, for a machine whose mpi4py finds
no MPI library: `--dist nccl` then runs NCCL for real at world size 1, with MPI's few calls answered in-process.
memory: peak device memory of the tutorial training step (benchmarks/train_step.py's step functions) per dtype,
minigrad (cupy's pool, peak bytes in use through an allocator hook) and torch (max_memory_allocated).
profile: where a minigrad step's time goes on the device: minigrad.profile(sync=True) per op, and (with torch's
CUDA profiler) the kernels launched per step and their GPU time, for minigrad and torch eager.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import runpy
import statistics
import sys
import time
import types
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DTYPES = ("float32", "bfloat16", "float16")


# ---------------------------------------------------------------- launchers

def use_standin() -> None:
    """Make 'cuda' (cuda:0) the strict CuPy stand-in: a numpy-backed simulation, no GPU (needs cupy importable)."""
    from tests.strict_cupy import make_device
    make_device(0)


def use_one_rank_mpi() -> None:
    """Replace mpi4py.MPI with one rank answering MPI's calls in-process (NCCL, when used, stays real)."""
    in_place = object()

    class Comm:
        def Get_rank(self) -> int:
            return 0

        def Get_size(self) -> int:
            return 1

        def Split_type(self, *args: Any, **kwargs: Any) -> Comm:
            return self

        def bcast(self, value: Any, root: int = 0) -> Any:
            return value

        def Bcast(self, buf: Any, root: int = 0) -> None:
            pass

        def Allreduce(self, send: Any, recv: Any = None, op: Any = None) -> None:
            if send is not in_place:
                recv[...] = send

        def allgather(self, value: Any) -> list:
            return [value]

        def Barrier(self) -> None:
            pass

        def Abort(self, code: int = 1) -> None:
            os._exit(code)

    mpi = types.ModuleType("mpi4py.MPI")
    mpi.COMM_WORLD, mpi.IN_PLACE, mpi.SUM, mpi.COMM_TYPE_SHARED = Comm(), in_place, "sum", 0
    pkg = types.ModuleType("mpi4py")
    pkg.__path__, pkg.MPI = [], mpi
    sys.modules["mpi4py"], sys.modules["mpi4py.MPI"] = pkg, mpi
    print("gpu_check: mpi4py.MPI replaced by a one-rank stand-in (NCCL, if used, is real)", flush=True)


def cmd_run(argv: list) -> None:
    """Run `-m MODULE ARGS` or `SCRIPT ARGS` as python would, in this process (after --standin/--one-rank-mpi)."""
    if not argv:
        sys.exit("gpu_check run: give -m MODULE [ARGS] or SCRIPT [ARGS]")
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(argv)
        sys.path.insert(0, str(Path(argv[0]).resolve().parent))
        runpy.run_path(argv[0], run_name="__main__")


# ---------------------------------------------------------------- env

def _try(what: str, fn: Any) -> str:
    try:
        return f"{what}: {fn()}"
    except Exception as e:  # noqa: BLE001 (a missing or broken package is a finding, not a crash)
        return f"{what}: unavailable ({type(e).__name__}: {str(e)[:200]})"


def cmd_env(_: list) -> int:
    import numpy as np
    lines = [(f"python {platform.python_version()} ({sys.executable}), numpy {np.__version__}, "
              f"{os.cpu_count()} cpus, {platform.platform()}")]

    def cupy_info() -> str:
        import cupy
        rt = cupy.cuda.runtime
        props = rt.getDeviceProperties(0)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        nvrtc = cupy.cuda.nvrtc.getVersion()
        return (f"cupy {cupy.__version__}, CUDA runtime {rt.runtimeGetVersion()}, driver {rt.driverGetVersion()}, "
                f"NVRTC {nvrtc[0]}.{nvrtc[1]}, {rt.getDeviceCount()} GPU(s), GPU 0 {name} "
                f"sm_{props['major']}{props['minor']}, {props['totalGlobalMem'] / 2 ** 30:.1f} GiB, "
                f"{props['multiProcessorCount']} SMs")

    def cuda_headers() -> str:  # the float16/bfloat16 kernels include cuda_fp16.h / cuda_bf16.h
        import cupy
        path = cupy.cuda.get_cuda_path()
        root = Path(path or "/nonexistent")
        found = [str(p) for pattern in ("include/cuda_fp16.h", "targets/*/include/cuda_fp16.h")
                 for p in root.glob(pattern)][:2]
        return f"CUDA path {path}; cuda_fp16.h at {found or 'not found there'}"

    def torch_info() -> str:
        import torch
        cuda = torch.cuda.is_available()
        return (f"torch {torch.__version__} (CUDA {torch.version.cuda}), cuda available {cuda}"
                + (f", {torch.cuda.get_device_name(0)}" if cuda else ""))

    def ml_dtypes_info() -> str:
        import ml_dtypes
        return ml_dtypes.__version__

    def mpi_info() -> str:
        import mpi4py
        from mpi4py import MPI
        return f"mpi4py {mpi4py.__version__}, {MPI.Get_library_version().splitlines()[0].strip()}"

    def nccl_info() -> str:
        from cupy.cuda import nccl
        return f"NCCL {nccl.get_version()} (cupy.cuda.nccl)"

    with warnings.catch_warnings(record=True) as caught:  # cupy warns at length when NCCL does not load
        warnings.simplefilter("always")
        for what, fn in (("cupy", cupy_info), ("cuda headers", cuda_headers), ("torch", torch_info),
                         ("ml_dtypes", ml_dtypes_info), ("mpi", mpi_info), ("nccl", nccl_info)):
            lines.append(_try(what, fn))
    for w in caught:
        text = " ".join(str(w.message).split())
        lines.append(f"warning ({w.category.__name__}): {text[:200]}")
    from shutil import which
    lines.append(f"mpiexec: {which('mpiexec') or 'not on PATH'}")
    print("\n".join(lines))
    return 0


# ---------------------------------------------------------------- nccl-probe

def cmd_nccl_probe(_: list) -> int:
    """NCCL itself at world size 1 through cupy.cuda.nccl: an all-reduce and a broadcast on the current stream."""
    import cupy
    from cupy.cuda import nccl
    uid = nccl.get_unique_id()
    comm = nccl.NcclCommunicator(1, uid, 0)
    stream = cupy.cuda.get_current_stream().ptr
    a = cupy.arange(1 << 20, dtype=cupy.float32)
    want = a.copy()
    comm.allReduce(a.data.ptr, a.data.ptr, a.size, nccl.NCCL_FLOAT32, nccl.NCCL_SUM, stream)
    comm.bcast(a.data.ptr, a.size, nccl.NCCL_FLOAT32, 0, stream)
    cupy.cuda.get_current_stream().synchronize()
    ok = bool((a == want).all())
    version = nccl.get_version() if hasattr(nccl, "get_version") else "(version unknown)"
    print(f"nccl-probe: NCCL {version}, world 1: all-reduce + broadcast of {a.size:,} float32 "
          f"{'PASS (values unchanged)' if ok else 'FAIL (values changed)'}")
    return 0 if ok else 1


# ---------------------------------------------------------------- memory

def _cupy_peak_tracker(dev: Any) -> Any:
    """For a real cupy device: a function returning (and resetting) the peak bytes in use in cupy's default pool
    since the last call; None for anything else (the stand-in)."""
    try:
        import cupy
    except ImportError:
        return None
    if dev.xp is not cupy:
        return None
    pool = cupy.get_default_memory_pool()
    peak = [pool.used_bytes()]

    def malloc(size: int) -> Any:
        mem = pool.malloc(size)
        peak[0] = max(peak[0], pool.used_bytes())
        return mem

    cupy.cuda.set_allocator(malloc)

    def read_and_reset() -> int:
        value, peak[0] = peak[0], pool.used_bytes()
        return value

    return read_and_reset


def _torch_cuda(no_torch: bool) -> Any:
    if no_torch:
        return None
    try:
        import torch
    except ImportError:
        print("torch is not installed: minigrad only")
        return None
    if not torch.cuda.is_available():
        print("torch has no CUDA here: minigrad only")
        return None
    return torch


def cmd_memory(argv: list) -> int:
    ap = argparse.ArgumentParser(prog="gpu_check.py memory")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtypes", default=",".join(DTYPES))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args(argv)
    import minigrad as mg
    from benchmarks.train_step import minigrad_step_fn, torch_autocast_ok, torch_step_fn
    from tinygpt import preset
    cfg = preset("tutorial")
    dev = mg.device(args.device)
    tracker = _cupy_peak_tracker(dev)
    torch = _torch_cuda(args.no_torch)
    mib = 2 ** 20
    print(f"peak device memory of the tutorial training step, batch {args.batch}, {args.steps} steps per dtype "
          f"(fwd + bwd + clip + AdamW; mixed precision: float32 weights and AdamW, forward under autocast)")
    print("minigrad: cupy's default pool, peak bytes in use (allocator hook); torch: max_memory_allocated. "
          "Neither counts the CUDA context or cuBLAS workspaces.\n")
    print(f"{'engine':10s} {'dtype':9s} {'weights MiB':>12s} {'peak MiB':>9s} {'step s':>8s}")
    summary = []
    for dtype in [d for d in args.dtypes.split(",") if d]:
        gc.collect()
        if tracker:
            import cupy
            cupy.get_default_memory_pool().free_all_blocks()
            tracker()
        step = minigrad_step_fn(cfg, args.batch, args.device, 0, dtype)
        weights = tracker() if tracker else None
        times = [step() for _ in range(args.steps)]
        peak = tracker() if tracker else None
        del step
        if tracker:
            print(f"{'minigrad':10s} {dtype:9s} {weights / mib:12.1f} {peak / mib:9.1f} {statistics.median(times):8.3f}")
            summary.append(f"minigrad {dtype} {peak / mib:.0f}")
        else:
            print(f"{'minigrad':10s} {dtype:9s} {'n/a':>12s} {'n/a':>9s} {statistics.median(times):8.3f}"
                  f"  ({dev} is not cupy: no device memory figures)")
        if torch is not None and torch_autocast_ok(torch, "cuda", dtype):
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            tstep = torch_step_fn(torch, cfg, args.batch, "cuda", 0, False, dtype)
            weights = torch.cuda.memory_allocated() - base
            times = [tstep() for _ in range(args.steps)]
            peak = torch.cuda.max_memory_allocated() - base
            del tstep
            print(f"{'torch':10s} {dtype:9s} {weights / mib:12.1f} {peak / mib:9.1f} {statistics.median(times):8.3f}")
            summary.append(f"torch {dtype} {peak / mib:.0f}")
    print("SUMMARY memory peak MiB: " + ("; ".join(summary) if summary else "no device figures (not a real GPU)"))
    return 0


# ---------------------------------------------------------------- profile

def _kernel_table(torch: Any, step: Any, steps: int, label: str, top: int = 12) -> str:
    """Kernels launched by `steps` calls of step() (any framework's: CUPTI sees the whole process)."""
    from torch.profiler import ProfilerActivity, profile
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    if not kernels:
        return f"{label}: torch's profiler recorded no kernels"
    by_name: dict = {}
    for e in kernels:
        n, t = by_name.get(e.name, (0, 0.0))
        by_name[e.name] = (n + 1, t + e.time_range.elapsed_us())
    busy = sum(t for _, t in by_name.values()) / steps / 1e3
    lines = [(f"{label}: {len(kernels) / steps:.0f} kernel launches and {busy:.2f} ms of kernel time per step "
              f"({len(by_name)} distinct kernels); top {top} by GPU time:")]
    for name, (n, t) in sorted(by_name.items(), key=lambda kv: -kv[1][1])[:top]:
        lines.append(f"  {t / steps / 1e3:8.3f} ms/step {n / steps:6.0f} calls/step  {name[:90]}")
    return "\n".join(lines)


def _safely(fn: Any, *args: Any) -> str:
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 (torch's profiler API moves between versions; no table is no failure)
        return f"(kernel table unavailable: {type(e).__name__}: {e})"


def cmd_profile(argv: list) -> int:
    ap = argparse.ArgumentParser(prog="gpu_check.py profile")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="float32", choices=DTYPES)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args(argv)
    import minigrad as mg
    from benchmarks.train_step import minigrad_step_fn, torch_step_fn
    from tinygpt import preset
    cfg = preset("tutorial")
    step = minigrad_step_fn(cfg, args.batch, args.device, 0, args.dtype)
    for _ in range(3):
        step()
    wall = statistics.median(step() for _ in range(max(5, args.steps)))
    print(f"minigrad tutorial step on {mg.device(args.device)}, {args.dtype}, batch {args.batch}: "
          f"{wall * 1e3:.2f} ms/step (median, host clock after a device sync)")
    with mg.profile(sync=True) as p:
        for _ in range(args.steps):
            step()
    print(f"\nminigrad.profile(sync=True) over {args.steps} steps (each op waits for the device: "
          f"op time includes its kernels; the sync itself slows the step):")
    print(p.table(top=25))
    print(f"ops' total {p.total() / args.steps * 1e3:.2f} ms/step against {wall * 1e3:.2f} ms/step unprofiled")
    torch = _torch_cuda(args.no_torch)
    summary = f"SUMMARY profile {args.dtype}: minigrad {wall * 1e3:.1f} ms/step"
    if torch is not None and mg.device(args.device).type == "cuda":
        print()
        print(_safely(_kernel_table, torch, step, args.steps, "minigrad"))
        tstep = torch_step_fn(torch, cfg, args.batch, "cuda", 0, False, args.dtype)
        for _ in range(3):
            tstep()
        twall = statistics.median(tstep() for _ in range(max(5, args.steps)))
        print(f"\ntorch eager: {twall * 1e3:.2f} ms/step")
        print(_safely(_kernel_table, torch, tstep, args.steps, "torch eager"))
        summary += f", torch eager {twall * 1e3:.1f} ms/step"
    print(summary)
    return 0


# ---------------------------------------------------------------- compare

def _step_losses(run: str) -> dict:
    out = {}
    with open(Path(run) / "metrics.jsonl", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if "loss" in rec:
                out[rec["step"]] = rec["loss"]
    return out


def cmd_compare(argv: list) -> int:
    ap = argparse.ArgumentParser(prog="gpu_check.py compare")
    ap.add_argument("run_a")
    ap.add_argument("run_b")
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args(argv)
    a, b = _step_losses(args.run_a), _step_losses(args.run_b)
    common = sorted(set(a) & set(b))[:args.steps]
    if not common:
        print(f"compare: no steps in common between {args.run_a} and {args.run_b}")
        return 1
    diff = max(abs(a[s] - b[s]) for s in common)
    print(f"SUMMARY compare: {len(common)} steps, max |loss difference| {diff:.3g} "
          f"({Path(args.run_a).name} vs {Path(args.run_b).name})")
    return 0


COMMANDS = {"run": cmd_run, "env": cmd_env, "nccl-probe": cmd_nccl_probe, "memory": cmd_memory,
            "profile": cmd_profile, "compare": cmd_compare}


def main(argv: list) -> int:
    while argv and argv[0] in ("--standin", "--one-rank-mpi"):
        (use_standin if argv.pop(0) == "--standin" else use_one_rank_mpi)()
    if not argv or argv[0] not in COMMANDS:
        print("\n\n".join(__doc__.strip().split("\n\n")[:2]), file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    rc = COMMANDS[argv[0]](argv[1:])
    if argv[0] != "run":
        print(f"({argv[0]}: {time.perf_counter() - t0:.1f} s)")
    return rc or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
