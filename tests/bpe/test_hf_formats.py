"""bpe loads the byte-level BPE tokenizer.json files Hugging Face loads, id for id with `tokenizers`:
gaps in the ids, normalizers, Split chains before ByteLevel, added tokens with their flags.

Every file is built here from ranks bpe trains on a generated corpus (nothing is downloaded).
"""
import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bpe
from bpe.pretokenize import GPT4_PATTERN_HF

from .corpora import multilingual_text
from .unicode_tables import all_differences

tokenizers = pytest.importorskip("tokenizers")

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
DEEPSEEK_SPLITS = [r"\p{N}{1,3}", "[一-龥\u3040-ゟ゠-ヿ]+",
                   r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"
                   r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"]
BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}


def split(pattern, behavior="Isolated", invert=False):
    return {"type": "Split", "pattern": {"Regex": pattern}, "behavior": behavior, "invert": invert}


def added(content, special=True, normalized=False, lstrip=False, rstrip=False, single_word=False, id=0):
    return {"id": id, "content": content, "single_word": single_word, "lstrip": lstrip, "rstrip": rstrip,
            "normalized": normalized, "special": special}


@pytest.fixture(scope="module")
def base() -> dict:
    """A small trained vocabulary (gpt4 pattern) as tokenizer.json content."""
    text = multilingual_text(600, seed=3) + "the THE The İstanbul ǅ ﬁ ① ＡＢＣ Å Å café café\n" * 5
    return bpe.train([text], vocab_size=700, special_tokens=["<s>", "</s>"]).to_json()


def with_parts(base: dict, **parts) -> dict:
    data = copy.deepcopy(base)
    data.update(parts)
    return data


def gapped(base: dict) -> dict:
    """cl100k's shape: the specials after the merges with unused ids around them, in vocab and added_tokens."""
    data = copy.deepcopy(base)
    vocab = data["model"]["vocab"]
    for s in ("<s>", "</s>"):
        del vocab[s]
    vocab = {t: i - 2 for t, i in vocab.items()}  # bytes and merges from id 0, as tiktoken
    n = len(vocab)
    specials = {"<|endoftext|>": n + 1, "<|fim_prefix|>": n + 2, "<|endofprompt|>": n + 7}
    vocab.update(specials)
    data["model"]["vocab"] = vocab
    data["added_tokens"] = [added(s, id=i) for s, i in specials.items()]
    return data


