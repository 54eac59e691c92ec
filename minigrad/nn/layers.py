"""Containers and layers with torch.nn's names, arguments, parameter names and default initialisations."""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Iterable, Iterator, Sequence

from minigrad import backend
from minigrad.creation import where
from minigrad.nn import functional as F
from minigrad.nn import init
from minigrad.nn.internal import as_array_on, format_repr, indent
from minigrad.nn.module import Module, Parameter
from minigrad.tensor import Tensor, as_dtype, get_default_dtype


def _check_index(idx: int, n: int, what: str) -> int:
    if not -n <= idx < n:
        raise IndexError(f"{what}: index {idx} is out of range for length {n}")
    return idx % n


class Sequential(Module):
    """Modules applied one after another; children are named "0", "1", ... (or by an OrderedDict)."""

    def __init__(self, *modules: Any) -> None:
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def forward(self, x: Any) -> Any:
        for m in self._modules.values():
            x = m(x)
        return x

    def __getitem__(self, idx: Any) -> Any:
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return Sequential(OrderedDict(items[idx]))
        return items[_check_index(idx, len(items), "Sequential")][1]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module) -> "Sequential":
        """Add a module at the end."""
        self.add_module(str(len(self)), module)
        return self


class ModuleList(Module):
    """A list of modules, registered as "0", "1", ... so their parameters are found."""

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __getitem__(self, idx: Any) -> Any:
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            return ModuleList(mods[idx])
        return mods[_check_index(idx, len(mods), "ModuleList")]

    def __setitem__(self, idx: int, module: Module) -> None:
        self.add_module(str(_check_index(idx, len(self), "ModuleList")), module)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __iadd__(self, modules: Iterable[Module]) -> "ModuleList":
        return self.extend(modules)

    def append(self, module: Module) -> "ModuleList":
        """Add a module at the end."""
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> "ModuleList":
        """Add modules at the end."""
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        """Insert a module before index (the later ones are renumbered)."""
        mods = list(self._modules.values())
        mods.insert(index, module)
        self._modules.clear()
        self.extend(mods)

    def __repr__(self) -> str:
        # like torch: runs of identical children print once, as "(0-5): 6 x Block(...)"
        reprs = [repr(m) for m in self._modules.values()]
        lines, i = [], 0
        while i < len(reprs):
            j = i
            while j + 1 < len(reprs) and reprs[j + 1] == reprs[i]:
                j += 1
            head = f"({i}): " if i == j else f"({i}-{j}): {j - i + 1} x "
            lines.append(head + indent(reprs[i]))
            i = j + 1
        return format_repr(type(self).__name__, [], lines)


class ModuleDict(Module):
    """A dict of named modules, registered under their keys."""

    def __init__(self, modules: dict | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        del self._modules[key]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __contains__(self, key: str) -> bool:
        return key in self._modules

    def keys(self) -> Iterable[str]:
        return self._modules.keys()

    def values(self) -> Iterable[Module]:
        return self._modules.values()

    def items(self) -> Iterable[tuple[str, Module]]:
        return self._modules.items()

    def update(self, modules: Any) -> None:
        """Add (name, module) pairs from a dict or an iterable of pairs."""
        for name, m in (modules.items() if hasattr(modules, "items") else modules):
            self.add_module(name, m)


def _empty_param(shape: tuple, device: Any, dtype: Any) -> Parameter:
    """An uninitialised Parameter on device (default cpu) with dtype (default the default float dtype)."""
    dev = backend.device(device)
    dt = get_default_dtype() if dtype is None else as_dtype(dtype)
    return Parameter(dev.xp.empty(shape, dtype=dt))


class Linear(Module):
    """y = x W^T + b with weight (out_features, in_features) and bias (out_features,)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = _empty_param((out_features, in_features), device, dtype)
        if bias:
            self.bias = _empty_param((out_features,), device, dtype)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: kaiming_uniform_(a=sqrt(5)) weight, U(+-1/sqrt(in_features)) bias."""
        init.linear_default_(self.weight, self.bias)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A lookup table: row i of weight (num_embeddings, embedding_dim) for id i."""

    def __init__(self, num_embeddings: int, embedding_dim: int, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = _empty_param((num_embeddings, embedding_dim), device, dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: N(0, 1)."""
        init.embedding_default_(self.weight)

    def forward(self, ids: Any) -> Tensor:
        return F.embedding(ids, self.weight)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


class LayerNorm(Module):
    """Normalise over the trailing normalized_shape dims, then scale by weight (ones) and shift by bias (zeros)."""

    def __init__(self, normalized_shape: int | Sequence[int], eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.normalized_shape, self.eps, self.elementwise_affine = shape, eps, elementwise_affine
        self._bias_arg = bias  # for the repr, as torch prints the argument
        if elementwise_affine:
            self.weight = _empty_param(shape, device, dtype)
            if bias:
                self.bias = _empty_param(shape, device, dtype)
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """weight = 1, bias = 0."""
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self._bias_arg}")


class Dropout(Module):
    """Zero elements with probability p while training (scaling the rest by 1/(1-p)); identity in eval()."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace=False"


class GELU(Module):
    """GELU, exact (erf) or with approximate='tanh'."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class ReLU(Module):
    """max(x, 0)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.relu()


class Tanh(Module):
    """Hyperbolic tangent."""

    def forward(self, x: Tensor) -> Tensor:
        return x.tanh()


class Sigmoid(Module):
    """1 / (1 + exp(-x))."""

    def forward(self, x: Tensor) -> Tensor:
        return x.sigmoid()


class Identity(Module):
    """Returns its input."""

    def forward(self, x: Any) -> Any:
        return x


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
        self.in_proj_weight = _empty_param((3 * embed_dim, embed_dim), device, dtype)
        if bias:
            self.in_proj_bias = _empty_param((3 * embed_dim,), device, dtype)
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
            y = F.packed_self_attention(F.linear(query, w, bias), h, is_causal=causal, dropout_p=dropout_p)
            return self._finish(self.out_proj(y), None, unbatched)
        if self_attention:
            q, k, v = F.linear(query, w, bias).split(e, dim=-1)
        else:
            q = F.linear(query, w[:e], None if bias is None else bias[:e])
            if same_kv:
                k, v = F.linear(key, w[e:], None if bias is None else bias[e:]).split(e, dim=-1)
            else:
                k = F.linear(key, w[e:2 * e], None if bias is None else bias[e:2 * e])
                v = F.linear(value, w[2 * e:], None if bias is None else bias[2 * e:])
        q, k, v = (x.reshape(b, x.shape[1], h, d).transpose(1, 2) for x in (q, k, v))  # (B, H, T, D)
        weights = None
        if need_weights:
            y, weights = self._explicit_attention(q, k, v, mask, causal, dropout_p, average_attn_weights)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal)
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
        attn = F.dropout(scores.softmax(-1), dropout_p, dropout_p > 0.0)
        return attn @ v, (attn.mean(1) if average else attn)
