"""Hugging Face tokenizer.json for byte-level BPE: writing ours, reading and validating anyone's."""
from __future__ import annotations

import errno
import json
import os
from typing import TYPE_CHECKING, Any, Union

import regex

from .pretokenize import CHAR_TO_BYTE, GPT2_PATTERN, GPT4_PATTERN, GPT4_PATTERN_HF, hf_pattern, rewrite_counted_plus

if TYPE_CHECKING:
    from .tokenizer import Tokenizer


class TokenizerFileError(ValueError):
    """A tokenizer.json that cannot be used, with the reason."""


def _byte_level(use_regex: bool, add_prefix_space: bool) -> dict:
    return {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": True, "use_regex": use_regex}


def to_json(tok: "Tokenizer") -> dict:
    """The tokenizer.json content Hugging Face writes for the same byte-level BPE."""
    if tok.pattern == GPT2_PATTERN:  # HF's built-in ByteLevel regex is exactly GPT-2's
        pre_tokenizer = _byte_level(True, tok.add_prefix_space)
    else:
        pre_tokenizer = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": hf_pattern(tok.pattern)}, "behavior": "Isolated", "invert": False},
            _byte_level(False, tok.add_prefix_space),
        ]}
    specials = tok.special_tokens
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for s, i in sorted(specials.items(), key=lambda item: item[1])
        ],
        "normalizer": None,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
            "ignore_merges": tok.ignore_merges,
            "vocab": {tok.id_to_token(i): i for i in range(tok.vocab_size)},
            "merges": [[tok.id_to_token(a), tok.id_to_token(b)] for a, b in tok.merges],
        },
    }


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
    if data.get("normalizer") is not None:
        raise TokenizerFileError(f"unsupported normalizer {_type_name(data['normalizer'])}")
    pattern, add_prefix_space = _read_pre_tokenizer(data.get("pre_tokenizer"))
    specials = _read_added_tokens(data.get("added_tokens") or [])
    id_to_bytes = _read_vocab(model.get("vocab"), specials)
    merges = _read_merges(model.get("merges"), model["vocab"])
    try:
        return cls(id_to_bytes, merges, specials, pattern, add_prefix_space=add_prefix_space,
                   ignore_merges=bool(model.get("ignore_merges", False)))
    except ValueError as exc:
        raise TokenizerFileError(str(exc)) from None


def _type_name(node: Any) -> str:
    return repr(node.get("type")) if isinstance(node, dict) else repr(node)


def _read_pre_tokenizer(node: Any) -> tuple[str, bool]:
    # Supported: ByteLevel(use_regex=True) = the GPT-2 regex, or Sequence[Split(regex), ByteLevel(use_regex=False)].
    if not isinstance(node, dict):
        raise TokenizerFileError(f"unsupported pre_tokenizer {node!r} (expected ByteLevel or Sequence[Split, ByteLevel])")
    if node.get("type") == "ByteLevel":
        if not node.get("use_regex", True):
            raise TokenizerFileError("unsupported pre_tokenizer: ByteLevel with use_regex=false and no Split")
        return GPT2_PATTERN, bool(node.get("add_prefix_space", False))
    if node.get("type") != "Sequence" or not isinstance(node.get("pretokenizers"), list):
        raise TokenizerFileError(f"unsupported pre_tokenizer type {_type_name(node)}")
    steps = node["pretokenizers"]
    if len(steps) != 2 or not all(isinstance(s, dict) for s in steps) or steps[0].get("type") != "Split" \
            or steps[1].get("type") != "ByteLevel":
        names = [_type_name(s) for s in steps]
        raise TokenizerFileError(f"unsupported pre_tokenizer Sequence {names} (expected [Split, ByteLevel])")
    split, byte_level = steps
    if byte_level.get("use_regex", True):
        raise TokenizerFileError("unsupported pre_tokenizer: Split followed by ByteLevel with use_regex=true")
    if split.get("behavior") != "Isolated" or split.get("invert", False):
        raise TokenizerFileError(f"unsupported Split behavior {split.get('behavior')!r} "
                                 f"(invert={split.get('invert')!r}); only Isolated is supported")
    spec = split.get("pattern")
    if isinstance(spec, dict) and isinstance(spec.get("Regex"), str):
        pattern = _from_oniguruma(spec["Regex"])
    elif isinstance(spec, dict) and isinstance(spec.get("String"), str):
        pattern = regex.escape(spec["String"])
    else:
        raise TokenizerFileError(f"Split pattern must be {{'Regex': ...}} or {{'String': ...}}, got {spec!r}")
    try:
        regex.compile(pattern)
    except regex.error as exc:
        raise TokenizerFileError(f"Split pattern does not compile with the regex package: {exc}") from None
    if byte_level.get("add_prefix_space", False):
        # HF's ByteLevel then prefixes a space to every piece of the Split, not once to the text
        raise TokenizerFileError("unsupported pre_tokenizer: Split followed by ByteLevel with add_prefix_space=true")
    return pattern, False


