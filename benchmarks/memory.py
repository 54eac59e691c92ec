"""Memory of training: peak RSS of a tutorial step, and RSS over many steps (no growth), minigrad vs PyTorch.

python benchmarks/memory.py [--steps 3] [--growth-steps 500] [--growth-batch 4] [--no-torch]
                            [--dtype float32,bfloat16,float16]

Each measurement runs in a fresh subprocess per engine (so one engine's memory never counts for the
other), building the model and AdamW, then running training steps (fwd + bwd + clip + AdamW) on random
tokens. "peak" is the process's high-water mark (VmHWM) after the steps; "base" is the RSS just before
the first step (interpreter, libraries, weights); "step" = peak - base is what training adds on top,
including the gradients and AdamW's two moments, which both engines create during the first step. The growth run uses the tutorial dims with a smaller batch (to keep it quick) and compares
the RSS after the first 50 steps with the RSS after all of them: the graph of each step must be freed.
--dtype lists the dtypes of the peak table (default: all three): bfloat16/float16 are mixed precision as
benchmarks/train_step.py --dtype runs it (float32 weights and AdamW, the forward under autocast, float16 with a
GradScaler). The growth run is float32's.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def worker(engine: str, steps: int, batch: int, checkpoints: list, dtype: str = "float32") -> dict:
    """Run in the subprocess: build, train, and report RSS figures in MiB."""
    sys.path.insert(0, REPO)
    from benchmarks.train_step import minigrad_step_fn, torch_step_fn
    from tinygpt import preset
    cfg = preset("tutorial")
    if engine == "minigrad":
        step = minigrad_step_fn(cfg, batch, "cpu", 0, dtype)
    else:
        import torch
        step = torch_step_fn(torch, cfg, batch, "cpu", 0, compile=False, dtype=dtype)
    out = {"base": _status_kb("VmRSS") / 1024, "rss": {}}
    for i in range(1, steps + 1):
        step()
        if i in checkpoints:
            out["rss"][i] = _status_kb("VmRSS") / 1024
    out["peak"] = _status_kb("VmHWM") / 1024
    return out


def run(engine: str, steps: int, batch: int, checkpoints: list, dtype: str = "float32") -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", engine, "--steps", str(steps),
           "--batch", str(batch), "--checkpoints", ",".join(map(str, checkpoints)), "--dtype", dtype]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if res.returncode != 0:
        sys.exit(f"memory: the {engine} worker failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=3, help="tutorial steps (batch 32) for the peak")
    ap.add_argument("--growth-steps", type=int, default=500, help="at least 50 (the RSS after step 50 is the base)")
    ap.add_argument("--growth-batch", type=int, default=4)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--dtype", default="float32,bfloat16,float16",
                    help="comma-separated dtypes for the peak table (float32, bfloat16, float16)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=32, help=argparse.SUPPRESS)
    ap.add_argument("--checkpoints", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.growth_steps < 50:
        ap.error(f"--growth-steps {args.growth_steps}: needs at least 50 (growth is measured from step 50)")
    if args.worker:
        marks = [int(c) for c in args.checkpoints.split(",") if c]
        print(json.dumps(worker(args.worker, args.steps, args.batch, marks, args.dtype)))
        return
    dtypes = [d.strip() for d in args.dtype.split(",") if d.strip()]
    if not dtypes or any(d not in ("float32", "bfloat16", "float16") for d in dtypes):
        ap.error(f"--dtype {args.dtype}: a comma-separated list of float32, bfloat16, float16")
    if "bfloat16" in dtypes:
        try:
            import ml_dtypes  # noqa: F401
        except ImportError:
            print('ml-dtypes is not installed: no bfloat16 row (pip install -e ".[bfloat16]")')
            dtypes.remove("bfloat16")

    engines = ["minigrad"]
    if not args.no_torch:
        try:
            import torch  # noqa: F401
            engines.append("torch")
        except ImportError:
            print("torch is not installed: minigrad figures only")
    print(f"peak: tutorial config, batch 32, {args.steps} steps; growth: tutorial dims, batch {args.growth_batch}, "
          f"RSS after 50 vs after {args.growth_steps} steps; each engine in its own process\n")
    print(f"{'engine':10s} {'base MiB':>9s} {'peak MiB':>9s} {'step MiB':>9s} {'RSS@50':>8s} "
          f"{'RSS@' + str(args.growth_steps):>9s} {'growth':>8s}")
    rows = {}
    for engine in engines:
        peak = run(engine, args.steps, 32, [])
        marks = sorted({50, *range(100, args.growth_steps + 1, 100), args.growth_steps})
        growth = run(engine, args.growth_steps, args.growth_batch, marks)
        r50, rend = growth["rss"]["50"], growth["rss"][str(args.growth_steps)]
        rows[engine] = (peak["base"], peak["peak"], peak["peak"] - peak["base"], r50, rend, rend - r50)
        trend = " ".join(f"{growth['rss'][str(m)]:.0f}" for m in marks)
        print(f"{engine:10s} {rows[engine][0]:9.0f} {rows[engine][1]:9.0f} {rows[engine][2]:9.0f} {r50:8.0f} "
              f"{rend:9.0f} {rend - r50:+8.1f}   RSS at steps {', '.join(map(str, marks))}: {trend}")
    m = rows["minigrad"]
    summary = f"SUMMARY memory: minigrad peak {m[1]:.0f} MiB (step {m[2]:.0f} MiB), growth {m[5]:+.1f} MiB"
    if "torch" in rows:
        t = rows["torch"]
        summary += (f"; torch peak {t[1]:.0f} MiB (step {t[2]:.0f} MiB), growth {t[5]:+.1f} MiB; "
                    f"peak ratio {m[1] / t[1]:.2f}, step ratio {m[2] / t[2]:.2f}")
    print(summary)
    if dtypes == ["float32"]:
        return
    sys.path.insert(0, REPO)
    from benchmarks.train_step import torch_autocast_ok
    print(f"\npeak of a tutorial step per dtype (batch 32, {args.steps} steps; mixed precision: float32 weights and "
          f"AdamW, forward under autocast)\n")
    print(f"{'engine':10s} {'dtype':9s} {'base MiB':>9s} {'peak MiB':>9s} {'step MiB':>9s}")
    per: dict = {}
    for engine in engines:
        for dtype in dtypes:
            if engine == "torch":
                import torch
                if not torch_autocast_ok(torch, "cpu", dtype):
                    print(f"{engine:10s} {dtype:9s} (torch.autocast has no {dtype} on the CPU here)")
                    continue
            r = run(engine, args.steps, 32, [], dtype)
            per[engine, dtype] = r["peak"] - r["base"]
            print(f"{engine:10s} {dtype:9s} {r['base']:9.0f} {r['peak']:9.0f} {r['peak'] - r['base']:9.0f}")
    line = "SUMMARY memory per dtype (step MiB): " + "; ".join(
        f"{e} " + ", ".join(f"{d} {per[e, d]:.0f}" for d in dtypes if (e, d) in per) for e in engines)
    print(line)


if __name__ == "__main__":
    main()
