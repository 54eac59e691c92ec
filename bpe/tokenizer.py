"""Tokenizer: byte-level BPE encode/decode with added tokens, read and written as a Hugging Face tokenizer.json.

A text goes through the same steps as in Hugging Face `tokenizers`:

1. added tokens (special ones only when allowed) are found in the raw text, then in the normalized text,
2. the rest is normalized (bpe.normalize) and split into pieces by the pattern or the pre-tokenizer
   chain (bpe.pretokenize), in blocks cut where no split crosses (bpe.blocks),
3. each piece is merged into tokens by the BPE model (bpe.model, which Tokenizer extends).

The vocabulary, merges and settings come from bpe.train, from tiktoken's ranks, or from a
tokenizer.json through the plain-data codec bpe.tokenizer_json.
"""
from __future__ import annotations

import os
from itertools import chain
from typing import Any, Iterable, Union

import regex

from bpe import tokenizer_json
from bpe.added import AddedToken, build_matchers, hf_decoded_bytes, segments
from bpe.blocks import BLOCK_CHARS, BLOCKABLE, SUB_BLOCK_CHARS, encoded_blocks, split_blocks
from bpe.model import BPEModel
from bpe.normalize import compile_normalizer
from bpe.pretokenize import (
    BYTES_IN_HF_ORDER, GPT2_PATTERN, PreTokenizer, ascii_findall, bytes_to_token, resolve_pattern, splitter,
    token_to_bytes,
)
from bpe.tokenizer_json import TokenizerData, TokenizerFileError

AllowedSpecial = Union[str, Iterable[str]]


