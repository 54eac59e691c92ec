"""One training step of the tutorial config, minigrad vs PyTorch, interleaved in one process.

python benchmarks/train_step.py [--steps 20] [--run 4] [--warmup 3] [--compile] [--device cpu|cuda] [--no-torch]
                                [--threads N] [--dtype float32|bfloat16|float16]
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/train_step.py   # the headline BLAS setup

Step = forward + cross-entropy + backward + clip_grad_norm_(1.0) + AdamW(lr 3e-4, wd 0.01) on random tokens,
vocab 8000, 128 dims, 4 heads, 6 layers, context 128, batch 32 (4096 tokens). The engines take turns
(A/B/A/B, or A/B/C with --compile) after warm-up, so drifting machine load hits them alike; each row is the
median of --steps timed steps. A turn is one untimed step and then --run timed steps back to back, as in
training: OpenBLAS's threads (minigrad's matmuls) and torch's OpenMP threads keep spinning for a while after
their last call, and with single-step turns they slowed whichever engine came next.
GFLOP/s counts the step's matrix products only: 6 * (matmul weights) + 12 * layers * T * d FLOPs per token
(attention over the full T x T). Without torch installed the benchmark prints minigrad's figures alone.
--dtype bfloat16|float16 is mixed precision as python -m tinygpt.train --dtype runs it: float32 weights and AdamW,
the forward and loss under minigrad.autocast (torch.autocast for torch), float16 with a GradScaler (scale, unscale
before clipping, step, update). On the CPU minigrad computes low-precision products in float32 on rounded inputs
(numpy's float16 matmul is ~170x slower), so there it is a correctness path: expect it slower than float32.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import minigrad as mg  # noqa: E402
from tinygpt import TinyGPT, preset  # noqa: E402
mg.tune_malloc()  # as tinygpt.train does: freed heap memory is kept for the next step


def flops_per_step(cfg: Any, batch: int) -> float:
    """Matrix-product FLOPs of one training step (forward 2, backward 4 per weight and token)."""
    d, L, T, V, ff = cfg.n_embd, cfg.n_layers, cfg.block_size, cfg.vocab_size, cfg.ffn_mult
    n_mm = L * (3 * d * d + d * d + 2 * ff * d * d) + d * V
    return (6 * n_mm + 12 * L * T * d) * T * batch


def _blas_libs() -> list | None:
    """threadpoolctl's records of the BLAS libraries numpy loaded (None without threadpoolctl)."""
    try:
        import threadpoolctl
    except ImportError:
        return None
    return [i for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]


def blas_info() -> str:
    """The BLAS numpy uses and its kernel, as threadpoolctl reports it."""
    infos = _blas_libs()
    if infos is None:
        return "unknown (pip install threadpoolctl)"
    return ", ".join(f"{i['internal_api']} {i.get('version')} {i.get('architecture')} "
                     f"{i.get('num_threads')} threads" for i in infos) or "unknown"


def blas_kernel() -> str:
    """The kernel (architecture) of numpy's BLAS, or '?' when threadpoolctl cannot tell."""
    infos = _blas_libs()
    return ", ".join(str(i.get("architecture")) for i in infos) if infos else "?"


def blas_env() -> str:
    return " ".join(f"{k}={os.environ.get(k, '(unset)')}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"))


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


# ---------------------------------------------------------------- minigrad

def minigrad_step_fn(cfg: Any, batch: int, device: str, seed: int, dtype: str = "float32") -> Callable[[], float]:
    """A closure running one timed minigrad training step; returns its seconds. bfloat16/float16: the forward
    under mg.autocast(dtype), float32 weights and AdamW; float16 with loss scaling (mg.amp.GradScaler)."""
    mg.manual_seed(seed)
    model = TinyGPT(cfg)
    if device != "cpu":
        model.to(device)
    opt = mg.optim.AdamW(model.param_groups(0.01), lr=3e-4)
    dev = mg.device(device)
    rng = np.random.default_rng(seed)
    from minigrad import backend
    low = dtype in ("bfloat16", "float16")
    scaler = mg.amp.GradScaler(enabled=dtype == "float16")

    def step() -> float:
        ids = rng.integers(0, cfg.vocab_size, (batch, cfg.block_size + 1))
        x, y = ids[:, :-1], ids[:, 1:]
        if device != "cpu":
            x, y = backend.from_numpy(dev, x), backend.from_numpy(dev, y)
            dev.synchronize()
        t0 = time.perf_counter()
        with mg.autocast(dtype) if low else contextlib.nullcontext():
            _, loss = model(x, y)
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        mg.optim.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        loss.item()
        return time.perf_counter() - t0

    return step


