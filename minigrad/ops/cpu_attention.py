"""The CPU's fast version of attention (ops/attention.py's reference math, arranged for speed on a few CPU cores):
``attention_forward`` / ``attention_backward`` on (..., T, D) arrays and the packed (B, T, 3C) pair that
``packed_attention_forward`` / ``packed_attention_backward`` run on strided views. Nothing here is new math;
tests/minigrad/test_reference_vs_fast.py pins it against the reference (float64: to 1e-12).

What the speed comes from (each is what the reference leaves out):
- Blocks of batch entries (``parallel.for_row_blocks``): a block's scores, softmax passes and gradient stay in
  cache, and the blocks are spread over the cores.
- Causal attention in tiles of query rows that skip the keys after the diagonal (never multiplied,
  exponentiated or stored).
- The big products as one single-threaded BLAS call per thread of ours.

Like ops/cpu_kernels.py, the forward saves on ctx what the backward needs; only the CPU device runs it
(``ops.kernels.kernels_for``), calling the device's ``xp`` (NumPy here) like all op code.
"""
from __future__ import annotations

from typing import Any

from minigrad import backend
from minigrad.ops import parallel
from minigrad.ops.parallel import for_row_blocks

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
    if out is None:  # laid out in memory as q is (heads split from (B, T, C): then (B, T, H, D), and merging
        # the heads back with y.transpose(1, 2).reshape(B, T, C) is a view, not a copy)
        out = xp.empty_like(q) if ctx.blocked and v.shape == q.shape else xp.empty((*lead, tq, v.shape[-1]), q.dtype)
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
    # each gradient laid out in memory as its input (as the output in forward); broadcast inputs get
    # gradients of the broadcast shape, which the engine sums back
    if need_q and dq is None:
        dq = xp.empty_like(q, g.dtype) if ctx.blocked else xp.empty((*lead, *q.shape[-2:]), g.dtype)
    if need_k and dk is None:
        dk = xp.empty_like(k, g.dtype) if ctx.blocked else xp.empty((*lead, *k.shape[-2:]), g.dtype)
    if need_v and dv is None:
        dv = xp.empty_like(v, g.dtype) if ctx.blocked else xp.empty((*lead, *v.shape[-2:]), g.dtype)
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
