"""tinygpt: a small decoder-only transformer trained with minigrad and our BPE."""
from tinygpt.checkpoint import load  # noqa: F401
from tinygpt.config import PRESETS, GPTConfig, preset  # noqa: F401
from tinygpt.model import TinyGPT  # noqa: F401