# ---------------------------------------------------------------- torch (the tutorial's own PyTorch model)

def torch_tutorial_model(torch: Any, cfg: Any) -> Any:
    """The tutorial's TinyGPT as its PyTorch code writes it (post-LN, nn.MultiheadAttention, causal mask)."""
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, n_embd: int, n_heads: int) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(n_embd, n_heads, batch_first=True)
            self.ln1 = nn.LayerNorm(n_embd)
            self.ff = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd))
            self.ln2 = nn.LayerNorm(n_embd)

        def forward(self, x: Any, mask: Any) -> Any:
            attn_out, _ = self.attn(x, x, x, attn_mask=mask, need_weights=False)
            x = self.ln1(x + attn_out)
            return self.ln2(x + self.ff(x))

    class TorchTinyGPT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok_embed = nn.Embedding(cfg.vocab_size, cfg.n_embd)
            self.pos_embed = nn.Parameter(torch.zeros(1, cfg.block_size, cfg.n_embd))
            self.blocks = nn.ModuleList([Block(cfg.n_embd, cfg.n_heads) for _ in range(cfg.n_layers)])
            self.ln_f = nn.LayerNorm(cfg.n_embd)
            self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)

        def forward(self, idx: Any, targets: Any) -> Any:
            b, t = idx.shape
            x = self.tok_embed(idx) + self.pos_embed[:, :t, :]
            mask = torch.triu(torch.ones(t, t, dtype=torch.bool, device=idx.device), diagonal=1)
            for block in self.blocks:
                x = block(x, mask)
            logits = self.head(self.ln_f(x))
            return logits, nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    return TorchTinyGPT()


def torch_autocast_ok(torch: Any, device: str, dtype: str) -> bool:
    """Whether torch.autocast on this device runs linear layers in dtype (float32: no autocast, always True)."""
    if dtype == "float32":
        return True
    import warnings
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # torch warns and disables autocast for a dtype it does not support
            with torch.autocast(device, dtype=getattr(torch, dtype)):
                y = torch.nn.functional.linear(torch.ones(2, 2, device=device), torch.ones(2, 2, device=device))
        return y.dtype == getattr(torch, dtype)
    except (RuntimeError, UserWarning, AttributeError):
        return False


