"""Functional forms of the nn ops, with PyTorch's names and argument order."""
from __future__ import annotations

import warnings
from typing import Any, Sequence

from minigrad import amp
from minigrad.arguments import to_array
from minigrad.autograd import is_grad_enabled
from minigrad.dtypes import as_dtype, kind
from minigrad.ops import attention, fused
from minigrad.tensor import Tensor


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x W^T + b with W of shape (out, in), as torch.nn.functional.linear."""
    x, weight, bias = amp.to_low(x, weight, bias)  # under autocast: in float16/bfloat16
    if bias is None:
        return fused.Linear.apply(x, weight)
    return fused.Linear.apply(x, weight, bias)


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
    return fused.Gelu.apply(x, approximate=approximate)


def _softmax_dim(op: str, x: Tensor, dim: Any) -> int:
    """torch's dim rule: None picks the legacy implicit dim (0 for 0-d, 1-d and 3-d inputs, else 1, with
    torch's deprecation warning); an int must be in [-ndim, ndim) (a 0-d input takes 0 or -1)."""
    if dim is None:
        warnings.warn(f"Implicit dimension choice for {op} has been deprecated. Change the call to include dim=X "
                      f"as an argument.", UserWarning, stacklevel=3)
        return 0 if x.ndim in (0, 1, 3) else 1
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise TypeError(f"{op}: dim must be an int, got {type(dim).__name__}")
    n = max(x.ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"{op}: dim out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})")
    return dim % n


def _cast_for(op: str, x: Tensor, dtype: Any) -> Tensor:
    """x cast to dtype before the op (torch's dtype= argument); float dtypes only."""
    if dtype is None:
        return x
    dt = as_dtype(dtype)
    if kind(dt) != "f":
        raise TypeError(f"{op}: dtype must be a floating point dtype, got {dt}")
    return x.to(dt)


