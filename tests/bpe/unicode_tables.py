"""Where Python's / the `regex` package's Unicode tables and Hugging Face's differ, code point by code point.

Computed once per test session against the installed `tokenizers` (about 3 s).
"""
import functools
import unicodedata

import regex

from bpe.normalize import compile_normalizer

CODE_POINTS = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
NORMALIZERS = ("NFC", "NFD", "NFKC", "NFKD", "Lowercase")
CLASSES = {"L": r"\p{L}", "N": r"\p{N}", "s": r"\s", "P": r"\p{P}", "S": r"\p{S}", "M": r"\p{M}"}


@functools.lru_cache(maxsize=None)
def normalizer_differences() -> dict[str, frozenset[int]]:
    """name -> code points c where bpe's normalizer(chr(c)) differs from Hugging Face's."""
    from tokenizers import normalizers
    out = {}
    for name in NORMALIZERS:
        ours, hf = compile_normalizer({"type": name}), getattr(normalizers, name)()
        # "\n" between the characters: a starter that nothing composes with, so each is normalized alone
        points = [c for c in CODE_POINTS if c != 0x0A]
        text = "\n".join(map(chr, points))
        a, b = ours(text).split("\n"), hf.normalize_str(text).split("\n")
        assert len(a) == len(b) == len(points)
        out[name] = frozenset(c for c, x, y in zip(points, a, b) if x != y)
    return out


@functools.lru_cache(maxsize=None)
def class_differences() -> dict[str, frozenset[int]]:
    """class -> code points in it for the `regex` package but not for tokenizers' Oniguruma, or the reverse."""
    from tokenizers import Regex, pre_tokenizers
    out = {}
    for name, pattern in CLASSES.items():
        rx = regex.compile(pattern)
        hf = pre_tokenizers.Split(Regex(pattern), "removed")
        hf_members, ours = set(), set()
        for i in range(0, len(CODE_POINTS), 8192):
            chunk = CODE_POINTS[i:i + 8192]
            text = "".join(map(chr, chunk))
            kept = set()
            for piece, _ in hf.pre_tokenize_str(text):
                kept.update(map(ord, piece))
            hf_members.update(c for c in chunk if c not in kept)
            ours.update(map(ord, rx.findall(text)))
        out[name] = frozenset(hf_members ^ ours)
    return out


@functools.lru_cache(maxsize=None)
def all_differences() -> frozenset[int]:
    diff = set()
    for s in (*normalizer_differences().values(), *class_differences().values()):
        diff |= s
    return frozenset(diff)


def python_knows(c: int) -> bool:
    return unicodedata.category(chr(c)) != "Cn"
