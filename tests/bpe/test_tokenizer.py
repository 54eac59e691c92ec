"""Encoding and decoding: lossless round trips, special tokens, invalid bytes, long chunks."""
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bpe
from bpe import tokenizer as tokmod
from bpe.pretokenize import GPT2_PATTERN, GPT4_PATTERN
from bpe.tokenizer import split_blocks

from .corpora import multilingual_text

TRAIN_TEXT = multilingual_text(400, seed=1) + "the quick brown fox jumps over the lazy dog\n" * 20


@pytest.fixture(scope="module")
def tok() -> bpe.Tokenizer:
    return bpe.train([TRAIN_TEXT], vocab_size=700)


@pytest.fixture(scope="module")
def tok_gpt2() -> bpe.Tokenizer:
    return bpe.train([TRAIN_TEXT], vocab_size=700, pattern="gpt2")


EDGE_CASES = [
    "", " ", "\n", "\r\n", "\r\n\r\n", "a\r\nb", "\t\t  \n \n", " " * 300, "\n" * 100, "x" * 5000,
    "😀", "👨‍👩‍👧 🇫🇷 👍🏽", "你好，世界", "e\u0301\u0301", "\x00\x01\x1f\x7f", "\ufeffBOM", "\U0010ffff",
    "don't I'LL WE'VE", "1234567890123", "<bos>", "a<eos>b", "<<bos>>", "naïve café", "\u2028\u2029\x85",
]


@pytest.mark.parametrize("text", EDGE_CASES)
def test_round_trip_edge_cases(tok, tok_gpt2, text):
    assert tok.decode(tok.encode(text)) == text
    assert tok_gpt2.decode(tok_gpt2.encode(text)) == text


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_round_trip_arbitrary_unicode(tok, text):
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab \n\t\r!1é😀"), max_size=400))
def test_round_trip_arbitrary_whitespace_mixes(tok_gpt2, text):
    assert tok_gpt2.decode(tok_gpt2.encode(text)) == text


def test_encoding_is_the_same_with_an_empty_or_a_warm_cache(tok):
    text = TRAIN_TEXT[:3000]
    tok.clear_cache()
    cold = tok.encode(text)
    assert tok.encode(text) == cold


def test_long_chunks_use_the_heap_merge_with_identical_results(tok):
    # a chunk longer than LONG_CHUNK goes through the heap; compare with the quadratic rescan
    for chunk in ["abcabcabc" * 20, "the" * 40, "ab" * 33 + "a", "x" * 200]:
        data = chunk.encode()
        ids = [tok._byte_ids[b] for b in data]
        quadratic = _rescan_merge(tok, ids)
        assert tok._merge_long(list(ids)) == quadratic


RUNS_TEXT = TRAIN_TEXT + "x" * 300 + "\n" + "ab" * 150 + "\n" + "é" * 120 + "\n" + "=" * 80 + "\n" + "你好" * 60 + "\n"
HUGE_CHUNKS = ["x" * 20_000 + "y", "ab" * 6000 + "a", "é" * 9000, "=" * 9001, "你好" * 3000, "abcabcabc" * 1000,
               "".join(random.Random(3).choice("thequickbrownfoxé") for _ in range(12_000))]


@pytest.fixture(scope="module")
def tok_runs() -> bpe.Tokenizer:
    return bpe.train([RUNS_TEXT], vocab_size=900)


def test_huge_chunks_merged_rank_by_rank_equal_the_heap(tok_runs):
    assert tok_runs._tables_for_passes()  # a trained tokenizer's merges are well ordered
    for chunk in HUGE_CHUNKS:
        data = chunk.encode()
        passes = tok_runs._merge_passes(data)
        assert passes == tok_runs._merge_long([tok_runs._byte_ids[b] for b in data])
        assert tok_runs.encode(chunk) == list(passes) and tok_runs.decode(passes) == chunk


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(["x", "xx", "ab", "a", "b", "é", "=", "你好", "the"]), max_size=80).map("".join))
def test_rank_by_rank_merging_equals_the_heap_on_any_chunk(tok_runs, text):
    data = text.encode()
    assert tok_runs._merge_passes(data) == tok_runs._merge_long([tok_runs._byte_ids[b] for b in data])


