"""Hugging Face tokenizer.json for byte-level BPE, as plain data: reading, validating and writing the file.

The codec knows the file format and nothing of bpe.tokenizer's Tokenizer, which builds itself
from the plain data here and hands its own back to be written:

    read(path)               the JSON document (FileNotFoundError, or TokenizerFileError naming the file)
    from_document(document)  validated TokenizerData: vocab as bytes, merges as id pairs, added tokens, ...
    to_document(data)        the document Hugging Face writes for the same tokenizer
    write(path, document)    saved atomically (a temporary file in the same folder, then a rename)
"""
from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Union

from bpe.added import AddedToken
from bpe.normalize import UnsupportedComponent, compile_normalizer
from bpe.pretokenize import CHAR_TO_BYTE, GPT2_PATTERN, GPT4_PATTERN, PreTokenizer, bytes_to_token, hf_pattern


class TokenizerFileError(ValueError):
    """A tokenizer.json that cannot be used, with the reason."""


@dataclass
class TokenizerData:
    """What a byte-level BPE tokenizer.json holds, as Python values.

    id_to_bytes[i] is token i's bytes, None for an unused id (a gap); an added token's entry is b""
    when read from a file (the Tokenizer sets it). merges are (left id, right id) in rank order.
    normalizer and pre_tokenizer are the file's nodes as they are; without a pre_tokenizer node,
    `pattern` and `add_prefix_space` say how to split. kept: the parts bpe does not use
    (truncation, padding, post_processor, decoder), written back as they were.
    """

    id_to_bytes: list[bytes | None]
    merges: list[tuple[int, int]]
    added_tokens: list[AddedToken] = field(default_factory=list)
    normalizer: dict | None = None
    pre_tokenizer: dict | None = None
    pattern: str = GPT4_PATTERN
    add_prefix_space: bool = False
    ignore_merges: bool = False
    kept: dict = field(default_factory=dict)


# -- reading -----------------------------------------------------------------------------------

def read(path: Union[str, os.PathLike]) -> Any:
    """The JSON document in a file; FileNotFoundError, or TokenizerFileError naming the file."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "tokenizer file not found", path) from None
    except UnicodeDecodeError as exc:
        raise TokenizerFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
        raise TokenizerFileError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise TokenizerFileError(f"{path}: not valid JSON (nested too deeply)") from None


@contextmanager
def errors_naming(path: Union[str, os.PathLike]) -> Iterator[None]:
    """Turn an error in building from `path`'s document into one TokenizerFileError line naming the file."""
    path = os.fspath(path)
    try:
        yield
    except TokenizerFileError as exc:
        raise TokenizerFileError(f"{path}: {exc}") from None
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError) as exc:
        # a shape the checks in from_document did not foresee: still one line naming the file
        raise TokenizerFileError(f"{path}: invalid tokenizer.json ({type(exc).__name__}: {exc})") from None


