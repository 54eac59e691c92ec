"""The BPE model: a vocabulary of byte strings, ranked merges, and the merge loop that encodes one pre-token.

This is the part of a tokenizer that tokenizer.json calls its "model". Given one pre-token (a
piece of text the pattern split off), BPE starts from its UTF-8 bytes, one token per byte, and
repeatedly merges the adjacent pair with the lowest rank (the earliest learned merge; leftmost
among equals) until no pair has a rank. Three loops give the same result at different sizes:

- `_encode_chunk`: a plain list for short chunks (the common case; one `min` and one `index` a merge),
- `_merge_long`: a heap over a linked list for chunks over LONG_CHUNK bytes (n log n instead of n^2),
- `_merge_passes`: rank by rank with `str.split`/`join` in C for chunks over PASSES_CHUNK bytes.

Encodings of chunks under CACHE_MAX_CHARS characters are cached, so a repeated word costs one
dict lookup. `bpe.tokenizer.Tokenizer` builds on this class: it adds the normalizer, the
pre-tokenizer and the added tokens around it.
"""
from __future__ import annotations

from heapq import heapify, heappop, heappush
from itertools import islice, repeat
from operator import add, itemgetter
from typing import Collection

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


class BPEModel:
    """Byte-level BPE over one pre-token at a time: 256 byte tokens, ranked merges, a chunk cache."""

    def __init__(self, id_to_bytes: list[bytes | None], merges: list[tuple[int, int]],
                 added_ids: Collection[int] = (), ignore_merges: bool = False) -> None:
        """id_to_bytes[i] is token i's bytes, None for an id the vocabulary leaves unused (a gap).

        merges are (left id, right id) in rank order. added_ids are the ids of added tokens: they
        are found in the text before BPE runs, so no byte string maps to them and no merge may use
        them (a merge may make one, when a file lists its result as an added token too).
        ignore_merges: a chunk that is a whole token in the vocabulary is that token (Llama-3's option).
        """
        self._id_to_bytes = id_to_bytes
        self._bytes_to_id = {b: i for i, b in enumerate(id_to_bytes) if b is not None and i not in added_ids}
        missing = [b for b in range(256) if bytes([b]) not in self._bytes_to_id]
        if missing:
            raise ValueError(f"the vocab lacks {len(missing)} of the 256 byte tokens (first: byte {missing[0]})")
        self._byte_ids = [self._bytes_to_id[bytes([b])] for b in range(256)]
        self._merges = [(a, b) for a, b in merges]
        parts = {x for merge in self._merges for x in merge}
        usable = lambda x: 0 <= x < len(id_to_bytes) and x not in added_ids \
            and id_to_bytes[x] is not None  # noqa: E731
        if parts and not all(map(usable, parts)):
            rank, bad = next((r, x) for r, m in enumerate(self._merges) for x in m if not usable(x))
            raise ValueError(f"merge {rank} {self._merges[rank]}: id {bad} is not a byte-level token")
        get_id = self._bytes_to_id.get
        self._merge_result: list[int] = [get_id(id_to_bytes[a] + id_to_bytes[b]) for a, b in self._merges]
        if None in self._merge_result and added_ids:
            # a merge may make a token that a file also lists as an added token (both in its vocab)
            added_bytes = {id_to_bytes[i]: i for i in added_ids}
            self._merge_result = [r if r is not None else added_bytes.get(id_to_bytes[a] + id_to_bytes[b])
                                  for r, (a, b) in zip(self._merge_result, self._merges)]
        if None in self._merge_result:
            rank = self._merge_result.index(None)
            raise ValueError(f"merge {rank} {self._merges[rank]}: the merged token is not in the vocab")
        # pair -> rank; reversed so that the first rank wins if a file lists a pair twice
        n = len(self._merges)
        self._ranks: dict[tuple[int, int], int] = dict(zip(reversed(self._merges), range(n - 1, -1, -1)))
        self.ignore_merges = ignore_merges
        self._cache = _ChunkCache(self._encode_chunk)
        self._pass_tables = None  # built on the first long chunk, see _merge_passes

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
