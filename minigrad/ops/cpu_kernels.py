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


# -------------------------------------------------------------------------------------------------- attention
# Forward saves the probabilities P (B, H, T, T): the backward needs exactly P, and recomputing it would cost a
# matmul plus the softmax again, while storing it costs B*H*T*T floats (8 MB per layer at the tutorial's sizes).
# When q, k and v share their leading dims (the usual (B, H, T, D) case), the work runs one block of batch entries
# at a time: a block's scores, softmax passes and gradient stay in cache, and the blocks are spread over the
# cores. Inputs that broadcast against each other take the same math in one block.

_causal_bias_cache: dict = {}


def causal_bias(xp: Any, tq: int, tk: int, dtype: Any, offset: int = 0) -> Any:
    """A cached (Tq, Tk) additive mask: 0 where key j <= query i + offset, -inf above."""
    key = (xp.__name__, tq, tk, str(dtype), offset)
    bias = _causal_bias_cache.get(key)
    if bias is None:
        rows = xp.arange(tq)[:, None] + offset
        bias = xp.where(xp.arange(tk)[None, :] > rows, -xp.inf, 0.0).astype(dtype)
        _causal_bias_cache[key] = bias
    return bias


TILE = 64  # query rows per causal tile
# OpenBLAS runs a GEMM of at most this many multiply-adds on the calling thread (SMP_THRESHOLD_MIN 65536 x
# GEMM_MULTITHREAD_THRESHOLD 4); bigger ones go to its own thread pool, which must not be entered from
# several of our threads at once (measured: slower than one thread). Blocks run in parallel only below it.
BLAS_SINGLE_THREAD_MACS = 262144


def _matmul_into(xp: Any, a: Any, b: Any, out: Any, add: bool = False) -> None:
    """out[...] = a @ b (or += with add), straight into a strided out."""
    if add:
        out += a @ b
    else:
        xp.matmul(a, b, out=out)


def _broadcast(*shapes: tuple) -> tuple:
    n = max(len(s) for s in shapes)
    padded = [(1,) * (n - len(s)) + tuple(s) for s in shapes]
    return tuple(max(dims) for dims in zip(*padded))


def _tiles(tq: int, tk: int, causal: bool, offset: int = 0) -> list:
    """(first query, end query, end key) per tile of query rows.

    Causal: query i sees keys <= i + offset (see causal_bias), so the tile [q0, q1) needs keys
    [0, q1 + offset) only; the keys after it are never multiplied, exponentiated or stored.
    """
    if not causal:
        return [(0, tq, tk)]
    return [(q0, min(q0 + TILE, tq), max(1, min(tk, min(q0 + TILE, tq) + offset))) for q0 in range(0, tq, TILE)]


def _rows(arr: Any, a: Any, b: Any) -> Any:
    return arr if a is None or arr is None else arr[a:b]


def _run(ctx: Any, fn: Any) -> None:
    """fn(a, b) over blocks of batch entries [a, b) (a block's scores about a cache's worth), or fn(None, None)."""
    if not ctx.blocked:
        fn(None, None)
        return
    lead, tq, tk = ctx.p.shape[:-2], ctx.p.shape[-2], ctx.p.shape[-1]
    per_entry = tq * tk * ctx.p.itemsize
    for n in lead[1:]:
        per_entry *= n
    if parallel.splits_blas(ctx.device):  # every tile GEMM single-threaded, the blocks on our threads
        with parallel.single_threaded_blas():
            for_row_blocks(ctx.device, lead[0], per_entry, fn)
        return
    d = max(ctx.q.shape[-1], ctx.v.shape[-1])
    small = max((q1 - q0) * k1 for q0, q1, k1 in ctx.tiles) * d <= BLAS_SINGLE_THREAD_MACS
    for_row_blocks(ctx.device, lead[0], per_entry, fn, parallel=small)