def from_document(document: Any) -> TokenizerData:
    """The plain data of tokenizer.json content (a dict), validating every part bpe uses."""
    if not isinstance(document, dict) or not isinstance(document.get("model"), dict):
        raise TokenizerFileError("not a tokenizer.json: no 'model' object")
    model = document["model"]
    kind = model.get("type", "BPE")
    if kind != "BPE":
        raise TokenizerFileError(f"unsupported model type {kind!r} (only byte-level 'BPE' is supported)")
    for key in ("continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            raise TokenizerFileError(f"unsupported model option {key}={model[key]!r}")
    if model.get("dropout") not in (None, 0, 0.0):
        raise TokenizerFileError(f"unsupported model option dropout={model['dropout']!r}")
    if model.get("byte_fallback"):
        raise TokenizerFileError("unsupported model option byte_fallback=true (not a byte-level BPE)")
    normalizer = document.get("normalizer")
    pre_tokenizer = document.get("pre_tokenizer")
    try:
        compile_normalizer(normalizer)
        PreTokenizer(pre_tokenizer)
    except UnsupportedComponent as exc:
        raise TokenizerFileError(str(exc)) from None
    vocab = model.get("vocab")
    by_id = _check_vocab(vocab)
    added = _read_added_tokens(document.get("added_tokens") or [], vocab, by_id)
    return TokenizerData(
        id_to_bytes=_read_vocab(by_id, added), merges=_read_merges(model.get("merges"), vocab), added_tokens=added,
        normalizer=normalizer, pre_tokenizer=pre_tokenizer, ignore_merges=bool(model.get("ignore_merges", False)),
        kept={k: document[k] for k in ("truncation", "padding", "post_processor", "decoder") if k in document})


# Ids so sparse that a list of them would waste memory: refused (HF would load them).
MAX_ID_SPREAD = 1 << 16


def _check_vocab(vocab: Any) -> dict[int, str]:
    if not isinstance(vocab, dict) or not vocab:
        raise TokenizerFileError("model.vocab must be a non-empty object token -> id")
    by_id: dict[int, str] = {}
    for token, i in vocab.items():
        if not isinstance(i, int) or isinstance(i, bool) or i < 0:
            raise TokenizerFileError(f"token {token!r} has invalid id {i!r}")
        if i in by_id:
            raise TokenizerFileError(f"duplicate id {i} for tokens {by_id[i]!r} and {token!r}")
        by_id[i] = token
    return by_id


def _flag(item: dict, name: str, default: bool, n: int) -> bool:
    value = item.get(name, default)
    if not isinstance(value, bool):
        raise TokenizerFileError(f"added_tokens[{n}]: {name!r} must be true or false, got {value!r}")
    return value


def _read_added_tokens(items: Any, vocab: dict[str, int], by_id: dict[int, str]) -> list[AddedToken]:
    """The added tokens with the ids Hugging Face gives them.

    As in `tokenizers`' loader, the "id" written in the file is not used: a token keeps the id of
    the same content in the model's vocab (or earlier in the list), and any other gets the next id
    after the vocab's entries (len(vocab), len(vocab) + 1, ...).
    """
    if not isinstance(items, list):
        raise TokenizerFileError("added_tokens must be a list")
    by_content: dict[str, int] = {}
    tokens: dict[int, AddedToken] = {}
    next_id = len(vocab)
    for n, item in enumerate(items):
        content, token_id = (item.get("content"), item.get("id")) if isinstance(item, dict) else (None, None)
        if not isinstance(content, str) or not isinstance(token_id, int) or isinstance(token_id, bool) or token_id < 0:
            raise TokenizerFileError(f"added_tokens[{n}] needs an integer 'id' >= 0 and a string 'content'")
        if not content:
            continue  # HF skips an empty added token
        special = _flag(item, "special", True, n)
        flags = {"special": special, "normalized": _flag(item, "normalized", not special, n),
                 "lstrip": _flag(item, "lstrip", False, n), "rstrip": _flag(item, "rstrip", False, n),
                 "single_word": _flag(item, "single_word", False, n)}
        if content in by_content:
            new_id = by_content[content]
        elif content in vocab:
            new_id = vocab[content]
        else:
            new_id = next_id
            next_id += 1
            if new_id in by_id:
                raise TokenizerFileError(
                    f"added token {content!r} gets id {new_id} (Hugging Face numbers added tokens that are not in "
                    f"the vocab from len(vocab) = {len(vocab)} on), but the vocab gives that id to {by_id[new_id]!r}")
        if new_id in tokens and tokens[new_id].content != content:
            raise TokenizerFileError(f"added tokens {tokens[new_id].content!r} and {content!r} both get id {new_id}")
        by_content[content] = new_id
        tokens[new_id] = AddedToken(content, new_id, **flags)
    return list(tokens.values())


def _read_vocab(by_id: dict[int, str], added: list[AddedToken]) -> list[bytes | None]:
    size = max(max(by_id), max((t.id for t in added), default=0)) + 1
    used = len(by_id) + len(added)
    if size > 4 * used + MAX_ID_SPREAD:
        raise TokenizerFileError(f"ids up to {size - 1} for only {used} tokens: too sparse to load")
    id_to_bytes: list[bytes | None] = [None] * size
    added_ids = {t.id for t in added}
    for i, token in by_id.items():
        if i in added_ids:
            id_to_bytes[i] = b""  # the Tokenizer sets an added token's bytes
            continue
        try:
            id_to_bytes[i] = bytes(CHAR_TO_BYTE[c] for c in token)
        except KeyError:
            raise TokenizerFileError(f"token {token!r} (id {i}) is not a byte-level string") from None
    for t in added:
        id_to_bytes[t.id] = b""
    return id_to_bytes


def _read_merges(merges: Any, vocab: dict[str, int]) -> list[tuple[int, int]]:
    if not isinstance(merges, list):
        raise TokenizerFileError("model.merges must be a list")
    out = []
    for rank, merge in enumerate(merges):
        if isinstance(merge, str):  # legacy "a b" form
            parts = merge.split(" ")
        else:
            parts = merge
        if not isinstance(parts, list) or len(parts) != 2 or not all(isinstance(p, str) for p in parts):
            raise TokenizerFileError(f"merge {rank} {merge!r} is not a pair of tokens")
        for p in parts:
            if p not in vocab:
                raise TokenizerFileError(f"merge {rank} {parts!r}: unknown token {p!r}")
        if parts[0] + parts[1] not in vocab:
            raise TokenizerFileError(f"merge {rank} {parts!r}: result {parts[0] + parts[1]!r} is not in the vocab")
        out.append((vocab[parts[0]], vocab[parts[1]]))
    return out


# -- writing -----------------------------------------------------------------------------------

def _byte_level(use_regex: bool, add_prefix_space: bool) -> dict:
    return {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": True, "use_regex": use_regex}


def to_document(data: TokenizerData) -> dict:
    """The tokenizer.json content Hugging Face writes for the same byte-level BPE.

    A tokenizer loaded from a file writes back its normalizer, pre_tokenizer, post_processor,
    decoder, truncation and padding as they were.
    Every added token is also written into the model's vocab (as Hugging Face's trainer does for
    special tokens), so Hugging Face keeps its id when loading the file.
    """
    if data.pre_tokenizer is not None:
        pre_tokenizer = data.pre_tokenizer
    elif data.pattern == GPT2_PATTERN:  # HF's built-in ByteLevel regex is exactly GPT-2's
        pre_tokenizer = _byte_level(True, data.add_prefix_space)
    else:
        pre_tokenizer = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": hf_pattern(data.pattern)}, "behavior": "Isolated", "invert": False},
            _byte_level(False, data.add_prefix_space),
        ]}
    added_by_id = {t.id: t.content for t in data.added_tokens}
    id_to_bytes = data.id_to_bytes

    def token(i: int) -> str:  # an added token as it is, any other as its byte-level string
        content = added_by_id.get(i)
        return content if content is not None else bytes_to_token(id_to_bytes[i])

    out = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [t.to_json() for t in sorted(data.added_tokens, key=lambda t: t.id)],
        "normalizer": data.normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
            "ignore_merges": data.ignore_merges,
            "vocab": {token(i): i for i, b in enumerate(id_to_bytes) if b is not None},
            "merges": [[token(a), token(b)] for a, b in data.merges],
        },
    }
    out.update(data.kept)
    return out


def write(path: Union[str, os.PathLike], document: dict) -> None:
    """Write a tokenizer.json atomically (temp file in the same folder, then rename).

    A new file gets mode 0644 (mkstemp's 0600 would hide it from other users); an existing file
    keeps its mode. An OSError names `path`, never the temporary file.
    """
    text = json.dumps(document, ensure_ascii=False, indent=2)
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = 0o644
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tokenizer-", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())  # the bytes reach the disk before the rename makes them visible
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, exc.strerror, path) from None
        raise
