"""Scaled dot-product attention on (..., T, D) with its hand-derived backward, as whole-array math.

sdpa_forward / sdpa_backward below are the reference: the scores, softmax and products over whole arrays, with
the derivation in comments. The two Functions (separate q, k, v; packed qkv) use them, or hand over in one line
to the device's fast version (``kernels_for``, minigrad/ops/kernels.py): on the CPU minigrad/ops/cpu_attention.py
runs the same math block by block over the batch entries on several threads, in causal tiles that skip the keys
after the diagonal, writing straight into strided views. tests/minigrad/test_reference_vs_fast.py pins both.
"""
from __future__ import annotations

from typing import Any

from minigrad import backend
from minigrad.autograd import Context, Function
from minigrad.ops.kernels import kernels_for
from minigrad.ops.precision import float32_inside


def sdpa_forward(ctx: Context, q: Any, k: Any, v: Any, is_causal: bool, attn_mask: Any, dropout_p: float,
                 scale: float, causal_offset: int = 0) -> Any:
    """out = softmax(S) v, S = scale * q k^T (+ mask), on (..., Tq, D), (..., Tk, D), (..., Tk, Dv).

    is_causal: query i sees keys j <= i + causal_offset (0: torch's top-left alignment; Tk - Tq: a key/value cache's
    bottom-right one). attn_mask: bool (True = may attend) or float (added to the scores).
    """
    xp = ctx.xp
    s = (q * scale) @ k.swapaxes(-1, -2)  # S (..., Tq, Tk): query i's score for key j (scaling q costs T*D, not T*T)
    tq, tk = s.shape[-2:]
    if is_causal:
        s = xp.where(xp.arange(tk) <= xp.arange(tq)[:, None] + causal_offset, s, -xp.inf)
    if attn_mask is not None:
        s = xp.where(attn_mask, s, -xp.inf) if attn_mask.dtype == bool else s + attn_mask
    # P = softmax over the keys: exp(S - rowmax) / rowsum. A row with every key masked (rowmax -inf) gets P = 0,
    # as torch's SDPA, instead of 0/0
    m = s.max(axis=-1, keepdims=True)
    s -= xp.where(xp.isinf(m), 0.0, m)
    p = xp.exp(s, out=s)  # in place: S is not needed again
    total = p.sum(axis=-1, keepdims=True)
    p /= xp.where(total == 0, xp.inf, total)
    ctx.keep, used = None, p
    if dropout_p > 0.0:  # drop each weight with probability dropout_p, scale the rest by 1 / (1 - dropout_p)
        ctx.keep = backend.rand(ctx.device, p.shape, p.dtype) >= dropout_p
        ctx.keep_scale = 1.0 / (1.0 - dropout_p) if dropout_p < 1.0 else 0.0  # p = 1: every weight dropped
        used = p * ctx.keep * ctx.keep_scale
    ctx.q, ctx.k, ctx.v, ctx.p, ctx.used, ctx.scale = q, k, v, p, used, scale
    return used @ v


def sdpa_backward(ctx: Context, g: Any, need_q: bool = True, need_k: bool = True, need_v: bool = True,
                  need_mask: bool = False) -> tuple:
    """(dq, dk, dv, dmask) of sdpa_forward for g = dL/dout, None where not needed. Broadcast inputs get gradients
    of the broadcast shape (the engine sums them back); dmask (a float mask that needs one) is (..., Tq, Tk)."""
    # out = P' v with P' = P, or P * keep / (1 - p) with dropout:   dv = P'^T g,   dP' = g v^T,  dP = dP' keep / (1 - p)
    # softmax, row by row (as Softmax.backward):                    dS_ij = P_ij (dP_ij - sum_l P_il dP_il)
    # S = scale q k^T + mask:   dq = scale dS k,   dk = scale dS^T q,   dmask = dS
    p = ctx.p
    dp = g @ ctx.v.swapaxes(-1, -2)
    if ctx.keep is not None:
        dp = dp * ctx.keep * ctx.keep_scale
    ds = p * (dp - (p * dp).sum(axis=-1, keepdims=True))
    dq = (ds @ ctx.k) * ctx.scale if need_q else None
    dk = (ds.swapaxes(-1, -2) @ ctx.q) * ctx.scale if need_k else None
    dv = ctx.used.swapaxes(-1, -2) @ g if need_v else None
    dmask = ds.astype(ctx.mask_dtype, copy=False) if need_mask else None
    return dq, dk, dv, dmask


