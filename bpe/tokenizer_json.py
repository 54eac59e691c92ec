"""Hugging Face tokenizer.json for byte-level BPE: writing ours, reading and validating anyone's."""
from __future__ import annotations

import errno
import json
import os
from typing import TYPE_CHECKING, Any, Union


from .added import AddedToken
from .normalize import UnsupportedComponent, compile_normalizer
from .pretokenize import CHAR_TO_BYTE, GPT2_PATTERN, PreTokenizer, hf_pattern

if TYPE_CHECKING:
    from .tokenizer import Tokenizer


class TokenizerFileError(ValueError):
    """A tokenizer.json that cannot be used, with the reason."""


def _byte_level(use_regex: bool, add_prefix_space: bool) -> dict:
    return {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": True, "use_regex": use_regex}


def to_json(tok: "Tokenizer") -> dict:
    """The tokenizer.json content Hugging Face writes for the same byte-level BPE.

    A tokenizer loaded from a file writes back its normalizer, pre_tokenizer, post_processor,
    decoder, truncation and padding as they were.
    Every added token is also written into the model's vocab (as Hugging Face's trainer does for
    special tokens), so Hugging Face keeps its id when loading the file.
    """
    if tok._pre_tokenizer_node is not None:
        pre_tokenizer = tok._pre_tokenizer_node
    elif tok.pattern == GPT2_PATTERN:  # HF's built-in ByteLevel regex is exactly GPT-2's
        pre_tokenizer = _byte_level(True, tok.add_prefix_space)
    else:
        pre_tokenizer = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": hf_pattern(tok.pattern)}, "behavior": "Isolated", "invert": False},
            _byte_level(False, tok.add_prefix_space),
        ]}
    vocab = {}
    for i in range(tok.vocab_size):
        token = tok.id_to_token(i)
        if token is not None:
            vocab[token] = i
    kept = getattr(tok, "_file_parts", {})
    out = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [t.to_json() for t in sorted(tok.added_tokens, key=lambda t: t.id)],
        "normalizer": tok._normalizer_node,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
            "ignore_merges": tok.ignore_merges,
            "vocab": vocab,
            "merges": [[tok.id_to_token(a), tok.id_to_token(b)] for a, b in tok.merges],
        },
    }
    out.update(kept)
    return out


def read_tokenizer_json(path: Union[str, os.PathLike], cls: type) -> "Tokenizer":
    """Load and validate a tokenizer.json; raise TokenizerFileError naming the first problem."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "tokenizer file not found", path) from None
    except UnicodeDecodeError as exc:
        raise TokenizerFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
        raise TokenizerFileError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise TokenizerFileError(f"{path}: not valid JSON (nested too deeply)") from None
    try:
        return from_json(data, cls)
    except TokenizerFileError as exc:
        raise TokenizerFileError(f"{path}: {exc}") from None
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError) as exc:
        # a shape the checks in from_json did not foresee: still one line naming the file
        raise TokenizerFileError(f"{path}: invalid tokenizer.json ({type(exc).__name__}: {exc})") from None


def from_json(data: Any, cls: type) -> "Tokenizer":
    """Build a Tokenizer from tokenizer.json content (a dict), validating every part it uses."""
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise TokenizerFileError("not a tokenizer.json: no 'model' object")
    model = data["model"]
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
    normalizer = data.get("normalizer")
    pre_tokenizer = data.get("pre_tokenizer")
    try:
        compile_normalizer(normalizer)
        PreTokenizer(pre_tokenizer)
    except UnsupportedComponent as exc:
        raise TokenizerFileError(str(exc)) from None
    vocab = model.get("vocab")
    by_id = _check_vocab(vocab)
    added = _read_added_tokens(data.get("added_tokens") or [], vocab, by_id)
    id_to_bytes = _read_vocab(by_id, added)
    merges = _read_merges(model.get("merges"), vocab)
    try:
        tok = cls(id_to_bytes, merges, {}, add_prefix_space=False, ignore_merges=bool(model.get("ignore_merges", False)),
                  normalizer=normalizer, pre_tokenizer=pre_tokenizer, added_tokens=added)
    except (ValueError, UnsupportedComponent) as exc:
        raise TokenizerFileError(str(exc)) from None
    # parts bpe does not use, written back as they were by save()
    tok._file_parts = {k: data[k] for k in ("truncation", "padding", "post_processor", "decoder") if k in data}
    return tok


def _type_name(node: Any) -> str:
    return repr(node.get("type")) if isinstance(node, dict) else repr(node)


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

