"""Training: hand-computable merges, HF's id layout and tie-break, settings and inputs."""
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bpe
from bpe.pretokenize import BYTE_TO_CHAR, BYTES_IN_HF_ORDER
from bpe.trainer import count_words, merge_words

LETTERS = r"[a-z]+"  # a user pattern that keeps the hand computations small


def byte_id(ch: str, n_special: int = 2) -> int:
    """Id of a one-byte character in HF's layout: specials, then bytes ordered by stand-in code point."""
    return n_special + BYTES_IN_HF_ORDER.index(ord(ch))


def merge_strings(tok: bpe.Tokenizer) -> list[tuple[str, str]]:
    return [(tok.id_to_token(a), tok.id_to_token(b)) for a, b in tok.merges]


def test_layout_specials_first_then_bytes_by_stand_in_code_point():
    tok = bpe.train(["ab"], vocab_size=258, pattern=LETTERS)
    assert tok.token_to_id("<bos>") == 0 and tok.token_to_id("<eos>") == 1
    assert tok.token_to_id("!") == 2 and tok.token_to_id("~") == 2 + 93
    assert tok.token_to_id("Ā") == 2 + 188  # byte 0x00's stand-in comes after all printable bytes
    assert tok.token_to_id("Ġ") == 2 + BYTES_IN_HF_ORDER.index(0x20)
    stand_ins = [tok.id_to_token(i) for i in range(2, 258)]
    assert stand_ins == sorted(BYTE_TO_CHAR.values())
    assert tok.vocab_size == 258 and tok.merges == []


def test_most_frequent_pair_is_merged_first():
    tok = bpe.train(["cd ab ab", "ab"], vocab_size=260, special_tokens=(), pattern=LETTERS)
    assert merge_strings(tok) == [("a", "b"), ("c", "d")]
    assert tok.token_to_id("ab") == 256 and tok.token_to_id("cd") == 257


def test_ties_go_to_the_smaller_left_id_then_right_id():
    # every pair occurs once: (a, b) < (a, c) < (c, d) by id, whatever the order in the text
    tok = bpe.train(["cd ac ab"], vocab_size=259, special_tokens=(), pattern=LETTERS)
    assert merge_strings(tok) == [("a", "b"), ("a", "c"), ("c", "d")]


def test_tie_break_uses_stand_in_order_not_byte_order():
    # " x" and "xy" both occur once; byte ' ' (0x20) < 'x' but its stand-in 'Ġ' sorts after 'x'
    tok = bpe.train(["xy x"], vocab_size=258, special_tokens=(), pattern="gpt2")
    assert merge_strings(tok)[0] == ("x", "y")


def test_overlapping_pairs_merge_left_to_right():
    tok = bpe.train(["aaa"], vocab_size=258, special_tokens=(), pattern=LETTERS)
    # "a a a": (a,a) -> "aa a", then (aa, a) -> "aaa"
    assert merge_strings(tok) == [("a", "a"), ("aa", "a")]
    assert tok.encode("aaa") == [tok.token_to_id("aaa")]
    assert tok.encode("aaaa") == [tok.token_to_id("aa")] * 2


def test_neighbour_counts_are_updated_after_a_merge():
    # counts: ab 3 (x3 words) ... after ab, (ab, c) has 2 and beats (c, d) with 1
    words = {"abc": 2, "ab": 1, "cd": 1}
    merges, symbols, counts = merge_words(words, 10)
    a, b, c, d = (BYTES_IN_HF_ORDER.index(ord(x)) for x in "abcd")
    assert merges[:2] == [(a, b), (256, c)]
    assert (c, d) in merges
    assert symbols == [[257], [256], [258]] and counts == [2, 1, 1]


def test_weighted_counts_and_repeated_pairs_inside_a_word():
    # "abab" holds (a,b) twice: 2 x 2 = 4 beats "cd" x 3
    merges, _, _ = merge_words({"abab": 2, "cd": 3}, 1)
    a, b = (BYTES_IN_HF_ORDER.index(ord(x)) for x in "ab")
    assert merges == [(a, b)]


