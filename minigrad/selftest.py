"""python -m minigrad.selftest --device cuda: check a GPU backend against numpy and print a report to paste into a bug report.

Each check runs the same computation on the CPU (numpy) and on the device, from identical host
inputs, and compares values and gradients: op by op in float32 and float64, the fused kernels
against their references, run-to-run determinism, and 20 training steps of a small transformer.
With --with-tests it also runs the repository's GPU test suite (pytest -m cuda) when the
checkout's tests/ folder is there. Without cupy, or on a machine without a GPU, it says which in its
first line, tests nothing and exits with status 2.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, NoReturn

import numpy as np

import minigrad as mg
from minigrad import backend
from minigrad.dtypes import LOW_PRECISION
from minigrad.nn import functional as F

# float32 on a GPU differs from numpy by rounding and summation order; TF32 (off by default in cupy) would need ~1e-3
TOL = {"float32": dict(rtol=2e-4, atol=2e-5), "float64": dict(rtol=1e-9, atol=1e-11),
       # float16/bfloat16 kernels against the float32 reference: one rounding to the 16-bit dtype, float32's atol
       "float16": dict(rtol=2 ** -10, atol=2e-5), "bfloat16": dict(rtol=2 ** -7, atol=2e-5)}


class CheckFailed(AssertionError):
    """A device result differed from the CPU one."""


def _compare(what: str, got: np.ndarray, want: np.ndarray, tol: dict) -> float:
    if got.shape != want.shape:
        raise CheckFailed(f"{what}: shape {got.shape} vs {want.shape}")
    err = float(np.max(np.abs(got - want))) if got.size else 0.0
    if not np.allclose(got, want, **tol):
        worst = float(np.max(np.abs(got - want) - tol["atol"] - tol["rtol"] * np.abs(want)))
        raise CheckFailed(f"{what}: max abs error {err:.3g} (over tolerance by {worst:.3g}; "
                          f"rtol {tol['rtol']}, atol {tol['atol']})")
    return err


# Each op case: (name, input shapes, integer inputs (name -> (shape, high)), function of (inputs, ints)).
def _op_cases() -> list:
    def causal_attention(x, _):
        q, k, v = x
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    return [
        ("add/sub/mul/div broadcast", [(3, 1, 5), (4, 5)], {}, lambda x, _: (x[0] + x[1]) * x[0] / (x[1] * x[1] + 1.5) - x[1]),
        ("exp/log/sqrt", [(33,)], {}, lambda x, _: (x[0] * x[0] + 0.5).log() + (x[0] * 0.1).exp() + (x[0] * x[0] + 1).sqrt()),
        ("tanh/sigmoid/relu", [(7, 31)], {}, lambda x, _: x[0].tanh() + F.sigmoid(x[0]) + F.relu(x[0] + 0.05)),
        ("pow/maximum/where", [(5, 6), (5, 6)], {}, lambda x, _: x[0] ** 2 + mg.maximum(x[0], x[1] + 0.01) + mg.where(x[0] > 0.1, x[0], x[1])),
        ("sum/mean/max/logsumexp", [(4, 9, 3)], {}, lambda x, _: x[0].sum(1, keepdim=True) + x[0].mean(-1, keepdim=True) + x[0].max(1).values.unsqueeze(1) + x[0].logsumexp(-1, keepdim=True)),
        ("matmul batched + broadcast", [(2, 3, 17, 8), (8, 33)], {}, lambda x, _: x[0] @ x[1]),
        ("reshape/permute/getitem", [(4, 6, 5)], {}, lambda x, _: x[0].permute(2, 0, 1).reshape(5, 24)[1:4, ::2] * 2),
        ("cat/stack/split", [(3, 4), (3, 4)], {}, lambda x, _: mg.cat([x[0], x[1] * 2], 1) + mg.cat(list(mg.stack([x[0], x[1]], 0).sum(0).split(2, dim=1)) * 2, 1)),
        ("linear", [(6, 5, 8), (7, 8), (7,)], {}, lambda x, _: F.linear(x[0], x[1], x[2])),
        ("embedding (repeated ids)", [(11, 6)], {"ids": ((5, 13), 11)}, lambda x, i: F.embedding(i["ids"], x[0])),
        ("softmax/log_softmax", [(5, 1025)], {}, lambda x, _: F.softmax(x[0] * 3, dim=-1) + F.log_softmax(x[0], dim=0)),
        ("cross_entropy (ignore_index)", [(40, 17)], {"t": ((40,), 17)}, lambda x, i: F.cross_entropy(x[0] * 2, i["t"], ignore_index=3)),
        ("layer_norm", [(3, 7, 33), (33,), (33,)], {}, lambda x, _: F.layer_norm(x[0], 33, x[1], x[2])),
        ("gelu erf", [(4, 257)], {}, lambda x, _: F.gelu(x[0] * 3)),
        ("gelu tanh", [(4, 257)], {}, lambda x, _: F.gelu(x[0] * 3, approximate="tanh")),
        ("attention causal", [(2, 3, 9, 8)] * 3, {}, causal_attention),
        ("mse_loss", [(8, 3), (8, 3)], {}, lambda x, _: F.mse_loss(x[0], x[1])),
    ]


def _run_case(fn: Callable, arrays: list, ints: dict, upstream_seed: int, dev: Any, dtype: str) -> tuple:
    xs = [mg.tensor(a, dtype=dtype, requires_grad=True, device=dev) for a in arrays]
    ids = {k: mg.tensor(v, device=dev) for k, v in ints.items()}
    out = fn(xs, ids)
    g = np.random.default_rng(upstream_seed).standard_normal(out.shape)
    out.backward(mg.tensor(g, dtype=dtype, device=dev))
    return out.numpy(), [x.grad.numpy() for x in xs]


def _check_ops(dev: Any, dtype: str) -> str:
    rng = np.random.default_rng(0)
    worst = 0.0
    for name, shapes, ints, fn in _op_cases():
        arrays = [rng.standard_normal(s) for s in shapes]
        int_arrays = {k: rng.integers(0, high, shape) for k, (shape, high) in ints.items()}
        want, want_g = _run_case(fn, arrays, int_arrays, 1, "cpu", dtype)
        got, got_g = _run_case(fn, arrays, int_arrays, 1, dev, dtype)
        worst = max(worst, _compare(f"{name} [{dtype}] value", got, want, TOL[dtype]))
        for i, (a, b) in enumerate(zip(got_g, want_g)):
            worst = max(worst, _compare(f"{name} [{dtype}] grad of input {i}", a, b, TOL[dtype]))
    return f"{len(_op_cases())} ops, max abs error {worst:.2g}"


def check_ops_float32(dev: Any) -> str:
    """Every op family, forward and backward, float32, against numpy."""
    return _check_ops(dev, "float32")


def check_ops_float64(dev: Any) -> str:
    """Every op family, forward and backward, float64, against numpy."""
    return _check_ops(dev, "float64")


def check_fused_kernels(dev: Any) -> str:
    """The device's fused kernels (GELU both forms, AdamW; GELU's float16/bfloat16 ones too) against their
    references, at sizes over many blocks."""
    from minigrad.cuda_kernels import ReferenceKernels
    if dev.kernels is None:
        return "no fused kernels on this device (MINIGRAD_CUDA_KERNELS=0?): skipped"
    ref, worst = ReferenceKernels(np, backend.erf), 0.0
    for dtype in ("float32", "float64"):
        for n in (1, 33, 1025, 100_003):
            rng = np.random.default_rng(n)
            x, g = (rng.standard_normal(n) * 3).astype(dtype), rng.standard_normal(n).astype(dtype)
            dx, dg = backend.from_numpy(dev, x), backend.from_numpy(dev, g)
            for form in ("none", "tanh"):
                worst = max(worst, _compare(f"gelu {form} forward [{dtype}, n={n}]",
                                            backend.to_numpy(dev.kernels.gelu_forward(dx, form)),
                                            ref.gelu_forward(x, form), TOL[dtype]))
                worst = max(worst, _compare(f"gelu {form} backward [{dtype}, n={n}]",
                                            backend.to_numpy(dev.kernels.gelu_backward(dx, dg, form)),
                                            ref.gelu_backward(x, g, form), TOL[dtype]))
            p, m, v = x.copy(), np.zeros_like(x), np.zeros_like(x)
            dp, dm, dv = (backend.from_numpy(dev, a.copy()) for a in (p, m, v))
            for step in (1, 2, 3):
                opts = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, step=step)
                dev.kernels.adamw_step(dp, dg, dm, dv, **opts)
                ref.adamw_step(p, g, m, v, **opts)
            worst = max(worst, _compare(f"adamw [{dtype}, n={n}]", backend.to_numpy(dp), p, TOL[dtype]))
    for dtype in [d.name for d in LOW_PRECISION]:  # GELU's 16-bit kernels: float32 math, rounded once
        for n in (1, 33, 100_003):
            rng = np.random.default_rng(n)
            x = (rng.standard_normal(n) * 3).astype(np.float32).astype(mg.as_dtype(dtype))
            g = rng.standard_normal(n).astype(np.float32).astype(mg.as_dtype(dtype))
            x32, g32 = x.astype(np.float32), g.astype(np.float32)
            dx, dg = backend.from_numpy(dev, x), backend.from_numpy(dev, g)
            for form in ("none", "tanh"):
                worst = max(worst, _compare(f"gelu {form} forward [{dtype}, n={n}]",
                                            backend.to_numpy(dev.kernels.gelu_forward(dx, form)).astype(np.float32),
                                            ref.gelu_forward(x32, form), TOL[dtype]))
                worst = max(worst, _compare(f"gelu {form} backward [{dtype}, n={n}]",
                                            backend.to_numpy(dev.kernels.gelu_backward(dx, dg, form))
                                            .astype(np.float32), ref.gelu_backward(x32, g32, form), TOL[dtype]))
    kind = "raw CUDA kernels" if getattr(dev.kernels, "fused", False) else "reference path"
    return f"{kind}, max abs error {worst:.2g}"


class _TinyTransformer(mg.nn.Module):
    """Embedding, a pre-LN attention block with a GELU MLP, a head: every op a GPT uses (minigrad knows no GPT)."""

    def __init__(self, vocab: int = 37, dim: int = 32, heads: int = 4, context: int = 16) -> None:
        super().__init__()
        self.embed = mg.nn.Embedding(vocab, dim)
        self.pos = mg.nn.Parameter(mg.randn(1, context, dim) * 0.02)
        self.ln1, self.ln2, self.ln_f = mg.nn.LayerNorm(dim), mg.nn.LayerNorm(dim), mg.nn.LayerNorm(dim)
        self.qkv, self.proj = mg.nn.Linear(dim, 3 * dim), mg.nn.Linear(dim, dim)
        self.ff = mg.nn.Sequential(mg.nn.Linear(dim, 4 * dim), mg.nn.GELU(approximate="tanh"), mg.nn.Linear(4 * dim, dim))
        self.head = mg.nn.Linear(dim, vocab, bias=False)
        self.heads = heads

    def forward(self, ids: mg.Tensor, targets: mg.Tensor) -> mg.Tensor:
        x = self.embed(ids) + self.pos[:, :ids.shape[1]]
        x = x + self.proj(F.packed_self_attention(self.qkv(self.ln1(x)), self.heads, is_causal=True))
        x = x + self.ff(self.ln2(x))
        logits = self.head(self.ln_f(x))
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def train_losses(dev: Any, steps: int = 20, dtype: str = "float32") -> tuple:
    """Losses of `steps` AdamW steps (with clipping) from a fixed init and fixed batches, and the final parameters."""
    mg.manual_seed(0)
    model = _TinyTransformer().to(dtype).to(dev)  # initialised on the host generator, then moved: same start
    opt = mg.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    rng, losses = np.random.default_rng(0), []
    for _ in range(steps):
        ids = (rng.integers(0, 37, (4, 1)) + 3 * np.arange(16)) % 37  # learnable: each token follows from the last
        x, y = mg.tensor(ids[:, :-1], device=dev), mg.tensor(ids[:, 1:], device=dev)
        loss = model(x, y)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        mg.optim.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return np.array(losses), {k: v.numpy() for k, v in model.state_dict().items()}


def check_training_parity(dev: Any) -> str:
    """20 training steps of a small transformer: losses and final weights match the numpy run (float32)."""
    want, want_w = train_losses("cpu")
    got, got_w = train_losses(dev)
    err = _compare("training losses (20 steps)", got, want, dict(rtol=1e-4, atol=1e-4))
    if not got[-1] < got[0]:
        raise CheckFailed(f"loss did not fall on the device: {got[0]:.4f} -> {got[-1]:.4f}")
    for k in want_w:  # loose: Adam's m/sqrt(v) amplifies rounding differences of near-zero gradients
        _compare(f"parameter {k} after 20 steps", got_w[k], want_w[k], dict(rtol=1e-2, atol=3e-3))
    return f"loss {got[0]:.4f} -> {got[-1]:.4f}, max loss difference {err:.2g}"


def check_determinism(dev: Any) -> str:
    """Two identical runs on the device give identical losses and weights (the embedding gradient's
    scatter-add uses atomics on a GPU, so its weights may differ in the last bits: reported, tolerated to 1e-6)."""
    a, wa = train_losses(dev, steps=5)
    b, wb = train_losses(dev, steps=5)
    diff = max(float(np.max(np.abs(wa[k] - wb[k]))) for k in wa)
    if not np.array_equal(a, b) and float(np.max(np.abs(a - b))) > 1e-6:
        raise CheckFailed(f"losses differ between two identical runs: {a} vs {b}")
    if diff > 1e-6:
        raise CheckFailed(f"weights differ between two identical runs by {diff:.3g}")
    return "bitwise identical" if diff == 0 and np.array_equal(a, b) else f"max run-to-run difference {diff:.2g}"


CHECKS: list = [check_ops_float32, check_ops_float64, check_fused_kernels, check_determinism, check_training_parity]


def run_checks(dev: Any, out: Any = None) -> bool:
    """Run every check on dev, print one line each to out (stdout), return True when all passed."""
    out = out or sys.stdout
    ok = True
    for check in CHECKS:
        t0 = time.perf_counter()
        try:
            detail, status = check(dev), "PASS"
        except CheckFailed as e:
            detail, status, ok = str(e), "FAIL", False
        except Exception as e:  # a crash is a result too: report it, go on
            detail, status, ok = f"{type(e).__name__}: {e}", "ERROR", False
        name = check.__name__.removeprefix("check_")
        print(f"  {name:<20} {status:<5} {time.perf_counter() - t0:5.1f}s  {detail}", file=out, flush=True)
    return ok


def environment(dev: Any) -> list:
    """Version lines for the report: Python, numpy, cupy, CUDA runtime/driver, NVRTC, the GPU."""
    lines = [f"minigrad {mg.__version__}, Python {platform.python_version()}, numpy {np.__version__}, {platform.platform()}"]
    if dev.type == "cuda" and getattr(dev.xp, "__name__", "") == "cupy":
        cp = dev.xp
        rt = cp.cuda.runtime
        try:
            from cupy.cuda import nvrtc
            nvrtc_version = ".".join(map(str, nvrtc.getVersion()))
        except Exception as e:
            nvrtc_version = f"unavailable ({type(e).__name__})"
        props = rt.getDeviceProperties(dev.index)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        lines.append(f"cupy {cp.__version__}, CUDA runtime {rt.runtimeGetVersion()}, driver {rt.driverGetVersion()}, "
                     f"NVRTC {nvrtc_version}, CUPY_TF32={os.environ.get('CUPY_TF32', 'unset')}")
        lines.append(f"GPU {dev.index}: {name}, compute capability {props['major']}.{props['minor']}, "
                     f"{props['totalGlobalMem'] / 2 ** 30:.1f} GiB, {rt.getDeviceCount()} GPU(s) visible")
    kernels = dev.kernels
    lines.append("fused kernels: " + ("raw CUDA" if getattr(kernels, "fused", False)
                                      else "reference path" if kernels is not None else "off"))
    return lines


_PYTEST_COUNTS = re.compile(r"^=*\s*(\d+ \w+|no tests ran)(, \d+ \w+)* in [\d.]+s")  # "3 passed, 1 failed in 2.1s"


def _run_pytest_suite(out: Any) -> bool:
    tests = Path(__file__).resolve().parents[1] / "tests"
    if not tests.is_dir():
        print("  (no tests/ folder next to the package: run from a clone for the full suite)", file=out)
        return True
    env = dict(os.environ, MINIGRAD_REQUIRE_CUDA="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", str(tests)],
                          capture_output=True, text=True, env=env, cwd=tests.parent)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))]
    # pytest's counts line ("12 passed, 3 deselected in 9.1s"); tests/conftest.py prints "skipped: ..." after it
    counts = [ln.strip("= ") for ln in proc.stdout.splitlines() if _PYTEST_COUNTS.search(ln)]
    skipped = [ln for ln in proc.stdout.splitlines() if ln.startswith("skipped: ") and ln != "skipped: none"]
    summary = counts[-1] if counts else proc.stdout.strip()[-300:] or proc.stderr.strip()[-300:]
    print(f"  pytest -m cuda tests/: {summary}", file=out)
    for ln in skipped[-1:]:
        print(f"    {ln}", file=out)
    for ln in lines[:20]:
        print(f"    {ln}", file=out)
    return proc.returncode == 0


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (exit 2), not the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"minigrad selftest: error: {message} (see {self.prog} --help)\n")


def _cupy_missing(cause: BaseException) -> bool:
    """Whether the ImportError behind CudaUnavailableError means cupy is not installed (not: installed but broken)."""
    if isinstance(cause, ModuleNotFoundError) and cause.name == "cupy":
        return True
    try:
        return importlib.util.find_spec("cupy") is None
    except (ImportError, ValueError):  # a cupy entry in sys.modules without a spec
        return False


def unavailable_message(spec: str, error: "backend.CudaUnavailableError") -> str:
    """What to print when `spec` cannot be used: its first line says what is missing (cupy, a GPU)."""
    if isinstance(error.__cause__, ImportError):
        if _cupy_missing(error.__cause__):
            return ('minigrad selftest: cupy is not installed, nothing was tested: pip install -e ".[cuda]" '
                    "(cupy-cuda12x; cupy-cuda13x for CUDA 13 drivers; see docs/cuda.md)")
        return (f"minigrad selftest: cupy is installed but does not import, nothing was tested "
                f'(reinstall it: pip install -e ".[cuda]").\n  {type(error.__cause__).__name__}: {error.__cause__}')
    if "only" in str(error) and "GPU(s) found" in str(error):
        return f"minigrad selftest: no GPU {spec!r} here, nothing was tested.\n  {error}"
    return f"minigrad selftest: no GPU found, nothing was tested.\n  {error}"


def main(argv: "list[str] | None" = None) -> int:
    p = _Parser(prog="python -m minigrad.selftest", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="the device to check against numpy (default cuda)")
    p.add_argument("--with-tests", action="store_true", help="also run the repository's pytest -m cuda suite")
    args = p.parse_args(argv)
    try:
        dev = backend.device(args.device)
    except ValueError as e:
        print(f"minigrad selftest: {e}")
        return 2
    except backend.CudaUnavailableError as e:
        print(unavailable_message(args.device, e))
        return 2
    if dev.type == "cpu":
        print("minigrad selftest: --device cpu compares numpy with itself; pass --device cuda on a machine with a GPU")
        return 2
    print(f"minigrad selftest on {dev} (paste this whole report into a bug report)")
    for line in environment(dev):
        print(f"  {line}")
    t0 = time.perf_counter()
    ok = run_checks(dev)
    if args.with_tests:
        ok = _run_pytest_suite(sys.stdout) and ok
    stats = dev.memory_stats()
    if stats:
        print(f"  memory pool: {stats.get('total_bytes', 0) / 2 ** 20:.1f} MiB held, "
              f"{stats.get('used_bytes', 0) / 2 ** 20:.1f} MiB in use")
    print(f"result: {'PASS' if ok else 'FAIL'} in {time.perf_counter() - t0:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
