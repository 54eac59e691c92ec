"""Exactness against Hugging Face `tokenizers` (and tiktoken): same vocab, same merges, same ids."""
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bpe
from bpe.pretokenize import GPT4_PATTERN_HF, hf_pattern

from .corpora import multilingual_text

tokenizers = pytest.importorskip("tokenizers")
from tokenizers import Regex, decoders, models, pre_tokenizers, trainers  # noqa: E402

SPECIALS = ["<bos>", "<eos>"]
DIGITS_AND_MORE = "In 1000000 years, 12345678 people paid $3.14159 for 2024-01-01's\r\n  x²½٣٤٥ 0x1F600 007\n"


def hf_pre_tokenizer(pattern: str):
    """HF's pre-tokenizer for a pattern: its ByteLevel regex for gpt2, else Split(isolated) + ByteLevel,
    with the pattern spelled for Oniguruma as bpe writes it into tokenizer.json."""
    if pattern == "gpt2":
        return pre_tokenizers.ByteLevel(add_prefix_space=False)
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(GPT4_PATTERN_HF if pattern == "gpt4" else hf_pattern(pattern)), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def hf_train(path: Path, vocab_size: int, pattern: str):
    """HF's BpeTrainer with the byte-level setup the issue names."""
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = hf_pre_tokenizer(pattern)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train([str(path)], trainer)
    return tok


def hf_model(tok) -> dict:
    return json.loads(tok.to_str())["model"]


def assert_same_model(hf, ours: bpe.Tokenizer) -> None:
    model = hf_model(hf)
    ours_model = ours.to_json()["model"]
    assert ours_model["vocab"] == model["vocab"]
    first_diff = next((i for i, (x, y) in enumerate(zip(model["merges"], ours_model["merges"])) if x != y), None)
    assert first_diff is None, f"merge {first_diff}: HF {model['merges'][first_diff]} vs ours {ours_model['merges'][first_diff]}"
    assert len(ours_model["merges"]) == len(model["merges"])


@pytest.fixture(scope="module")
def shakespeare_pair(shakespeare):
    # one training of each on the full corpus, shared by the tests below
    return hf_train(shakespeare, 8000, "gpt4"), bpe.train([shakespeare], vocab_size=8000, special_tokens=SPECIALS)


def test_shakespeare_vocab_and_merges_match_hf(shakespeare_pair):
    hf, ours = shakespeare_pair
    assert len(ours.merges) == 8000 - 2 - 256
    assert_same_model(hf, ours)


def test_shakespeare_ids_match_hf(shakespeare_pair, shakespeare):
    hf, ours = shakespeare_pair
    text = shakespeare.read_text(encoding="utf-8")
    assert ours.encode(text) == hf.encode(text).ids


def test_shakespeare_with_the_gpt2_pattern_matches_hf(shakespeare):
    hf = hf_train(shakespeare, 8000, "gpt2")
    ours = bpe.train([shakespeare], vocab_size=8000, special_tokens=SPECIALS, pattern="gpt2")
    assert_same_model(hf, ours)
    text = shakespeare.read_text(encoding="utf-8")[:100_000]
    assert ours.encode(text) == hf.encode(text).ids


def test_hf_loads_our_file_and_we_load_hfs(shakespeare_pair, tmp_path):
    hf, ours = shakespeare_pair
    ours.save(tmp_path / "ours.json")
    hf.save(str(tmp_path / "hf.json"))
    hf_from_ours = tokenizers.Tokenizer.from_file(str(tmp_path / "ours.json"))
    ours_from_hf = bpe.Tokenizer.load(tmp_path / "hf.json")
    for text in [DIGITS_AND_MORE, multilingual_text(200, seed=5)]:
        expected = hf.encode(text).ids
        assert hf_from_ours.encode(text).ids == expected
        assert ours_from_hf.encode(text) == expected
        assert hf_from_ours.decode(expected) == text
    assert ours_from_hf.get_vocab() == ours.get_vocab() and ours_from_hf.merges == ours.merges


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4"])
def test_multilingual_vocab_merges_and_ids_match_hf(multilingual_file, pattern):
    hf = hf_train(multilingual_file, 1200, pattern)
    ours = bpe.train([multilingual_file], vocab_size=1200, special_tokens=SPECIALS, pattern=pattern)
    assert_same_model(hf, ours)
    text = multilingual_file.read_text(encoding="utf-8") + DIGITS_AND_MORE
    assert ours.encode(text) == hf.encode(text).ids


