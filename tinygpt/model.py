"""TinyGPT: the tutorial's decoder-only transformer, written with minigrad.nn.

Parameter names and shapes are the tutorial's PyTorch ones (tok_embed.weight, pos_embed,
blocks.N.attn.in_proj_weight, blocks.N.ff.0.weight, ...), so a state_dict moves between the
two unchanged. CausalSelfAttention reads as nanoGPT's, with nn.MultiheadAttention's parameters;
generation passes a KVCache per layer.
"""
from __future__ import annotations

import math
from typing import Any

import minigrad as mg
from minigrad import nn
from minigrad.nn import functional as F
from tinygpt.config import GPTConfig


class KVCache:
    """The keys and values one attention layer has computed so far, for generation.

    Generating token t+1 needs attention over the keys and values of positions 0..t, and those of
    0..t-1 are exactly what the previous step computed: keep them instead of recomputing the whole
    context every token. Under no_grad (generation) two buffers of the model's whole context,
    (B, nh, block_size, hs), are allocated on first use; each forward copies the new positions'
    keys and values in after the ones held (no concatenation) and attends over views of the
    filled part. With gradients on, the keys and values are concatenated instead.
    `len(cache)` is the number of positions held. Made by TinyGPT.new_caches(), one per layer;
    a cache belongs to one batch of sequences.
    """

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len
        self.k: mg.Tensor | None = None  # (B, nh, max_len, hs): positions 0..len(self)-1 filled
        self.v: mg.Tensor | None = None
        self.length = 0

    def __len__(self) -> int:
        return self.length

    def update(self, k: mg.Tensor, v: mg.Tensor) -> tuple[mg.Tensor, mg.Tensor]:
        """Append this step's keys and values (B, nh, T, hs); return all of them, (B, nh, T_past + T, hs)."""
        B, nh, T, hs = k.shape
        start, end = self.length, self.length + T
        if end > self.max_len:
            raise ValueError(f"KVCache: {end} positions exceed the context of {self.max_len}")
        if mg.is_grad_enabled():  # backward through the cache: concatenate (writes into a buffer that an
            # earlier step's attention saved would make its gradient wrong, and backward refuse)
            if self.k is not None:
                k, v = mg.cat([self.k, k], dim=2), mg.cat([self.v, v], dim=2)
            self.k, self.v, self.length = k, v, end
            return k, v
        if self.k is None:
            self.k = mg.zeros(B, nh, self.max_len, hs, dtype=k.dtype, device=k.device)
            self.v = mg.zeros(B, nh, self.max_len, hs, dtype=v.dtype, device=v.device)
        self.k[:, :, start:end].copy_(k)
        self.v[:, :, start:end].copy_(v)
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention, as nanoGPT's CausalSelfAttention.

    The parameters are torch.nn.MultiheadAttention's (in_proj_weight (3C, C), in_proj_bias (3C,) and
    out_proj), so a state_dict moves to and from the tutorial's PyTorch model unchanged.
    """

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        assert cfg.n_embd % cfg.n_heads == 0, "n_embd must be divisible by n_heads"
        c = cfg.n_embd
        self.n_heads, self.dropout = cfg.n_heads, cfg.dropout
        self.in_proj_weight = nn.Parameter(mg.zeros(3 * c, c))  # q, k, v projections of all heads, stacked
        self.in_proj_bias = nn.Parameter(mg.zeros(3 * c)) if cfg.bias else None
        self.out_proj = nn.Linear(c, c, bias=cfg.bias)
        nn.init.xavier_uniform_(self.in_proj_weight)  # PyTorch's MultiheadAttention init
        if cfg.bias:
            nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: mg.Tensor, cache: KVCache | None = None) -> mg.Tensor:
        B, T, C = x.shape  # batch size, sequence length, embedding size (n_embd)
        nh, hs = self.n_heads, C // self.n_heads  # number of heads, head size
        # queries, keys and values of all heads in one matmul; then each head gets its own hs channels
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # (B, T, 3C) = (B, T, [q|k|v])
        qkv = qkv.reshape(B, T, 3, nh, hs).permute(2, 0, 3, 1, 4)  # (3, B, nh, T, hs)
        q, k, v = qkv[0], qkv[1], qkv[2]  # each (B, nh, T, hs)
        if cache is not None:  # generation: the keys and values of earlier positions come from the cache
            k, v = cache.update(k, v)  # (B, nh, T_past + T, hs)
        # causal attention, softmax(q k^T / sqrt(hs) + mask) v: the T queries are the last T of the keys'
        # positions, and query i sees keys 0..T_past + i (without a cache T_past = 0: the usual causal mask)
        y = F.cached_causal_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C): the heads' outputs side by side
        return self.out_proj(y)  # (B, T, C)


class Block(nn.Module):
    """Causal self-attention and an MLP, each with a residual connection and a LayerNorm."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.attn = CausalSelfAttention(cfg)
        self.ln1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.ff = nn.Sequential(nn.Linear(cfg.n_embd, cfg.ffn_mult * cfg.n_embd, bias=cfg.bias),
                                nn.GELU(approximate=cfg.gelu),
                                nn.Linear(cfg.ffn_mult * cfg.n_embd, cfg.n_embd, bias=cfg.bias))
        self.ln2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: mg.Tensor, cache: KVCache | None = None) -> mg.Tensor:
        if self.cfg.norm == "post":  # the tutorial: x = LN(x + f(x))
            x = self.ln1(x + self.drop(self.attn(x, cache)))
            return self.ln2(x + self.drop(self.ff(x)))
        x = x + self.drop(self.attn(self.ln1(x), cache))  # GPT-2: x = x + f(LN(x))
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

    def new_caches(self) -> list[KVCache]:
        """Empty key/value caches, one per layer, for generating one sequence token by token."""
        return [KVCache(self.cfg.block_size) for _ in self.blocks]

    def param_groups(self, weight_decay: float) -> list:
        """AdamW groups: decay 2-D weights (matmuls, embeddings); not biases, LayerNorms or pos_embed."""
        decay, no_decay, seen = [], [], set()
        for name, p in self.named_parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            (decay if p.ndim == 2 else no_decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
