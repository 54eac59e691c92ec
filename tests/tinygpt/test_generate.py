"""python -m tinygpt.generate and its Python API: option checks, one-line errors, defaults, prompts, pipes."""
from __future__ import annotations

import inspect
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinygpt
from minigrad import backend
from tests.tinygpt.test_train import finished_run
from tinygpt import generate as gen

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny char-tokenizer run folder (10 steps of the nano preset, about a second)."""
    return finished_run(tmp_path_factory.mktemp("gen"))[1]


@pytest.fixture(scope="module")
def loaded(run):
    return tinygpt.load(run)


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


# ---------------------------------------------------------------- command-line options

@pytest.mark.parametrize("args,names", [
    (["--temperature", "-1"], "--temperature"),
    (["--temperature", "nan"], "--temperature"),
    (["--temperature", "inf"], "--temperature"),
    (["--top-k", "-3"], "--top-k"),
    (["--top-p", "0"], "--top-p"),
    (["--top-p", "1.5"], "--top-p"),
    (["--top-p", "nan"], "--top-p"),
    (["--top-p", "-0.5"], "--top-p"),
    (["--max-new-tokens", "-1"], "--max-new-tokens"),
    (["--num-samples", "0"], "--num-samples"),
    (["--seed", "-1"], "--seed"),
    (["--device", "tpu"], "--device"),
    (["--device", "cuda:x"], "--device"),
    (["--top-k", "x"], "--top-k"),          # argparse: not an int
    (["--temperature", "warm"], "--temperature"),
    (["--max-new-tokens", "1.5"], "--max-new-tokens"),
    (["--bogus", "1"], "--bogus"),          # argparse: unknown option
])
def test_bad_option_is_one_line_exit_2_and_touches_nothing(run, capsys, args, names):
    before = snapshot(run)
    assert gen.main(["--run", str(run), *args]) == 2
    line = one_error_line(capsys)
    assert names in line
    assert snapshot(run) == before


@pytest.mark.parametrize("args,allowed", [
    (["--temperature", "-1"], ">= 0"),
    (["--top-k", "-3"], ">= 0"),
    (["--top-p", "1.5"], "0 < --top-p <= 1"),
    (["--num-samples", "0"], ">= 1"),
    (["--device", "tpu"], "'cpu', 'cuda' or 'cuda:N'"),
])
def test_bad_option_message_states_the_allowed_range(run, capsys, args, allowed):
    assert gen.main(["--run", str(run), *args]) == 2
    assert allowed in one_error_line(capsys)


def test_missing_run_option_is_one_line(capsys):
    assert gen.main([]) == 2
    assert "--run" in one_error_line(capsys)


def test_cuda_without_a_gpu_is_one_line(run, capsys):
    if backend.cuda_unavailable_reason() is None:
        pytest.skip("a GPU is present")
    assert gen.main(["--run", str(run), "--device", "cuda"]) == 2
    assert "cuda" in one_error_line(capsys)


def test_edge_values_are_accepted(run, capsys):
    assert gen.main(["--run", str(run), "--temperature", "0", "--top-k", "0", "--top-p", "1",
                     "--max-new-tokens", "0", "--seed", "0", "--prompt", "the"]) == 0
    assert capsys.readouterr().out == "the\n"


# ---------------------------------------------------------------- broken run folders

def _write(name: str, data: bytes):
    return lambda d: (d / name).write_bytes(data)


def _truncate(name: str):
    return lambda d: (d / name).write_bytes((d / name).read_bytes()[:100])


@pytest.mark.parametrize("name,damage", [
    ("config-not-json", _write("config.json", b"{")),
    ("config-empty", _write("config.json", b"")),
    ("config-not-utf8", _write("config.json", b"\xff\xfe{}")),
    ("config-no-model", _write("config.json", b"{}")),
    ("model-missing", lambda d: (d / "model.safetensors").unlink()),
    ("model-truncated", _truncate("model.safetensors")),
    ("model-garbage", _write("model.safetensors", b"\xff" * 64)),
    ("tokenizer-missing", lambda d: (d / "tokenizer.json").unlink()),
    ("tokenizer-not-json", _write("tokenizer.json", b"nope")),
    ("tokenizer-wrong", _write("tokenizer.json", b"{}")),
    ("no-folder", lambda d: shutil.rmtree(d)),
])
def test_broken_run_folder_is_one_line_naming_it(run, tmp_path, capsys, name, damage):
    broken = tmp_path / name
    shutil.copytree(run, broken)
    damage(broken)
    before = snapshot(broken) if broken.exists() else None
    assert gen.main(["--run", str(broken), "--max-new-tokens", "4"]) == 2
    assert str(broken) in one_error_line(capsys)
    assert (snapshot(broken) if broken.exists() else None) == before


# ---------------------------------------------------------------- prompts

def test_non_utf8_prompt_bytes_are_one_line(run):
    proc = subprocess.run([sys.executable, "-m", "tinygpt.generate", "--run", str(run), "--prompt", b"ab\xff"],
                          capture_output=True, cwd=ROOT, timeout=120)
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --prompt") and "UTF-8" in lines[0], err
    assert "0xff" in lines[0] and proc.stdout == b""


def test_prompt_outside_a_char_vocabulary_is_one_line(run, capsys):
    before = snapshot(run)
    assert gen.main(["--run", str(run), "--prompt", "the \N{GRINNING FACE}"]) == 2
    line = one_error_line(capsys)
    assert "--prompt" in line and "\N{GRINNING FACE}" in line
    assert capsys.readouterr().out == "" and snapshot(run) == before


def test_prompt_outside_a_char_vocabulary_raises_value_error_in_python(loaded):
    model, tok = loaded
    with pytest.raises(ValueError):
        gen.generate_text(model, tok, "\N{GRINNING FACE}", 4)


# ---------------------------------------------------------------- Python API

@pytest.mark.parametrize("kwargs,word", [
    ({"temperature": -1.0}, "temperature"),
    ({"temperature": math.nan}, "temperature"),
    ({"temperature": math.inf}, "temperature"),
    ({"top_k": -3}, "top_k"),
    ({"top_k": 2.5}, "top_k"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"top_p": math.nan}, "top_p"),
])
def test_python_api_rejects_bad_sampling_values(loaded, kwargs, word):
    model, tok = loaded
    logits, rng = np.array([0.0, 1.0, 2.0]), np.random.default_rng(0)
    with pytest.raises(ValueError, match=word):
        gen.sample_next(logits, rng, **kwargs)
    with pytest.raises(ValueError, match=word):
        gen.generate_ids(model, [1, 2], 4, rng, **kwargs)
    with pytest.raises(ValueError, match=word):
        gen.generate_text(model, tok, "the", 4, **kwargs)


def test_python_api_rejects_negative_max_new_tokens(loaded):
    model, tok = loaded
    with pytest.raises(ValueError, match="max_new_tokens"):
        gen.generate_text(model, tok, "the", -1)


def test_generate_text_defaults_are_the_command_line_defaults():
    params = inspect.signature(gen.generate_text).parameters
    parser = gen.build_parser()
    for name in ("max_new_tokens", "temperature", "top_k", "top_p", "greedy", "seed"):
        assert params[name].default == parser.get_default(name), name
    assert params["prompt"].default == parser.get_default("prompt")
    assert params["use_cache"].default is not parser.get_default("no_cache")


def test_python_api_samples_exactly_like_the_command_line(run, loaded, capsys):
    model, tok = loaded
    assert gen.main(["--run", str(run), "--prompt", "the ", "--seed", "5"]) == 0
    cli = capsys.readouterr().out
    text = gen.generate_text(model, tok, "the ", seed=5)
    assert cli == "the " + text + "\n" and len(text) == gen.MAX_NEW_TOKENS


def test_temperature_zero_is_greedy(run, loaded, capsys):
    model, tok = loaded
    a = gen.generate_text(model, tok, "the ", 30, seed=1, temperature=0)
    b = gen.generate_text(model, tok, "the ", 30, seed=2, greedy=True)
    assert a == b and len(a) == 30
    assert gen.main(["--run", str(run), "--prompt", "the ", "--max-new-tokens", "30", "--temperature", "0"]) == 0
    assert capsys.readouterr().out == "the " + a + "\n"
    logits = np.array([0.1, 3.0, 2.9, -1.0])
    assert gen.sample_next(logits, np.random.default_rng(0), temperature=0) == 1


def test_tiny_temperature_is_near_greedy_not_nan():
    logits = np.array([0.1, 3.0, 2.9, -1.0])
    assert gen.sample_next(logits, np.random.default_rng(0), temperature=1e-300) == 1


def test_top_k_zero_and_top_p_one_are_off():
    logits = np.array([0.0, 1.0, 0.5, -1.0, 2.0])
    a = [gen.sample_next(logits, np.random.default_rng(s), top_k=0, top_p=1.0) for s in range(30)]
    b = [gen.sample_next(logits, np.random.default_rng(s)) for s in range(30)]
    assert a == b and len(set(a)) > 2


# ---------------------------------------------------------------- output

def test_closed_pipe_exits_quietly(run):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first token: every write fails with EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "tinygpt.generate", "--run", str(run), "--prompt", "the ",
                               "--max-new-tokens", "50"], stdout=write_end, stderr=subprocess.PIPE,
                              cwd=ROOT, timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == 141 and proc.stderr == b"", proc.stderr.decode()
