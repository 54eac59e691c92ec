"""torch.nn.MultiheadAttention: packed in_proj_weight (3E, E), in_proj_bias (3E,) and out_proj."""
from __future__ import annotations

import math
from typing import Any

from minigrad.creation import where
from minigrad.nn import functional, init
from minigrad.nn.internal import as_array_on
from minigrad.nn.layers import Linear, empty_parameter
from minigrad.nn.module import Module
from minigrad.tensor import Tensor


def _merge_masks(xp: Any, a: Any, b: Any, dtype: Any) -> Any:
    """Combine two SDPA-convention masks (bool: True = may attend; float: additive)."""
    if a is None or b is None:
        return a if b is None else b
    if a.dtype == bool and b.dtype == bool:
        return a & b
    as_float = [xp.where(m, 0.0, -xp.inf).astype(dtype) if m.dtype == bool else m for m in (a, b)]
    return as_float[0] + as_float[1]


class MultiheadAttention(Module):
    """torch.nn.MultiheadAttention: packed in_proj_weight (3E, E) and in_proj_bias (3E,), and out_proj."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = True, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        if kdim not in (None, embed_dim) or vdim not in (None, embed_dim) or add_bias_kv or add_zero_attn:
            raise NotImplementedError("MultiheadAttention: kdim/vdim != embed_dim, add_bias_kv and add_zero_attn "
                                      "are not supported")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.dropout, self.batch_first = dropout, batch_first
        self.in_proj_weight = empty_parameter((3 * embed_dim, embed_dim), device, dtype)
        if bias:
            self.in_proj_bias = empty_parameter((3 * embed_dim,), device, dtype)
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, device=device, dtype=dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's MHA init: xavier_uniform_ in_proj_weight, zero biases; out_proj.weight keeps Linear's init."""
        init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Any = None,
                need_weights: bool = False, attn_mask: Any = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[Tensor, Tensor | None]:
        """(attention output, None) — or the attention weights too when need_weights=True.

        attn_mask: bool (True = NOT allowed) or float additive, of shape (T, S) or (B*H, T, S);
        key_padding_mask: (B, S), True = ignore that key. is_causal=True means a causal mask
        (as in torch, a given attn_mask is then taken to be that causal mask).
        """
        self_attention = query is key and key is value
        same_kv = key is value
        unbatched = query.ndim == 2
        if unbatched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        b, t, e = query.shape
        s = key.shape[1]
        if e != self.embed_dim:
            raise ValueError(f"MultiheadAttention: expected embed_dim {self.embed_dim}, got query of shape "
                             f"{tuple(query.shape)}")
        mask, causal = self._sdpa_mask(query, b, t, s, attn_mask, key_padding_mask, is_causal)
        dropout_p = self.dropout if self.training else 0.0
        h, d = self.num_heads, self.head_dim
        w, bias = self.in_proj_weight, self.in_proj_bias
        if self_attention and mask is None and not need_weights:
            # one GEMM for q|k|v and one fused op for the heads (no split/transpose copies)
            y = functional.packed_self_attention(functional.linear(query, w, bias), h, is_causal=causal, dropout_p=dropout_p)
            return self._finish(self.out_proj(y), None, unbatched)
        if self_attention:
            q, k, v = functional.linear(query, w, bias).split(e, dim=-1)
        else:
            q = functional.linear(query, w[:e], None if bias is None else bias[:e])
            if same_kv:
                k, v = functional.linear(key, w[e:], None if bias is None else bias[e:]).split(e, dim=-1)
            else:
                k = functional.linear(key, w[e:2 * e], None if bias is None else bias[e:2 * e])
                v = functional.linear(value, w[2 * e:], None if bias is None else bias[2 * e:])
        q, k, v = (x.reshape(b, x.shape[1], h, d).transpose(1, 2) for x in (q, k, v))  # (B, H, T, D)
        weights = None
        if need_weights:
            y, weights = self._explicit_attention(q, k, v, mask, causal, dropout_p, average_attn_weights)
        else:
            y = functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal)
        out = self.out_proj(y.transpose(1, 2).reshape(b, t, e))
        return self._finish(out, weights, unbatched)

    def _finish(self, out: Tensor, weights: Tensor | None, unbatched: bool) -> tuple[Tensor, Tensor | None]:
        if unbatched:
            return out.squeeze(0), None if weights is None else weights.squeeze(0)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights

    def _sdpa_mask(self, query: Tensor, b: int, t: int, s: int, attn_mask: Any, key_padding_mask: Any,
                   is_causal: bool) -> tuple[Any, bool]:
        """Translate torch MHA masks (True = NOT allowed) to the SDPA convention (True = may attend)."""
        dev, xp, dtype = query.device, query.device.xp, query.dtype
        if is_causal and key_padding_mask is None:
            return None, True  # torch drops attn_mask here: is_causal says it is the causal mask
        mask = None
        if is_causal:  # the causal mask as a bool mask, aligned at the top left as SDPA's is_causal (and torch)
            mask = xp.arange(s)[None, :] <= xp.arange(t)[:, None]
        elif attn_mask is not None:
            m = as_array_on(attn_mask, dev)
            if m.ndim == 3:  # (B*H, T, S), batch-major as in torch
                m = m.reshape(b, self.num_heads, t, s)
            elif m.shape != (t, s):
                raise ValueError(f"MultiheadAttention: attn_mask of shape {tuple(m.shape)} is neither ({t}, {s}) "
                                 f"nor ({b * self.num_heads}, {t}, {s})")
            mask = ~m if m.dtype == bool else m.astype(dtype, copy=False)
        if key_padding_mask is not None:
            kpm = as_array_on(key_padding_mask, dev)
            if kpm.shape != (b, s):
                raise ValueError(f"MultiheadAttention: key_padding_mask of shape {tuple(kpm.shape)}, "
                                 f"expected ({b}, {s})")
            kpm = kpm[:, None, None, :]
            mask = _merge_masks(xp, mask, ~kpm if kpm.dtype == bool else kpm.astype(dtype, copy=False), dtype)
        return mask, False

    def _explicit_attention(self, q: Tensor, k: Tensor, v: Tensor, mask: Any, causal: bool, dropout_p: float,
                            average: bool) -> tuple[Tensor, Tensor]:
        """Attention from primitive ops, for need_weights=True (weights after dropout, as torch returns them)."""
        xp = q.device.xp
        t, s = q.shape[-2], k.shape[-2]
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
        if causal:  # top left, as scaled_dot_product_attention(is_causal=True)
            mask = xp.arange(s)[None, :] <= xp.arange(t)[:, None]
        if mask is not None:
            if mask.dtype == bool:
                scores = where(Tensor(mask, device=q.device, _copy=False), scores, -math.inf)
            else:
                scores = scores + Tensor(mask, device=q.device, _copy=False)
        attn = functional.dropout(scores.softmax(-1), dropout_p, dropout_p > 0.0)
        return attn @ v, (attn.mean(1) if average else attn)
