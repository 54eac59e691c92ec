"""Forward+backward time of each fused op at the tutorial's sizes, and its error against PyTorch.

python benchmarks/fused_ops.py [--repeats 20] [--only NAME] [--threads 2]

Sizes: B=32, T=128, C=128, H=4, vocab 8000, MLP 512. Times are float32 medians of
interleaved runs (minigrad, torch, minigrad, ...) in one process. The errors are the max
absolute differences from torch of the output and of the input gradients (the largest over
inputs), on identical inputs and upstream gradient, in float32 and in float64, and the float32
gradient error relative to the largest torch gradient of that input (sums over 4096 rows,
as in dW of linear and layer_norm, make large gradients and large absolute errors). Dropout has no
torch column (the two libraries draw different masks). The last line is a one-line summary.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import minigrad as mg
from minigrad.nn import functional as F
from minigrad.ops import parallel
mg.tune_malloc()  # as tinygpt.train does: freed heap memory is kept for the next step

B, T, C, H, V, FF = 32, 128, 128, 4, 8000, 512


def cases(rng: np.random.Generator) -> list:
    """(name, input arrays, minigrad fn, torch fn): fns take tensors of their library."""
    ids = rng.integers(0, V, (B, T))
    tgt = rng.integers(0, V, (B * T,))
    x = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    return [
        ("linear 4096x128->512", [x(B, T, C), x(FF, C) * 0.1, x(FF)],
         lambda a, w, b: F.linear(a, w, b), lambda tf, a, w, b: tf.linear(a, w, b)),
        ("embedding 8000x128", [x(V, C)],
         lambda w: F.embedding(mg.tensor(ids), w), lambda tf, w: tf.embedding(_t(ids), w)),
        ("layer_norm (32,128,128)", [x(B, T, C), x(C), x(C)],
         lambda a, w, b: F.layer_norm(a, C, w, b), lambda tf, a, w, b: tf.layer_norm(a, (C,), w, b)),
        ("gelu exact (32,128,512)", [x(B, T, FF)], lambda a: F.gelu(a), lambda tf, a: tf.gelu(a)),
        ("gelu tanh (32,128,512)", [x(B, T, FF)], lambda a: F.gelu(a, approximate="tanh"),
         lambda tf, a: tf.gelu(a, approximate="tanh")),
        ("softmax (32,4,128,128)", [x(B, H, T, T)], lambda a: F.softmax(a, -1), lambda tf, a: tf.softmax(a, -1)),
        ("log_softmax (4096,8000)", [x(B * T, V)], lambda a: F.log_softmax(a, -1),
         lambda tf, a: tf.log_softmax(a, -1)),
        ("cross_entropy (4096,8000)", [x(B * T, V)], lambda a: F.cross_entropy(a, mg.tensor(tgt)),
         lambda tf, a: tf.cross_entropy(a, _t(tgt))),
        ("sdpa causal (32,4,128,32)", [x(B, H, T, C // H)] * 3,
         lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
         lambda tf, q, k, v: tf.scaled_dot_product_attention(q, k, v, is_causal=True)),
        ("packed attention (32,128,384)", [x(B, T, 3 * C)],
         lambda qkv: F.packed_self_attention(qkv, H), _torch_packed),
        ("dropout p=0.1 (32,128,512)", [x(B, T, FF)], lambda a: F.dropout(a, 0.1), None),
    ]


def _t(a: np.ndarray):  # torch tensor from numpy, imported lazily
    import torch
    return torch.from_numpy(a)


def _torch_packed(tf, qkv):
    q, k, v = qkv.split(C, dim=-1)
    heads = [t.reshape(B, T, H, C // H).transpose(1, 2) for t in (q, k, v)]
    return tf.scaled_dot_product_attention(*heads, is_causal=True).transpose(1, 2).reshape(B, T, C)


def run_minigrad(fn, arrays, g):
    ins = [mg.tensor(a, requires_grad=True) for a in arrays]
    t0 = time.perf_counter()
    out = fn(*ins)
    out.backward(mg.tensor(g))
    dt = time.perf_counter() - t0
    return dt, out.numpy(), [t.grad.numpy() for t in ins]


def run_torch(fn, arrays, g):
    import torch
    import torch.nn.functional as tf
    ins = [torch.tensor(a, requires_grad=True) for a in arrays]
    t0 = time.perf_counter()
    out = fn(tf, *ins)
    out.backward(torch.from_numpy(g))
    dt = time.perf_counter() - t0
    return dt, out.detach().numpy(), [t.grad.numpy() for t in ins]


def errors(fn_mg, fn_t, arrays, g, dtype) -> tuple[float, float, float]:
    """Max abs difference from torch of the output and of the input gradients, on inputs cast to dtype,
    and the gradients' error relative to the largest torch gradient of the same input."""
    cast = [a.astype(dtype) for a in arrays]
    _, out, grads = run_minigrad(fn_mg, cast, g.astype(dtype))
    _, out_t, grads_t = run_torch(fn_t, cast, g.astype(dtype))
    assert out.dtype == out_t.dtype == dtype
    grad_errs = [float(np.abs(a - b).max()) for a, b in zip(grads, grads_t)]
    relative = max(e / max(float(np.abs(b).max()), 1e-30) for e, b in zip(grad_errs, grads_t))
    return float(np.abs(out - out_t).max()), max(grad_errs), relative


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--only", default="", help="run the ops whose name contains this text")
    ap.add_argument("--threads", type=int, default=2, help="threads of minigrad, numpy's BLAS and torch (1 is "
                                                           "steadier on a busy machine)")
    args = ap.parse_args()
    parallel.set_num_threads(args.threads)
    try:
        import threadpoolctl
        threadpoolctl.threadpool_limits(args.threads, user_api="blas")
    except ImportError:
        pass
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# numpy {np.__version__}, torch {torch.__version__ if torch else '-'}, {args.threads} threads each, "
          f"{os.cpu_count()} cpus, load average {load:.2f} at start (timings on a busy machine are noisy)")
    print(f"{'op (fwd+bwd, float32)':30s} {'minigrad ms':>11s} {'torch ms':>9s} {'ratio':>6s}   "
          f"max abs err vs torch: {'f32 value':>9s} {'f32 grad':>9s} {'f64 value':>9s} {'f64 grad':>9s}"
          f"   {'f32 grad rel':>12s}")
    total_mg = total_t = 0.0
    for name, arrays, fn_mg, fn_t in cases(rng):
        if args.only not in name:
            continue
        probe = fn_mg(*[mg.tensor(a) for a in arrays])
        g = rng.standard_normal(probe.shape).astype(np.float32)
        errs, rel32 = [float("nan")] * 4, float("nan")
        if torch is not None and fn_t is not None:
            v32, g32, rel32 = errors(fn_mg, fn_t, arrays, g, np.float32)
            v64, g64, _ = errors(fn_mg, fn_t, arrays, g, np.float64)
            errs = [v32, g32, v64, g64]
        mg_times, t_times = [], []
        for i in range(args.repeats + 2):  # 2 warm-up rounds, interleaved A/B
            mg.manual_seed(0)
            dt, _, _ = run_minigrad(fn_mg, arrays, g)
            if i >= 2:
                mg_times.append(dt)
            if torch is not None and fn_t is not None:
                dt_t, _, _ = run_torch(fn_t, arrays, g)
                if i >= 2:
                    t_times.append(dt_t)
        m = statistics.median(mg_times) * 1e3
        t = statistics.median(t_times) * 1e3 if t_times else float("nan")
        if t_times:
            total_mg, total_t = total_mg + m, total_t + t
        err_cols = " ".join(f"{e:9.1e}" if e == e else f"{'-':>9s}" for e in errs)
        err_cols += f"   {rel32:12.1e}" if rel32 == rel32 else f"   {'-':>12s}"
        t_cols = f"{t:9.2f} {m / t:6.2f}" if t_times else f"{'-':>9s} {'-':>6s}"
        print(f"{name:30s} {m:11.2f} {t_cols}   {'':21s} {err_cols}")
    print(f"summary: fused ops fwd+bwd total {total_mg:.1f} ms minigrad vs {total_t:.1f} ms torch "
          f"(ops with a torch reference, medians of {args.repeats}; ratio "
          f"{total_mg / total_t if total_t else float('nan'):.2f}, lower is better)")


if __name__ == "__main__":
    main()
