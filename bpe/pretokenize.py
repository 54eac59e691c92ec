"""Pre-tokenization: the GPT-2 and GPT-4 split patterns and GPT-2's byte-to-unicode stand-ins."""
from __future__ import annotations

import re
from typing import Any, Callable

import regex

from bpe.normalize import UnsupportedComponent

# openai/gpt-2 encoder.py; identical to Hugging Face's built-in ByteLevel regex.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# tiktoken's cl100k_base spelling (possessive quantifiers as the `regex` package reads them).
GPT4_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)

# The same splits written for Hugging Face's Oniguruma (Ruby syntax), where `X{1,3}+` means
# `(X{1,3})+` and would glue every digit run into one piece; a plain greedy `{1,3}` at the end of
# an alternative splits the same way in both engines.
GPT4_PATTERN_HF = GPT4_PATTERN.replace(r"\p{N}{1,3}+", r"\p{N}{1,3}")

PATTERNS = {"gpt2": GPT2_PATTERN, "gpt4": GPT4_PATTERN}


# The built-in patterns spelled for `re` on pure-ASCII text, where \p{L} is [A-Za-z], \p{N} is
# [0-9] and `regex`'s \s is re.ASCII's [ \t\n\v\f\r]; the tests check they split identically.
ASCII_SPELLINGS = {
    # letters first (no other alternative starts with a letter or a space before one), `[ ]?` and
    # possessive runs: 20 % faster in `re` than the literal spelling, the same splits
    GPT2_PATTERN: r"""[ ]?[a-zA-Z]++|'(?:[stdm]|re|ve|ll)|[ ]?[0-9]++|[ ]?[^\sA-Za-z0-9]++|\s+(?!\S)|\s+""",
    GPT4_PATTERN: (
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\nA-Za-z0-9]?+[A-Za-z]++|[0-9]{1,3}+| ?[^\sA-Za-z0-9]++[\r\n]*+"""
        r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
    ),
}
ASCII_SPELLINGS[GPT4_PATTERN_HF] = ASCII_SPELLINGS[GPT4_PATTERN]


def ascii_findall(pattern: str):
    """A faster `re` findall that splits pure-ASCII text exactly like `pattern`, or None.

    Only for the built-in patterns, whose ASCII spelling is checked by the tests; `re` is about
    twice as fast as `regex` there, and str.isascii() is O(1), so the choice costs nothing.
    """
    if pattern not in ASCII_SPELLINGS:
        return None
    try:  # possessive quantifiers need Python >= 3.11's re
        return re.compile(ASCII_SPELLINGS[pattern], re.ASCII).findall
    except re.error:
        return None


def resolve_pattern(pattern: str) -> str:
    """Return the regex for a pattern name ("gpt2", "gpt4") or a user pattern, checking it compiles."""
    text = PATTERNS.get(pattern, pattern)
    if not isinstance(text, str) or not text:
        raise ValueError(f"pattern must be 'gpt2', 'gpt4' or a non-empty regex, got {pattern!r}")
    try:
        regex.compile(text)
    except regex.error as exc:
        raise ValueError(f"pattern {pattern!r} does not compile: {exc}") from None
    return text


# One token of a regex, read left to right so escapes and classes stay whole: \p{..}, an escape,
# a character class or one character; then an optional counted repeat followed by `+`.
_TOKEN = regex.compile(r"(\\[pP]\{[^}]*\}|\\.|\[\^?\]?(?:\\.|[^\]\\])*\]|.)(\{\d+(?:,\d*)?\}\+|\{,\d+\}\+)?",
                       regex.DOTALL)


def rewrite_counted_plus(pattern: str, wrap: Callable[[str, str], str]) -> str:
    """Replace each `X{m,n}+` (X an atom or a whole group) with wrap(X, "{m,n}")."""
    out: list[str] = []
    opens: list[int] = []  # where in `out` each open group starts
    for m in _TOKEN.finditer(pattern):
        atom, repeat = m.group(1), m.group(2)
        start = len(out)
        if atom == "(":
            opens.append(start)
        elif atom == ")" and opens:
            start = opens.pop()
        out.append(atom)
        if repeat:
            body = "".join(out[start:])
            del out[start:]
            out.append(wrap(body, repeat[:-1]))
    return "".join(out)


def hf_pattern(pattern: str) -> str:
    """The spelling of a resolved pattern to write into tokenizer.json for Hugging Face's engine.

    Oniguruma reads `X{m,n}+` as `(X{m,n})+`, not as possessive: write it as the atomic group
    `(?>X{m,n})`, which both engines read the same way.
    """
    if pattern == GPT4_PATTERN:
        return GPT4_PATTERN_HF
    return rewrite_counted_plus(pattern, lambda body, repeat: f"(?>{body}{repeat})")


def compile_pattern(pattern: str) -> regex.Pattern:
    """Compile a pattern name or regex with the `regex` package."""
    return regex.compile(resolve_pattern(pattern))


# The built-in patterns match every character (each alternative family ends in a catch-all such as
# `\s+` or `[^\s\p{L}\p{N}]+`), so their findall already returns all the text.
_COVERS_ALL = {GPT2_PATTERN, GPT4_PATTERN, GPT4_PATTERN_HF}


def splitter(pattern: str) -> Callable[[str], list[str]]:
    """text -> pre-tokens, keeping all text like Hugging Face's Split(pattern, behavior="isolated").

    Each match is a piece and so is each stretch of text between two matches (or before the first,
    after the last); empty pieces are dropped. For the built-in patterns, which match everything,
    this is the plain findall (no cost). For another pattern findall is tried first, and kept when
    its matches cover the whole text without empty matches; otherwise the matches' spans are found
    with Oniguruma's iteration rule (see _onig_spans) and the gaps are added.
    """
    text_pattern = resolve_pattern(pattern)
    rx = regex.compile(text_pattern)
    if text_pattern in _COVERS_ALL:
        return rx.findall
    findall = rx.findall if not rx.groups else None  # with groups, findall returns the groups
    search, finditer = rx.search, rx.finditer

    def pieces(text: str) -> list[str]:
        if findall is not None:
            found = findall(text)
            if len("".join(found)) == len(text) and "" not in found:  # join: 2x faster than sum(map(len))
                return found  # the matches tile the text: no gaps
        spans = [m.span() for m in finditer(text)]
        if any(s == e for s, e in spans):
            spans = _onig_spans(search, text)
        return _pieces(text, spans)

    return pieces


def _onig_spans(search: Callable, text: str) -> list[tuple[int, int]]:
    """The match spans in the order Hugging Face's Oniguruma find_iter yields them.

    After a match ending at p the next search starts at p, but an empty match at p is then skipped
    by searching again from p + 1. Python's engines instead accept that empty match and then allow
    a non-empty match at p, so with empty-matching patterns (`(?=b)|b`) their spans differ; without
    empty matches both iterations are the same.
    """
    spans = []
    pos, last_end, n = 0, -1, len(text)
    while pos <= n:
        m = search(text, pos)
        if m is None:
            break
        s, e = m.span()
        if s == e == last_end:
            pos = e + 1
            continue
        spans.append((s, e))
        pos = last_end = e
    return spans


def split(text: str, pattern: str = "gpt4") -> list[str]:
    """Split text into pre-tokens (pieces that BPE merges never cross); no text is dropped."""
    return splitter(pattern)(text)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable stand-in character (space -> 'Ġ', newline -> 'Ċ')."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


BYTE_TO_CHAR: dict[int, str] = bytes_to_unicode()
CHAR_TO_BYTE: dict[str, int] = {c: b for b, c in BYTE_TO_CHAR.items()}
# Hugging Face orders the 256 byte tokens by the code point of their stand-in character.
BYTES_IN_HF_ORDER: list[int] = sorted(range(256), key=lambda b: BYTE_TO_CHAR[b])


def bytes_to_token(data: bytes) -> str:
    """Byte-level token string of raw bytes, as written in tokenizer.json (b' the' -> 'Ġthe')."""
    return "".join(BYTE_TO_CHAR[b] for b in data)


def token_to_bytes(token: str) -> bytes:
    """Raw bytes of a byte-level token string; KeyError if a character is not a byte stand-in."""
    return bytes(CHAR_TO_BYTE[c] for c in token)


# -- Hugging Face pre-tokenizer chains ----------------------------------------------------------

SPLIT_BEHAVIORS = ("Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous")


def _match_spans(rx: regex.Pattern, text: str) -> list[tuple[int, int]]:
    """Match spans in the order Oniguruma's find_iter gives them (see _onig_spans)."""
    spans = [m.span() for m in rx.finditer(text)]
    if any(s == e for s, e in spans):
        spans = _onig_spans(rx.search, text)
    return spans


def _split_step(rx: regex.Pattern, behavior: str, invert: bool) -> Callable[[str], list[str]]:
    """One HF Split on one piece: NormalizedString::split with the behavior, empty pieces dropped."""
    if behavior == "Isolated" and not invert:
        findall = rx.findall if not rx.groups else None

        def isolated(text: str) -> list[str]:
            if findall is not None:
                found = findall(text)
                if len("".join(found)) == len(text) and "" not in found:
                    return found
            return _pieces(text, _match_spans(rx, text))
        return isolated

    def run(text: str) -> list[str]:
        if not text:
            return []
        parts: list[tuple[int, int, bool]] = []  # (start, end, is_match): HF's find_matches, gaps included
        prev = 0
        for s, e in _match_spans(rx, text):
            if prev != s:
                parts.append((prev, s, False))
            parts.append((s, e, True))
            prev = e
        if prev != len(text):
            parts.append((prev, len(text), False))
        if invert:
            parts = [(s, e, not m) for s, e, m in parts]
        out: list[list] = []  # [start, end, remove]
        if behavior == "Isolated":
            out = [[s, e, False] for s, e, _ in parts]
        elif behavior == "Removed":
            out = [[s, e, m] for s, e, m in parts]
        elif behavior == "Contiguous":
            previous = False
            for s, e, m in parts:
                if m == previous and out:
                    out[-1][1] = e
                else:
                    out.append([s, e, False])
                previous = m
        elif behavior == "MergedWithPrevious":
            previous = False
            for s, e, m in parts:
                if m and not previous and out:
                    out[-1][1] = e
                else:
                    out.append([s, e, False])
                previous = m
        else:  # MergedWithNext
            previous = False
            for s, e, m in reversed(parts):
                if m and not previous and out:
                    out[-1][0] = s
                else:
                    out.append([s, e, False])
                previous = m
            out.reverse()
        return [text[s:e] for s, e, remove in out if not remove and e > s]
    return run


def _pieces(text: str, spans: list[tuple[int, int]]) -> list[str]:
    """The matches at spans and, as pieces of their own, the unmatched stretches between them (HF's Split isolated)."""
    out: list[str] = []
    prev = 0
    for s, e in spans:
        if s > prev:
            out.append(text[prev:s])
        if e > s:
            out.append(text[s:e])
        prev = e
    if prev < len(text):
        out.append(text[prev:])
    return out


class PreTokenizer:
    """A tokenizer.json pre_tokenizer of the byte-level family: Splits, then ByteLevel.

    `pattern` is set when the chain is one plain split (Split(Isolated) + ByteLevel(use_regex=false),
    or ByteLevel(use_regex=true) alone, possibly with add_prefix_space on the whole text), which
    encodes on the fast path; otherwise `split(text)` runs the steps in order, as Hugging Face does:
    each Split on every piece, then ByteLevel's prefix space on every piece that does not start
    with one, then (use_regex) the GPT-2 split of each piece.
    """

    def __init__(self, node: Any) -> None:
        self.node = node
        steps = _flatten_pre_tokenizer(node)
        *splits, last = steps
        self.add_prefix_space = bool(last.get("add_prefix_space", False))
        use_regex = bool(last.get("use_regex", True))
        self._steps: list[Callable[[str], list[str]]] = []
        self.patterns: list[str] = []
        plain = []
        for step in splits:
            rx, source = _read_split(step)
            behavior, invert = step.get("behavior", "Isolated"), bool(step.get("invert", False))
            plain.append(behavior == "Isolated" and not invert)
            self.patterns.append(source)
            self._steps.append(_split_step(rx, behavior, invert))
        self.use_regex = use_regex
        if use_regex:
            self._gpt2 = regex.compile(GPT2_PATTERN).findall
        # the fast path: one regex split of the whole text
        self.pattern: str | None = None
        if not splits and use_regex:
            self.pattern = GPT2_PATTERN
        elif len(splits) == 1 and plain[0] and not use_regex and not self.add_prefix_space:
            self.pattern = self.patterns[0]

    def split(self, text: str) -> list[str]:
        pieces = [text] if text else []
        for step in self._steps:
            pieces = [p for piece in pieces for p in step(piece)]
        if self.add_prefix_space:
            pieces = [p if p.startswith(" ") else " " + p for p in pieces]
        if self.use_regex:
            findall = self._gpt2
            pieces = [p for piece in pieces for p in findall(piece)]
        return pieces


def _flatten_pre_tokenizer(node: Any) -> list[dict]:
    """The steps of a pre_tokenizer, nested Sequences flattened; one line naming what is not supported."""
    if not isinstance(node, dict):
        raise UnsupportedComponent(f"unsupported pre_tokenizer {node!r} (expected ByteLevel, or a Sequence of "
                                   f"Splits then ByteLevel)")
    steps: list[dict] = []

    def walk(n: Any) -> None:
        if not isinstance(n, dict):
            raise UnsupportedComponent(f"unsupported pre_tokenizer step {n!r}")
        if n.get("type") == "Sequence":
            items = n.get("pretokenizers")
            if not isinstance(items, list):
                raise UnsupportedComponent("pre_tokenizer Sequence needs a list 'pretokenizers'")
            for item in items:
                walk(item)
        else:
            steps.append(n)
    walk(node)
    kinds = [s.get("type") for s in steps]
    for i, kind in enumerate(kinds):
        if kind not in ("Split", "ByteLevel"):
            raise UnsupportedComponent(f"unsupported pre_tokenizer {kind!r} (bpe supports Split and ByteLevel, "
                                       f"and Sequences of Splits followed by ByteLevel)")
        if kind == "ByteLevel" and i != len(kinds) - 1:
            raise UnsupportedComponent(f"unsupported pre_tokenizer Sequence {kinds}: ByteLevel must be the last step")
    if not kinds or kinds[-1] != "ByteLevel":
        raise UnsupportedComponent(f"unsupported pre_tokenizer {kinds}: no ByteLevel step, so not a byte-level BPE")
    return steps


def _read_split(step: dict) -> tuple[regex.Pattern, str]:
    behavior = step.get("behavior", "Isolated")
    if behavior not in SPLIT_BEHAVIORS:
        raise UnsupportedComponent(f"unsupported Split behavior {behavior!r}")
    spec = step.get("pattern")
    if isinstance(spec, dict) and isinstance(spec.get("Regex"), str):
        source = from_oniguruma(spec["Regex"])
    elif isinstance(spec, dict) and isinstance(spec.get("String"), str):
        source = regex.escape(spec["String"]) if spec["String"] else "(?!)"
    else:
        raise UnsupportedComponent(f"Split pattern must be {{'Regex': ...}} or {{'String': ...}}, got {spec!r}")
    try:
        return regex.compile(source), source
    except regex.error as exc:
        raise UnsupportedComponent(f"Split pattern does not compile with the regex package: {exc}") from None


def from_oniguruma(pattern: str) -> str:
    """A tokenizer.json Split regex (Oniguruma syntax) as the `regex` package reads it."""
    if pattern == GPT4_PATTERN_HF:
        return GPT4_PATTERN
    # Oniguruma reads `X{m,n}+` as `(X{m,n})+`, the `regex` package as possessive: keep HF's meaning.
    return rewrite_counted_plus(pattern, lambda body, repeat: f"(?:{body}{repeat})+")