def softmax(x: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Tensor:
    """Softmax along dim (max-subtracted); dtype casts the input first, as torch."""
    x = amp.to_float32(_cast_for("softmax", x, dtype))  # under autocast: in float32
    return fused.Softmax.apply(x, axis=_softmax_dim("softmax", x, dim))


def log_softmax(x: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Tensor:
    """log(softmax(x)) along dim, computed as x - logsumexp(x); dtype casts the input first, as torch."""
    x = amp.to_float32(_cast_for("log_softmax", x, dtype))  # under autocast: in float32
    return fused.LogSoftmax.apply(x, axis=_softmax_dim("log_softmax", x, dim))


def embedding(ids: Any, weight: Tensor) -> Tensor:
    """Rows of weight picked by integer ids (any shape); out has shape ids.shape + (dim,)."""
    idx = ids.data if isinstance(ids, Tensor) else to_array(ids, weight.device, None)
    if kind(idx.dtype) not in "iu":
        raise TypeError(f"embedding: ids must be integers, got {idx.dtype}")
    n = weight.shape[0]
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise IndexError(f"embedding: ids must be in [0, {n}), got min {int(idx.min())} max {int(idx.max())}")
    return fused.Embedding.apply(weight, ids=idx)


def _reduction(op: str, size_average: Any, reduce: Any, reduction: str) -> str:
    """reduction, or torch's legacy size_average/reduce pair turned into one."""
    if size_average is not None or reduce is not None:
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = ("mean" if size_average else "sum") if reduce else "none"
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction


def _class_weight(op: str, weight: Any, x: Tensor) -> Any:
    """A (C,) class-weight array in x's dtype (None stays None). Index-target losses take no gradient for it
    (torch raises the same)."""
    if weight is None:
        return None
    if isinstance(weight, Tensor):
        if weight.requires_grad and is_grad_enabled():
            raise RuntimeError(f"{op}: not differentiable with respect to argument 'weight' (torch refuses it too); "
                               f"pass weight.detach()")
        weight = weight.data
    w = to_array(weight, x.device, None)
    c = x.shape[0 if x.ndim == 1 else 1]
    if w.shape != (c,):
        raise ValueError(f"{op}: weight of shape {tuple(w.shape)} does not match {c} classes (input of shape "
                         f"{tuple(x.shape)})")
    return w.astype(x.dtype, copy=False)


def _index_targets(op: str, x: Tensor, t: Any) -> Any:
    """Check integer targets against an (N, C, d...) or (C,) input: shape (N, d...) or ()."""
    if x.ndim == 0:
        raise ValueError(f"{op}: input must have a class dimension, got a 0-d input")
    if kind(t.dtype) not in "iu":
        raise TypeError(f"{op}: targets must be integer class ids, got {t.dtype}")
    want = () if x.ndim == 1 else (x.shape[0], *x.shape[2:])
    if tuple(t.shape) != want:
        raise ValueError(f"{op}: input of shape {tuple(x.shape)} needs targets of shape {want}, got {tuple(t.shape)}")
    return t


def cross_entropy(input: Tensor, target: Any, weight: Any = None, size_average: Any = None, ignore_index: int = -100,
                  reduce: Any = None, reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Softmax cross-entropy, as torch.nn.functional.cross_entropy.

    input: (N, C), (C,) or (N, C, d1, ...) logits. target: integer class ids of shape (N,), () or (N, d1, ...)
    (ignore_index skips one id), or class probabilities of the input's shape (a float target). weight: (C,)
    class weights; label_smoothing eps mixes the target with the uniform distribution: torch's formula,
    loss = (1 - eps) * nll + eps / C * sum_c w_c (-log p_c), normalised for 'mean' by the summed weights of the
    kept targets (by the number of positions for probability targets).

    (N, C) logits with integer targets, no weight and no smoothing take the fused CrossEntropy (the training
    loss: one pass, no log-probabilities stored); everything else is log_softmax followed by the general NLLLoss
    (integer targets) or by -sum_c w_c q_c log p_c over whole arrays (probability targets).
    """
    reduction = _reduction("cross_entropy", size_average, reduce, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    x = amp.to_float32(input)  # under autocast: the loss in float32
    if x.ndim == 0:
        raise ValueError("cross_entropy: input must have a class dimension, got a 0-d input")
    t = target.data if isinstance(target, Tensor) else to_array(target, x.device, None)
    ax = 0 if x.ndim == 1 else 1
    if kind(t.dtype) == "f":  # class probabilities
        if tuple(t.shape) != tuple(x.shape):
            raise ValueError(f"cross_entropy: probability targets must have the input's shape {tuple(x.shape)}, "
                             f"got {tuple(t.shape)}")
        return _soft_cross_entropy(x, target, weight, reduction, label_smoothing, ax)
    t = _index_targets("cross_entropy", x, t)
    if x.ndim == 2 and weight is None and label_smoothing == 0.0:
        return fused.CrossEntropy.apply(x, targets=t, ignore_index=ignore_index, reduction=reduction)
    w = _class_weight("cross_entropy", weight, x)
    return fused.NLLLoss.apply(fused.LogSoftmax.apply(x, axis=ax), targets=t, weight=w, ignore_index=ignore_index,
                           reduction=reduction, label_smoothing=float(label_smoothing), op="cross_entropy")


def _soft_cross_entropy(x: Tensor, target: Any, weight: Any, reduction: str, eps: float, ax: int) -> Tensor:
    """Cross-entropy against class probabilities q (torch's formula, whole arrays):
    loss_r = -sum_c w_c q'_rc log_softmax(x)_rc,  q' = (1 - eps) q + eps / C;  'mean' divides by the number of
    positions r (numel / C). Built from differentiable ops, so q and w get gradients when they require them:
    dL/dx_r = G_r (p_r sum_c w_c q'_rc - w q'_r),  dL/dq_rc = -G_r (1 - eps) w_c log p_rc."""
    c = x.shape[ax]
    q = target if isinstance(target, Tensor) else Tensor(to_array(target, x.device, None), device=x.device, _copy=False)
    if eps > 0.0:
        q = q * (1.0 - eps) + eps / c
    prod = fused.LogSoftmax.apply(x, axis=ax) * q
    if weight is not None:
        w = weight if isinstance(weight, Tensor) else Tensor(to_array(weight, x.device, None), device=x.device,
                                                             _copy=False)
        if tuple(w.shape) != (c,):
            raise ValueError(f"cross_entropy: weight of shape {tuple(w.shape)} does not match {c} classes")
        prod = prod * w.reshape(c, *([1] * (x.ndim - 1 - ax)))
    loss = -prod.sum(ax)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    positions = x.numel() // c if c else 0
    return loss.sum() * (1.0 / positions if positions else float("nan"))


def nll_loss(input: Tensor, target: Any, weight: Any = None, size_average: Any = None, ignore_index: int = -100,
             reduce: Any = None, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of log-probabilities, as torch.nn.functional.nll_loss: input (N, C), (C,) or
    (N, C, d1, ...), integer target (N,), () or (N, d1, ...); weight (C,) class weights ('mean' divides by the
    summed weights of the kept targets), ignore_index skips one id."""
    reduction = _reduction("nll_loss", size_average, reduce, reduction)
    input = amp.to_float32(input)  # under autocast: the loss in float32
    t = target.data if isinstance(target, Tensor) else to_array(target, input.device, None)
    t = _index_targets("nll_loss", input, t)
    w = _class_weight("nll_loss", weight, input)
    return fused.NLLLoss.apply(input, targets=t, weight=w, ignore_index=ignore_index, reduction=reduction)


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
    x = amp.to_float32(x)  # under autocast: statistics in float32
    from minigrad.creation import ones, zeros
    w = weight if weight is not None else ones(*shape, dtype=x.dtype, device=x.device)
    b = bias if bias is not None else zeros(*shape, dtype=x.dtype, device=x.device)
    if len(shape) == 1:
        return fused.LayerNorm.apply(x, w, b, eps=eps)
    lead = x.shape[:-len(shape)]
    y = fused.LayerNorm.apply(x.reshape(*lead, -1), w.reshape(-1), b.reshape(-1), eps=eps)
    return y.reshape(*lead, *shape)


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p) (only when training)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    return fused.Dropout.apply(x, p=p)


def _attention_inputs(op: str, q: Tensor, k: Tensor, v: Tensor, enable_gqa: bool) -> tuple:
    """Check shapes; with enable_gqa, repeat each key/value head for its group of query heads (torch's
    k.repeat_interleave(Hq // Hkv, dim=-3))."""
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise ValueError(f"{op}: q, k and v need at least 2 dims (..., T, D), got {q.shape}, {k.shape}, {v.shape}")
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"{op}: incompatible shapes q {q.shape}, k {k.shape}, v {v.shape}")
    if enable_gqa and q.ndim >= 3 and k.ndim >= 3 and q.shape[-3] != k.shape[-3]:
        hq, hk, hv = q.shape[-3], k.shape[-3], v.shape[-3]
        if hk != hv or hq % hk:
            raise ValueError(f"{op}: enable_gqa needs the query heads ({hq}) to be a multiple of the key/value "
                             f"heads ({hk}, {hv})")
        r = hq // hk
        k, v = (x.unsqueeze(-3).expand(*x.shape[:-2], r, *x.shape[-2:]).reshape(*x.shape[:-3], hq, *x.shape[-2:])
                for x in (k, v))
    return k, v


def _attention_mask(op: str, attn_mask: Any, q: Tensor) -> tuple:
    """(mask Tensor input, mask array attribute): a float mask that requires grad is an input of the op, so it
    gets dL/dmask = dL/dscores (summed over broadcast dims by the engine); anything else is a constant."""
    if attn_mask is None:
        return None, None
    if isinstance(attn_mask, Tensor):
        if attn_mask.requires_grad and is_grad_enabled() and kind(attn_mask.dtype) == "f":
            return attn_mask, None
        return None, attn_mask.data
    m = to_array(attn_mask, q.device, None)
    if m.dtype != bool and kind(m.dtype) != "f":
        raise TypeError(f"{op}: attn_mask must be bool or float, got {m.dtype}")
    return None, m


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Any = None,
                                 dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False) -> Tensor:
    """softmax(q k^T * scale + mask) v on (..., T, D) inputs, as torch's fused.scaled_dot_product_attention.

    attn_mask: bool (True = may attend) or float (added to the scores; it gets a gradient when it requires
    one), broadcast over the leading dims. is_causal: query i sees keys 0..i (aligned at the top left, as torch,
    also when Tq != Tk); a key/value cache, whose queries are the sequence's last positions, takes
    cached_causal_attention instead. dropout_p drops attention weights (always, as torch: pass 0.0 in eval).
    scale defaults to 1/sqrt(D). enable_gqa: Hq query heads share each of Hkv = Hq / g key/value heads.
    """
    op = "scaled_dot_product_attention"
    if is_causal and attn_mask is not None:
        raise ValueError(f"{op}: pass either attn_mask or is_causal=True, not both (as torch)")
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"{op}: dropout_p must be in [0, 1], got {dropout_p}")
    query, key, value = amp.to_low(query, key, value)  # under autocast: in float16/bfloat16
    key, value = _attention_inputs(op, query, key, value, enable_gqa)
    grad_mask, mask = _attention_mask(op, attn_mask, query)
    inputs = (query, key, value) if grad_mask is None else (query, key, value, grad_mask)
    return attention.ScaledDotProductAttention.apply(*inputs, is_causal=is_causal, attn_mask=mask, dropout_p=dropout_p,
                                             scale=scale)


