"""The CPU's fast versions of the row-wise fused ops (linear, cross-entropy, layer norm, GELU): the reference math
of ops/fused.py arranged for speed on a few CPU cores. Nothing here is new math;
tests/minigrad/test_reference_vs_fast.py pins every function against its op's reference (float64: to 1e-12).
Attention's fast version is in ops/cpu_attention.py.

What the speed comes from (each is what the reference leaves out):
- Row blocks (``parallel.for_row_blocks``): an op runs its chain of array passes on one block of rows at a time,
  so the block's temporaries stay in cache (L2 or L3) between passes, and the blocks are spread over the cores
  (NumPy releases the GIL inside ufuncs, reductions and matmul). Row sums by einsum (3x faster than .sum over
  short rows).
- Buffers reused: big outputs (the logits, cross-entropy's exp buffer) come from ``buffers.empty`` and are
  recycled from step to step; a backward overwrites the arrays its forward saved, in place, when the graph is
  freed after it (``ctx.retain_graph`` False), so it allocates nothing of their size.
- GELU computes dy/dx in the forward and saves only that (backward is one multiply); its float32 exact form uses a
  fitted polynomial for Phi and an int32 sign-bit trick instead of erf.

Each op is a pair ``NAME_forward(ctx, ...)`` / ``NAME_backward(ctx, g)`` taking the arrays its Function gets (the
Function has already checked them); the forward saves on ctx what its backward needs. Only the CPU device runs
them (``ops.kernels.kernels_for``); they call the device's ``xp`` (NumPy here) like all op code.
"""
from __future__ import annotations

import math
from typing import Any

from minigrad import backend
from minigrad.ops import buffers, parallel
from minigrad.ops.parallel import for_row_blocks

# ---------------------------------------------------------------------------------------------------- Linear


def linear_forward(ctx: Any, x: Any, weight: Any, bias: Any) -> Any:
    """y = x W^T + b: all leading dims as rows of one matrix (one big GEMM, split over the threads), W^T a view."""
    xp = ctx.xp
    x2 = x.reshape(-1, x.shape[-1])
    y = buffers.empty(ctx.device, (x2.shape[0], weight.shape[0]), xp.result_type(x2, weight))
    parallel.matmul(ctx.device, x2, weight.T, y)  # big outputs (the logits) reuse last step's memory
    if bias is not None:
        y += bias
    ctx.x2, ctx.x_shape, ctx.weight = x2, x.shape, weight
    return y.reshape(*x.shape[:-1], weight.shape[0])


def linear_backward(ctx: Any, g: Any) -> tuple:
    """dx = g W,  dW = g^T x (summed over all leading dims in one GEMM),  db = sum g."""
    xp = ctx.xp
    x2, w, need, dev = ctx.x2, ctx.weight, ctx.needs_input_grad, ctx.device
    g2 = g.reshape(-1, g.shape[-1])
    dx = dw = db = None
    if need[0]:
        dx = parallel.matmul(dev, g2, w, xp.empty((g2.shape[0], w.shape[1]), dtype=g.dtype)).reshape(ctx.x_shape)
    if need[1]:
        dw = parallel.matmul(dev, g2.T, x2, xp.empty((g2.shape[1], x2.shape[1]), dtype=g.dtype))
    if len(need) > 2 and need[2]:
        db = g2.sum(axis=0)
    return dx, dw, db


# ---------------------------------------------------------------------------------------------- cross-entropy


def cross_entropy_forward(ctx: Any, logits: Any, t: Any, valid: Any) -> Any:
    """Per-row loss log(s) - (z[t] - m), m = max z, s = sum exp(z - m); 0 where valid is False.

    Keeps e = exp(z - m) (unnormalised) and s for the backward; with no gradient needed, e lives only in a
    block-sized temporary.
    """
    xp = ctx.xp
    n, c = logits.shape
    keep = ctx.recording and ctx.needs_input_grad[0]
    e = buffers.empty(ctx.device, logits.shape, logits.dtype) if keep else None
    m = xp.empty((n, 1), dtype=logits.dtype)
    s = xp.empty((n, 1), dtype=logits.dtype)

    def block(a: int, b: int) -> None:
        z = logits[a:b]
        z.max(axis=1, keepdims=True, out=m[a:b])
        eb = xp.subtract(z, m[a:b], out=None if e is None else e[a:b])
        xp.exp(eb, out=eb)
        eb.sum(axis=1, keepdims=True, out=s[a:b])

    for_row_blocks(ctx.device, n, c * logits.itemsize, block)
    ctx.e, ctx.s = e, s
    return (xp.log(s[:, 0]) - (logits[xp.arange(n), t] - m[:, 0])) * valid