def _from_oniguruma(pattern: str) -> str:
    if pattern == GPT4_PATTERN_HF:
        return GPT4_PATTERN
    # Oniguruma reads `X{m,n}+` as `(X{m,n})+`, the `regex` package as possessive: keep HF's meaning.
    return rewrite_counted_plus(pattern, lambda body, repeat: f"(?:{body}{repeat})+")


def _read_added_tokens(items: Any) -> dict[str, int]:
    if not isinstance(items, list):
        raise TokenizerFileError("added_tokens must be a list")
    specials: dict[str, int] = {}
    for n, item in enumerate(items):
        content, token_id = (item.get("content"), item.get("id")) if isinstance(item, dict) else (None, None)
        if not isinstance(content, str) or not isinstance(token_id, int) or isinstance(token_id, bool) or token_id < 0:
            raise TokenizerFileError(f"added_tokens[{n}] needs an integer 'id' >= 0 and a string 'content'")
        if item["content"] in specials:
            raise TokenizerFileError(f"added token {item['content']!r} appears twice")
        if item["id"] in specials.values():
            raise TokenizerFileError(f"duplicate id {item['id']} in added_tokens")
        specials[item["content"]] = item["id"]
    return specials


def _read_vocab(vocab: Any, specials: dict[str, int]) -> list[bytes]:
    if not isinstance(vocab, dict) or not vocab:
        raise TokenizerFileError("model.vocab must be a non-empty object token -> id")
    by_id: dict[int, str] = {}
    for token, i in vocab.items():
        if not isinstance(i, int) or isinstance(i, bool) or i < 0:
            raise TokenizerFileError(f"token {token!r} has invalid id {i!r}")
        if i in by_id:
            raise TokenizerFileError(f"duplicate id {i} for tokens {by_id[i]!r} and {token!r}")
        by_id[i] = token
    special_ids = {i: s for s, i in specials.items()}
    for s, i in specials.items():
        if i in by_id and by_id[i] != s:
            raise TokenizerFileError(f"added token {s!r} has id {i}, which the vocab gives to {by_id[i]!r}")
        by_id[i] = s
    size = len(by_id)
    holes = [i for i in range(size) if i not in by_id]
    if holes:
        raise TokenizerFileError(f"ids are not contiguous: id {holes[0]} is missing (ids must be 0..{size - 1})")
    id_to_bytes = []
    for i in range(size):
        token = by_id[i]
        if i in special_ids:
            try:
                id_to_bytes.append(token.encode("utf-8"))
            except UnicodeEncodeError:
                raise TokenizerFileError(f"added token {token!r} (id {i}) is not valid Unicode text") from None
            continue
        try:
            id_to_bytes.append(bytes(CHAR_TO_BYTE[c] for c in token))
        except KeyError:
            raise TokenizerFileError(f"token {token!r} (id {i}) is not a byte-level string") from None
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