def torch_step_fn(torch: Any, cfg: Any, batch: int, device: str, seed: int, compile: bool,
                  dtype: str = "float32") -> Callable[[], float]:
    torch.manual_seed(seed)
    model = torch_tutorial_model(torch, cfg).to(device)
    decay = [p for p in model.parameters() if p.ndim == 2]
    no_decay = [p for p in model.parameters() if p.ndim != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=3e-4)
    fwd = torch.compile(model) if compile else model
    gen = torch.Generator().manual_seed(seed)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    low = dtype in ("bfloat16", "float16")
    scaler = torch.amp.GradScaler(device, enabled=dtype == "float16")

    def step() -> float:
        ids = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size + 1), generator=gen).to(device)
        x, y = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()
        sync()
        t0 = time.perf_counter()
        with torch.autocast(device, dtype=getattr(torch, dtype)) if low else contextlib.nullcontext():
            _, loss = fwd(x, y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        loss.item()
        return time.perf_counter() - t0

    return step


# ---------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=20, help="timed steps per engine (median reported)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per engine first")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--compile", action="store_true", help="add torch.compile (first call takes ~30 s)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--no-torch", action="store_true", help="minigrad only")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for both engines: torch's, minigrad's and numpy's BLAS "
                         "(default: each its own choice)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                    help="mixed precision: the forward under autocast at this dtype, float32 weights and AdamW "
                         "(float16: with a GradScaler)")
    ap.add_argument("--run", type=int, default=4,
                    help="timed steps per turn: engines take turns running this many steps back to back, "
                         "after one untimed step each turn")
    args = ap.parse_args()

    cfg = preset("tutorial")
    if args.device == "cuda":
        try:
            mg.device("cuda")
        except Exception as e:  # CudaUnavailableError: no cupy or no GPU
            sys.exit(f"train_step --device cuda: minigrad cannot use CUDA here: {e}")
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            print("torch is not installed: minigrad figures only (pip install torch==2.13.0 for the comparison)")
    if args.dtype == "bfloat16":
        try:
            import ml_dtypes  # noqa: F401
        except ImportError:
            sys.exit('train_step --dtype bfloat16: minigrad needs ml-dtypes for bfloat16: pip install -e ".[bfloat16]"')
    if torch is not None and not torch_autocast_ok(torch, args.device, args.dtype):
        print(f"torch.autocast has no {args.dtype} on {args.device} here: minigrad figures only")
        torch = None
    if torch is not None:
        if args.device == "cuda" and not torch.cuda.is_available():
            sys.exit("train_step --device cuda: torch has no CUDA here (a CPU-only build or no GPU); "
                     "use --no-torch for minigrad alone")
        if args.threads:
            torch.set_num_threads(args.threads)
    if args.threads:
        from minigrad.ops import parallel
        parallel.set_num_threads(args.threads)
        try:
            import threadpoolctl
            threadpoolctl.threadpool_limits(args.threads, user_api="blas")
        except ImportError:
            sys.exit("train_step --threads: needs threadpoolctl to set numpy's BLAS threads "
                     "(pip install threadpoolctl)")

    engines: list[tuple[str, Callable[[], float]]] = [
        ("minigrad", minigrad_step_fn(cfg, args.batch, args.device, args.seed, args.dtype))]
    if torch is not None:
        engines.append(("torch eager", torch_step_fn(torch, cfg, args.batch, args.device, args.seed, False,
                                                     args.dtype)))
        if args.compile:
            print("compiling the torch model (first steps are slow) ...", flush=True)
            engines.append(("torch.compile", torch_step_fn(torch, cfg, args.batch, args.device, args.seed, True,
                                                           args.dtype)))

    for _ in range(args.warmup + (2 if args.compile else 0)):
        for _, fn in engines:
            fn()
    times: dict[str, list[float]] = {name: [] for name, _ in engines}
    run = max(1, min(args.run, args.steps))
    for i in range(-(-args.steps // run)):
        order = engines if i % 2 == 0 else engines[::-1]  # A B A B ... and alternate who goes first
        for name, fn in order:
            fn()  # untimed: the other engine's thread pools spin down, this one's wake up
            for _ in range(min(run, args.steps - len(times[name]))):
                times[name].append(fn())

    tokens = args.batch * cfg.block_size
    gflop = flops_per_step(cfg, args.batch) / 1e9
    print(f"\ntrain_step: tutorial config (vocab {cfg.vocab_size}, d {cfg.n_embd}, {cfg.n_heads} heads, "
          f"{cfg.n_layers} layers, T {cfg.block_size}), batch {args.batch} = {tokens} tokens/step, "
          f"{gflop:.2f} GFLOP/step of matrix products; device {args.device}, dtype {args.dtype}"
          + (" (mixed precision: float32 weights and AdamW, forward under autocast"
             + (", GradScaler)" if args.dtype == "float16" else ")") if args.dtype != "float32" else ""))
    print(f"machine: {cpu_name()}, {os.cpu_count()} cpus, Python {platform.python_version()}, "
          f"numpy {np.__version__}" + (f", torch {torch.__version__} ({torch.get_num_threads()} threads)"
                                       if torch is not None else ""))
    print(f"numpy BLAS: {blas_info()}; env {blas_env()}")
    warmup = args.warmup + (2 if args.compile else 0)
    print(f"median of {args.steps} steps per engine after {warmup} warm-up, in interleaved turns of "
          f"1 untimed + {run} timed steps\n")
    base = statistics.median(times["minigrad"])
    print(f"{'engine':14s} {'ms/step':>9s} {'IQR ms':>13s} {'tokens/s':>9s} {'GFLOP/s':>8s} {'minigrad speed-up':>18s}")
    rows = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        q = statistics.quantiles(ts, n=4) if len(ts) >= 2 else [med, med, med]
        rows[name] = med
        print(f"{name:14s} {med * 1e3:9.1f} {q[0] * 1e3:6.0f}-{q[2] * 1e3:<6.0f} {tokens / med:9.0f} "
              f"{gflop / med:8.1f} {med / base:17.2f}x")
    arch = blas_kernel()
    dtype_tag = "" if args.dtype == "float32" else f" {args.dtype}"
    summary = (f"SUMMARY train_step {args.device}{dtype_tag}: minigrad {base * 1e3:.0f} ms/step "
               f"({tokens / base:.0f} tok/s)")
    for name in ("torch eager", "torch.compile"):
        if name in rows:
            summary += f", {name} {rows[name] * 1e3:.0f} ms ({rows[name] / base:.2f}x)"
    print(summary + f"; BLAS kernel {arch}")


if __name__ == "__main__":
    main()