def cross_entropy_backward(ctx: Any, w: Any) -> Any:
    """dz_i = (e_i / s_i - onehot(t_i)) w_i, turning e into dz in place (one multiply) unless the graph is kept."""
    xp = ctx.xp
    e = ctx.e
    r = w.astype(e.dtype, copy=False)[:, None] / ctx.s
    out = e if not ctx.retain_graph else xp.empty_like(e)

    def block(a: int, b: int) -> None:
        xp.multiply(e[a:b], r[a:b], out=out[a:b])

    n, c = e.shape
    for_row_blocks(ctx.device, n, c * e.itemsize, block)
    out.reshape(-1)[xp.arange(n) * c + ctx.t] -= w  # flat indices, one per row
    return out


# ------------------------------------------------------------------------------------------------- layer norm


def layer_norm_forward(ctx: Any, x: Any, weight: Any, bias: Any, eps: float) -> Any:
    """y = xhat * weight + bias, xhat = (x - mean) * rstd over the last axis; saves xhat and rstd (not x)."""
    xp = ctx.xp
    c = x.shape[-1]
    x2 = x.reshape(-1, c)
    n = x2.shape[0]
    xhat, y = xp.empty_like(x2), xp.empty_like(x2)
    rstd = xp.empty((n, 1), dtype=x.dtype)

    def block(a: int, b: int) -> None:
        xb, xh, r = x2[a:b], xhat[a:b], rstd[a:b]
        mean = xp.einsum("ni->n", xb)[:, None]  # (.mean is a Python wrapper around a slower sum)
        mean *= 1.0 / c
        xp.subtract(xb, mean, out=xh)
        xp.multiply(xp.einsum("ni,ni->n", xh, xh)[:, None], 1.0 / c, out=r)
        r += eps
        xp.sqrt(r, out=r)
        xp.divide(1.0, r, out=r)
        xh *= r
        yb = y[a:b]
        xp.multiply(xh, weight, out=yb)
        yb += bias

    for_row_blocks(ctx.device, n, c * x.itemsize, block)
    ctx.xhat, ctx.rstd, ctx.weight = xhat, rstd, weight
    return y.reshape(x.shape)


def layer_norm_backward(ctx: Any, g: Any) -> tuple:
    """dx = rstd (gh - mean(gh) - xhat mean(gh xhat)), gh = g weight; xhat is overwritten unless the graph is kept."""
    xp = ctx.xp
    xhat, rstd, w = ctx.xhat, ctx.rstd, ctx.weight
    n, c = xhat.shape
    g2 = g.reshape(n, c)
    dweight = xp.einsum("ni,ni->i", g2, xhat) if ctx.needs_input_grad[1] else None
    dbias = xp.einsum("ni->i", g2) if ctx.needs_input_grad[2] else None
    dx = xp.empty_like(xhat)
    scratch = None if not ctx.retain_graph else xp.empty_like(xhat)

    def block(a: int, b: int) -> None:
        gh, xh = dx[a:b], xhat[a:b]
        xp.multiply(g2[a:b], w, out=gh)
        mean_gh = xp.einsum("ni->n", gh)[:, None]
        mean_gh *= 1.0 / c
        mean_gh_xhat = xp.einsum("ni,ni->n", gh, xh)[:, None]
        mean_gh_xhat *= 1.0 / c
        t = xp.multiply(xh, mean_gh_xhat, out=xh if scratch is None else scratch[a:b])
        gh -= mean_gh
        gh -= t
        gh *= rstd[a:b]

    for_row_blocks(ctx.device, n, c * xhat.itemsize, block)
    return dx.reshape(g.shape), dweight, dbias


# ------------------------------------------------------------------------------------------------------- GELU

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _gelu_erf_block(xp: Any, x: Any, y: Any, d: Any) -> None:
    """y = x Phi(x) and d = dy/dx = Phi(x) + x phi(x) for one block, Phi(x) = (1 + erf(x / sqrt 2)) / 2
    (float64 in practice: float32 takes _gelu_erf_block_f32)."""
    e = x * x
    e *= -0.5
    xp.exp(e, out=e)  # e = exp(-x^2 / 2) = sqrt(2 pi) phi(x)
    cdf = backend.erf(x * _INV_SQRT_2)  # a fresh array: updated in place below
    cdf += 1.0
    cdf *= 0.5
    xp.multiply(x, cdf, out=y)
    if d is not None:
        xp.multiply(x, e, out=d)
        d *= _INV_SQRT_2PI
        d += cdf


