"""The CPU's fast versions of the fused ops: the reference math of ops/fused.py and ops/attention.py, arranged
for speed on a few CPU cores. Nothing here is new math; tests/minigrad/test_reference_vs_fast.py pins every
function against its op's reference (float64: to 1e-12).

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
- Attention runs block by block over the batch entries, causal attention in tiles of query rows that skip the keys
  after the diagonal, and the big products as one single-threaded BLAS call per thread of ours.

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