def test_merges_not_well_ordered_fall_back_to_the_heap():
    # "abc" is made by merge 1 and again by merge 4, but merge 2 uses it in between
    b = {c: tokmod.BYTES_IN_HF_ORDER.index(ord(c)) for c in "abcd"}
    merges = [(b["a"], b["b"]), (256, b["c"]), (257, b["d"]), (b["b"], b["c"]), (b["a"], 259)]
    tok = bpe.Tokenizer.from_merges(merges, special_tokens=())
    assert tok._tables_for_passes() == ()
    chunk = "abcd" * 3000
    assert tok.encode(chunk) == list(tok._merge_long([tok._byte_ids[x] for x in chunk.encode()]))


def test_one_huge_chunk_encodes_in_bounded_memory_and_is_not_cached():
    # scaled down from 10 MB of one letter: the heap used ~200 bytes per byte (2.1 GB, 58 s for 10 MB)
    import tracemalloc
    n = 200_000
    tok = bpe.train(["a" * n], vocab_size=300)
    tracemalloc.start()
    try:
        ids = tok.encode("a" * n)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert tok.decode(ids) == "a" * n and len(ids) == 1  # the training made the whole run one token
    assert peak < 25 * n, f"{peak / n:.0f} bytes per byte"
    assert "a" * n not in tok._cache  # chunks of 256+ characters are not cached (as in HF)


def _rescan_merge(tok, ids):
    # merge the lowest-rank adjacent pair everywhere, left to right, until none is left
    while True:
        ranks = [tok._ranks.get(p) for p in zip(ids, ids[1:])]
        ranked = [r for r in ranks if r is not None]
        if not ranked:
            return tuple(ids)
        rank = min(ranked)
        a, b = tok.merges[rank]
        out, i = [], 0
        while i < len(ids):
            if i + 1 < len(ids) and ids[i] == a and ids[i + 1] == b:
                out.append(tok._merge_result[rank])
                i += 2
            else:
                out.append(ids[i])
                i += 1
        ids = out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(list("thequickbrownfoxéaa 😀") + ["the", " the", "ab"]), max_size=40).map("".join))
def test_short_chunk_merges_equal_the_textbook_rescan(tok, text):
    for chunk in tok._findall(text):
        ids = [tok._byte_ids[b] for b in chunk.encode()]
        assert tok._encode_chunk(chunk) == _rescan_merge(tok, ids)


def test_merges_are_applied_in_rank_order(tok):
    word = "quick"
    ids = tok.encode(word)
    assert b"".join(tok.id_to_bytes(i) for i in ids) == word.encode()
    assert tuple(ids) == _rescan_merge(tok, [tok._byte_ids[b] for b in word.encode()])


# -- special tokens ---------------------------------------------------------------------------

def test_special_tokens_are_text_by_default(tok):
    ids = tok.encode("a<bos>b")
    assert tok.bos_id not in ids
    assert tok.decode(ids) == "a<bos>b"


def test_allowed_special_all_encodes_them_as_single_ids(tok):
    ids = tok.encode("<bos>hello<eos><eos>", allowed_special="all")
    assert ids[0] == tok.bos_id and ids[-2:] == [tok.eos_id, tok.eos_id]
    assert ids[1:-2] == tok.encode("hello")
    assert tok.decode(ids) == "<bos>hello<eos><eos>"


def test_special_tokens_adjacent_to_text_split_it_like_separate_texts(tok):
    ids = tok.encode("hi <eos> there", allowed_special="all")
    assert ids == tok.encode("hi ") + [tok.eos_id] + tok.encode(" there")


def test_allowed_special_set_honours_only_the_listed_ones(tok):
    ids = tok.encode("x<bos>y<eos>z", allowed_special={"<eos>"})
    assert tok.eos_id in ids and tok.bos_id not in ids
    assert ids == tok.encode("x<bos>y") + [tok.eos_id] + tok.encode("z")


def test_none_raise_rejects_special_tokens_in_text(tok):
    with pytest.raises(ValueError, match="<eos>"):
        tok.encode("end<eos>", allowed_special="none_raise")
    assert tok.encode("plain", allowed_special="none_raise") == tok.encode("plain")


def test_unknown_allowed_special_is_rejected(tok):
    with pytest.raises(ValueError, match="unknown special"):
        tok.encode("x", allowed_special={"<pad>"})
    with pytest.raises(ValueError, match="allowed_special"):
        tok.encode("x", allowed_special="some")