@pytest.mark.parametrize("text", [DIGITS_AND_MORE, multilingual_text(300, seed=3), "a\n\n\n  b \t\n", "1" * 50])
def test_exported_gpt4_pattern_splits_like_ours_in_hfs_engine(text):
    hf_split = pre_tokenizers.Split(Regex(GPT4_PATTERN_HF), "isolated")
    assert [piece for piece, _ in hf_split.pre_tokenize_str(text)] == bpe.split(text, "gpt4")


def test_tiktoken_spelling_would_diverge_in_hfs_engine():
    # the pitfall the exported spelling avoids: Oniguruma reads \p{N}{1,3}+ as (\p{N}{1,3})+
    glued = pre_tokenizers.Split(Regex(bpe.GPT4_PATTERN), "isolated").pre_tokenize_str("1000000")
    assert [p for p, _ in glued] == ["1000000"]
    assert bpe.split("1000000", "gpt4") == ["100", "000", "0"]


# possessive counted repeats after a group, an escape, a class and \p{..}, next to a plain `{2}`
TRICKY_PATTERN = r"(?:ab){1,2}+|\.{2}+|[^\s\p{L}.]{2,}+|\p{N}{1,3}+|x{2}|\p{L}+|\s+|."
TRICKY_TEXT = "ababab abab ab ... .. . 1234567 ;;;;; !!x xxx ab.ab\tq 12"


def test_exported_user_pattern_splits_like_ours_in_hfs_engine():
    exported = pre_tokenizers.Split(Regex(hf_pattern(TRICKY_PATTERN)), "isolated")
    assert [p for p, _ in exported.pre_tokenize_str(TRICKY_TEXT)] == bpe.split(TRICKY_TEXT, TRICKY_PATTERN)


def test_loaded_hf_pattern_splits_like_hfs_engine():
    from bpe.pretokenize import from_oniguruma as _from_oniguruma
    hf_pieces = [p for p, _ in pre_tokenizers.Split(Regex(TRICKY_PATTERN), "isolated").pre_tokenize_str(TRICKY_TEXT)]
    assert hf_pieces == bpe.split(TRICKY_TEXT, _from_oniguruma(TRICKY_PATTERN))
    assert hf_pieces != bpe.split(TRICKY_TEXT, TRICKY_PATTERN)  # the two engines really differ here


def test_min_frequency_matches_hf(multilingual_file):
    for min_frequency in (2, 60):
        hf = tokenizers.Tokenizer(models.BPE())
        hf.pre_tokenizer = hf_pre_tokenizer("gpt2")
        hf.train([str(multilingual_file)], trainers.BpeTrainer(
            vocab_size=3000, special_tokens=SPECIALS, show_progress=False, min_frequency=min_frequency,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        ours = bpe.train([multilingual_file], vocab_size=3000, pattern="gpt2", min_frequency=min_frequency)
        assert len(ours.merges) < 3000 - 258  # stopped early
        assert_same_model(hf, ours)


def test_tiktoken_with_our_ranks_gives_the_same_ids(shakespeare_pair, shakespeare):
    tiktoken = pytest.importorskip("tiktoken")
    _, ours = shakespeare_pair
    ranks = {ours.id_to_bytes(i): i for i in range(len(SPECIALS), ours.vocab_size)}
    enc = tiktoken.Encoding("ours", pat_str=ours.pattern, mergeable_ranks=ranks,
                            special_tokens={s: i for i, s in enumerate(SPECIALS)})
    text = shakespeare.read_text(encoding="utf-8")[:200_000] + multilingual_text(200, seed=4)
    assert ours.encode(text) == enc.encode_ordinary(text)


def test_user_pattern_with_possessive_counts_exports_for_hfs_engine(multilingual_file, tmp_path):
    pattern = r"\p{N}{1,3}+|\p{L}+| ?[^\s\p{L}\p{N}]+|\s+"
    ours = bpe.train([multilingual_file], vocab_size=600, pattern=pattern)
    ours.save(tmp_path / "user.json")
    hf = tokenizers.Tokenizer.from_file(str(tmp_path / "user.json"))
    text = DIGITS_AND_MORE + multilingual_text(100, seed=6)
    assert hf.encode(text).ids == ours.encode(text)
    assert bpe.Tokenizer.load(tmp_path / "user.json").encode(text) == ours.encode(text)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.sampled_from(list("aab b\n\n \t\r'sé1😀,")), min_size=1, max_size=300),
       st.sampled_from(["gpt2", "gpt4"]))
def test_random_small_corpora_match_hf(tmp_path, text, pattern):
    path = tmp_path / "random.txt"
    path.write_bytes(text.encode("utf-8"))
    hf = hf_train(path, 300, pattern)
    ours = bpe.train([path], vocab_size=300, special_tokens=SPECIALS, pattern=pattern)
    assert_same_model(hf, ours)
    assert ours.encode(text) == hf.encode(text).ids