def cached_causal_attention(query: Tensor, key: Tensor, value: Tensor, dropout_p: float = 0.0,
                            scale: float | None = None) -> Tensor:
    """Causal attention for a key/value cache: the Tq queries are the last Tq of the Tk >= Tq positions whose
    keys and values are given, so query i (position Tk - Tq + i) sees keys 0..Tk - Tq + i (the causal mask
    aligned at the bottom right). With Tq == Tk it is scaled_dot_product_attention(is_causal=True)."""
    op = "cached_causal_attention"
    query, key, value = amp.to_low(query, key, value)  # under autocast: in float16/bfloat16
    key, value = _attention_inputs(op, query, key, value, False)
    tq, tk = query.shape[-2], key.shape[-2]
    if tq > tk:
        raise ValueError(f"{op}: {tq} queries but only {tk} keys: the queries must be the last of the keys' positions")
    return attention.ScaledDotProductAttention.apply(query, key, value, is_causal=True, dropout_p=dropout_p, scale=scale,
                                             causal_offset=tk - tq)


def packed_self_attention(qkv: Tensor, n_heads: int, is_causal: bool = True, dropout_p: float = 0.0) -> Tensor:
    """Multi-head self-attention from packed (B, T, 3C) q|k|v to (B, T, C) (heads concatenated)."""
    if qkv.ndim != 3 or qkv.shape[-1] % (3 * n_heads):
        raise ValueError(f"packed_self_attention: qkv of shape {qkv.shape} is not (B, T, 3*C) with C divisible "
                         f"by n_heads={n_heads}")
    qkv, = amp.to_low(qkv)  # under autocast: in float16/bfloat16
    return attention.PackedSelfAttention.apply(qkv, n_heads=n_heads, is_causal=is_causal, dropout_p=dropout_p)
