"""TinyGPT: the tutorial's decoder-only transformer, written with minigrad.nn.

Parameter names and shapes are the tutorial's PyTorch ones (tok_embed.weight, pos_embed,
blocks.N.attn.in_proj_weight, blocks.N.ff.0.weight, ...), so a state_dict moves between the
two unchanged. Attention uses nn.MultiheadAttention's parameters through one packed op
(minigrad.nn.functional.packed_self_attention); generation adds a key/value cache.
"""
from __future__ import annotations

import math
from typing import Any

import minigrad as mg
from minigrad import nn
from minigrad.nn import functional as F
from tinygpt.config import GPTConfig


class Block(nn.Module):
    """Causal self-attention and an MLP, each with a residual connection and a LayerNorm."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.attn = nn.MultiheadAttention(cfg.n_embd, cfg.n_heads, dropout=cfg.dropout, bias=cfg.bias,
                                          batch_first=True)
        self.ln1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.ff = nn.Sequential(nn.Linear(cfg.n_embd, cfg.ffn_mult * cfg.n_embd, bias=cfg.bias),
                                nn.GELU(approximate=cfg.gelu),
                                nn.Linear(cfg.ffn_mult * cfg.n_embd, cfg.n_embd, bias=cfg.bias))
        self.ln2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def self_attention(self, x: mg.Tensor, cache: dict | None = None) -> mg.Tensor:
        """Causal multi-head attention with the MHA module's weights; `cache` holds past keys/values."""
        a = self.attn
        qkv = F.linear(x, a.in_proj_weight, a.in_proj_bias)  # (B, T, 3C)
        if cache is None:
            y = F.packed_self_attention(qkv, a.num_heads, is_causal=True,
                                        dropout_p=a.dropout if self.training else 0.0)
        elif not mg.is_grad_enabled() and "k" not in cache:
            y = self._cached_attention(qkv, cache)
        else:
            b, t, c3 = qkv.shape
            c, h = c3 // 3, a.num_heads
            q, k, v = (part.reshape(b, t, h, c // h).transpose(1, 2) for part in qkv.split(c, dim=-1))
            if "k" in cache:
                k, v = mg.cat([cache["k"], k], dim=2), mg.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
            # the new queries are the last t of the cached positions: the causal mask aligns at the bottom right
            y = F.cached_causal_attention(q, k, v).transpose(1, 2).reshape(b, t, c)
        return a.out_proj(y)

    def _cached_attention(self, qkv: mg.Tensor, cache: dict) -> mg.Tensor:
        """Decoding without a graph: new keys/values are written into one preallocated (2, B, H, context, D)
        array (no concatenation per token), and attention reads views of it."""
        b, t, c3 = qkv.shape
        h = self.attn.num_heads
        d = c3 // 3 // h
        xp, dev = qkv.device.xp, qkv.device
        heads = qkv.data.reshape(b, t, 3, h, d).transpose(2, 0, 3, 1, 4)  # (3, B, H, T, D) view
        kv, n = cache.get("kv"), cache.get("len", 0)
        if kv is None or kv.shape[1] != b:
            kv = cache["kv"] = xp.empty((2, b, h, self.cfg.block_size, d), dtype=qkv.dtype)
            n = 0
        kv[:, :, :, n:n + t] = heads[1:]
        cache["len"] = n = n + t
        q, k, v = (mg.Tensor(z, device=dev, _copy=False) for z in (heads[0], kv[0, :, :, :n], kv[1, :, :, :n]))
        y = F.cached_causal_attention(q, k, v).data  # (B, H, T, D); query i sees keys up to n - t + i
        return mg.Tensor(y.transpose(0, 2, 1, 3).reshape(b, t, c3 // 3), device=dev, _copy=False)

    def forward(self, x: mg.Tensor, cache: dict | None = None) -> mg.Tensor:
        if self.cfg.norm == "post":  # the tutorial: x = LN(x + f(x))
            x = self.ln1(x + self.drop(self.self_attention(x, cache)))
            return self.ln2(x + self.drop(self.ff(x)))
        x = x + self.drop(self.self_attention(self.ln1(x), cache))  # GPT-2: x = x + f(LN(x))
        return x + self.drop(self.ff(self.ln2(x)))


class TinyGPT(nn.Module):
    """Token + learned position embeddings, n_layers blocks, a final LayerNorm and a linear head."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_embed = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_embed = nn.Parameter(mg.zeros(1, cfg.block_size, cfg.n_embd))  # zeros, as the tutorial
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.head.weight = self.tok_embed.weight
        if cfg.init == "nanogpt":
            self.init_nanogpt()

    def init_nanogpt(self) -> None:
        """nanoGPT's _init_weights: matrices and embeddings N(0, 0.02), residual projections N(0, 0.02/sqrt(2L)),
        biases 0, LayerNorms 1. (PyTorch's default N(0, 1) embedding would start a tied head at a loss near 100.)"""
        residual_std = 0.02 / math.sqrt(2 * self.cfg.n_layers)
        for name, p in self.named_parameters():
            if p.ndim >= 2:
                std = residual_std if name.endswith(("attn.out_proj.weight", "ff.2.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx: Any, targets: Any = None, caches: list | None = None, start_pos: int = 0) -> Any:
        """Logits (B, T, vocab) for token ids (B, T); with targets, (logits, mean cross-entropy loss)."""
        ids = idx.data if isinstance(idx, mg.Tensor) else idx
        b, t = ids.shape
        if start_pos + t > self.cfg.block_size:
            raise ValueError(f"sequence of {start_pos + t} tokens exceeds the model's context of "
                             f"{self.cfg.block_size} (block_size)")
        x = self.tok_embed(ids) + self.pos_embed[:, start_pos:start_pos + t]
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, None if caches is None else caches[i])
        logits = self.head(self.ln_f(x))
        if targets is None:
            return logits
        tg = targets.data if isinstance(targets, mg.Tensor) else targets
        loss = F.cross_entropy(logits.reshape(b * t, -1), tg.reshape(-1))
        return logits, loss

    @classmethod
    def from_pretrained(cls, folder: Any, device: str = "cpu") -> "TinyGPT":
        """A TinyGPT from a local Hugging Face GPT-2 folder: config.json and model.safetensors (or a
        sharded model.safetensors.index.json); a pytorch_model.bin pickle is refused, never loaded.

        Folders written by `python -m tinygpt.export` come back exactly (their config.json keeps the
        TinyGPT config); other GPT-2 folders get bias=True and dropout=resid_pdrop. In eval mode on
        `device`; tinygpt.export.ExportError (a ValueError) names what cannot be loaded.
        """
        from tinygpt.export import load_pretrained
        return load_pretrained(folder, device)

    def new_caches(self) -> list:
        """Empty per-layer key/value caches for incremental decoding."""
        return [{} for _ in self.blocks]

    def param_groups(self, weight_decay: float) -> list:
        """AdamW groups: decay 2-D weights (matmuls, embeddings); not biases, LayerNorms or pos_embed."""
        decay, no_decay, seen = [], [], set()
        for name, p in self.named_parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            (decay if p.ndim == 2 else no_decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