def test_vocab_size_counts_specials_and_bytes():
    tok = bpe.train(["the quick brown fox jumps over the lazy dog\n" * 5], vocab_size=270, special_tokens=("<a>", "<b>", "<c>"))
    assert tok.vocab_size == 270 and len(tok.merges) == 270 - 3 - 256


def test_training_stops_when_no_pair_is_left():
    tok = bpe.train(["ab"], vocab_size=1000, special_tokens=(), pattern=LETTERS)
    assert len(tok.merges) == 1 and tok.vocab_size == 257


def test_min_frequency_stops_early():
    tok = bpe.train(["ab ab ab cd"], vocab_size=300, special_tokens=(), pattern=LETTERS, min_frequency=2)
    assert merge_strings(tok) == [("a", "b")]


@pytest.mark.parametrize("vocab_size", [0, 255, 257])
def test_vocab_size_below_bytes_plus_specials_is_rejected(vocab_size):
    with pytest.raises(ValueError, match="vocab_size"):
        bpe.train(["abc"], vocab_size=vocab_size)


def test_empty_corpus_is_rejected():
    with pytest.raises(ValueError, match="empty"):
        bpe.train([""], vocab_size=300)


def test_duplicate_special_tokens_are_rejected():
    with pytest.raises(ValueError, match="duplicates"):
        bpe.train(["abc"], vocab_size=300, special_tokens=("<a>", "<a>"))


def test_bad_pattern_is_named():
    with pytest.raises(ValueError, match="does not compile"):
        bpe.train(["abc"], vocab_size=300, pattern="(")


def test_files_and_texts_give_the_same_tokenizer(tmp_path):
    text = "one two three\nfour  five\r\nsix\n\n seven"
    path = tmp_path / "c.txt"
    path.write_bytes(text.encode())
    from_text = bpe.train([text], vocab_size=300)
    assert bpe.train([path], vocab_size=300).merges == from_text.merges
    assert bpe.train(str(path), vocab_size=300).merges == from_text.merges
    assert bpe.train(text, vocab_size=300).merges == from_text.merges


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        bpe.train([tmp_path / "nope.txt"], vocab_size=300)


def test_lines_are_pre_tokenized_separately_like_hf_train_files():
    # whole-text GPT-2 splitting would give "  " + "\n"; per line (HF) the line's "  \n" is one word
    words, _ = count_words(["x  \ny"], bpe.GPT2_PATTERN)
    assert words == {"x": 1, "  \n": 1, "y": 1}
    # only "\n" ends a line: "\r" and U+2028 stay inside it, as in HF's lines_with_ending
    words, _ = count_words(["a\rb\u2028c\n"], r"[^\n]+\n?")
    assert words == {"a\rb\u2028c\n": 1}


def test_train_stats_report_compression():
    tok = bpe.train(["hello hello hello world\n" * 10], vocab_size=300)
    stats = tok.train_stats
    assert stats.corpus_bytes == len("hello hello hello world\n") * 10
    assert stats.merges == len(tok.merges)
    assert stats.tokens == len(tok.encode("hello hello hello world\n")) * 10
    assert stats.bytes_per_token > 1


def test_merges_that_spell_an_existing_token_reuse_its_id():
    # "ab"+"c" and "a"+"bc" both spell "abc": HF keeps one id and records both merges
    tok = bpe.Tokenizer.from_merges([(0, 1), (1, 2), (256, 2), (0, 257)], special_tokens=())
    assert tok.vocab_size == 256 + 3
    assert tok.merges == [(0, 1), (1, 2), (256, 2), (0, 257)]
    assert tok.decode(tok.encode("!\"#")) == "!\"#"


def test_shakespeare_trains_and_round_trips(shakespeare: Path):
    tok = bpe.train([shakespeare], vocab_size=1000)
    text = shakespeare.read_text(encoding="utf-8")[:20000]
    assert tok.decode(tok.encode(text)) == text
    assert len(tok.merges) == 1000 - 258


