"""Scaled dot-product attention on (B, H, T, D) with its hand-derived backward.

Forward saves the probabilities P (B, H, T, T): the backward needs exactly P, and
recomputing it would cost a matmul plus the softmax again, while storing it costs
B*H*T*T floats (8 MB per layer at the tutorial's sizes).
"""
from __future__ import annotations

from typing import Any

from minigrad import backend
from minigrad.autograd import Context, Function

_causal_bias_cache: dict = {}


def causal_bias(xp: Any, tq: int, tk: int, dtype: Any) -> Any:
    """A cached (Tq, Tk) additive mask: 0 where key <= query (aligned at the end), -inf above."""
    key = (xp.__name__, tq, tk, str(dtype))
    bias = _causal_bias_cache.get(key)
    if bias is None:
        rows = xp.arange(tq)[:, None] + (tk - tq)
        bias = xp.where(xp.arange(tk)[None, :] > rows, -xp.inf, 0.0).astype(dtype)
        _causal_bias_cache[key] = bias
    return bias


def attention_forward(ctx: Context, q: Any, k: Any, v: Any, is_causal: bool, attn_mask: Any, dropout_p: float,
                      scale: float | None) -> Any:
    """softmax(scale * q k^T + mask) v on (..., T, D); saves q, k, v and P on ctx."""
    xp = ctx.xp
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    # S = scale * q k^T  (B,H,Tq,Tk), then P = softmax(S + mask) in place
    p = q @ k.swapaxes(-1, -2)
    p *= scale
    if is_causal:
        p += causal_bias(xp, q.shape[-2], k.shape[-2], p.dtype)
    if attn_mask is not None:
        if attn_mask.dtype == bool:  # True = may attend (PyTorch's convention)
            p = xp.where(attn_mask, p, -xp.inf)
        else:
            p = p + attn_mask
    p -= p.max(axis=-1, keepdims=True)
    xp.exp(p, out=p)
    p /= p.sum(axis=-1, keepdims=True)
    ctx.q, ctx.k, ctx.v, ctx.p, ctx.scale = q, k, v, p, scale
    ctx.keep = None
    if dropout_p > 0.0:
        keep = backend.rand(ctx.device, p.shape, p.dtype) >= dropout_p
        ctx.keep, ctx.keep_scale = keep, 1.0 / (1.0 - dropout_p)
        return (p * keep * ctx.keep_scale) @ v
    return p @ v


def attention_backward(ctx: Context, g: Any, need_q: bool, need_k: bool, need_v: bool) -> tuple:
    """Gradients of attention_forward for q, k, v (None where not needed)."""
    # out = P v:   dv = P^T g,   dP = g v^T
    # softmax:     dS = P * (dP - rowsum(P * dP))
    # S = s q k^T: dq = s dS k,  dk = s dS^T q
    xp = ctx.xp
    q, k, v, p = ctx.q, ctx.k, ctx.v, ctx.p
    dp = g @ v.swapaxes(-1, -2)
    if ctx.keep is not None:
        p_used = p * ctx.keep * ctx.keep_scale
        dv = p_used.swapaxes(-1, -2) @ g if need_v else None
        dp *= ctx.keep
        dp *= ctx.keep_scale
    else:
        dv = p.swapaxes(-1, -2) @ g if need_v else None
    dp -= xp.einsum("...ij,...ij->...i", p, dp)[..., None]
    dp *= p
    dp *= ctx.scale  # dp now holds s * dS
    dq = dp @ k if need_q else None
    dk = dp.swapaxes(-1, -2) @ q if need_k else None
    return dq, dk, dv


class ScaledDotProductAttention(Function):
    """Attention on separate q, k, v of shape (..., T, D)."""

    @staticmethod
    def forward(ctx: Context, q: Any, k: Any, v: Any, is_causal: bool = False, attn_mask: Any = None,
                dropout_p: float = 0.0, scale: float | None = None) -> Any:
        return attention_forward(ctx, q, k, v, is_causal, attn_mask, dropout_p, scale)

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple:
        return attention_backward(ctx, g, *ctx.needs_input_grad)


class PackedSelfAttention(Function):
    """Multi-head self-attention from packed qkv (B, T, 3C) to (B, T, C), before the output projection.

    One op instead of split + 3 reshapes + 3 transposes + attention + transpose + reshape:
    the heads are strided views of qkv, and the backward writes dq, dk, dv straight into
    one (B, T, 3, H, D) gradient buffer.
    """

    @staticmethod
    def forward(ctx: Context, qkv: Any, n_heads: int, is_causal: bool = True, dropout_p: float = 0.0) -> Any:
        b, t, c3 = qkv.shape
        c = c3 // 3
        heads = qkv.reshape(b, t, 3, n_heads, c // n_heads).transpose(2, 0, 3, 1, 4)  # (3, B, H, T, D) view
        y = attention_forward(ctx, heads[0], heads[1], heads[2], is_causal, None, dropout_p, None)
        ctx.qkv_shape = qkv.shape
        return y.transpose(0, 2, 1, 3).reshape(b, t, c)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        b, t, c3 = ctx.qkv_shape
        h = ctx.q.shape[1]
        d = c3 // 3 // h
        gy = g.reshape(b, t, h, d).transpose(0, 2, 1, 3)  # (B, H, T, D) view
        dq, dk, dv = attention_backward(ctx, gy, True, True, True)
        dqkv = ctx.xp.empty((b, t, 3, h, d), dtype=g.dtype)
        view = dqkv.transpose(2, 0, 3, 1, 4)  # (3, B, H, T, D) view of the buffer
        view[0], view[1], view[2] = dq, dk, dv
        return dqkv.reshape(b, t, c3)
