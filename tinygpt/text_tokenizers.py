"""The three tokenizers tinygpt trains with: our BPE, characters (nanoGPT's setup) and raw bytes."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np


def atomic_write_text(path: "str | Path", text: str) -> None:
    """Write text to path via a temp file in the same folder and a rename (never a half-written file)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())  # the bytes reach the disk before the rename makes them visible
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)  # mkstemp's 0600 is too private
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class CharTokenizer:
    """One id per distinct character of the training text (sorted), as nanoGPT's shakespeare_char."""

    kind = "char"

    def __init__(self, chars: Iterable[str]) -> None:
        self.chars = sorted(set(chars))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.eos_id = None
        self.bos_id = None

    @classmethod
    def train(cls, text: str) -> "CharTokenizer":
        return cls(set(text))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} is not in the char tokenizer's vocabulary") from None

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def save(self, path: "str | Path") -> None:
        atomic_write_text(path, json.dumps({"tinygpt_tokenizer": "char", "chars": self.chars}, ensure_ascii=False))


class ByteTokenizer:
    """The 256 byte values; lossless on any text with no training."""

    kind = "byte"
    vocab_size = 256
    eos_id = None
    bos_id = None

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def save(self, path: "str | Path") -> None:
        atomic_write_text(path, json.dumps({"tinygpt_tokenizer": "byte"}))


def load_tokenizer(path: "str | Path") -> Any:
    """Load any of the three from a tokenizer.json (char/byte are ours; anything else is BPE).

    A file that cannot be used raises ValueError with one line naming it.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    try:
        head = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    kind = head.get("tinygpt_tokenizer") if isinstance(head, dict) else None
    if kind == "char":
        chars = head.get("chars")
        if not (isinstance(chars, list) and chars and all(isinstance(c, str) and len(c) == 1 for c in chars)):
            raise ValueError(f"{path}: a char tokenizer needs \"chars\", a list of single characters")
        return CharTokenizer(chars)
    if kind == "byte":
        return ByteTokenizer()
    if kind is not None:
        raise ValueError(f"{path}: unknown tinygpt_tokenizer {kind!r} (char or byte)")
    import bpe
    try:
        return bpe.Tokenizer.load(str(path))
    except (KeyError, TypeError, AttributeError, IndexError) as e:  # a shape bpe's checks did not foresee
        raise ValueError(f"{path}: not a usable byte-level BPE tokenizer.json ({type(e).__name__}: {e})") from None


def encode_to_array(tokenizer: Any, text: str) -> np.ndarray:
    """Encode a whole corpus into a uint16 array (ids must fit: vocab <= 65536)."""
    if tokenizer.vocab_size > 65536:
        raise ValueError(f"vocab_size {tokenizer.vocab_size} does not fit the uint16 token cache")
    ids = tokenizer.encode(text)
    return np.asarray(ids, dtype=np.uint16)
