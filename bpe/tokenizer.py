"""Tokenizer: byte-level BPE encode/decode with special tokens, saved as a Hugging Face tokenizer.json."""
from __future__ import annotations

import errno
import json
from array import array
import os
import re
import stat
import tempfile
from heapq import heapify, heappop, heappush
from itertools import chain, islice, repeat
from operator import add, itemgetter
from typing import Iterable, Union

import regex

from .added import AddedToken, Matcher, hf_decoded_bytes
from .normalize import compile_normalizer
from .pretokenize import (
    BYTES_IN_HF_ORDER, GPT2_PATTERN, GPT4_PATTERN, GPT4_PATTERN_HF, PreTokenizer, ascii_findall, bytes_to_token,
    resolve_pattern, splitter, token_to_bytes,
)

AllowedSpecial = Union[str, Iterable[str]]

NO_RANK = 1 << 62
# Chunks longer than this (in bytes) are merged with a heap (n log n) instead of rescanning all
# pairs after each merge (n^2).
LONG_CHUNK = 64
# Chunks longer than this are merged rank by rank with str.split/join in C (_merge_passes): the
# heap's Python objects cost ~200 bytes and several microseconds per byte of a huge chunk.
PASSES_CHUNK = 8192
# Only chunks shorter than this are cached (as Hugging Face's BPE does): a cache of a few huge
# chunks would hold their text and ids for nothing.
CACHE_MAX_CHARS = 256
# The chunk cache is cleared when it grows past this many entries, bounding memory on huge corpora.
CACHE_LIMIT = 500_000
# Text is pre-tokenized in blocks of about this many characters, cut where no split can cross.
BLOCK_CHARS = 1 << 16
SUB_BLOCK_CHARS = 1 << 11  # blocks with a non-ASCII character are cut again into blocks of this size
_BLOCKABLE = {GPT2_PATTERN, GPT4_PATTERN, GPT4_PATTERN_HF}


class _ChunkCache(dict):
    """pre-token -> ids; a miss runs BPE on the chunk (dict lookups stay in C on hits)."""

    def __init__(self, encode_chunk) -> None:
        super().__init__()
        self.encode_chunk = encode_chunk

    def __missing__(self, chunk: str) -> tuple[int, ...]:
        ids = self.encode_chunk(chunk)
        if len(chunk) < CACHE_MAX_CHARS:
            if len(self) >= CACHE_LIMIT:
                self.clear()
            self[chunk] = ids
        return ids


