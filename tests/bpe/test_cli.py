"""python -m bpe: train/encode/decode, and one-line errors with exit status 2."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import bpe
from bpe.__main__ import main

from .corpora import multilingual_text

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "corpus.txt"
    path.write_text(multilingual_text(300, seed=7), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(corpus) -> Path:
    out = corpus.parent / "tok.json"
    assert main(["train", str(corpus), "--vocab-size", "400", "--out", str(out), "--quiet"]) == 0
    return out


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_train_writes_a_loadable_tokenizer_and_prints_a_summary(corpus, tmp_path, capsys):
    out = tmp_path / "t.json"
    code, stdout, _ = run_cli(capsys, "train", str(corpus), "--vocab-size", "300", "--out", str(out),
                              "--pattern", "gpt2")
    assert code == 0
    assert "42 merges" in stdout and "MB/s" in stdout and "bytes/token" in stdout
    tok = bpe.Tokenizer.load(out)
    assert tok.vocab_size == 300 and tok.pattern == bpe.GPT2_PATTERN
    assert json.loads(out.read_text(encoding="utf-8"))["model"]["type"] == "BPE"


def test_encode_then_decode_round_trips(trained, capsys):
    text = "Hello wörld 😀 <bos>"
    code, stdout, _ = run_cli(capsys, "encode", "--tokenizer", str(trained), text)
    assert code == 0
    ids = [int(x) for x in stdout.split()]
    assert ids == bpe.Tokenizer.load(trained).encode(text)
    code, stdout, _ = run_cli(capsys, "decode", "--tokenizer", str(trained), *map(str, ids))
    assert code == 0 and stdout == text + "\n"


def test_encode_with_allow_special(trained, capsys):
    code, stdout, _ = run_cli(capsys, "encode", "--tokenizer", str(trained), "--allow-special", "<eos>")
    assert code == 0 and stdout.split() == ["1"]


def one_line_error(capsys, *argv: str) -> str:
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert err.startswith("bpe: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_missing_corpus_file(tmp_path, capsys):
    err = one_line_error(capsys, "train", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "t.json"))
    assert "corpus file not found" in err and "missing.txt" in err


def test_empty_corpus(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    err = one_line_error(capsys, "train", str(empty), "--out", str(tmp_path / "t.json"))
    assert "empty" in err and "empty.txt" in err
    assert not (tmp_path / "t.json").exists()


def test_vocab_size_below_bytes_plus_specials(corpus, tmp_path, capsys):
    err = one_line_error(capsys, "train", str(corpus), "--vocab-size", "257", "--out", str(tmp_path / "t.json"))
    assert "--vocab-size 257" in err and "258" in err


def test_corrupt_tokenizer_json(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"model": {"type": "BPE", "vocab": {"a": 0, "b": 0}, "merges": []}, '
                   '"pre_tokenizer": {"type": "ByteLevel"}}')
    err = one_line_error(capsys, "encode", "--tokenizer", str(bad), "hi")
    assert "bad.json" in err and "duplicate id 0" in err
    bad.write_text("{ truncated")
    assert "not valid JSON" in one_line_error(capsys, "encode", "--tokenizer", str(bad), "hi")


def test_missing_tokenizer_and_bad_ids(trained, tmp_path, capsys):
    assert "file not found" in one_line_error(capsys, "decode", "--tokenizer", str(tmp_path / "no.json"), "1")
    assert "integers" in one_line_error(capsys, "decode", "--tokenizer", str(trained), "1", "x")
    assert "out of range" in one_line_error(capsys, "decode", "--tokenizer", str(trained), "99999")


def test_bad_option_and_missing_output_folder(corpus, tmp_path, capsys):
    assert "--vocab-size" in one_line_error(capsys, "train", str(corpus), "--vocab-size", "many")
    assert "does not exist" in one_line_error(capsys, "train", str(corpus), "--out", str(tmp_path / "no" / "t.json"))


def test_invalid_utf8_corpus(tmp_path, capsys):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\xe9\n".encode("latin-1"))
    err = one_line_error(capsys, "train", str(path), "--out", str(tmp_path / "t.json"))
    assert "UTF-8" in err and "latin1.txt" in err


def test_module_entry_point_runs(trained):
    proc = subprocess.run([sys.executable, "-m", "bpe", "encode", "--tokenizer", str(trained), "hi there"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0 and proc.stdout.split()
    proc = subprocess.run([sys.executable, "-m", "bpe", "train", "missing.txt"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip() == "bpe: error: corpus file not found: missing.txt"


def test_bad_pattern_names_the_option(corpus, tmp_path, capsys):
    err = one_line_error(capsys, "train", str(corpus), "--pattern", "(", "--out", str(tmp_path / "t.json"))
    assert "--pattern" in err and "does not compile" in err


def test_long_training_shows_a_progress_line_on_a_terminal(corpus, tmp_path, capsys, monkeypatch):
    import itertools
    import types

    from bpe import __main__ as cli
    clock = itertools.count(0.0, 2.0)  # every reading of the clock is two seconds later
    monkeypatch.setattr(cli, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, stdout, err = run_cli(capsys, "train", str(corpus), "--vocab-size", "900", "--out", str(tmp_path / "t.json"))
    assert code == 0
    n = bpe.Tokenizer.load(tmp_path / "t.json").vocab_size - 258  # this corpus runs out of pairs first
    assert 256 < n < 642
    assert err == f"\rbpe: merge 256/642 (39%)\rbpe: merge {n}/642 ({100 * n // 642}%)\n"
    assert f"trained {n} merges" in stdout


def test_corpus_folder_is_named(tmp_path, capsys):
    err = one_line_error(capsys, "train", str(tmp_path), "--out", str(tmp_path / "t.json"))
    assert "is a folder" in err


def test_user_pattern_keeps_unmatched_text_end_to_end(corpus, tmp_path, capsys):
    out = tmp_path / "letters.json"
    code, _, _ = run_cli(capsys, "train", str(corpus), "--vocab-size", "400", "--pattern", r"\p{L}+",
                         "--out", str(out), "--quiet")
    assert code == 0
    text = "Hello, world! 42 naïve ☕\n"
    code, stdout, _ = run_cli(capsys, "encode", "--tokenizer", str(out), text)
    assert code == 0
    code, decoded, _ = run_cli(capsys, "decode", "--tokenizer", str(out), *stdout.split())
    assert code == 0 and decoded == text  # was "Helloworldnaïve": the text between matches was dropped


def test_encode_a_file_with_worker_processes_gives_the_same_ids(trained, corpus, capsys):
    code, one, _ = run_cli(capsys, "encode", "--tokenizer", str(trained), "--file", str(corpus))
    assert code == 0
    code, two, _ = run_cli(capsys, "encode", "--tokenizer", str(trained), "--file", str(corpus), "--processes", "2")
    assert code == 0 and two == one
    assert [int(x) for x in one.split()] == bpe.Tokenizer.load(trained).encode(corpus.read_text(encoding="utf-8"))
    code, _, err = run_cli(capsys, "encode", "--tokenizer", str(trained), "--file", str(corpus), "--processes", "0")
    assert code == 2 and "--processes 0" in err and err.count("\n") == 1
