"""Big texts in blocks: where a text can be cut without changing its pieces, and encoding blocks in workers.

A built-in pattern never splits across certain newlines (see split_blocks), so a text cut there
pre-tokenizes into exactly the pieces of the whole. Encoding works on blocks of BLOCK_CHARS
characters (a block holding a non-ASCII character is cut again into SUB_BLOCK_CHARS, so that the
slower `regex` path sees only those), and Tokenizer.encode_large hands bigger blocks to worker
processes with encoded_blocks.
"""
from __future__ import annotations

import re
from array import array
from contextlib import contextmanager
from typing import Iterator

from bpe.pretokenize import GPT2_PATTERN, GPT4_PATTERN, GPT4_PATTERN_HF

# Text is pre-tokenized in blocks of about this many characters, cut where no split can cross.
BLOCK_CHARS = 1 << 16
SUB_BLOCK_CHARS = 1 << 11  # blocks with a non-ASCII character are cut again into blocks of this size
BLOCKABLE = {GPT2_PATTERN, GPT4_PATTERN, GPT4_PATTERN_HF}  # the patterns split_blocks knows safe cuts for

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


_worker_tokenizer = None  # the tokenizer a worker process encodes with


@contextmanager
def encoded_blocks(tokenizer, blocks: list[str], processes: int) -> Iterator[Iterator[list[int]]]:
    """The ids of each normalized block in order, from `processes` worker processes (or this one).

    Workers are forked where the platform can (they inherit the tokenizer); elsewhere they are
    spawned and each rebuilds the tokenizer from its tokenizer.json content (Tokenizer.from_json).
    The pool is shut down when the with-block ends, also on an error.
    """
    if processes == 1 or len(blocks) < 2:
        yield map(tokenizer._encode_normalized, blocks)
        return
    import multiprocessing
    global _worker_tokenizer
    n = min(processes, len(blocks))
    try:
        if "fork" in multiprocessing.get_all_start_methods():  # workers inherit this tokenizer
            _worker_tokenizer = tokenizer
            pool = multiprocessing.get_context("fork").Pool(n)
        else:  # spawn: each worker rebuilds it from its tokenizer.json content
            pool = multiprocessing.get_context().Pool(n, _worker_init, (type(tokenizer), tokenizer.to_json()))
        try:
            yield map(_unpack, pool.imap(_worker_encode, blocks))
            pool.close()
            pool.join()
        finally:
            pool.terminate()
    finally:
        _worker_tokenizer = None


def _worker_init(cls: type, data: dict) -> None:
    global _worker_tokenizer
    _worker_tokenizer = cls.from_json(data)


def _worker_encode(block: str) -> bytes:
    return array("q", _worker_tokenizer._encode_normalized(block)).tobytes()  # 8 bytes an id, pickled fast


def _unpack(data: bytes) -> list[int]:
    ids = array("q")
    ids.frombytes(data)
    return ids.tolist()
