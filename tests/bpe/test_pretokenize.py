"""Split patterns and byte-level stand-ins."""
import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

import bpe
from bpe.pretokenize import (
    BYTE_TO_CHAR, CHAR_TO_BYTE, GPT4_PATTERN_HF, ascii_findall, bytes_to_token, resolve_pattern, token_to_bytes,
)


def test_gpt2_pattern_splits():
    assert bpe.split("Hello world's  end!\n\n", "gpt2") == ["Hello", " world", "'s", " ", " end", "!", "\n\n"]


def test_gpt4_pattern_splits_digits_in_threes_and_keeps_newlines_apart():
    assert bpe.split("I'LL pay 1234567 now!!\n\n  x", "gpt4") == [
        "I", "'LL", " pay", " ", "123", "456", "7", " now", "!!\n\n", " ", " x"]


def test_splits_cover_the_text_exactly():
    text = "a\tb  \r\n 😀 e\u0301 ١٢٣ \x00"
    for pattern in ("gpt2", "gpt4"):
        assert "".join(bpe.split(text, pattern)) == text


def test_user_pattern_and_errors():
    assert bpe.split("ab cd", r"\w+") == ["ab", " ", "cd"]  # the unmatched space is its own piece
    assert resolve_pattern("gpt4") == bpe.GPT4_PATTERN
    with pytest.raises(ValueError, match="does not compile"):
        resolve_pattern("[")
    with pytest.raises(ValueError):
        resolve_pattern("")


@pytest.mark.parametrize("pattern, text, pieces", [
    (r"\p{L}+", "Hello, world! 42", ["Hello", ", ", "world", "! 42"]),
    (r"\p{L}+", "  ", ["  "]),  # no match at all: the whole text is one piece
    (r"\p{L}+", "", []),
    (r"\d", "a12b", ["a", "1", "2", "b"]),
    (r"(\p{L})\1", "aabcdd", ["aa", "bc", "dd"]),  # capture groups: whole matches, not the groups
    (r"(?=b)|b", "abbab", ["a", "b", "ba", "b"]),  # empty matches split as in HF's Oniguruma
    (r"x*", "abxxc", ["a", "b", "xx", "c"]),
])
def test_user_pattern_keeps_the_text_between_matches(pattern, text, pieces):
    assert bpe.split(text, pattern) == pieces
    assert "".join(bpe.split(text, pattern)) == text


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab1 ,.\n\té😀"), max_size=60),
       st.sampled_from([r"\p{L}+", r"\d+|\s", r"(a)b|.", r"(?=b)|b", r"\b", r"b?", r"\p{L}++"]))
def test_user_pattern_pieces_rebuild_the_text(text, pattern):
    pieces = bpe.split(text, pattern)
    assert "".join(pieces) == text and "" not in pieces


def test_built_in_patterns_use_plain_findall():
    from bpe.pretokenize import splitter
    for pattern in ("gpt2", "gpt4", GPT4_PATTERN_HF):
        assert getattr(splitter(pattern), "__name__", "") == "findall"  # no gap handling cost


def test_byte_stand_ins_are_gpt2s():
    assert len(set(BYTE_TO_CHAR.values())) == 256
    assert BYTE_TO_CHAR[ord(" ")] == "Ġ" and BYTE_TO_CHAR[ord("\n")] == "Ċ" and BYTE_TO_CHAR[0] == "Ā"
    assert all(CHAR_TO_BYTE[c] == b for b, c in BYTE_TO_CHAR.items())
    assert bytes_to_token(" the".encode()) == "Ġthe"
    assert token_to_bytes("Ġthe") == b" the"
    assert token_to_bytes(bytes_to_token(bytes(range(256)))) == bytes(range(256))


ASCII = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=200)
ASCII_WORDY = st.text(alphabet=st.sampled_from("aZ09 \t\n\r\x0b\x0c\x1c'sSlLdD!.-_"), max_size=200)


@settings(max_examples=300, deadline=None)
@given(st.one_of(ASCII, ASCII_WORDY))
def test_ascii_fast_path_splits_exactly_like_the_unicode_pattern(text):
    for pattern in (bpe.GPT2_PATTERN, bpe.GPT4_PATTERN, GPT4_PATTERN_HF):
        fast = ascii_findall(pattern)
        if fast is None:
            pytest.skip("re without possessive quantifiers (Python < 3.11)")
        assert fast(text) == regex.findall(pattern, text)


def test_no_ascii_fast_path_for_user_patterns():
    assert ascii_findall(r"\w+") is None


def test_counted_plus_is_exported_atomic_after_atoms_escapes_classes_and_groups():
    from bpe.pretokenize import hf_pattern
    assert hf_pattern(r"\p{N}{1,3}+|x{2}|\s+") == r"(?>\p{N}{1,3})|x{2}|\s+"
    assert hf_pattern(r"\.{2}+|[^\]x]{2,}+") == r"(?>\.{2})|(?>[^\]x]{2,})"
    assert hf_pattern(r"((?:ab){2}+c){1,2}+") == r"(?>((?>(?:ab){2})c){1,2})"
    assert hf_pattern(r"\{2}+|a\\{3}+") == r"\{2}+|a(?>\\{3})"  # an escaped brace is no repeat
    assert hf_pattern(bpe.GPT4_PATTERN) == GPT4_PATTERN_HF