class Tokenizer:
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
        self._id_to_bytes = list(id_to_bytes)
        if added_tokens is None:
            added_tokens = [AddedToken(s, i) for s, i in special_tokens.items()]
        self._added: list[AddedToken] = list(added_tokens)
        self._added_by_id = {t.id: t for t in self._added}
        if len(self._added_by_id) != len(self._added):
            raise ValueError("two added tokens have the same id")
        for t in self._added:
            if not 0 <= t.id < len(self._id_to_bytes):
                raise ValueError(f"added token {t.content!r} has id {t.id}, outside the vocabulary's "
                                 f"{len(self._id_to_bytes)} ids")
        self._special = {t.content: t.id for t in self._added if t.special}
        self._special_by_id = {i: s for s, i in self._special.items()}
        self._normalize = compile_normalizer(normalizer)
        self._normalizer_node = normalizer
        for t in self._added:  # what decode gives (HF decodes a normalized token's normalized form)
            shown = self._normalize(t.content) if t.normalized and self._normalize else t.content
            self._id_to_bytes[t.id] = hf_decoded_bytes(shown)
        self._bytes_to_id = {b: i for i, b in enumerate(self._id_to_bytes)
                             if b is not None and i not in self._added_by_id}
        missing = [b for b in range(256) if bytes([b]) not in self._bytes_to_id]
        if missing:
            raise ValueError(f"the vocab lacks {len(missing)} of the 256 byte tokens (first: byte {missing[0]})")
        self._byte_ids = [self._bytes_to_id[bytes([b])] for b in range(256)]
        self._merges = [(a, b) for a, b in merges]
        parts = {x for merge in self._merges for x in merge}
        usable = lambda x: 0 <= x < len(self._id_to_bytes) and x not in self._added_by_id \
            and self._id_to_bytes[x] is not None  # noqa: E731
        if parts and not all(map(usable, parts)):
            rank, bad = next((r, x) for r, m in enumerate(self._merges) for x in m if not usable(x))
            raise ValueError(f"merge {rank} {self._merges[rank]}: id {bad} is not a byte-level token")
        id_to_bytes, get_id = self._id_to_bytes, self._bytes_to_id.get
        self._merge_result: list[int] = [get_id(id_to_bytes[a] + id_to_bytes[b]) for a, b in self._merges]
        if None in self._merge_result and self._added:
            # a merge may make a token that a file also lists as an added token (both in its vocab)
            added_bytes = {self._id_to_bytes[t.id]: t.id for t in self._added}
            self._merge_result = [r if r is not None else added_bytes.get(id_to_bytes[a] + id_to_bytes[b])
                                  for r, (a, b) in zip(self._merge_result, self._merges)]
        if None in self._merge_result:
            rank = self._merge_result.index(None)
            raise ValueError(f"merge {rank} {self._merges[rank]}: the merged token is not in the vocab")
        # pair -> rank; reversed so that the first rank wins if a file lists a pair twice
        n = len(self._merges)
        self._ranks: dict[tuple[int, int], int] = dict(zip(reversed(self._merges), range(n - 1, -1, -1)))
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
        self.ignore_merges = ignore_merges
        self._special_rx = (
            regex.compile("(" + "|".join(regex.escape(s) for s in sorted(self._special, key=len, reverse=True)) + ")")
            if self._special else None
        )
        self._matchers: dict[frozenset, tuple] = {}
        self._cache = _ChunkCache(self._encode_chunk)
        self._pass_tables = None  # built on the first long chunk, see _merge_passes
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
        key = frozenset(self._allowed(text, allowed_special))
        matchers = self._matchers.get(key)
        if matchers is None:
            matchers = self._matchers[key] = self._build_matchers(key)
        if matchers == (None, None):
            return self.encode_ordinary(text)
        ids: list[int] = []
        encode = self._encode_normalized
        for token_id, piece in self._segments(text, matchers):
            if token_id is not None:
                ids.append(token_id)
            else:
                ids += encode(piece)
        return ids

    def _segments(self, text: str, matchers: tuple):
        """(added token id, None) and (None, normalized text) in order: HF's two added-token passes."""
        raw, normed = matchers
        normalize = self._normalize
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

    def _build_matchers(self, allowed: frozenset) -> tuple:
        """(raw, normalized): matchers for the added tokens to find, as HF's two passes."""
        tokens = [t for t in self._added if not t.special or t.content in allowed]
        raw = [(t.content, t) for t in tokens if not t.normalized]
        norm = self._normalize
        normed = [(norm(t.content) if norm else t.content, t) for t in tokens if t.normalized]
        return (Matcher(raw) if raw else None), (Matcher(normed) if normed else None)

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
        if len(text) <= SUB_BLOCK_CHARS or self.pattern not in _BLOCKABLE:
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
        key = frozenset(self._allowed(text, allowed_special))
        matchers = self._matchers.get(key)
        if matchers is None:
            matchers = self._matchers[key] = self._build_matchers(key)
        if matchers == (None, None):
            segments = [(None, self._normalize(text) if self._normalize else text)]
        else:
            segments = list(self._segments(text, matchers))
        cuttable = self._pre is None and self.pattern in _BLOCKABLE
        work: list = []  # ids (an added token) or a block of text, in order
        for token_id, piece in segments:
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
            if processes == 1 or len(blocks) < 2:
                results = map(self._encode_normalized, blocks)
                pool = None
            else:
                import multiprocessing
                n = min(processes, len(blocks))
                global _worker_tokenizer
                if "fork" in multiprocessing.get_all_start_methods():  # workers inherit this tokenizer
                    _worker_tokenizer = self
                    pool = multiprocessing.get_context("fork").Pool(n)
                else:  # spawn: each worker rebuilds it from its tokenizer.json content
                    pool = multiprocessing.get_context().Pool(n, _worker_init, (self.to_json(),))
                results = map(_unpack, pool.imap(_worker_encode, blocks))
            it = iter(results)
            for w in work:
                if isinstance(w, str):
                    ids += next(it)
                    bar.update(len(w))
                else:
                    ids.append(w)
            if pool is not None:
                pool.close()
                pool.join()
        finally:
            bar.close()
            if processes > 1 and len(blocks) >= 2:
                pool.terminate()
                _worker_tokenizer = None
        return ids

    def encode_batch(self, texts: Iterable[str], allowed_special: AllowedSpecial = "none") -> list[list[int]]:
        """Encode several texts."""
        return [self.encode(t, allowed_special) for t in texts]

    def encode_file(self, path: Union[str, os.PathLike], allowed_special: AllowedSpecial = "none") -> list[int]:
        """Encode a whole UTF-8 file as one text."""
        with open(path, encoding="utf-8", newline="") as f:
            return self.encode(f.read(), allowed_special)

    def clear_cache(self) -> None:
        """Forget cached chunk encodings."""
        self._cache.clear()

    def _encode_chunk(self, chunk: str) -> tuple[int, ...]:
        data = chunk.encode("utf-8")
        if self.ignore_merges:
            whole = self._bytes_to_id.get(data)
            if whole is not None:
                return (whole,)
        n = len(data)
        if n > PASSES_CHUNK and self._tables_for_passes():
            return self._merge_passes(data)
        byte_ids = self._byte_ids
        ids = [byte_ids[b] for b in data]
        if n > LONG_CHUNK:
            return self._merge_long(ids)
        if n < 2:
            return tuple(ids)
        ranks_get = self._ranks.get
        results = self._merge_result
        # ranks[i] is the rank of the pair (ids[i], ids[i + 1]); a merge changes only its two neighbours.
        ranks = list(map(ranks_get, zip(ids, ids[1:]), repeat(NO_RANK)))
        while ranks:
            rank = min(ranks)
            if rank == NO_RANK:
                break
            i = ranks.index(rank)  # one merge at a time: lowest rank, leftmost first (HF's merge_all)
            new = ids[i] = results[rank]
            del ids[i + 1]
            del ranks[i]
            if i < len(ranks):
                ranks[i] = ranks_get((new, ids[i + 1]), NO_RANK)
            if i:
                ranks[i - 1] = ranks_get((ids[i - 1], new), NO_RANK)
        return tuple(ids)

    def _tables_for_passes(self):
        """The tables _merge_passes needs, or () when the merges are not well ordered.

        Merging rank by rank (every occurrence of the lowest-rank pair, left to right, then the next
        rank) equals Hugging Face's heap order (lowest rank first, leftmost among equals) when no pair
        that a merge creates has a lower rank than that merge: every merge that uses a token must
        rank after every merge that makes it. Trained files always are; a hand-made file might not.
        """
        if self._pass_tables is None:
            made_last: dict[int, int] = {}
            for rank, t in enumerate(self._merge_result):
                made_last[t] = rank
            used_first: dict[int, int] = {}
            for rank, (a, b) in enumerate(self._merges):
                used_first.setdefault(a, rank)
                used_first.setdefault(b, rank)
            well_ordered = all(made_last[t] < used_first.get(t, NO_RANK) for t in made_last)
            if well_ordered and len(self._id_to_bytes) <= 0x110000:  # every id must be a chr()
                byte_chars = "".join(map(chr, self._byte_ids))  # byte b -> chr(its id)
                rank_of = {chr(a) + chr(b): r for (a, b), r in self._ranks.items()}
                self._pass_tables = (byte_chars, rank_of, [chr(a) + chr(b) for a, b in self._merges])
            else:
                self._pass_tables = ()
        return self._pass_tables

    def _merge_passes(self, data: bytes) -> tuple[int, ...]:
        """BPE of a long chunk, one rank at a time, in C: the ids are the characters of a str.

        Each pass replaces every occurrence of one pair left to right with str.split/join, then
        queues the ranks of the pairs the new token forms with its neighbours. The time is one C
        pass over the chunk per rank that occurs (the ~25 ranks of 10 MB of one letter take a
        second) plus a C-level step per merged occurrence; memory is a few copies of the chunk.
        """
        byte_chars, rank_of, pair_chars = self._tables_for_passes()
        results = self._merge_result
        s = data.decode("latin-1").translate(byte_chars)  # byte b -> chr(its id)
        last, first = itemgetter(-1), itemgetter(0)
        queued = {r for p in set(map(add, s, s[1:])) if (r := rank_of.get(p)) is not None}
        heap = list(queued)
        heapify(heap)
        while heap:
            rank = heappop(heap)
            pieces = s.split(pair_chars[rank])
            if len(pieces) == 1:
                continue
            new = chr(results[rank])
            s = new.join(pieces)
            # the new token's neighbours: the end of the piece before each occurrence, the start of
            # the piece after it, and itself where two occurrences touch (an empty piece between)
            k = len(pieces)
            formed = set(map(add, map(last, filter(None, islice(pieces, k - 1))), repeat(new)))
            formed.update(map(add, repeat(new), map(first, filter(None, islice(pieces, 1, k)))))
            if pieces.count("") > (pieces[0] == "") + (pieces[-1] == ""):
                formed.add(new + new)
            for pair in formed:
                r = rank_of.get(pair)
                if r is not None and r not in queued:
                    queued.add(r)
                    heappush(heap, r)
        return tuple(map(ord, s))

    def _merge_long(self, ids: list[int]) -> tuple[int, ...]:
        # A heap of (rank, position) over a linked list: lowest rank first, leftmost among equals.
        ranks_get = self._ranks.get
        n = len(ids)
        nxt = list(range(1, n + 1))
        prv = list(range(-1, n - 1))
        alive = [True] * n
        heap = [(r, i) for i, p in enumerate(zip(ids, ids[1:])) if (r := ranks_get(p)) is not None]
        heapify(heap)
        while heap:
            rank, i = heappop(heap)
            j = nxt[i]
            if not alive[i] or j >= n or ranks_get((ids[i], ids[j])) != rank:
                continue  # stale: this position was merged away or its pair changed
            ids[i] = self._merge_result[rank]
            alive[j] = False
            k = nxt[j]
            nxt[i] = k
            if k < n:
                prv[k] = i
                r = ranks_get((ids[i], ids[k]))
                if r is not None:
                    heappush(heap, (r, i))
            p = prv[i]
            if p >= 0:
                r = ranks_get((ids[p], ids[i]))
                if r is not None:
                    heappush(heap, (r, p))
        return tuple(x for x, keep in zip(ids, alive) if keep)

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
        from .tokenizer_json import to_json
        return to_json(self)

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write a Hugging Face tokenizer.json atomically (temp file in the same folder, then rename).

        A new file gets mode 0644 (mkstemp's 0600 would hide it from other users); an existing file
        keeps its mode. An OSError names `path`, never the temporary file.
        """
        text = json.dumps(self.to_json(), ensure_ascii=False, indent=2)
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

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "Tokenizer":
        """Read a byte-level BPE tokenizer.json (ours or Hugging Face's), validating it."""
        from .tokenizer_json import read_tokenizer_json
        return read_tokenizer_json(path, cls)

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, merges={len(self._merges)}, special_tokens={list(self._special)})"


_INDENT_THEN_TEXT = re.compile(r"[ \t]*\S")


def split_blocks(text: str, size: int = BLOCK_CHARS, pattern: str = GPT4_PATTERN) -> list[str]:
    r"""Cut text into blocks of about `size` characters at newlines that no split of `pattern` crosses.

    GPT-2's pattern: cut before a "\n" that follows a non-space; no alternative reaches from a
    non-space into whitespace, and the whitespace run starting at the "\n" is matched the same way
    from there. GPT-4's: cut after a "\n" that follows a non-space and precedes a non-space, or
    spaces/tabs then a non-space (an indented line): the "\n" then ends a piece (`\s*[\r\n]`, or
    `[\r\n]*+` after punctuation), at a block's end too. Checked on hostile text by the tests.
    """
    gpt2 = pattern == GPT2_PATTERN
    blocks = []
    start, n = 0, len(text)
    while n - start > size:
        j = text.find("\n", start + size)
        while j != -1:
            if not text[j - 1].isspace():
                if gpt2:
                    cut = j
                    break
                if _INDENT_THEN_TEXT.match(text, j + 1):
                    cut = j + 1
                    break
            j = text.find("\n", j + 1)
        if j == -1 or cut <= start or cut >= n:
            break
        blocks.append(text[start:cut])
        start = cut
    blocks.append(text[start:])
    return blocks


_worker_tokenizer: "Tokenizer | None" = None


def _worker_init(data: dict) -> None:
    global _worker_tokenizer
    from .tokenizer_json import from_json
    _worker_tokenizer = from_json(data, Tokenizer)


def _worker_encode(block: str) -> bytes:
    return array("q", _worker_tokenizer._encode_normalized(block)).tobytes()  # 8 bytes an id, pickled fast


def _unpack(data: bytes) -> list[int]:
    ids = array("q")
    ids.frombytes(data)
    return ids.tolist()
