"""Byte-level BPE training that reproduces Hugging Face's BpeTrainer merge for merge."""
from __future__ import annotations

import io
import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from heapq import heapify, heappop, heappush
from itertools import chain, islice
from operator import add, itemgetter, mul
from pathlib import Path
from typing import Callable, Iterable, Iterator, Union

from bpe.pretokenize import BYTES_IN_HF_ORDER, ascii_findall, resolve_pattern, splitter
from bpe.tokenizer import Tokenizer

Source = Union[str, os.PathLike]

# A pair (left, right) is the int `left << PAIR_SHIFT | right`: hashing an int is cheaper than a
# tuple, and int order equals Hugging Face's tie-break order (the smaller (left, right) wins).
PAIR_SHIFT = 20
RIGHT_MASK = (1 << PAIR_SHIFT) - 1
# A heap entry is `pair - (count << COUNT_SHIFT)`: one int, smallest = highest count, then smallest pair.
COUNT_SHIFT = 2 * PAIR_SHIFT
PAIR_MASK = (1 << COUNT_SHIFT) - 1
MAX_VOCAB = 1 << PAIR_SHIFT
# Corpus files are read this many characters at a time (then completed to the end of the line).
BLOCK_CHARS = 1 << 20
# Distinct lines held before their words are counted and the lines dropped.
LINE_FLUSH = 1 << 16
# Words longer than this (in bytes) are held as a str of chr(id) and merged with str.split/join.
LONG_WORD = 64


@dataclass
class TrainStats:
    """What a training run did: merges made, seconds, corpus bytes, and tokens after the merges."""

    merges: int
    seconds: float
    corpus_bytes: int
    tokens: int
    unique_words: int

    @property
    def bytes_per_token(self) -> float:
        """Compression of the training corpus (pre-tokenized line by line)."""
        return self.corpus_bytes / max(self.tokens, 1)


def _is_file(item: Source) -> bool:
    # A str is a text unless it looks like a path to an existing file (one line, short).
    if isinstance(item, os.PathLike):
        return True
    return len(item) < 4096 and "\n" not in item and os.path.isfile(item)


def iter_blocks(sources: Iterable[Source], size: int | None = None) -> Iterator[str]:
    """Yield each source as strings of whole lines (a line ends at '\\n' only, as in HF's train(files))."""
    size = size or BLOCK_CHARS
    for item in sources:
        if isinstance(item, (str, os.PathLike)) and _is_file(item):
            path = Path(item)
            if not path.is_file():
                raise FileNotFoundError(f"corpus file not found: {path}")
            try:
                with open(path, encoding="utf-8", newline="\n") as f:  # newline="\n": no translation
                    while block := f.read(size):
                        if not block.endswith("\n"):
                            block += f.readline()
                        yield block
            except UnicodeDecodeError as exc:
                raise ValueError(f"corpus file {path} is not valid UTF-8 ({exc.reason})") from None
        elif isinstance(item, str):
            yield item
        else:
            raise TypeError(f"expected a text (str) or a file path (os.PathLike), got {type(item).__name__}")


def count_words(sources: Iterable[Source], pattern: str = "gpt4") -> tuple[Counter, int]:
    """Count the pre-tokenized words of every line of every source; also return the corpus size in chars.

    Identical lines are pre-tokenized once (blank lines, speaker names, repeated boilerplate).
    """
    findall = splitter(pattern)  # keeps the text between a user pattern's matches, as HF does
    findall_ascii = ascii_findall(resolve_pattern(pattern)) or findall
    words: Counter = Counter()
    lines: Counter = Counter()
    all_ascii = True  # str.isascii() is O(1): knowing every block is ASCII skips the per-line checks
    n_chars = 0
    for block in iter_blocks(sources):
        n_chars += len(block)
        all_ascii = all_ascii and block.isascii()
        lines.update(io.StringIO(block, newline="\n"))  # splits after each "\n" only, in C
        if len(lines) > LINE_FLUSH:  # bound memory on huge corpora of distinct lines
            _count_line_words(lines, words, findall, findall_ascii, all_ascii)
            lines.clear()
    _count_line_words(lines, words, findall, findall_ascii, all_ascii)
    return words, n_chars


def _count_line_words(lines: Counter, words: Counter, findall, findall_ascii, all_ascii: bool) -> None:
    # Lines seen c times add c x their words; lines are grouped by c so each group is one C-level pass.
    groups: dict[int, list[str]] = {1: [line for line, c in lines.items() if c == 1]}
    if len(groups[1]) < len(lines):
        for line, c in lines.items():
            if c > 1:
                if c in groups:
                    groups[c].append(line)
                else:
                    groups[c] = [line]
    for c, group in groups.items():
        if all_ascii:
            ascii_lines, other = group, []
        else:
            ascii_lines = [line for line in group if line.isascii()]
            other = [line for line in group if not line.isascii()]
        # `re` splits ASCII lines twice as fast as `regex`; chain + Counter keep the word loop in C
        found = chain(chain.from_iterable(map(findall_ascii, ascii_lines)), chain.from_iterable(map(findall, other)))
        if c == 1:
            words.update(found)
        else:
            get = words.get
            for word, n in Counter(found).items():
                words[word] = get(word, 0) + n * c


