"""encode_large: blocks, a progress bar and worker processes give exactly encode()'s ids."""
import json

import pytest

import bpe
from bpe.added import AddedToken

from .corpora import multilingual_text


@pytest.fixture(scope="module")
def text() -> str:
    lines = multilingual_text(400, seed=9).splitlines(keepends=True)
    # indented lines, blank lines, lines ending in punctuation, special tokens inside
    return "".join(("    " if i % 3 else "") + line + ("<eos>" if i % 50 == 0 else "") for i, line in enumerate(lines))


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4", r"\p{L}+|\s+"])
def test_blocks_and_processes_give_encodes_ids(text, pattern):
    tok = bpe.train([text], vocab_size=500, pattern=pattern, special_tokens=["<bos>", "<eos>"])
    for allowed in ("none", "all"):
        want = tok.encode(text, allowed)
        assert tok.encode_large(text, allowed, block_chars=300) == want
        tok.clear_cache()
        assert tok.encode_large(text, allowed, processes=2, block_chars=2000) == want


def test_with_a_normalizer_and_added_tokens(text, tmp_path):
    tok = bpe.train([text], vocab_size=500, special_tokens=["<bos>", "<eos>"])
    data = tok.to_json()
    data["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Lowercase"}]}
    data["added_tokens"].append(AddedToken("hello", 0, special=False, normalized=True, lstrip=True).to_json())
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    tok = bpe.Tokenizer.load(path)
    big = text.upper() + " HELLO hello\n" * 30
    want = tok.encode(big, "all")
    assert tok.encode_large(big, "all", block_chars=256) == want
    assert tok.encode_large(big, "all", processes=2, block_chars=1000, progress=True) == want


def test_bad_arguments():
    tok = bpe.Tokenizer.from_merges([])
    with pytest.raises(ValueError, match="processes"):
        tok.encode_large("x", processes=0)
    with pytest.raises(TypeError):
        tok.encode_large(b"x")
    assert tok.encode_large("") == []


def test_from_tiktoken_gives_tiktokens_ids(text):
    tiktoken = pytest.importorskip("tiktoken")
    trained = bpe.train([text], vocab_size=700, pattern="gpt2", special_tokens=[])
    ranks = {trained.id_to_bytes(i): i for i in range(trained.vocab_size)}
    ranks = {b: r + (5 if r > 600 else 0) for b, r in ranks.items()}  # a gap of 5 unused ids, as cl100k's
    specials = {"<|endoftext|>": 710}
    enc = tiktoken.Encoding("t", pat_str=bpe.GPT2_PATTERN, mergeable_ranks=ranks, special_tokens=specials)
    tok = bpe.Tokenizer.from_tiktoken(ranks, specials, "gpt2")
    assert tok.vocab_size == 711 and tok.id_to_token(602) is None
    for t in (text, text.upper(), "<|endoftext|> x", "ab\u0301 \U0001F600"):
        assert tok.encode(t) == enc.encode_ordinary(t)
        assert tok.encode(t, "all") == enc.encode(t, allowed_special="all")
