"""Hostile inputs: every bad file or option is one stderr line `bpe: error: ...` naming it, exit
status 2, and nothing is written; Tokenizer.load raises TokenizerFileError for any unusable file."""
import json
import os
import stat

import pytest

import bpe
from bpe.__main__ import main

CORPUS = "hello world, hello there\nsecond line 42\n"
WORDPIECE = {"version": "1.0", "added_tokens": [], "normalizer": None, "pre_tokenizer": {"type": "Whitespace"},
             "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                       "max_input_chars_per_word": 100, "vocab": {"[UNK]": 0, "a": 1, "##b": 2}}}
UNIGRAM = {"version": "1.0", "added_tokens": [], "normalizer": None, "pre_tokenizer": None,
           "model": {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0], ["a", -1.0]]}}
BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}

# name -> the bytes of a tokenizer.json that no byte-level BPE can be read from
BAD_TOKENIZER_FILES = {
    "truncated.json": b'{"model": {"type": "BPE", "vocab": {',
    "empty.json": b"",
    "not-utf8.json": b'{"model": "\xff"}',
    "nested.json": b"[" * 100_000 + b"]" * 100_000,
    "huge-int.json": b'{"model": {"type": "BPE", "vocab": {"a": ' + b"1" * 5000 + b'}, "merges": []}}',
    "null.json": b"null",
    "list.json": b"[1, 2]",
    "wordpiece.json": json.dumps(WORDPIECE).encode(),
    "unigram.json": json.dumps(UNIGRAM).encode(),
    "vocab-list.json": json.dumps({"model": {"type": "BPE", "vocab": [1], "merges": []},
                                   "pre_tokenizer": BYTE_LEVEL}).encode(),
    "merge-not-pair.json": json.dumps({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a", 5]]},
                                       "pre_tokenizer": BYTE_LEVEL}).encode(),
    "duplicate-id.json": json.dumps({"model": {"type": "BPE", "vocab": {"a": 0, "b": 0}, "merges": []},
                                     "pre_tokenizer": BYTE_LEVEL}).encode(),
    "bool-added-id.json": json.dumps({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                                      "pre_tokenizer": BYTE_LEVEL,
                                      "added_tokens": [{"id": True, "content": "x"}]}).encode(),
    "surrogate-special.json": b'{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, '
                              b'"pre_tokenizer": {"type": "ByteLevel"}, '
                              b'"added_tokens": [{"id": 1, "content": "\\ud800"}]}',
    "split-prefix-space.json": json.dumps({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {
        "type": "Sequence", "pretokenizers": [
            {"type": "Split", "behavior": "Isolated", "pattern": {"Regex": "a"}},
            {"type": "ByteLevel", "use_regex": False, "add_prefix_space": True}]}}).encode(),
    "bad-split.json": json.dumps({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {
        "type": "Sequence", "pretokenizers": [{"type": "Split", "behavior": "Isolated", "pattern": {"Regex": "("}},
                                              {"type": "ByteLevel", "use_regex": False}]}}).encode(),
}