def variants(base: dict) -> dict:
    nfkc_lower = {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Lowercase"}]}
    seq = lambda *steps: {"type": "Sequence", "pretokenizers": [*steps, BYTE_LEVEL]}  # noqa: E731
    flags = [added("<|user|>"), added("<tool>", special=False, normalized=False),
             added("HELLO", special=False, normalized=True), added("[L]", lstrip=True),
             added("[R]", rstrip=True), added("[LR]", special=False, lstrip=True, rstrip=True),
             added("word", special=False, single_word=True), added("</s>")]
    return {
        "gaps": gapped(base),
        **{f"normalizer {n}": with_parts(base, normalizer={"type": n})
           for n in ("NFC", "NFD", "NFKC", "NFKD", "Lowercase")},
        "normalizer Sequence[NFKC, Lowercase]": with_parts(base, normalizer=nfkc_lower),
        "normalizer Sequence[]": with_parts(base, normalizer={"type": "Sequence", "normalizers": []}),
        "normalizer Strip/Replace/Prepend": with_parts(base, normalizer={"type": "Sequence", "normalizers": [
            {"type": "Strip", "strip_left": True, "strip_right": False},
            {"type": "Replace", "pattern": {"String": "  "}, "content": " "},
            {"type": "Replace", "pattern": {"Regex": r"\d"}, "content": "#"},
            {"type": "Prepend", "prepend": "»"}]}),
        "llama3 Split": with_parts(base, pre_tokenizer=seq(split(LLAMA3_PATTERN))),
        "deepseek Splits": with_parts(base, pre_tokenizer=seq(*map(split, DEEPSEEK_SPLITS))),
        "Split + ByteLevel(use_regex)": with_parts(base, pre_tokenizer={"type": "Sequence", "pretokenizers": [
            split(r"\p{N}"), dict(BYTE_LEVEL, use_regex=True)]}),
        "Split + ByteLevel(prefix)": with_parts(base, pre_tokenizer={"type": "Sequence", "pretokenizers": [
            split(GPT4_PATTERN_HF), dict(BYTE_LEVEL, add_prefix_space=True)]}),
        "ByteLevel(use_regex=false) alone": with_parts(base, pre_tokenizer=BYTE_LEVEL),
        **{f"Split {b}{' inverted' if inv else ''}": with_parts(base, pre_tokenizer=seq(split(r"\s+|\d", b, inv)))
           for b in ("Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous", "Isolated")
           for inv in (False, True)},
        "added tokens with flags": with_parts(base, added_tokens=flags),
        "added tokens + NFKC/Lowercase": with_parts(base, added_tokens=flags, normalizer=nfkc_lower),
        "everything": with_parts(gapped(base), normalizer=nfkc_lower,
                                 pre_tokenizer=seq(*map(split, DEEPSEEK_SPLITS)),
                                 added_tokens=gapped(base)["added_tokens"] + flags[:4]),
    }


class Pairs(dict):
    def __repr__(self) -> str:  # hypothesis prints its arguments: not whole vocabularies
        return f"<{len(self)} tokenizer pairs>"


@pytest.fixture(scope="module")
def pairs(base, tmp_path_factory) -> dict:
    """name -> (HF tokenizer, ours), each loaded from the same tokenizer.json file."""
    folder = tmp_path_factory.mktemp("formats")
    out = Pairs()
    for i, (name, data) in enumerate(variants(base).items()):
        path = folder / f"{i}.json"
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        out[name] = (tokenizers.Tokenizer.from_file(str(path)), bpe.Tokenizer.load(path))
    return out


SAMPLES = [
    "", " ", "a", "Hello <|user|> world<tool>x HELLO hello Hello", "  [L]  [R]  [LR]  word words sword word_",
    "x<|endoftext|>y <|fim_prefix|><|endofprompt|>", "ﬁne ① ＡＢＣ Åström ǅemal İstanbul ΟΔΟΣ ΣΑΣ",
    "12345 1,000,000 3.14 ٣٤٥ ²", "你好世界 ひらがな カタカナ 한국어", "tab\tsep  non\u00a0break\r\n\n  \n",
    "e\u0301 A\u030a \u1e9b\u0323", "<s>text</s> </s>", "don't I'LL we've", "  leading and trailing  ",
]


def hf_ids(hf, text: str, specials: bool) -> list[int]:
    hf.encode_special_tokens = not specials
    return hf.encode(text, add_special_tokens=False).ids


def assert_same(pairs: dict, text: str) -> None:
    for name, (hf, ours) in pairs.items():
        assert ours.encode(text, "all") == hf_ids(hf, text, True), (name, text)
        assert ours.encode(text) == hf_ids(hf, text, False), (name, text)


def test_every_variant_loads_and_matches_hf_on_samples_and_a_corpus(pairs):
    corpus = multilingual_text(300, seed=11)
    for text in SAMPLES + [corpus, corpus.upper()]:
        assert_same(pairs, text)


def test_decode_matches_hf(pairs):
    for name, (hf, ours) in pairs.items():
        for text in SAMPLES:
            ids = ours.encode(text, "all")
            assert ours.decode(ids) == hf.decode(ids, skip_special_tokens=False), (name, text)
            assert ours.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True), (name, text)


PIECES = st.sampled_from(["<|user|>", "<tool>", "HELLO", "hello", "[L]", "[R]", "[LR]", "word", " ", "  ", "\n",
                          "<|endoftext|>", "</s>", "ﬁ", "Σ", "1", "é", "e\u0301"])


# Code points where the Unicode tables differ (test_unicode.py pins those) are left out here.
CHARS = st.characters(blacklist_categories=("Cs",)).filter(lambda c: ord(c) not in all_differences())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.text(CHARS, max_size=8), PIECES), max_size=8))
def test_random_unicode_matches_hf(pairs, parts):
    assert_same(pairs, "".join(parts))


def test_gaps_keep_unused_ids_and_special_ids(pairs, base):
    hf, ours = pairs["gaps"]
    n = len(base["model"]["vocab"]) - 2
    assert ours.special_tokens == {"<|endoftext|>": n + 1, "<|fim_prefix|>": n + 2, "<|endofprompt|>": n + 7}
    assert ours.vocab_size == n + 8 and len(ours.get_vocab()) == n + 3 == hf.get_vocab_size()
    for gap in (n, n + 3, n + 6):
        assert ours.id_to_token(gap) is None is hf.id_to_token(gap)
    assert ours.encode("<|endofprompt|>", "all") == [n + 7]


