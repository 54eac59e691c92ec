"""tokenizer.json: save/load round trip, HF layout, and validation errors that name the problem."""
import json
import os

import pytest

import bpe
from bpe import TokenizerFileError

from .corpora import multilingual_text

TEXT = multilingual_text(300, seed=2)


@pytest.fixture(scope="module", params=["gpt4", "gpt2"])
def tok(request) -> bpe.Tokenizer:
    return bpe.train([TEXT], vocab_size=500, special_tokens=("<bos>", "<eos>", "<pad>"), pattern=request.param)


@pytest.fixture
def saved(tok, tmp_path):
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    return path


def test_save_load_round_trip(tok, saved):
    loaded = bpe.Tokenizer.load(saved)
    assert loaded.get_vocab() == tok.get_vocab()
    assert loaded.merges == tok.merges
    assert loaded.special_tokens == tok.special_tokens
    assert loaded.pattern == tok.pattern
    assert loaded.encode(TEXT) == tok.encode(TEXT)
    assert (loaded.bos_id, loaded.eos_id, loaded.vocab_size) == (0, 1, 500)


def test_saved_file_has_the_hf_layout(tok, saved):
    data = json.loads(saved.read_text(encoding="utf-8"))
    model = data["model"]
    assert model["type"] == "BPE"
    assert list(model["vocab"].values()) == list(range(500))  # written in id order
    assert list(model["vocab"])[:3] == ["<bos>", "<eos>", "<pad>"]
    assert model["merges"][0] == [tok.id_to_token(a) for a in tok.merges[0]]
    assert [t["content"] for t in data["added_tokens"]] == ["<bos>", "<eos>", "<pad>"]
    assert all(t["special"] for t in data["added_tokens"])
    assert data["decoder"]["type"] == "ByteLevel"
    pre = data["pre_tokenizer"]
    if tok.pattern == bpe.GPT2_PATTERN:
        assert pre["type"] == "ByteLevel" and pre["use_regex"] is True
    else:
        split, byte_level = pre["pretokenizers"]
        assert split["pattern"]["Regex"] == bpe.GPT4_PATTERN.replace(r"\p{N}{1,3}+", r"\p{N}{1,3}")
        assert byte_level["use_regex"] is False and byte_level["add_prefix_space"] is False


def test_save_is_atomic_and_leaves_no_temp_file(tok, tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text("old")
    tok.save(path)
    assert json.loads(path.read_text(encoding="utf-8"))["model"]["type"] == "BPE"
    assert os.listdir(tmp_path) == ["tokenizer.json"]


def test_legacy_string_merges_are_accepted(tok, saved):
    data = json.loads(saved.read_text(encoding="utf-8"))
    data["model"]["merges"] = [" ".join(m) for m in data["model"]["merges"]]
    saved.write_text(json.dumps(data), encoding="utf-8")
    assert bpe.Tokenizer.load(saved).merges == tok.merges


def _corrupt(saved, change) -> str:
    data = json.loads(saved.read_text(encoding="utf-8"))
    change(data)
    saved.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(TokenizerFileError) as info:
        bpe.Tokenizer.load(saved)
    assert str(saved) in str(info.value)
    return str(info.value)


def test_unknown_token_in_a_merge_is_named(saved):
    msg = _corrupt(saved, lambda d: d["model"]["merges"].insert(3, ["Ġthe", "zzzq"]))
    assert "merge 3" in msg and "unknown token 'zzzq'" in msg


def test_merge_result_missing_from_vocab_is_named(saved):
    msg = _corrupt(saved, lambda d: d["model"]["merges"].append(["~", "~"]))
    assert "'~~' is not in the vocab" in msg


def test_duplicate_id_is_named(saved):
    def dup(d):
        d["model"]["vocab"]["Ġzzz"] = 7
    assert "duplicate id 7" in _corrupt(saved, dup)


def test_missing_ids_are_gaps_not_an_error(saved):
    before = bpe.Tokenizer.load(saved)
    data = json.loads(saved.read_text(encoding="utf-8"))
    vocab = data["model"]["vocab"]
    last = max(vocab, key=vocab.get)
    vocab[last] += 5  # ids n-1 .. n+3 unused
    saved.write_text(json.dumps(data), encoding="utf-8")
    tok = bpe.Tokenizer.load(saved)
    n = before.vocab_size
    assert tok.vocab_size == n + 5 and tok.id_to_token(n - 1) is None and tok.token_to_id(last) == n + 4
    assert len(tok.get_vocab()) == n
    with pytest.raises(ValueError, match=f"id {n - 1} is unused"):
        tok.decode([n - 1])
    text = "the quick brown fox " * 20
    assert tok.encode(text) == [i + 5 if i == n - 1 else i for i in before.encode(text)]


def _drop_id(d, i):
    vocab = d["model"]["vocab"]
    token = next(t for t, j in vocab.items() if j == i)
    del vocab[token]


def test_unsupported_model_type_is_named(saved):
    assert "unsupported model type 'WordPiece'" in _corrupt(saved, lambda d: d["model"].update(type="WordPiece"))


def test_non_byte_level_token_is_named(saved):
    def bad(d):
        d["model"]["vocab"]["héllo wörld"] = len(d["model"]["vocab"])
    assert "not a byte-level string" in _corrupt(saved, bad)


def test_missing_byte_tokens_are_named(saved):
    def drop(d):
        vocab = d["model"]["vocab"]
        vocab["ĀĀĀĀ"] = vocab.pop("Ā")  # byte 0x00 loses its token
        d["model"]["merges"] = [m for m in d["model"]["merges"] if "Ā" not in m]
    assert "lacks 1 of the 256 byte tokens" in _corrupt(saved, drop)


def test_unsupported_normalizer_is_named(saved):
    assert "normalizer 'BertNormalizer'" in _corrupt(saved, lambda d: d.update(normalizer={"type": "BertNormalizer"}))
    assert "normalizer 'Precompiled'" in _corrupt(saved, lambda d: d.update(
        normalizer={"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Precompiled"}]}))


def test_unsupported_pre_tokenizer_is_named(tmp_path, saved):
    msg = _corrupt(saved, lambda d: d.update(pre_tokenizer={"type": "Whitespace"}))
    assert "pre_tokenizer" in msg and "Whitespace" in msg


def test_not_json_and_not_a_tokenizer(tmp_path):
    path = tmp_path / "t.json"
    path.write_text("{ not json")
    with pytest.raises(TokenizerFileError, match="not valid JSON"):
        bpe.Tokenizer.load(path)
    path.write_text("[1, 2]")
    with pytest.raises(TokenizerFileError, match="no 'model'"):
        bpe.Tokenizer.load(path)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        bpe.Tokenizer.load(tmp_path / "nope.json")


def test_hf_digit_quantifier_spelling_keeps_hf_meaning():
    from bpe.pretokenize import from_oniguruma as _from_oniguruma
    rx = bpe.pretokenize.compile_pattern(_from_oniguruma(r"\p{N}{1,3}+|\s"))
    assert rx.findall("1000000 12") == ["1000000", " ", "12"]  # Oniguruma: (\p{N}{1,3})+


def test_merge_of_a_special_token_is_named(saved):
    msg = _corrupt(saved, lambda d: d["model"]["merges"].insert(0, ["<bos>", "<eos>"]))
    assert "merge 0" in msg