class Tokenizer(BPEModel):
    """A byte-level BPE tokenizer: 256 byte tokens, ranked merges, special tokens and a split pattern."""

    def __init__(
        self,
        id_to_bytes: list[bytes | None],
        merges: list[tuple[int, int]],
        special_tokens: dict[str, int],
        pattern: str = "gpt4",
        *,
        add_prefix_space: bool = False,
        ignore_merges: bool = False,
        normalizer: dict | None = None,
        pre_tokenizer: dict | None = None,
        added_tokens: Iterable[AddedToken] | None = None,
    ) -> None:
        """id_to_bytes[i] is token i's bytes, None for an id the vocabulary leaves unused (a gap).

        special_tokens: content -> id of special added tokens (matched only when allowed), or give
        `added_tokens` (AddedToken with Hugging Face's flags) instead. `normalizer` and
        `pre_tokenizer` are tokenizer.json nodes (dicts); a pre_tokenizer replaces `pattern` and
        `add_prefix_space`.
        """
        table = list(id_to_bytes)
        if added_tokens is None:
            added_tokens = [AddedToken(s, i) for s, i in special_tokens.items()]
        self._added: list[AddedToken] = list(added_tokens)
        self._added_by_id = {t.id: t for t in self._added}
        if len(self._added_by_id) != len(self._added):
            raise ValueError("two added tokens have the same id")
        for t in self._added:
            if not 0 <= t.id < len(table):
                raise ValueError(f"added token {t.content!r} has id {t.id}, outside the vocabulary's "
                                 f"{len(table)} ids")
        self._special = {t.content: t.id for t in self._added if t.special}
        self._special_by_id = {i: s for s, i in self._special.items()}
        self._normalize = compile_normalizer(normalizer)
        self._normalizer_node = normalizer
        for t in self._added:  # what decode gives (HF decodes a normalized token's normalized form)
            shown = self._normalize(t.content) if t.normalized and self._normalize else t.content
            table[t.id] = hf_decoded_bytes(shown)
        super().__init__(table, merges, self._added_by_id, ignore_merges)  # vocab and merges: bpe.model
        self._pre_tokenizer_node = pre_tokenizer
        self._pre = None  # a general pre-tokenizer chain (PreTokenizer.split), when not one plain pattern
        if pre_tokenizer is not None:
            pre = PreTokenizer(pre_tokenizer)
            if pre.pattern is not None:
                pattern, add_prefix_space = pre.pattern, pre.add_prefix_space
            else:
                self._pre = pre.split
                pattern, add_prefix_space = (pre.patterns or [GPT2_PATTERN])[0], False
        self.pattern = resolve_pattern(pattern)
        if add_prefix_space and self.pattern != GPT2_PATTERN:
            # HF's ByteLevel prefixes the whole text only when it splits with its own (GPT-2) regex
            raise ValueError("add_prefix_space=True needs the gpt2 pattern (Hugging Face's ByteLevel regex)")
        self._findall = splitter(self.pattern)  # all the text: matches and the gaps between them
        self._findall_ascii = ascii_findall(self.pattern) or self._findall
        self.add_prefix_space = add_prefix_space
        self._special_rx = (
            regex.compile("(" + "|".join(regex.escape(s) for s in sorted(self._special, key=len, reverse=True)) + ")")
            if self._special else None
        )
        self._matchers: dict[frozenset, tuple] = {}
        self._file_parts: dict = {}  # a loaded file's parts bpe does not use, written back by save()
        self.train_stats = None  # set by bpe.train

    @classmethod
    def from_merges(
        cls, merges: list[tuple[int, int]], special_tokens: Iterable[str] = ("<bos>", "<eos>"), pattern: str = "gpt4"
    ) -> "Tokenizer":
        """Build the Hugging Face id layout: specials, the 256 bytes in stand-in order, then merges."""
        specials = list(special_tokens)
        id_to_bytes = [s.encode("utf-8") for s in specials] + [bytes([b]) for b in BYTES_IN_HF_ORDER]
        known = {b: i for i, b in enumerate(id_to_bytes) if i >= len(specials)}
        for a, b in merges:
            joined = id_to_bytes[a] + id_to_bytes[b]
            if joined not in known:  # HF reuses the id of a string two merges both spell
                known[joined] = len(id_to_bytes)
                id_to_bytes.append(joined)
        return cls(id_to_bytes, merges, {s: i for i, s in enumerate(specials)}, pattern)

    @classmethod
    def from_tiktoken(cls, mergeable_ranks: dict[bytes, int], special_tokens: dict[str, int] | None = None,
                      pattern: str = "gpt4") -> "Tokenizer":
        """A tokenizer with tiktoken's ranks as ids (tiktoken.Encoding(..., mergeable_ranks, special_tokens)).

        The merges are every split of a token into two tokens, ordered by the rank of the result
        (then of the left and right part), as transformers' TikTokenConverter writes them; ids not
        used by a rank or a special token are gaps.
        """
        special_tokens = dict(special_tokens or {})
        size = max([*mergeable_ranks.values(), *special_tokens.values()]) + 1
        id_to_bytes: list[bytes | None] = [None] * size
        for token, rank in mergeable_ranks.items():
            id_to_bytes[rank] = token
        merges = []
        for token, rank in mergeable_ranks.items():
            if len(token) > 1:
                local = [(mergeable_ranks[token[:i]], mergeable_ranks[token[i:]]) for i in range(1, len(token))
                         if token[:i] in mergeable_ranks and token[i:] in mergeable_ranks]
                merges += [(rank, a, b) for a, b in sorted(local)]
        merges.sort()
        return cls(id_to_bytes, [(a, b) for _, a, b in merges], special_tokens, pattern)

    # -- vocabulary --------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of ids (largest id + 1), added tokens included; unused ids (gaps) count too."""
        return len(self._id_to_bytes)

    @property
    def special_tokens(self) -> dict[str, int]:
        """Special token -> id."""
        return dict(self._special)

    @property
    def added_tokens(self) -> list[AddedToken]:
        """All added tokens (special or not) with their Hugging Face flags, in file order."""
        return list(self._added)

    @property
    def merges(self) -> list[tuple[int, int]]:
        """Merges (left id, right id) in rank order."""
        return list(self._merges)

    @property
    def bos_id(self) -> int | None:
        """Id of "<bos>", or None without one."""
        return self._special.get("<bos>")

    @property
    def eos_id(self) -> int | None:
        """Id of "<eos>", or None without one."""
        return self._special.get("<eos>")

    def token_to_id(self, token: str) -> int | None:
        """Id of a special token or of a byte-level token string ("Ġthe"); None if unknown."""
        added = next((t.id for t in self._added if t.content == token), None)
        if added is not None:
            return added
        try:
            return self._bytes_to_id.get(token_to_bytes(token))
        except KeyError:
            return None

    def id_to_token(self, token_id: int) -> str | None:
        """Special token or byte-level token string of an id; None if out of range."""
        if token_id in self._added_by_id:
            return self._added_by_id[token_id].content
        if not 0 <= token_id < len(self._id_to_bytes) or self._id_to_bytes[token_id] is None:
            return None
        return bytes_to_token(self._id_to_bytes[token_id])

    def id_to_bytes(self, token_id: int) -> bytes:
        """Raw bytes of a token (a special token's UTF-8)."""
        if not 0 <= token_id < len(self._id_to_bytes):
            raise ValueError(f"token id {token_id} is out of range [0, {len(self._id_to_bytes)})")
        data = self._id_to_bytes[token_id]
        if data is None:
            raise ValueError(f"token id {token_id} is unused (a gap in the vocabulary's ids)")
        return data

    def get_vocab(self) -> dict[str, int]:
        """Token string -> id for every used id (byte-level strings, added tokens as they are)."""
        return {self.id_to_token(i): i for i, b in enumerate(self._id_to_bytes) if b is not None}

    # -- encoding ----------------------------------------------------------------------------

    def encode(self, text: str, allowed_special: AllowedSpecial = "none") -> list[int]:
        """Encode text to ids; special tokens in the text are plain text unless allowed.

        allowed_special: "none" (treat them as text), "none_raise" (raise if one occurs), "all",
        or a set of special tokens to honour (the others stay text). Added tokens that are not
        special are always matched (as in Hugging Face). Hugging Face's encode(text,
        add_special_tokens=False) equals encode(text, "all"); with encode_special_tokens=True
        it equals encode(text).
        """
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        matchers = self._matchers_for(text, allowed_special)
        if matchers == (None, None):
            return self.encode_ordinary(text)
        ids: list[int] = []
        encode = self._encode_normalized
        for token_id, piece in segments(text, matchers, self._normalize):
            if token_id is not None:
                ids.append(token_id)
            else:
                ids += encode(piece)
        return ids

    def _matchers_for(self, text: str, allowed_special: AllowedSpecial) -> tuple:
        """(raw, normalized) matchers of the added tokens to find in `text`, cached per allowed set."""
        key = frozenset(self._allowed(text, allowed_special))
        matchers = self._matchers.get(key)
        if matchers is None:
            matchers = self._matchers[key] = build_matchers(self._added, key, self._normalize)
        return matchers

    def _allowed(self, text: str, allowed_special: AllowedSpecial) -> set[str]:
        if isinstance(allowed_special, str):
            if allowed_special == "none":
                return set()
            if allowed_special == "all":
                allowed = set(self._special)
            elif allowed_special == "none_raise":
                found = self._special_rx.search(text) if self._special_rx else None
                if found:
                    raise ValueError(f"special token {found.group()!r} found in the text (allowed_special='none_raise')")
                return set()
            else:
                raise ValueError(f"allowed_special must be 'none', 'none_raise', 'all' or a set, got {allowed_special!r}")
        else:
            allowed = set(allowed_special)
            unknown = allowed - set(self._special)
            if unknown:
                raise ValueError(f"allowed_special names unknown special tokens: {sorted(unknown)}")
        if not allowed or not any(s in text for s in allowed):
            return set()
        return allowed

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode text with no added-token handling: normalize, pre-tokenize, then BPE each (cached) chunk."""
        if self._normalize is not None:
            text = self._normalize(text)
        return self._encode_normalized(text)

    def _encode_normalized(self, text: str) -> list[int]:
        get = self._cache.__getitem__
        if self._pre is not None:
            return list(chain.from_iterable(map(get, self._pre(text))))
        if self.add_prefix_space and text and not text.startswith(" "):
            text = " " + text
        if len(text) <= SUB_BLOCK_CHARS or self.pattern not in BLOCKABLE:
            findall = self._findall_ascii if text.isascii() else self._findall  # isascii() is O(1)
            return list(chain.from_iterable(map(get, findall(text))))
        # Blocks are cut where no split crosses; a block with a non-ASCII character is cut again into
        # small ones, so that a few such characters do not send all the text down the slower path.
        ids: list[int] = []
        findall_ascii, findall, pattern = self._findall_ascii, self._findall, self.pattern
        for block in split_blocks(text, BLOCK_CHARS, pattern):
            if block.isascii():
                ids += chain.from_iterable(map(get, findall_ascii(block)))
                continue
            for sub in split_blocks(block, SUB_BLOCK_CHARS, pattern):
                ids += chain.from_iterable(map(get, (findall_ascii if sub.isascii() else findall)(sub)))
        return ids

    def encode_large(self, text: str, allowed_special: AllowedSpecial = "none", *, processes: int = 1,
                     progress: bool = False, block_chars: int = 1 << 20) -> list[int]:
        """encode() for a big text, in blocks, with an optional progress bar and worker processes.

        The ids are exactly encode(text)'s whatever `processes` is: added tokens are found and the
        text normalized in this process first, then the normalized text is cut into blocks where
        no split crosses (see split_blocks) and each block is pre-tokenized and merged, in order.
        With a pre-tokenizer chain or a user pattern, no cut is known to be safe: one block.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode_large expects a str, got {type(text).__name__}")
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        matchers = self._matchers_for(text, allowed_special)
        if matchers == (None, None):
            parts = [(None, self._normalize(text) if self._normalize else text)]
        else:
            parts = list(segments(text, matchers, self._normalize))
        cuttable = self._pre is None and self.pattern in BLOCKABLE
        work: list = []  # ids (an added token) or a block of text, in order
        for token_id, piece in parts:
            if token_id is not None:
                work.append(token_id)
            else:
                work += split_blocks(piece, block_chars, self.pattern) if cuttable else [piece]
        from tqdm import tqdm
        bar = tqdm(total=sum(len(w) for w in work if isinstance(w, str)), unit="char", unit_scale=True,
                   disable=not progress, desc="encoding", leave=False)
        ids: list[int] = []
        blocks = [w for w in work if isinstance(w, str)]
        try:
            with encoded_blocks(self, blocks, processes) as results:
                for w in work:
                    if isinstance(w, str):
                        ids += next(results)
                        bar.update(len(w))
                    else:
                        ids.append(w)
        finally:
            bar.close()
        return ids

    def encode_batch(self, texts: Iterable[str], allowed_special: AllowedSpecial = "none") -> list[list[int]]:
        """Encode several texts."""
        return [self.encode(t, allowed_special) for t in texts]

    def encode_file(self, path: Union[str, os.PathLike], allowed_special: AllowedSpecial = "none") -> list[int]:
        """Encode a whole UTF-8 file as one text."""
        with open(path, encoding="utf-8", newline="") as f:
            return self.encode(f.read(), allowed_special)

    # -- decoding ----------------------------------------------------------------------------

    def decode(self, ids: Iterable[int], errors: str = "replace", skip_special_tokens: bool = False) -> str:
        """Decode ids to text; bytes cut mid-character become U+FFFD with errors="replace"."""
        ids = list(ids)
        if ids and (min(ids) < 0 or max(ids) >= len(self._id_to_bytes)):
            bad = next(i for i in ids if not 0 <= i < len(self._id_to_bytes))
            raise ValueError(f"token id {bad} is out of range [0, {len(self._id_to_bytes)})")
        if skip_special_tokens and self._special:
            ids = [i for i in ids if i not in self._special_by_id]
        try:
            data = b"".join(map(self._id_to_bytes.__getitem__, ids))
        except TypeError:
            raise ValueError(f"token id {next(i for i in ids if self._id_to_bytes[i] is None)} is unused "
                             f"(a gap in the vocabulary's ids)") from None
        return data.decode("utf-8", errors)

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The raw bytes of ids (special tokens as their UTF-8)."""
        return b"".join(self.id_to_bytes(i) for i in ids)

    # -- files -------------------------------------------------------------------------------

    def to_json(self) -> dict:
        """The Hugging Face tokenizer.json content as a dict."""
        return tokenizer_json.to_document(TokenizerData(
            id_to_bytes=self._id_to_bytes, merges=self._merges, added_tokens=self._added,
            normalizer=self._normalizer_node, pre_tokenizer=self._pre_tokenizer_node, pattern=self.pattern,
            add_prefix_space=self.add_prefix_space, ignore_merges=self.ignore_merges, kept=self._file_parts))

    @classmethod
    def from_json(cls, document: Any) -> "Tokenizer":
        """Build a Tokenizer from tokenizer.json content (a dict), validating every part it uses."""
        data = tokenizer_json.from_document(document)
        try:
            tok = cls(data.id_to_bytes, data.merges, {}, add_prefix_space=False, ignore_merges=data.ignore_merges,
                      normalizer=data.normalizer, pre_tokenizer=data.pre_tokenizer, added_tokens=data.added_tokens)
        except ValueError as exc:  # bpe.normalize's UnsupportedComponent included
            raise TokenizerFileError(str(exc)) from None
        tok._file_parts = data.kept
        return tok

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write a Hugging Face tokenizer.json atomically (temp file in the same folder, then rename).

        A new file gets mode 0644 (mkstemp's 0600 would hide it from other users); an existing file
        keeps its mode. An OSError names `path`, never the temporary file.
        """
        tokenizer_json.write(path, self.to_json())

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "Tokenizer":
        """Read a byte-level BPE tokenizer.json (ours or Hugging Face's), validating it.

        A problem raises TokenizerFileError (a ValueError) with one line naming the file.
        """
        document = tokenizer_json.read(path)
        with tokenizer_json.errors_naming(path):
            return cls.from_json(document)

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, merges={len(self._merges)}, special_tokens={list(self._special)})"
