"""Added tokens (tokenizer.json "added_tokens"): their flags and Hugging Face's way of finding them."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Iterator

import regex

from bpe.normalize import WHITE_SPACE
from bpe.pretokenize import CHAR_TO_BYTE

# Rust regex's \w, which HF's single_word check uses (Unicode word characters).
_WORD_CHAR = regex.compile(r"[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]")


@dataclass(frozen=True)
class AddedToken:
    """A token matched in the text before pre-tokenization, as in Hugging Face.

    special: skipped by decode(skip_special_tokens=True), and matched by encode only when allowed
    (allowed_special); a non-special added token is always matched by encode (never by
    encode_ordinary). normalized: matched in the normalized text (its content normalized too)
    instead of the raw text. lstrip / rstrip: the whitespace left / right of a match becomes part
    of it. single_word: matched only when no word character touches it on either side.
    """

    content: str
    id: int
    special: bool = True
    normalized: bool = False
    lstrip: bool = False
    rstrip: bool = False
    single_word: bool = False

    def to_json(self) -> dict:
        d = asdict(self)
        return {"id": d.pop("id"), "content": d.pop("content"), "single_word": self.single_word,
                "lstrip": self.lstrip, "rstrip": self.rstrip, "normalized": self.normalized, "special": self.special}


def hf_decoded_bytes(token: str) -> bytes:
    """The bytes HF's ByteLevel decoder gives a token string: its stand-ins mapped back to bytes
    when every character is one, else its UTF-8 (so "<eos>" and "Ġx" both decode as expected)."""
    try:
        return bytes(CHAR_TO_BYTE[c] for c in token)
    except KeyError:
        return token.encode("utf-8")


class Matcher:
    """Finds added tokens in a text: leftmost-longest literal matches, then HF's flags."""

    def __init__(self, tokens: Iterable[tuple[str, AddedToken]]) -> None:
        self.by_text = dict(tokens)  # matched text (the normalized content for normalized tokens) -> token
        self.by_text.pop("", None)
        self.rx = regex.compile("|".join(regex.escape(s) for s in sorted(self.by_text, key=len, reverse=True))) \
            if self.by_text else None
        self.plain = not any(t.lstrip or t.rstrip or t.single_word for t in self.by_text.values())

    def split(self, text: str) -> list[tuple[AddedToken | None, str]]:
        """[(token or None, text)]: HF's AddedVocabulary::find_matches."""
        if self.rx is None or not text:
            return [(None, text)]
        out: list[tuple[AddedToken | None, str]] = []
        start_offset, n = 0, len(text)
        for m in self.rx.finditer(text):
            start, stop = m.span()
            tok = self.by_text[m.group()]
            if not self.plain:
                if tok.single_word:
                    start_space = start == 0 or not _WORD_CHAR.match(text, start - 1)
                    stop_space = stop == n or not _WORD_CHAR.match(text, stop)
                    if not (start_space and stop_space):
                        continue
                if tok.lstrip:
                    new_start = start
                    while new_start > 0 and text[new_start - 1] in WHITE_SPACE:
                        new_start -= 1
                    start = max(new_start, start_offset)  # spaces a previous match took stay with it
                if tok.rstrip:
                    while stop < n and text[stop] in WHITE_SPACE:
                        stop += 1
            if start_offset < start:
                out.append((None, text[start_offset:start]))
            out.append((tok, text[start:stop]))
            start_offset = stop
        if start_offset < n:
            out.append((None, text[start_offset:]))
        return out


def build_matchers(added: Iterable[AddedToken], allowed: frozenset,
                   normalize: Callable[[str], str] | None) -> tuple[Matcher | None, Matcher | None]:
    """(raw, normalized): matchers for the added tokens to find, as HF's two passes.

    A special token is found only when `allowed` names it; the others always are. A normalized
    token is looked for in the normalized text, as its normalized content.
    """
    tokens = [t for t in added if not t.special or t.content in allowed]
    raw = [(t.content, t) for t in tokens if not t.normalized]
    normed = [(normalize(t.content) if normalize else t.content, t) for t in tokens if t.normalized]
    return (Matcher(raw) if raw else None), (Matcher(normed) if normed else None)


def segments(text: str, matchers: tuple[Matcher | None, Matcher | None],
             normalize: Callable[[str], str] | None) -> Iterator[tuple[int | None, str | None]]:
    """(added token id, None) and (None, normalized text) in order: HF's two added-token passes."""
    raw, normed = matchers
    for tok, part in raw.split(text) if raw is not None else ((None, text),):
        if tok is not None:
            yield tok.id, None
            continue
        if normalize is not None and part:
            part = normalize(part)
        for tok2, piece in normed.split(part) if normed is not None else ((None, part),):
            if tok2 is not None:
                yield tok2.id, None
            elif piece:
                yield None, piece