def attention_forward(ctx: Any, q: Any, k: Any, v: Any, is_causal: bool, attn_mask: Any, dropout_p: float,
                      scale: float, causal_offset: int = 0, out: Any = None) -> Any:
    """softmax(scale * q k^T + mask) v on (..., T, D); saves q, k, v, P and the output on ctx.

    out: an optional array (or strided view) of the output's shape to write into.
    """
    xp = ctx.xp
    lead_qkv = q.shape[:-2]
    lead = _broadcast(lead_qkv, k.shape[:-2], v.shape[:-2], () if attn_mask is None else attn_mask.shape[:-2])
    # blocks of batch entries when q, k, v share their leading dims and the mask adds none
    ctx.blocked = len(lead_qkv) >= 1 and lead == lead_qkv == k.shape[:-2] == v.shape[:-2]
    tq, tk = q.shape[-2], k.shape[-2]
    ctx.tiles = _tiles(tq, tk, is_causal and attn_mask is None, causal_offset)
    p = xp.empty((*lead, tq, tk), dtype=q.dtype)  # only the tiles' key ranges are ever written or read
    if out is None:
        out = xp.empty((*lead, tq, v.shape[-1]), dtype=q.dtype)
    bias = causal_bias(xp, tq, tk, q.dtype, causal_offset) if is_causal else None
    mask = attn_mask
    masked = bias is not None or mask is not None
    keep = None
    if dropout_p > 0.0:  # drawn in one call, outside the blocks: the same random stream however they run
        keep = backend.rand(ctx.device, p.shape, p.dtype) >= dropout_p
        ctx.keep_scale = 1.0 / (1.0 - dropout_p) if dropout_p < 1.0 else 0.0  # p = 1: every weight dropped

    def block(a: Any, b: Any) -> None:
        qs = _rows(q, a, b) * scale  # scaling q costs T*D, scaling S would cost T*T
        kb, vb, pb, ob = _rows(k, a, b), _rows(v, a, b), _rows(p, a, b), _rows(out, a, b)
        for q0, q1, k1 in ctx.tiles:
            # S = (s q) k^T,  P = softmax(S + mask) over the tile's rows, in place
            pt = pb[..., q0:q1, :k1]
            _matmul_into(xp, qs[..., q0:q1, :], kb[..., :k1, :].swapaxes(-1, -2), pt)
            if bias is not None:
                pt += bias[q0:q1, :k1]
            if mask is not None:  # (one tile: all rows and keys)
                mb = mask if mask.ndim < pt.ndim or mask.shape[0] == 1 else _rows(mask, a, b)
                if mask.dtype == bool:  # True = may attend (PyTorch's convention)
                    xp.copyto(pt, -xp.inf, where=~mb)
                else:
                    pt += mb
            mx = pt.max(axis=-1, keepdims=True)
            if masked:
                mx[xp.isinf(mx)] = 0.0  # a row with every key masked: exp gives zeros, not nan
            pt -= mx
            xp.exp(pt, out=pt)
            total = xp.einsum("...j->...", pt)[..., None]  # row sums: einsum is ~3x faster than .sum(-1) here
            if masked:
                total[total == 0] = xp.inf  # ... and that row of P stays 0 (torch's SDPA gives 0 too)
            pt *= 1.0 / total
            used = pt if keep is None else pt * _rows(keep, a, b)[..., q0:q1, :k1] * ctx.keep_scale
            _matmul_into(xp, used, vb[..., :k1, :], ob[..., q0:q1, :])

    ctx.q, ctx.k, ctx.v, ctx.p = q, k, v, p
    _run(ctx, block)
    ctx.out, ctx.keep, ctx.scale = out, keep, scale
    return out