def naive_merges(words: dict[str, int], n_merges: int) -> list[tuple[int, int]]:
    """The textbook algorithm: recount every pair before each merge (slow, obviously right)."""
    symbols = {w: [BYTES_IN_HF_ORDER.index(b) for b in w.encode()] for w in words}
    merges = []
    for new in range(256, 256 + n_merges):
        counts: dict[tuple[int, int], int] = {}
        for w, ids in symbols.items():
            for pair in zip(ids, ids[1:]):
                counts[pair] = counts.get(pair, 0) + words[w]
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))  # highest count, then smallest (left, right)
        merges.append(best)
        for w, ids in symbols.items():
            out, i = [], 0
            while i < len(ids):
                if i + 1 < len(ids) and (ids[i], ids[i + 1]) == best:
                    out.append(new)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            symbols[w] = out
    return merges


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(alphabet="abcab ", min_size=1, max_size=12), st.integers(1, 5), max_size=12),
       st.integers(1, 40))
def test_incremental_merges_equal_the_textbook_algorithm(words, n_merges):
    # small alphabets force repeated and overlapping pairs ("aaa", "abab") and many ties
    check_against_textbook(words, n_merges)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(alphabet="abcab ", min_size=1, max_size=30), st.integers(1, 5), max_size=8),
       st.integers(1, 40))
def test_long_word_path_equals_the_textbook_algorithm(words, n_merges):
    from bpe import trainer
    old = trainer.LONG_WORD
    trainer.LONG_WORD = 2  # every word of 3+ symbols with repeats takes the one-pass rebuild
    try:
        check_against_textbook(words, n_merges)
    finally:
        trainer.LONG_WORD = old


def test_a_very_long_word_is_merged_in_one_pass_per_merge():
    # 10^5 symbols: in-place deletes (or one visit per repeat) would be quadratic
    tok = bpe.train(["a" * 100_000], vocab_size=262, special_tokens=(), pattern=LETTERS)
    assert [tok.id_to_bytes(i) for i in range(256, 262)] == [b"a" * 2 ** k for k in range(1, 7)]
    assert tok.train_stats.tokens == 100_000 // 64 + 1  # 1562 x a^64, then a^32


def test_one_huge_word_trains_in_bounded_memory():
    # scaled down from 10 MB of one letter (590 MB and 12 s before long words were merged in C)
    import tracemalloc
    n = 200_000
    tracemalloc.start()
    try:
        tok = bpe.train(["a" * n], vocab_size=300, special_tokens=())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert tok.train_stats.tokens == 1 and tok.id_to_bytes(tok.vocab_size - 1) == b"a" * n
    assert peak < 25 * n, f"{peak / n:.0f} bytes per byte"


def check_against_textbook(words: dict, n_merges: int) -> None:
    merges, _, _ = merge_words(words, n_merges)
    expected = naive_merges(words, n_merges)
    # the textbook loop has no "same string made twice" rule: compare up to the first such merge
    spelled = [bytes([b]) for b in BYTES_IN_HF_ORDER]
    for rank, (a, b) in enumerate(merges):
        if spelled[a] + spelled[b] in spelled:
            merges, expected = merges[:rank + 1], expected[:rank + 1]
            break
        spelled.append(spelled[a] + spelled[b])
    assert merges == expected


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4"])
def test_word_counts_equal_a_plain_per_line_count_with_small_blocks_and_flushes(tmp_path, monkeypatch, pattern):
    from bpe import trainer
    from .corpora import multilingual_text
    text = multilingual_text(300, seed=9) + "same line\n" * 50 + "ascii only\r\n" * 3
    path = tmp_path / "c.txt"
    path.write_bytes(text.encode())
    rx = bpe.pretokenize.compile_pattern(pattern)
    expected: dict = {}
    for line in text.split("\n")[:-1]:  # the text ends with "\n"
        for word in rx.findall(line + "\n"):
            expected[word] = expected.get(word, 0) + 1
    monkeypatch.setattr(trainer, "LINE_FLUSH", 10)
    monkeypatch.setattr(trainer, "BLOCK_CHARS", 100)
    words, _ = count_words([path], pattern)
    assert dict(words) == expected