def snapshot(folder) -> dict:
    """Every file under folder with its bytes and mode: a failed command must leave this unchanged."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mode) if p.is_file() else None
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    (root / "corpus.txt").write_text(CORPUS, encoding="utf-8")
    (root / "empty.txt").write_bytes(b"")
    (root / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (root / "folder").mkdir()
    (root / "folder.json").mkdir()
    (root / "bad").mkdir()
    for name, data in BAD_TOKENIZER_FILES.items():
        (root / "bad" / name).write_bytes(data)
    assert main(["train", str(root / "corpus.txt"), "--vocab-size", "300", "--out", str(root / "tok.json"),
                 "--quiet"]) == 0
    (root / "existing.json").write_bytes((root / "tok.json").read_bytes())
    return root


# (argv with {W} for the work folder, a fragment the message must hold besides the named path)
CASES = {
    "out is a folder": (["train", "{W}/corpus.txt", "--out", "{W}/folder"], "{W}/folder", "is a folder"),
    "out folder missing": (["train", "{W}/corpus.txt", "--out", "{W}/nope/t.json"], "{W}/nope/t.json",
                           "does not exist"),
    "out under a file": (["train", "{W}/corpus.txt", "--out", "{W}/corpus.txt/t.json"], "{W}/corpus.txt/t.json",
                         "is not a folder"),
    "out is the corpus": (["train", "{W}/corpus.txt", "--out", "{W}/../{W_NAME}/corpus.txt"],
                          "{W}/../{W_NAME}/corpus.txt", "is also a corpus file"),
    "vocab size not a number": (["train", "{W}/corpus.txt", "--vocab-size", "many", "--out", "{W}/existing.json"],
                                "--vocab-size", "many"),
    "vocab size too small": (["train", "{W}/corpus.txt", "--vocab-size", "-5", "--out", "{W}/existing.json"],
                             "--vocab-size -5", "too small"),
    "vocab size too large": (["train", "{W}/corpus.txt", "--vocab-size", "99999999", "--out", "{W}/existing.json"],
                             "--vocab-size 99999999", "too large"),
    "duplicate special tokens": (["train", "{W}/corpus.txt", "--special-tokens", "<a>,<b>,<a>",
                                  "--out", "{W}/existing.json"], "--special-tokens", "<a> appears more than once"),
    "negative min frequency": (["train", "{W}/corpus.txt", "--min-frequency", "-1", "--out", "{W}/existing.json"],
                               "--min-frequency -1", ">= 0"),
    "bad pattern": (["train", "{W}/corpus.txt", "--pattern", "(", "--out", "{W}/existing.json"], "--pattern",
                    "does not compile"),
    "missing corpus": (["train", "{W}/nope.txt", "--out", "{W}/existing.json"], "{W}/nope.txt", "not found"),
    "corpus is a folder": (["train", "{W}/folder", "--out", "{W}/existing.json"], "{W}/folder", "is a folder"),
    "empty corpus": (["train", "{W}/empty.txt", "--out", "{W}/existing.json"], "{W}/empty.txt", "empty"),
    "non-UTF-8 corpus": (["train", "{W}/latin1.txt", "--out", "{W}/existing.json"], "{W}/latin1.txt", "UTF-8"),
    "tokenizer missing": (["encode", "--tokenizer", "{W}/nope.json", "hi"], "{W}/nope.json", "not found"),
    "tokenizer is a folder": (["encode", "--tokenizer", "{W}/folder.json", "hi"], "{W}/folder.json", "folder"),
    "encode file is a folder": (["encode", "--tokenizer", "{W}/tok.json", "--file", "{W}/folder"], "{W}/folder",
                                "folder"),
    "encode file not UTF-8": (["encode", "--tokenizer", "{W}/tok.json", "--file", "{W}/latin1.txt"],
                              "{W}/latin1.txt", "UTF-8"),
    "encode text not UTF-8": (["encode", "--tokenizer", "{W}/tok.json", "caf\udce9"], "TEXT", "UTF-8"),
    "decode not an integer": (["decode", "--tokenizer", "{W}/tok.json", "1", "x"], "ids", "integers"),
    "decode out of range": (["decode", "--tokenizer", "{W}/tok.json", "300"], "300", "out of range"),
}
CASES.update({f"tokenizer {name}": (["decode", "--tokenizer", f"{{W}}/bad/{name}", "1"], f"{{W}}/bad/{name}", "")
              for name in BAD_TOKENIZER_FILES})


def expand(item, work):
    if isinstance(item, list):
        return [expand(a, work) for a in item]
    return item.replace("{W_NAME}", work.name).replace("{W}", str(work))


@pytest.mark.parametrize("case", CASES)
def test_one_line_error_naming_the_input_and_nothing_written(case, work, capsys):
    argv, named, fragment = (expand(x, work) for x in CASES[case])
    before = snapshot(work)
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("bpe: error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert named in err and fragment in err and "Traceback" not in err
    assert snapshot(work) == before  # no file created, changed or left behind (no temp files)


@pytest.mark.parametrize("name", BAD_TOKENIZER_FILES)
def test_load_raises_tokenizer_file_error_naming_the_file(name, work):
    path = work / "bad" / name
    with pytest.raises(bpe.TokenizerFileError) as info:
        bpe.Tokenizer.load(path)
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_load_of_hf_wordpiece_unigram_and_wordlevel_files(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers, trainers
    for name, model, trainer in [
        ("wordpiece", models.WordPiece(unk_token="[UNK]"),
         trainers.WordPieceTrainer(vocab_size=60, special_tokens=["[UNK]"])),
        ("unigram", models.Unigram(), trainers.UnigramTrainer(vocab_size=30)),
        ("wordlevel", models.WordLevel(unk_token="[UNK]"), trainers.WordLevelTrainer(special_tokens=["[UNK]"])),
    ]:
        tok = tokenizers.Tokenizer(model)
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        tok.train_from_iterator([CORPUS] * 5, trainer)
        tok.save(str(tmp_path / f"{name}.json"))
        with pytest.raises(bpe.TokenizerFileError, match=f"{name}.json: unsupported model type"):
            bpe.Tokenizer.load(tmp_path / f"{name}.json")


def test_unwritable_out_folder_is_refused_before_training(work, tmp_path, capsys, monkeypatch):
    # we may run as root, where no folder is unwritable: make os.access say so for this one
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access",
                        lambda p, mode, **kw: False if str(p) == str(locked) else real_access(p, mode, **kw))
    code = main(["train", str(work / "corpus.txt"), "--out", str(locked / "t.json")])
    err = capsys.readouterr().err
    assert code == 2 and err == f"bpe: error: --out {locked / 't.json'}: folder {locked} is not writable\n"
    assert not any(locked.iterdir())


def test_save_writes_0644_and_keeps_an_existing_files_mode(work, tmp_path, capsys):
    tok = bpe.Tokenizer.load(work / "tok.json")
    old_umask = os.umask(0o077)  # even a strict umask gives the same 0644 as the other outputs
    try:
        tok.save(tmp_path / "new.json")
        assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o644
        assert main(["train", str(work / "corpus.txt"), "--vocab-size", "300", "--quiet",
                     "--out", str(tmp_path / "cli.json")]) == 0
        assert stat.S_IMODE((tmp_path / "cli.json").stat().st_mode) == 0o644
    finally:
        os.umask(old_umask)
    (tmp_path / "private.json").write_text("{}")
    os.chmod(tmp_path / "private.json", 0o600)
    tok.save(tmp_path / "private.json")
    assert stat.S_IMODE((tmp_path / "private.json").stat().st_mode) == 0o600
    assert bpe.Tokenizer.load(tmp_path / "private.json").get_vocab() == tok.get_vocab()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli.json", "new.json", "private.json"]  # no temp files


def test_save_errors_name_the_path_not_the_temp_file(work, tmp_path):
    tok = bpe.Tokenizer.load(work / "tok.json")
    with pytest.raises(IsADirectoryError) as info:
        tok.save(tmp_path)
    assert info.value.filename == str(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        tok.save(tmp_path / "missing" / "t.json")
    assert info.value.filename == str(tmp_path / "missing" / "t.json") and ".tmp" not in str(info.value)
    assert not any(tmp_path.iterdir())