def attention_backward(ctx: Any, g: Any, need_q: bool, need_k: bool, need_v: bool, need_mask: bool = False,
                       dq: Any = None, dk: Any = None, dv: Any = None) -> tuple:
    """Gradients (dq, dk, dv, dmask) of attention_forward (None where not needed), dq, dk, dv written into the
    arrays given. dmask (a float attn_mask that requires grad) has the broadcast shape (..., Tq, Tk)."""
    xp = ctx.xp
    # out = P' v with P' = P (or P * keep / (1 - p) with dropout):   dv = P'^T g,   dP' = g v^T
    # softmax:     dS = P * (dP - D),  D_i = rowsum(P' * dP')_i = g_i . out_i  (a (T, D) product, not (T, T))
    # S = s q k^T + mask: dq = s dS k,  dk = s dS^T q,  dmask = dS
    # (s is folded into g and D, so ds below holds s dS; with a mask to differentiate, ds holds dS first,
    # is copied into dmask, and is then scaled: one more pass over the tile, only then)
    q, k, v, p, out, keep, scale = ctx.q, ctx.k, ctx.v, ctx.p, ctx.out, ctx.keep, ctx.scale
    lead, tk = p.shape[:-2], p.shape[-1]
    # broadcast inputs get gradients of the broadcast shape; the engine sums them back
    if need_q and dq is None:
        dq = xp.empty((*lead, q.shape[-2], q.shape[-1]) if not ctx.blocked else q.shape, dtype=g.dtype)
    if need_k and dk is None:
        dk = xp.empty((*lead, k.shape[-2], k.shape[-1]) if not ctx.blocked else k.shape, dtype=g.dtype)
    if need_v and dv is None:
        dv = xp.empty((*lead, v.shape[-2], v.shape[-1]) if not ctx.blocked else v.shape, dtype=g.dtype)
    dmask = None
    if need_mask:  # keys a causal tile skips keep a zero gradient
        dmask = (xp.zeros if len(ctx.tiles) > 1 else xp.empty)(p.shape, dtype=g.dtype)
    fold = 1.0 if need_mask else scale  # the scale folded into g and D
    tiles = sorted(ctx.tiles, key=lambda t: -t[2])  # widest first: it writes dk, dv; the others add

    def block(a: Any, b: Any) -> None:
        pb, gb = _rows(p, a, b), _rows(g, a, b)
        qb, kb, vb = _rows(q, a, b), _rows(k, a, b), _rows(v, a, b)
        dqb, dkb, dvb, dmb = _rows(dq, a, b), _rows(dk, a, b), _rows(dv, a, b), _rows(dmask, a, b)
        d = xp.einsum("...td,...td->...t", gb, _rows(out, a, b))[..., None]
        if fold != 1.0:
            d *= fold
        gs = gb * fold if fold != 1.0 else gb
        for i, (q0, q1, k1) in enumerate(tiles):
            first = i == 0
            if first and k1 < tk:  # nothing covers the later keys: their gradients are 0
                for arr in (dkb, dvb):
                    if arr is not None:
                        arr[..., k1:, :] = 0.0
            pt = pb[..., q0:q1, :k1]
            keep_t = None if keep is None else _rows(keep, a, b)[..., q0:q1, :k1]
            if need_v:
                used = pt if keep_t is None else pt * keep_t * ctx.keep_scale
                _matmul_into(xp, used.swapaxes(-1, -2), gb[..., q0:q1, :], dvb[..., :k1, :], add=not first)
            ds = gs[..., q0:q1, :] @ vb[..., :k1, :].swapaxes(-1, -2)  # s dP'
            if keep_t is not None:
                ds *= keep_t
                ds *= ctx.keep_scale
            ds -= d[..., q0:q1, :]
            ds *= pt  # ds now holds s dS (dS when the mask needs its gradient)
            if dmb is not None:
                dmb[..., q0:q1, :k1] = ds
                ds *= scale
            if need_q:
                _matmul_into(xp, ds, kb[..., :k1, :], dqb[..., q0:q1, :])
            if need_k:
                _matmul_into(xp, ds.swapaxes(-1, -2), qb[..., q0:q1, :], dkb[..., :k1, :], add=not first)

    _run(ctx, block)
    if dmask is not None and dmask.dtype != ctx.mask_dtype:
        dmask = dmask.astype(ctx.mask_dtype)
    return dq, dk, dv, dmask


def packed_attention_forward(ctx: Any, qkv: Any, n_heads: int, is_causal: bool, dropout_p: float) -> Any:
    """Self-attention from packed (B, T, 3C): the heads are strided views of qkv, and the output is written
    straight into (B, T, H, D) order (no split, transposes or copies)."""
    xp = ctx.xp
    b, t, c3 = qkv.shape
    c = c3 // 3
    heads = qkv.reshape(b, t, 3, n_heads, c // n_heads).transpose(2, 0, 3, 1, 4)  # (3, B, H, T, D) view
    y = xp.empty((b, t, n_heads, c // n_heads), dtype=qkv.dtype)
    attention_forward(ctx, heads[0], heads[1], heads[2], is_causal, None, dropout_p, heads.shape[-1] ** -0.5,
                      out=y.transpose(0, 2, 1, 3))
    ctx.qkv_shape = qkv.shape
    return y.reshape(b, t, c)


def packed_attention_backward(ctx: Any, g: Any) -> Any:
    """dq, dk, dv written straight into one (B, T, 3, H, D) gradient buffer, the layout of qkv."""
    xp = ctx.xp
    b, t, c3 = ctx.qkv_shape
    h = ctx.q.shape[1]
    d = c3 // 3 // h
    gy = g.reshape(b, t, h, d).transpose(0, 2, 1, 3)  # (B, H, T, D) view
    dqkv = xp.empty((b, t, 3, h, d), dtype=g.dtype)
    view = dqkv.transpose(2, 0, 3, 1, 4)  # (3, B, H, T, D) view of the buffer
    attention_backward(ctx, gy, True, True, True, dq=view[0], dk=view[1], dv=view[2])
    return dqkv.reshape(b, t, c3)
