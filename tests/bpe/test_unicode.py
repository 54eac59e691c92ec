"""The Unicode question, pinned: where bpe's tables can differ from Hugging Face's, and by how much.

Pre-tokenization: bpe splits with the `regex` package, tokenizers 0.23 with Oniguruma and tiktoken
0.14 with Rust's regex crate; both of those use Unicode 16.0. regex 2024.9.11 ... 2025.9.18 use
Unicode 16.0 too, later releases Unicode 17.0 and up. With a Unicode 16.0 `regex` bpe's ids equal
Hugging Face's on every code point; with a newer one they differ exactly on the code points
assigned after 16.0 (U+088F, U+0C5C, ... with regex 2026), which the newer tables put in \\p{L}, \\p{N}, ...
while Oniguruma still reads them as unassigned.

Normalizers: Python's unicodedata (Unicode 14.0 on Python 3.11) against tokenizers' tables (older
than Unicode 12.1 for NFC/NFD/NFKC/NFKD, Rust's 16.0 for Lowercase): they differ only on code
points that one side does not know and leaves as they are.
"""
import sys
import unicodedata

import pytest
import regex

import bpe

from .corpora import multilingual_text
from .unicode_tables import CLASSES, CODE_POINTS, class_differences, normalizer_differences, python_knows

tokenizers = pytest.importorskip("tokenizers")

UNICODE_16_LETTERS = 141028  # \p{L} in Unicode 16.0 (tokenizers 0.23's Oniguruma, tiktoken 0.14, regex 2024.9-2025.9)


def regex_letters() -> int:
    rx = regex.compile(r"\p{L}")
    return sum(len(rx.findall("".join(map(chr, CODE_POINTS[i:i + 65536])))) for i in range(0, len(CODE_POINTS), 65536))


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    """A vocabulary with merges across scripts, saved and loaded in both libraries, for both patterns."""
    out = {}
    text = multilingual_text(800, seed=5)
    for pattern in ("gpt4", "gpt2"):
        tok = bpe.train([text], vocab_size=600, pattern=pattern)
        path = tmp_path_factory.mktemp("u") / "tokenizer.json"
        tok.save(path)
        out[pattern] = (tok, tokenizers.Tokenizer.from_file(str(path)))
    return out


def test_hf_and_regex_classes_differ_only_on_code_points_newer_than_hfs_tables():
    diffs = class_differences()
    hf_letters = UNICODE_16_LETTERS
    for name, points in diffs.items():
        rx = regex.compile(CLASSES[name])
        # every difference is a code point the installed `regex` puts in the class and Oniguruma does not
        assert all(rx.match(chr(c)) for c in points), name
    if regex_letters() == hf_letters:
        assert not any(diffs.values()), "a Unicode 16.0 regex must split exactly like tokenizers"
    else:
        assert regex_letters() > hf_letters  # a newer Unicode: regex knows more letters
        # which code points differ depends on the regex release (17.0, 17.1, ...), not that some letters do
        assert diffs["L"] and all(c not in diffs["L"] for c in map(ord, "aZ\u00e9\u4e00"))
        assert not diffs["s"]


def test_ids_equal_hfs_on_every_code_point_outside_the_differences(vocab):
    skip = set().union(*class_differences().values())
    points = [c for c in CODE_POINTS if c not in skip]
    for pattern, (ours, hf) in vocab.items():
        step = 1 if pattern == "gpt4" else 7  # every code point with gpt4, every 7th with gpt2
        # each code point after a letter or a space and before a digit or a space
        text = "".join(f"x{chr(c)}1 " if c % 2 else f" {chr(c)} " for c in points[::step])
        assert ours.encode(text) == hf.encode(text).ids, pattern


def newer_letters_and_digits() -> set[int]:
    return set(class_differences()["L"] | class_differences()["N"])


def test_pre_tokens_differ_from_hfs_exactly_on_the_newer_letters_and_digits():
    newer = newer_letters_and_digits()
    if not newer:
        pytest.skip("the installed regex has tokenizers' Unicode tables: no difference to pin")
    hf = tokenizers.pre_tokenizers.Split(tokenizers.Regex(bpe.pretokenize.GPT4_PATTERN_HF), "isolated")
    candidates = set().union(*class_differences().values())
    # c + "!": an unassigned c is punctuation-like for Oniguruma and joins the "!"; a letter or digit does not
    differ = {c for c in candidates if bpe.split(chr(c) + "!") != [p for p, _ in hf.pre_tokenize_str(chr(c) + "!")]}
    assert differ == newer
    c = chr(min(newer))
    assert bpe.split(c + "!") == [c, "!"] and hf.pre_tokenize_str(c + "!")[0][0] == c + "!"


def test_ids_differ_from_hfs_with_a_vocabulary_that_merges_across(tmp_path):
    newer = sorted(newer_letters_and_digits())
    if not newer:
        pytest.skip("the installed regex has tokenizers' Unicode tables: no difference to pin")
    a, b = chr(newer[0]), chr(newer[-1])  # e.g. U+088F and a CJK extension letter with regex 2026
    from tokenizers import models, pre_tokenizers, trainers
    hf = tokenizers.Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(tokenizers.Regex(bpe.pretokenize.GPT4_PATTERN_HF), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    hf.train_from_iterator([f"{a}! {b}!"] * 50, trainers.BpeTrainer(
        vocab_size=270, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf.save(str(tmp_path / "t.json"))
    ours = bpe.Tokenizer.load(tmp_path / "t.json")
    for text in (f"{a}!", f" {b}!"):
        assert len(hf.encode(text).ids) == 1 and len(ours.encode(text)) >= 2  # one merged token vs several
        assert ours.decode(ours.encode(text)) == text


def test_normalizers_differ_only_where_one_side_does_not_know_the_character():
    from tokenizers import normalizers
    for name, points in normalizer_differences().items():
        hf = getattr(normalizers, name)()
        ours = bpe.normalize.compile_normalizer({"type": name})
        for c in points:
            s = chr(c)
            if name == "Lowercase":  # Rust (16.0) lowercases characters Python (14.0 on 3.11) does not know
                assert ours(s) == s and not python_knows(c) and hf.normalize_str(s) != s, hex(c)
            else:  # Python decomposes characters newer than tokenizers' tables, which leave them as they are
                assert hf.normalize_str(s) == s and python_knows(c) and ours(s) != s, hex(c)


@pytest.mark.skipif(sys.version_info[:2] != (3, 11) or unicodedata.unidata_version != "14.0.0",
                    reason="the counts are pinned for Python 3.11 (Unicode 14.0)")
def test_normalizer_difference_counts_on_python_3_11():
    counts = {name: len(points) for name, points in normalizer_differences().items()}
    assert counts == {"NFC": 0, "NFD": 1, "NFKC": 72, "NFKD": 73, "Lowercase": 55}
    assert 0x11938 in normalizer_differences()["NFD"] and 0x32FF in normalizer_differences()["NFKC"]