def test_hf_numbers_added_tokens_after_the_vocab_whatever_the_file_says(base, tmp_path):
    data = with_parts(base, added_tokens=[added("<s>", id=5), added("<new>", id=99), added("<two>", id=3)])
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    hf, ours = tokenizers.Tokenizer.from_file(str(path)), bpe.Tokenizer.load(path)
    n = len(base["model"]["vocab"])
    assert ours.special_tokens == {"<s>": 0, "<new>": n, "<two>": n + 1}
    assert [hf.token_to_id(s) for s in ("<s>", "<new>", "<two>")] == [0, n, n + 1]
    # and a file bpe writes keeps them where they are
    ours.save(tmp_path / "again.json")
    again = tokenizers.Tokenizer.from_file(str(tmp_path / "again.json"))
    assert [again.token_to_id(s) for s in ("<s>", "<new>", "<two>")] == [0, n, n + 1]


def test_an_added_id_that_hf_would_give_to_two_tokens_is_refused(base, tmp_path):
    data = gapped(base)
    vocab = data["model"]["vocab"]
    data["added_tokens"].append(added("<late>"))  # HF: id len(vocab), which the vocab's last special holds
    top = max(vocab.values())
    assert len(vocab) < top
    vocab[max(vocab, key=vocab.get)] = len(vocab)
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(bpe.TokenizerFileError, match="<late>.*gets id"):
        bpe.Tokenizer.load(path)


def test_files_bpe_writes_back_load_the_same_in_hf(pairs, tmp_path):
    text = "".join(SAMPLES) + multilingual_text(50, seed=2)
    for i, (name, (hf, ours)) in enumerate(pairs.items()):
        ours.save(tmp_path / f"{i}.json")
        again_ours = bpe.Tokenizer.load(tmp_path / f"{i}.json")
        again_hf = tokenizers.Tokenizer.from_file(str(tmp_path / f"{i}.json"))
        again_hf.encode_special_tokens = False
        expected = hf_ids(hf, text, True)
        assert again_ours.encode(text, "all") == expected, name
        assert again_hf.encode(text, add_special_tokens=False).ids == expected, name


@pytest.mark.parametrize("node, words", [
    ({"type": "Whitespace"}, "'Whitespace'"),
    ({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, BYTE_LEVEL]}, "'Digits'"),
    ({"type": "Sequence", "pretokenizers": [BYTE_LEVEL, split(r"\d")]}, "ByteLevel must be the last step"),
    ({"type": "Sequence", "pretokenizers": [split(r"\d")]}, "no ByteLevel step"),
    ({"type": "Sequence", "pretokenizers": [split(r"\d", "Sideways"), BYTE_LEVEL]}, "Split behavior 'Sideways'"),
    ({"type": "Metaspace", "replacement": "▁"}, "'Metaspace'"),
])
def test_unsupported_pre_tokenizers_are_one_line_naming_the_component(base, tmp_path, node, words):
    path = tmp_path / "t.json"
    path.write_text(json.dumps(with_parts(base, pre_tokenizer=node)), encoding="utf-8")
    with pytest.raises(bpe.TokenizerFileError) as info:
        bpe.Tokenizer.load(path)
    assert words in str(info.value) and "\n" not in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("node, words", [
    ({"type": "BertNormalizer"}, "'BertNormalizer'"),
    ({"type": "StripAccents"}, "'StripAccents'"),
    ({"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Nmt"}]}, "'Nmt'"),
])
def test_unsupported_normalizers_are_one_line_naming_the_component(base, tmp_path, node, words):
    path = tmp_path / "t.json"
    path.write_text(json.dumps(with_parts(base, normalizer=node)), encoding="utf-8")
    with pytest.raises(bpe.TokenizerFileError) as info:
        bpe.Tokenizer.load(path)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_post_processor_and_decoder_of_a_loaded_file_are_written_back(base, tmp_path):
    template = {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                                         {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]}}}
    path = tmp_path / "t.json"
    path.write_text(json.dumps(with_parts(base, post_processor=template)), encoding="utf-8")
    bpe.Tokenizer.load(path).save(tmp_path / "again.json")
    again = json.loads((tmp_path / "again.json").read_text(encoding="utf-8"))
    assert again["post_processor"] == template and again["decoder"] == base["decoder"]
    hf = tokenizers.Tokenizer.from_file(str(tmp_path / "again.json"))
    assert hf.encode("hi").ids[0] == 0  # the template still adds <s>