def test_hf_file_with_add_prefix_space_encodes_identically(multilingual_file, tmp_path):
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    tok.train([str(multilingual_file)], trainers.BpeTrainer(
        vocab_size=600, special_tokens=SPECIALS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(tmp_path / "prefix.json"))
    ours = bpe.Tokenizer.load(tmp_path / "prefix.json")
    assert ours.add_prefix_space
    for text in ["hello world", " hello", "\nhello", "hi<eos>there you", "<bos>x", "", DIGITS_AND_MORE]:
        assert ours.encode(text, allowed_special="all") == tok.encode(text).ids


# User patterns that leave text unmatched: HF's Split(isolated) makes each gap a piece, so must we.
GAP_PATTERNS = [r"\p{L}+", r"\p{N}{1,3}+|[a-z]+", r"\S+", r"(\p{L})\p{L}*", r"(?=b)|b"]
GAP_TEXTS = ["Hello, world! 42", "  \t\n\r\n ", "", "a,b;c 1234567 x²½ 😀 naïve Straße мир 你好\n",
             DIGITS_AND_MORE, multilingual_text(40, seed=8)]


@pytest.mark.parametrize("pattern", GAP_PATTERNS)
def test_user_pattern_gaps_split_like_hf(pattern):
    hf_split = pre_tokenizers.Split(Regex(hf_pattern(pattern)), "isolated")
    for text in GAP_TEXTS:
        assert bpe.split(text, pattern) == [p for p, _ in hf_split.pre_tokenize_str(text)], text


@pytest.mark.parametrize("pattern", [r"\p{L}+", r"\p{N}{1,3}+|[a-z]+", r"\S+"])
def test_user_pattern_with_gaps_trains_and_encodes_like_hf(multilingual_file, tmp_path, pattern):
    hf = hf_train(multilingual_file, 700, pattern)
    ours = bpe.train([multilingual_file], vocab_size=700, special_tokens=SPECIALS, pattern=pattern)
    assert_same_model(hf, ours)
    ours.save(tmp_path / "gaps.json")
    hf_from_ours = tokenizers.Tokenizer.from_file(str(tmp_path / "gaps.json"))
    for text in GAP_TEXTS:
        ids = ours.encode(text)
        assert ids == hf.encode(text).ids == hf_from_ours.encode(text).ids, text
        assert ours.decode(ids) == text
    assert bpe.Tokenizer.load(tmp_path / "gaps.json").encode(GAP_TEXTS[3]) == ours.encode(GAP_TEXTS[3])


def test_long_words_and_huge_chunks_match_hf(tmp_path):
    # words over 64 bytes train through str.split/join and chunks over 8 KB encode rank by rank
    import random
    rng = random.Random(11)
    letters = "".join(rng.choice("etaoinshrdlué") for _ in range(3000))
    corpus = multilingual_text(200, seed=9) + "".join(
        line + "\n" for line in ["a" * 3000, "ab" * 700, "=" * 500, "你好" * 400, letters, "x" * 65, "zz" * 40])
    path = tmp_path / "runs.txt"
    path.write_text(corpus, encoding="utf-8")
    hf = hf_train(path, 900, "gpt4")
    ours = bpe.train([path], vocab_size=900, special_tokens=SPECIALS)
    assert_same_model(hf, ours)
    text = "a" * 20_000 + " " + "ab" * 5000 + " " + "你好" * 3000 + " " + letters * 4 + "\n" + corpus
    assert ours.encode(text) == hf.encode(text).ids


def test_split_with_a_prefix_space_prefixes_every_piece_as_hf(tmp_path):
    # HF's ByteLevel after a Split prefixes a space to every piece (", " -> "Ġ,Ġ"), not once to the text
    seq = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(r"\p{L}+"), "isolated"),
                                   pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=False)])
    assert [p for p, _ in seq.pre_tokenize_str("Hello, world")] == ["ĠHello", "Ġ,Ġ", "Ġworld"]
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = seq
    tok.train_from_iterator(["Hello, world"], trainers.BpeTrainer(
        vocab_size=300, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(tmp_path / "prefix-split.json"))
    ours = bpe.Tokenizer.load(tmp_path / "prefix-split.json")
    for text in ["Hello, world", " Hello,world  x", "", "a", "ab, cd"]:
        assert ours.encode(text) == tok.encode(text).ids
    with pytest.raises(ValueError, match="gpt2"):
        bpe.Tokenizer([bytes([b]) for b in range(256)], [], {}, pattern=r"\p{L}+", add_prefix_space=True)
