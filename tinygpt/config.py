"""GPTConfig and the named presets."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class GPTConfig:
    """Shape and options of a TinyGPT."""

    vocab_size: int = 8000
    block_size: int = 128  # context length
    n_embd: int = 128
    n_heads: int = 4
    n_layers: int = 6
    ffn_mult: int = 4  # MLP hidden size = ffn_mult * n_embd
    norm: str = "post"  # "post": the tutorial's x = ln(x + f(x));  "pre": GPT-2's x = x + f(ln(x))
    tie_weights: bool = False  # share the token embedding with the output head
    dropout: float = 0.0
    gelu: str = "none"  # "none" (exact, erf) or "tanh"
    bias: bool = True  # biases in Linear layers and LayerNorms (the head never has one)
    init: str = "torch"  # "torch": PyTorch's default inits (the tutorial); "nanogpt": N(0, 0.02), see model.py

    def __post_init__(self) -> None:
        if self.n_embd % self.n_heads:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_heads ({self.n_heads})")
        if self.norm not in ("post", "pre"):
            raise ValueError(f"norm must be 'post' or 'pre', got {self.norm!r}")
        if self.init not in ("torch", "nanogpt"):
            raise ValueError(f"init must be 'torch' or 'nanogpt', got {self.init!r}")
        if self.gelu not in ("none", "tanh"):
            raise ValueError(f"gelu must be 'none' or 'tanh', got {self.gelu!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GPTConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown GPTConfig fields: {unknown}")
        return cls(**d)


PRESETS: dict[str, GPTConfig] = {
    # the tutorial's TinyGPT: post-norm blocks, exact GELU, untied head without bias
    "tutorial": GPTConfig(),
    # small and fast, for tests
    "nano": GPTConfig(vocab_size=512, block_size=32, n_embd=32, n_heads=2, n_layers=2),
    # nanoGPT's CPU "baby GPT" (config/train_shakespeare_char.py with the README's CPU overrides)
    "shakespeare-char": GPTConfig(vocab_size=65, block_size=64, n_embd=128, n_heads=4, n_layers=4,
                                  norm="pre", tie_weights=True, dropout=0.0, bias=False, init="nanogpt"),
}


def preset(name: str, **overrides: object) -> GPTConfig:
    """A copy of a named preset with fields overridden."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)