@float32_inside
class ScaledDotProductAttention(Function):
    """Attention on separate q, k, v of shape (..., T, D).

    A float mask that needs a gradient comes as a fourth input (mask); any other mask as the attn_mask
    attribute (bool: True = may attend; float: added to the scores). is_causal masks keys after
    query i + causal_offset (0: torch's top-left alignment). scale defaults to 1 / sqrt(D).
    """

    @staticmethod
    def forward(ctx: Context, q: Any, k: Any, v: Any, mask: Any = None, is_causal: bool = False,
                attn_mask: Any = None, dropout_p: float = 0.0, scale: float | None = None,
                causal_offset: int = 0) -> Any:
        if mask is not None:
            attn_mask, ctx.mask_dtype = mask, mask.dtype
        scale = q.shape[-1] ** -0.5 if scale is None else scale
        ctx.fast = kernels_for(ctx.device, "attention")
        if ctx.fast is not None:
            return ctx.fast.attention_forward(ctx, q, k, v, is_causal, attn_mask, dropout_p, scale, causal_offset)
        return sdpa_forward(ctx, q, k, v, is_causal, attn_mask, dropout_p, scale, causal_offset)

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple:
        if ctx.fast is not None:
            return ctx.fast.attention_backward(ctx, g, *ctx.needs_input_grad)[:len(ctx.needs_input_grad)]
        return sdpa_backward(ctx, g, *ctx.needs_input_grad)[:len(ctx.needs_input_grad)]


@float32_inside
class PackedSelfAttention(Function):
    """Multi-head self-attention from packed qkv (B, T, 3C) to (B, T, C), before the output projection.

    One op instead of split + 3 reshapes + 3 transposes + attention + transpose + reshape; C = H heads of D.
    """

    @staticmethod
    def forward(ctx: Context, qkv: Any, n_heads: int, is_causal: bool = True, dropout_p: float = 0.0) -> Any:
        ctx.fast = kernels_for(ctx.device, "attention")
        if ctx.fast is not None:
            return ctx.fast.packed_attention_forward(ctx, qkv, n_heads, is_causal, dropout_p)
        b, t, c3 = qkv.shape
        heads = qkv.reshape(b, t, 3, n_heads, c3 // 3 // n_heads).transpose(2, 0, 3, 1, 4)  # (3, B, H, T, D) view
        y = sdpa_forward(ctx, heads[0], heads[1], heads[2], is_causal, None, dropout_p, heads.shape[-1] ** -0.5)
        ctx.qkv_shape = qkv.shape
        return y.transpose(0, 2, 1, 3).reshape(b, t, c3 // 3)  # (B, H, T, D) -> (B, T, H, D) -> (B, T, C)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        if ctx.fast is not None:
            return ctx.fast.packed_attention_backward(ctx, g)
        b, t, c3 = ctx.qkv_shape
        gy = g.reshape(b, t, ctx.q.shape[1], -1).transpose(0, 2, 1, 3)  # (B, T, C) -> (B, H, T, D), as forward
        dq, dk, dv, _ = sdpa_backward(ctx, gy)
        return ctx.xp.stack((dq, dk, dv)).transpose(1, 3, 0, 2, 4).reshape(b, t, c3)  # (3, B, H, T, D) -> (B, T, 3C)