def train(
    files_or_texts: Union[Source, Iterable[Source]],
    vocab_size: int = 8000,
    special_tokens: Iterable[str] = ("<bos>", "<eos>"),
    pattern: str = "gpt4",
    min_frequency: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Tokenizer:
    """Train a byte-level BPE tokenizer; vocab_size counts the special tokens and the 256 bytes."""
    started = time.perf_counter()
    special_tokens = list(special_tokens)
    regex_text = resolve_pattern(pattern)
    _check_settings(vocab_size, special_tokens, min_frequency)
    if isinstance(files_or_texts, (str, os.PathLike)):
        files_or_texts = [files_or_texts]
    words, _ = count_words(files_or_texts, regex_text)
    if not words:
        raise ValueError("the corpus is empty: there is no text to train on")
    corpus_bytes = sum(map(mul, map(len, map(str.encode, words)), words.values()))  # UTF-8 bytes x counts
    n_merges = vocab_size - len(special_tokens) - 256
    merges, symbols, counts = merge_words(words, n_merges, min_frequency, progress)
    offset = len(special_tokens)
    tok = Tokenizer.from_merges(
        [(a + offset, b + offset) for a, b in merges], special_tokens=special_tokens, pattern=regex_text
    )
    tok.train_stats = TrainStats(
        merges=len(merges),
        seconds=time.perf_counter() - started,
        corpus_bytes=corpus_bytes,
        tokens=sum(map(mul, map(len, symbols), counts)),
        unique_words=len(words),
    )
    return tok


def _check_settings(vocab_size: int, special_tokens: list[str], min_frequency: int) -> None:
    if len(set(special_tokens)) != len(special_tokens):
        raise ValueError(f"special_tokens has duplicates: {special_tokens}")
    if any(not isinstance(t, str) or not t for t in special_tokens):
        raise ValueError(f"special tokens must be non-empty strings: {special_tokens}")
    smallest = 256 + len(special_tokens)
    if not isinstance(vocab_size, int) or vocab_size < smallest:
        raise ValueError(
            f"vocab_size={vocab_size} is too small: it counts the 256 bytes and "
            f"{len(special_tokens)} special tokens, so it must be at least {smallest}"
        )
    if vocab_size - len(special_tokens) > MAX_VOCAB:
        raise ValueError(f"vocab_size={vocab_size} is too large (at most {MAX_VOCAB} tokens besides specials)")
    if min_frequency < 0:
        raise ValueError(f"min_frequency must be >= 0, got {min_frequency}")


def merge_words(
    words: dict[str, int],
    n_merges: int,
    min_frequency: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[tuple[int, int]], list, list[int]]:
    """Learn up to n_merges merges from word counts (ids: bytes 0..255 in HF order, then 256, 257, ...).

    Returns the merges (left, right) in rank order and the merged words with their counts. A word
    of more than LONG_WORD bytes is kept as a str whose characters are its ids (chr(id)): merging
    it is then str.split/join in C, see _merge_str_word.
    """
    # Byte b -> its rank among the stand-in characters, so that all ids sort like Hugging Face's.
    table = bytes(BYTES_IN_HF_ORDER.index(b) for b in range(256))
    symbols: list = [w.encode("utf-8").translate(table) for w in words]
    symbols = [list(w) if len(w) <= LONG_WORD else w.decode("latin-1") for w in symbols]
    counts = list(words.values())
    pair_counts, where = _count_pairs(symbols, counts)
    heap = [pair - (count << COUNT_SHIFT) for pair, count in pair_counts.items()]
    heapify(heap)
    merges: list[tuple[int, int]] = []
    spelled = [bytes([b]) for b in BYTES_IN_HF_ORDER]  # bytes of each id, to spot a string made twice
    known = {t: i for i, t in enumerate(spelled)}
    get = pair_counts.get
    push, pop = heappush, heappop
    while len(spelled) - 256 < n_merges and heap:
        entry = pop(heap)
        pair = entry & PAIR_MASK
        count = -(entry >> COUNT_SHIFT)
        current = get(pair, 0)
        if count != current:  # stale (the pair lost occurrences): re-push with its count, as HF does
            if current > 0:
                push(heap, pair - (current << COUNT_SHIFT))
            continue
        if count < 1 or count < min_frequency:
            break
        a, b = pair >> PAIR_SHIFT, pair & RIGHT_MASK
        merges.append((a, b))
        joined = spelled[a] + spelled[b]
        new = known.get(joined)
        if new is None:  # HF reuses the id when two different merges spell the same bytes
            new = known[joined] = len(spelled)
            spelled.append(joined)
        fresh = _apply_merge(a, b, new, where.pop(pair, ()), symbols, counts, pair_counts, where)
        pair_counts[pair] = 0  # it is gone from every word (HF leaves the stale count; same result)
        for p in fresh:
            c = pair_counts[p]
            if c > 0:
                push(heap, p - (c << COUNT_SHIFT))
        if progress is not None and len(merges) % 256 == 0:
            progress(len(merges), n_merges)
    if progress is not None and len(merges) % 256:
        progress(len(merges), n_merges)  # the last report: where training ended
    return merges, symbols, counts


def _count_pairs(symbols: list, counts: list[int]) -> tuple[defaultdict, defaultdict]:
    # Weighted count of every adjacent pair, and for each pair the words that hold it.
    pair_counts: defaultdict = defaultdict(int)
    where: defaultdict = defaultdict(list)
    for i, (w, c) in enumerate(zip(symbols, counts)):
        if len(w) < 2:
            continue
        if w.__class__ is str:  # a long word: its pairs counted in C, the word listed once per pair
            for two, n in Counter(map(add, w, islice(w, 1, None))).items():
                pair = ord(two[0]) << PAIR_SHIFT | ord(two[1])
                pair_counts[pair] += n * c
                where[pair].append(i)
            continue
        for x, y in zip(w, w[1:]):
            pair = x << PAIR_SHIFT | y
            pair_counts[pair] += c
            where[pair].append(i)  # a repeat inside a short word is harmless: the merge re-checks
    return pair_counts, where


def _apply_merge(
    a: int, b: int, new: int, candidates: list[int], symbols: list[list[int]], counts: list[int],
    pair_counts: defaultdict, where: defaultdict,
) -> set[int]:
    """Merge (a, b) -> new in the candidate words, left to right without overlaps.

    Updates the counts of the neighbouring pairs only (the deltas of HF's Word::merge) and returns
    the pairs that gained occurrences, which need a fresh heap entry.
    """
    fresh: set[int] = set()
    add_fresh = fresh.add
    new_hi = new << PAIR_SHIFT
    b_hi = b << PAIR_SHIFT
    step = 2 if a == b else 1  # occurrences of `a` that one merge consumes
    for wi in candidates:
        w = symbols[wi]
        if w.__class__ is str:
            symbols[wi] = _merge_str_word(w, a, b, new, counts[wi], wi, pair_counts, where, add_fresh)
            continue
        n = len(w)
        if n == 2:  # the most common case: the word becomes one token, no neighbours
            if w[0] == a and w[1] == b:
                del w[1]
                w[0] = new
            continue
        left = w.count(a)
        if not left:
            continue  # stale index entry: the pair left this word through an earlier merge
        c = counts[wi]
        i = w.index(a)
        while True:
            if i + 1 < n and w[i + 1] == b:
                if i:
                    p = w[i - 1] << PAIR_SHIFT
                    pair_counts[p | a] -= c
                    k = p | new
                    pair_counts[k] += c
                    add_fresh(k)
                    where[k].append(wi)
                del w[i + 1]
                w[i] = new
                n -= 1
                left -= step
                if i + 1 < n:
                    x = w[i + 1]
                    pair_counts[b_hi | x] -= c
                    k = new_hi | x
                    pair_counts[k] += c
                    add_fresh(k)
                    where[k].append(wi)
            else:
                left -= 1
            if left <= 0:
                break
            i = w.index(a, i + 1)
    return fresh


def _merge_str_word(
    w: str, a: int, b: int, new: int, c: int, wi: int,
    pair_counts: defaultdict, where: defaultdict, add_fresh: Callable[[int], None],
) -> str:
    """_apply_merge for a long word held as a str of chr(id): C-level work, no loop per occurrence.

    str.split on the pair finds the occurrences left to right without overlaps, exactly like HF's
    Word::merge. Its deltas are, for each occurrence, (left, a) -> (left, new) where `left` is the
    symbol before it once merged, and (b, right) -> (new, right) where `right` is the symbol after it
    before merging; the pieces between occurrences give both in bulk: the last character of a
    non-empty piece is a left, the first a right, and an empty piece between two occurrences means
    left = new and right = a. 10 MB of one letter trains in seconds in bounded memory this way.
    """
    pieces = w.split(chr(a) + chr(b))
    k = len(pieces) - 1  # occurrences
    if not k:
        return w  # stale index entry: the pair left this word through an earlier merge
    new_hi, b_hi = new << PAIR_SHIFT, b << PAIR_SHIFT
    touching = pieces.count("") - (pieces[0] == "") - (pieces[-1] == "")  # empties between occurrences
    lefts = Counter(map(itemgetter(-1), filter(None, islice(pieces, k))))
    rights = Counter(map(itemgetter(0), filter(None, islice(pieces, 1, None))))
    deltas: list[tuple[int, int, int]] = []  # (pair losing, pair gaining, occurrences)
    for left, n in lefts.items():
        p = ord(left) << PAIR_SHIFT
        deltas.append((p | a, p | new, n))
    for right, n in rights.items():
        x = ord(right)
        deltas.append((b_hi | x, new_hi | x, n))
    if touching:
        deltas.append((new_hi | a, new_hi | new, touching))  # left = new
        deltas.append((b_hi | a, new_hi | a, touching))  # right = a
    for lost, gained, n in deltas:
        pair_counts[lost] -= n * c
        pair_counts[gained] += n * c
        add_fresh(gained)
        lst = where[gained]
        if not lst or lst[-1] != wi:
            lst.append(wi)
    return chr(new).join(pieces)