def test_decode_can_skip_special_tokens(tok):
    ids = tok.encode("<bos>hi", allowed_special="all")
    assert tok.decode(ids, skip_special_tokens=True) == "hi"


# -- decoding -----------------------------------------------------------------------------------

def test_decode_of_a_cut_utf8_sequence_does_not_crash(tok):
    ids = tok.encode("😀")
    byte_ids = [tok._byte_ids[b] for b in "😀".encode()]
    assert tok.decode(byte_ids[:2]) == "\ufffd"
    assert tok.decode(byte_ids[:2] + tok.encode("ok")) == "\ufffdok"
    assert tok.decode(ids) == "😀"


def test_decode_of_invalid_bytes_follows_errors(tok):
    bad = [tok._byte_ids[0xFF], tok._byte_ids[ord("a")]]
    assert tok.decode(bad) == "\ufffda"
    assert tok.decode(bad, errors="ignore") == "a"
    with pytest.raises(UnicodeDecodeError):
        tok.decode(bad, errors="strict")
    assert tok.decode_bytes(bad) == b"\xffa"


@pytest.mark.parametrize("bad_id", [-1, 10**6])
def test_decode_rejects_ids_out_of_range(tok, bad_id):
    with pytest.raises(ValueError, match=str(bad_id)):
        tok.decode([5, bad_id])


# -- vocabulary -----------------------------------------------------------------------------------

def test_token_id_lookups(tok):
    assert tok.token_to_id("<eos>") == 1 and tok.id_to_token(1) == "<eos>"
    the = tok.token_to_id("Ġthe")
    assert the is not None and tok.id_to_token(the) == "Ġthe" and tok.id_to_bytes(the) == b" the"
    assert tok.token_to_id("not-a-token-at-all") is None
    assert tok.token_to_id("\x00") is None  # not a byte-level string
    assert tok.id_to_token(tok.vocab_size) is None
    assert len(tok.get_vocab()) == tok.vocab_size


def test_encode_batch_matches_encode(tok):
    texts = ["one", "two <eos>", ""]
    assert tok.encode_batch(texts) == [tok.encode(t) for t in texts]
    assert tok.encode_batch(texts, allowed_special="all")[1][-1] == tok.eos_id


def test_encode_file_matches_encode(tok, tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes("line one\r\nline two\n".encode())
    assert tok.encode_file(path) == tok.encode("line one\r\nline two\n")


def test_encode_rejects_bytes(tok):
    with pytest.raises(TypeError):
        tok.encode(b"abc")


# -- block splitting of big texts ---------------------------------------------------------------

@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "1", " ", "    ", "\n", "\n  ", "\t", "\r", "!", ".", "'", "é",
                                 "\u3000", "\x1c", "\x85"]), max_size=150).map("".join),
       st.integers(1, 20))
def test_block_splitting_gives_the_whole_text_splits(text, size):
    for pattern in (GPT2_PATTERN, GPT4_PATTERN):
        blocks = split_blocks(text, size, pattern)
        assert "".join(blocks) == text
        rx = bpe.pretokenize.compile_pattern(pattern)
        assert [c for b in blocks for c in rx.findall(b)] == rx.findall(text)


def test_big_text_encodes_like_small_pieces_would(tok, monkeypatch):
    text = TRAIN_TEXT * 3
    whole = tok.encode(text)
    monkeypatch.setattr(tokmod, "BLOCK_CHARS", 500)
    monkeypatch.setattr(tokmod, "SUB_BLOCK_CHARS", 50)
    assert len(split_blocks(text, 500)) > 10
    assert tok.encode(text) == whole
    assert tok.decode(whole) == text


def test_constructor_rejects_merges_of_special_or_unknown_ids():
    base = bpe.Tokenizer.from_merges([], special_tokens=("<s>",))
    id_to_bytes = [base.id_to_bytes(i) for i in range(base.vocab_size)]
    with pytest.raises(ValueError, match="id 0 is not a byte-level token"):
        bpe.Tokenizer(id_to_bytes, [(0, 5)], {"<s>": 0})
    with pytest.raises(ValueError, match="id 999 is not a byte-level token"):
        bpe.Tokenizer(id_to_bytes, [(5, 6), (5, 999)], {"<s>": 0})
    with pytest.raises(ValueError, match="merge 0 .* not in the vocab"):
        bpe.Tokenizer(id_to_bytes, [(5, 6)], {"<s>": 0})
