"""Data parallel on one machine: 2 ranks x 1 thread against 1 rank x 2 threads, the tutorial step.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/data_parallel.py [--steps 12] [--rounds 2]

Each configuration trains the tutorial model for --steps steps on tinyshakespeare (from ../shared, or
--data) in a fresh run folder; the trainer's own "tokens/s in training steps" (evals excluded) is
read back. The configurations take turns (--rounds times each) so a slow spell of a shared machine
does not fall on one of them. A separate mpiexec run times the all-reduce of the tutorial's flat
gradient (3.25 M float32) between 2 ranks. Needs the [dist] extra. Ends with a SUMMARY line.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"

ALLREDUCE = """
import time, numpy as np
from minigrad import distributed
comm, _ = distributed.init("mpi", "cpu")
a = np.ones(3_252_864, dtype=np.float32)  # the tutorial's parameter count
for _ in range(3):
    comm.all_reduce_(a, average=True)
ts = []
for _ in range(20):
    comm.barrier(); t = time.perf_counter(); comm.all_reduce_(a, average=True); ts.append(time.perf_counter() - t)
if comm.rank == 0:
    print(f"ALLREDUCE {np.median(ts) * 1e3:.2f}")
"""


def run(ranks: int, threads: int, data: Path, steps: int, cache: Path, out: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MINIGRAD_NUM_THREADS=str(threads))
    train = [sys.executable, "-m", "tinygpt.train", "--data", str(data), "--max-steps", str(steps),
             "--eval-interval", str(steps), "--eval-batches", "1", "--sample-tokens", "1", "--no-progress",
             "--cache-dir", str(cache), "--out", str(out), "--overwrite"]
    cmd = ([shutil.which("mpiexec") or str(Path(sys.executable).parent / "mpiexec"), "-n", str(ranks)] + train
           if ranks > 1 else train)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    m = re.search(r"([\d,]+) tokens/s in training steps", proc.stdout)
    return float(m.group(1).replace(",", ""))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=SHAKESPEARE)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    if not args.data.exists():
        raise SystemExit(f"corpus {args.data} not found (pass --data)")
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        raise SystemExit("needs the [dist] extra: pip install -e \".[dist]\"") from None
    import threadpoolctl
    kernel = next((i.get("architecture") for i in threadpoolctl.threadpool_info() if i.get("internal_api") == "openblas"),
                  "?")
    print(f"# tutorial step, {args.steps} steps per run, {args.rounds} rounds, BLAS kernel {kernel}, "
          f"{os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        run(1, 2, args.data, 1, cache, Path(tmp) / "warm")  # tokenizes once, into the cache
        configs = {"1 rank x 2 threads": (1, 2), "2 ranks x 1 thread": (2, 1)}
        results: dict = {k: [] for k in configs}
        for _ in range(args.rounds):
            for name, (ranks, threads) in configs.items():
                results[name].append(run(ranks, threads, args.data, args.steps, cache, Path(tmp) / "run"))
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        mpiexec = shutil.which("mpiexec") or str(Path(sys.executable).parent / "mpiexec")
        proc = subprocess.run([mpiexec, "-n", "2", sys.executable, "-c", ALLREDUCE], capture_output=True, text=True,
                              env=env, cwd=ROOT)
        allreduce_ms = float(re.search(r"ALLREDUCE ([\d.]+)", proc.stdout).group(1))
    print(f"{'configuration':22s} {'tokens/s (each round)':>30s} {'median':>10s} {'ms/step':>9s}")
    med = {}
    for name, values in results.items():
        med[name] = float(np.median(values))
        ms = 32 * 128 / med[name] * 1e3
        print(f"{name:22s} {', '.join(f'{v:,.0f}' for v in values):>30s} {med[name]:>10,.0f} {ms:>9.0f}")
    step_ms = 32 * 128 / med["2 ranks x 1 thread"] * 1e3
    print(f"all-reduce of 3.25 M float32 (13 MB) between 2 ranks: {allreduce_ms:.1f} ms "
          f"({100 * allreduce_ms / step_ms:.1f}% of the 2-rank step)")
    ratio = med["2 ranks x 1 thread"] / med["1 rank x 2 threads"]
    print(f"SUMMARY data_parallel: 2 ranks x 1 thread {med['2 ranks x 1 thread']:,.0f} tok/s vs 1 rank x 2 threads "
          f"{med['1 rank x 2 threads']:,.0f} tok/s = {ratio:.2f}x; all-reduce {allreduce_ms:.1f} ms per step")


if __name__ == "__main__":
    main()
