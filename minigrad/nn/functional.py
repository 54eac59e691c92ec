"""Functional forms of the nn ops, with PyTorch's names and argument order."""
from __future__ import annotations

from typing import Any, Sequence

from minigrad.ops import attention as A
from minigrad.ops import fused as F
from minigrad.tensor import Tensor, _to_array


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x W^T + b with W of shape (out, in), as torch.nn.functional.linear."""
    if bias is None:
        return F.Linear.apply(x, weight)
    return F.Linear.apply(x, weight, bias)


def relu(x: Tensor) -> Tensor:
    """max(x, 0)."""
    return x.relu()


def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent."""
    return x.tanh()


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + exp(-x))."""
    return x.sigmoid()


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU, exact (erf) by default or the tanh approximation with approximate='tanh'."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return F.Gelu.apply(x, approximate=approximate)


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Softmax along dim (max-subtracted)."""
    return F.Softmax.apply(x, axis=dim % x.ndim)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """log(softmax(x)) along dim, computed as x - logsumexp(x)."""
    return F.LogSoftmax.apply(x, axis=dim % x.ndim)


def embedding(ids: Any, weight: Tensor) -> Tensor:
    """Rows of weight picked by integer ids (any shape); out has shape ids.shape + (dim,)."""
    idx = ids.data if isinstance(ids, Tensor) else _to_array(ids, weight.device, None)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: ids must be integers, got {idx.dtype}")
    n = weight.shape[0]
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise IndexError(f"embedding: ids must be in [0, {n}), got min {int(idx.min())} max {int(idx.max())}")
    return F.Embedding.apply(weight, ids=idx)


def cross_entropy(logits: Tensor, target: Any, ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy of (N, C) logits (or (N, C, d...) as PyTorch) against integer targets."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    t = target.data if isinstance(target, Tensor) else _to_array(target, logits.device, None)
    if t.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: targets must be integer class ids, got {t.dtype}")
    if logits.ndim == 1:
        logits, t = logits.reshape(1, -1), t.reshape(1)
        out = F.CrossEntropy.apply(logits, targets=t, ignore_index=ignore_index, reduction=reduction)
        return out.reshape(()) if reduction == "none" else out
    if logits.ndim > 2:  # (N, C, d1, ...) -> (N*d1*..., C)
        extra = logits.shape[2:]
        moved = logits.permute(0, *range(2, logits.ndim), 1).reshape(-1, logits.shape[1])
        out = F.CrossEntropy.apply(moved, targets=t.reshape(-1), ignore_index=ignore_index, reduction=reduction)
        return out.reshape(logits.shape[0], *extra) if reduction == "none" else out
    if t.shape != (logits.shape[0],):
        raise ValueError(f"cross_entropy: logits of shape {logits.shape} need targets of shape "
                         f"({logits.shape[0]},), got {tuple(t.shape)}")
    return F.CrossEntropy.apply(logits, targets=t, ignore_index=ignore_index, reduction=reduction)


def nll_loss(log_probs: Tensor, target: Any, ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of (N, C) log-probabilities."""
    t = target.data if isinstance(target, Tensor) else _to_array(target, log_probs.device, None)
    valid = t != ignore_index
    picked = -log_probs.gather(1, Tensor((t * valid).reshape(-1, 1), device=log_probs.device, _copy=False))
    picked = picked.reshape(-1) * Tensor(valid.astype(log_probs.dtype), device=log_probs.device, _copy=False)
    if reduction == "none":
        return picked
    if reduction == "sum":
        return picked.sum()
    return picked.sum() / float(valid.sum())


def mse_loss(x: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Mean (or sum) of squared differences."""
    d = x - target
    sq = d * d
    return sq.mean() if reduction == "mean" else (sq.sum() if reduction == "sum" else sq)


def layer_norm(x: Tensor, normalized_shape: Sequence[int] | int, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalise over the trailing normalized_shape dims, then scale and shift."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(x.shape[-len(shape):]) != shape:
        raise ValueError(f"layer_norm: input of shape {x.shape} does not end in normalized_shape {shape}")
    from minigrad.creation import ones, zeros
    w = weight if weight is not None else ones(*shape, dtype=x.dtype, device=x.device)
    b = bias if bias is not None else zeros(*shape, dtype=x.dtype, device=x.device)
    if len(shape) == 1:
        return F.LayerNorm.apply(x, w, b, eps=eps)
    lead = x.shape[:-len(shape)]
    y = F.LayerNorm.apply(x.reshape(*lead, -1), w.reshape(-1), b.reshape(-1), eps=eps)
    return y.reshape(*lead, *shape)


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p) (only when training)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    return F.Dropout.apply(x, p=p)


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Any = None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: float | None = None) -> Tensor:
    """softmax(q k^T * scale + mask) v on (..., T, D) inputs, as torch's F.scaled_dot_product_attention.

    attn_mask: bool (True = may attend) or float (added to the scores). One difference from torch:
    with is_causal and fewer queries than keys, the last query lines up with the last key (query i
    sees keys up to i + Tk - Tq), which is what a key/value cache needs; torch aligns at the top left.
    """
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"scaled_dot_product_attention: incompatible shapes q {q.shape}, k {k.shape}, v {v.shape}")
    mask = None
    if attn_mask is not None:
        mask = attn_mask.data if isinstance(attn_mask, Tensor) else _to_array(attn_mask, q.device, None)
    return A.ScaledDotProductAttention.apply(q, k, v, is_causal=is_causal, attn_mask=mask, dropout_p=dropout_p,
                                             scale=scale)


def packed_self_attention(qkv: Tensor, n_heads: int, is_causal: bool = True, dropout_p: float = 0.0) -> Tensor:
    """Multi-head self-attention from packed (B, T, 3C) q|k|v to (B, T, C) (heads concatenated)."""
    if qkv.ndim != 3 or qkv.shape[-1] % (3 * n_heads):
        raise ValueError(f"packed_self_attention: qkv of shape {qkv.shape} is not (B, T, 3*C) with C divisible "
                         f"by n_heads={n_heads}")
    return A.PackedSelfAttention.apply(qkv, n_heads=n_heads, is_causal=is_causal, dropout_p=dropout_p)
