"""tinygpt: a small decoder-only transformer trained with minigrad and our BPE."""
from tinygpt.checkpoint import load  # noqa: F401
from tinygpt.config import PRESETS, GPTConfig, preset  # noqa: F401
from tinygpt.model import TinyGPT  # noqa: F401


def __getattr__(name: str):  # tinygpt.generate_text, imported on first use (python -m tinygpt.generate
    if name == "generate_text":  # warns when the package has imported that module already)
        from tinygpt.generate import generate_text
        return generate_text
    raise AttributeError(f"module 'tinygpt' has no attribute {name!r}")