# Phi(-a) = erfc(a / sqrt 2) / 2 ~= exp(-a^2 / 2) * t * (c1 + c2 t + ... + c6 t^5), t = 1 / (1 + p a / sqrt 2), a >= 0:
# the form of Abramowitz & Stegun 7.1.26 with one more term, refitted (minimax, Lawson's iterations in float64)
# to |error| < 8.5e-9 for every a; the halves are folded into the c's. It needs no exp of its own: exp(-x^2/2)
# is computed for phi(x) anyway, and its 20 passes cost less than a rational erf's 25 plus the final ones.
# tools/fit_gelu_phi.py refits them.
_PHI_P = 0.55 * _INV_SQRT_2
_PHI_C = (0.30158341359046015 / 2, 0.3908422908206769 / 2, -0.04142673853664183 / 2, 0.7597152575920728 / 2,
          -0.5180388396397063 / 2, 0.10732463308930205 / 2)
_SIGN_BIT = -(1 << 31)  # as int32


def _gelu_erf_block_f32(xp: Any, x: Any, y: Any, d: Any) -> None:
    """The float32 form of _gelu_erf_block: |error| of y at most 4.5e-7 and of dy/dx 2.5e-7 against the float64
    result on [-12, 12] (the rational-erf path: 1.4e-6 for y); like any float32 1/2 + erf/2, it is absolute,
    not relative, accuracy where y is tiny. x is a contiguous 1-D block."""
    f32 = xp.float32
    e = xp.multiply(x, x)
    e *= f32(-0.5)
    xp.exp(e, out=e)  # e = exp(-x^2 / 2)
    t = xp.abs(x)
    t *= f32(_PHI_P)
    t += f32(1.0)
    xp.divide(f32(1.0), t, out=t)
    h = xp.multiply(t, f32(_PHI_C[5]))  # Horner in t
    for c in _PHI_C[4::-1]:
        h += f32(c)
        h *= t
    h *= e  # h = Phi(-|x|), in (0, 1/2]
    # Phi(x) = 1/2 + sign(x) (1/2 - h): the sign bit of x set into (1/2 - h) >= 0 (cheaper than copysign or where)
    cdf = xp.subtract(f32(0.5), h, out=h)
    sign = xp.bitwise_and(x.view(xp.int32), xp.int32(_SIGN_BIT), out=t.view(xp.int32))
    xp.bitwise_or(cdf.view(xp.int32), sign, out=cdf.view(xp.int32))
    cdf += f32(0.5)
    xp.multiply(x, cdf, out=y)
    if d is not None:
        e *= x
        e *= f32(_INV_SQRT_2PI)
        xp.add(cdf, e, out=d)


def _gelu_tanh_block(xp: Any, x: Any, y: Any, d: Any) -> None:
    """y = 0.5 x (1 + tanh(u)) and d = dy/dx (when d is given) for one block, u = sqrt(2/pi) (x + 0.044715 x^3)
    (x*x*x, never x**3)."""
    t = x * x
    t *= 0.044715
    t += 1.0
    t *= x
    t *= _SQRT_2_OVER_PI
    xp.tanh(t, out=t)
    if d is not None:
        # dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)   (sech^2 = 1 - tanh^2)
        xp.multiply(x, x, out=d)
        d *= 3 * 0.044715
        d += 1.0
        d *= x
        d *= 0.5 * _SQRT_2_OVER_PI
        sech2 = t * t
        xp.subtract(1.0, sech2, out=sech2)
        d *= sech2
    t += 1.0
    t *= 0.5
    if d is not None:
        d += t
    xp.multiply(x, t, out=y)


def gelu_forward(ctx: Any, x: Any, approximate: str) -> Any:
    """GELU with dy/dx computed alongside y and saved as ctx.d (x is not kept); no derivative without grad."""
    xp = ctx.xp
    xf = x.reshape(-1)
    y = xp.empty_like(xf)
    d = xp.empty_like(xf) if ctx.recording else None
    if approximate == "tanh":
        block_fn = _gelu_tanh_block
    elif xf.dtype == xp.float32:
        block_fn = _gelu_erf_block_f32
    else:
        block_fn = _gelu_erf_block

    def block(a: int, b: int) -> None:
        block_fn(xp, xf[a:b], y[a:b], None if d is None else d[a:b])

    for_row_blocks(ctx.device, xf.size, xf.itemsize, block)
    ctx.d, ctx.x_shape = d, x.shape
    return y.reshape(x.shape)


def gelu_backward(ctx: Any, g: Any) -> Any:
    """dx = g * dy/dx, written over the saved dy/dx unless the graph is kept."""
    xp = ctx.xp
    d, gf = ctx.d, g.reshape(-1)
    dx = d if not ctx.retain_graph else xp.empty_like(d)

    def block(a: int, b: int) -> None:
        xp.multiply(d[a:b], gf[a:b], out=dx[a:b])

    for_row_blocks(ctx.device, d.size, d.itemsize, block)
    return dx.reshape(ctx.x_shape)
