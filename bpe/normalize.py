"""Hugging Face normalizers for tokenizer.json files: NFC/NFD/NFKC/NFKD, Lowercase, Strip, Replace,
Prepend and Sequences of them, with Python's `unicodedata` and `str.lower`.

Unicode tables: Python's `unicodedata` (Unicode 14.0 on Python 3.11) and Hugging Face's Rust
crates (normalization tables older than Unicode 12.1; lowercasing from Rust's Unicode 16.0) differ
only on code points one of the two does not know, which it leaves as they are
(tests/bpe/test_unicode.py lists them; docs/bpe.md has the counts).
"""
from __future__ import annotations

import unicodedata
from typing import Any, Callable

import regex

Normalizer = Callable[[str], str]

# Rust's char::is_whitespace (Unicode White_Space), which HF's Strip uses; Python's str.strip()
# would also strip U+001C..U+001F.
WHITE_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009" \
              "\u200a\u2028\u2029\u202f\u205f\u3000"


class UnsupportedComponent(ValueError):
    """A tokenizer.json part that bpe does not implement (the message names it)."""


def _lowercase(text: str) -> str:
    # HF lowercases character by character (Rust's char::to_lowercase); Python's str.lower() also
    # applies the final-sigma rule in context, the only context rule it has.
    if "\u03a3" not in text:
        return text.lower()
    return "".join([c.lower() for c in text])


def _unicode_form(form: str) -> Normalizer:
    normalize, is_normalized = unicodedata.normalize, unicodedata.is_normalized

    def run(text: str) -> str:
        return text if text.isascii() or is_normalized(form, text) else normalize(form, text)
    return run


def _replace(node: dict) -> Normalizer:
    spec, content = node.get("pattern"), node.get("content")
    if not isinstance(content, str):
        raise UnsupportedComponent("normalizer Replace needs a string 'content'")
    if isinstance(spec, dict) and isinstance(spec.get("String"), str):
        old = spec["String"]
        if not old:
            return lambda text: text
        return lambda text: text.replace(old, content)
    if isinstance(spec, dict) and isinstance(spec.get("Regex"), str):
        try:
            rx = regex.compile(spec["Regex"])
        except regex.error as exc:
            raise UnsupportedComponent(f"normalizer Replace: pattern does not compile with the regex package: {exc}") \
                from None
        return lambda text: rx.sub(lambda m: content, text)
    raise UnsupportedComponent(f"normalizer Replace: pattern must be {{'String': ...}} or {{'Regex': ...}}, got {spec!r}")


def _strip(node: dict) -> Normalizer:
    left, right = bool(node.get("strip_left", True)), bool(node.get("strip_right", True))
    if left and right:
        return lambda text: text.strip(WHITE_SPACE)
    if left:
        return lambda text: text.lstrip(WHITE_SPACE)
    if right:
        return lambda text: text.rstrip(WHITE_SPACE)
    return lambda text: text


def _prepend(node: dict) -> Normalizer:
    prefix = node.get("prepend")
    if not isinstance(prefix, str):
        raise UnsupportedComponent("normalizer Prepend needs a string 'prepend'")
    return lambda text: prefix + text if text else text


def compile_normalizer(node: Any) -> Normalizer | None:
    """A function text -> normalized text for a tokenizer.json "normalizer" node, None for none.

    Raises UnsupportedComponent naming the first normalizer bpe does not implement.
    """
    if node is None:
        return None
    if not isinstance(node, dict):
        raise UnsupportedComponent(f"unsupported normalizer {node!r}")
    kind = node.get("type")
    if kind in ("NFC", "NFD", "NFKC", "NFKD"):
        return _unicode_form(kind)
    if kind == "Lowercase":
        return _lowercase
    if kind == "Strip":
        return _strip(node)
    if kind == "Replace":
        return _replace(node)
    if kind == "Prepend":
        return _prepend(node)
    if kind == "Sequence":
        steps = node.get("normalizers")
        if not isinstance(steps, list):
            raise UnsupportedComponent("normalizer Sequence needs a list 'normalizers'")
        funcs = [f for f in map(compile_normalizer, steps) if f is not None]
        if not funcs:
            return None
        if len(funcs) == 1:
            return funcs[0]

        def run(text: str) -> str:
            for f in funcs:
                text = f(text)
            return text
        return run
    raise UnsupportedComponent(f"unsupported normalizer {kind!r} (bpe supports NFC, NFD, NFKC, NFKD, Lowercase, "
                               f"Strip, Replace, Prepend and Sequence)")
