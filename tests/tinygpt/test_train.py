"""python -m tinygpt.train / generate: learning, resume, checkpoints, generation and one-line errors."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import tinygpt
from tinygpt import generate as gen
from tinygpt import train

ROOT = Path(__file__).resolve().parents[2]
TEXT = ("the quick brown fox jumps over the lazy dog. " * 3 + "a stitch in time saves nine. "
        "all that glitters is not gold. ") * 60


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def small_args(corpus, out, *extra):
    return ["--data", str(corpus), "--preset", "nano", "--tokenizer", "char", "--batch-size", "8",
            "--block-size", "16", "--lr", "3e-3", "--eval-interval", "10", "--eval-batches", "2",
            "--sample-tokens", "8", "--out", str(out), "--cache-dir", str(out.parent / "cache"),
            "--no-progress", *extra]


def finished_run(root: Path, *extra: str) -> tuple[Path, Path]:
    """(corpus, run): a finished 10-step nano run on TEXT in root, for module fixtures that share one."""
    corpus = root / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    run = root / "run"
    assert train.main(small_args(corpus, run, "--max-steps", "10", *extra)) == 0
    return corpus, run


def losses(run: Path) -> list[float]:
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in recs if "loss" in r]


def test_loss_falls_and_a_run_folder_is_written(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main(small_args(corpus, run, "--max-steps", "40")) == 0
    out = capsys.readouterr().out
    assert "done: 40 steps" in out and "val loss" in out
    curve = losses(run)
    assert len(curve) == 40 and np.mean(curve[-5:]) < np.mean(curve[:5]) - 0.8
    for name in ("model.safetensors", "optimizer.safetensors", "optimizer.json", "config.json", "tokenizer.json"):
        assert (run / name).exists(), name
    assert not list(run.glob("*.tmp*")), "no temp files left behind"
    model, tok = tinygpt.load(run)  # two lines of Python
    assert model.cfg.vocab_size == tok.vocab_size


def test_resume_continues_exactly_like_an_uninterrupted_run(corpus, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    assert train.main(small_args(corpus, full, "--max-steps", "30", "--dropout", "0.1")) == 0
    assert train.main(small_args(corpus, part, "--max-steps", "20", "--dropout", "0.1")) == 0
    assert train.main(["--resume", str(part), "--data", str(corpus), "--cache-dir", str(tmp_path / "cache"),
                       "--max-steps", "30", "--no-progress"]) == 0
    assert losses(part) == losses(full)  # bit for bit


def test_generation_is_deterministic_under_a_seed(corpus, tmp_path):
    run = tmp_path / "run"
    assert train.main(small_args(corpus, run, "--max-steps", "20")) == 0
    model, tok = tinygpt.load(run)
    a = gen.generate_text(model, tok, "the quick", 20, seed=7, temperature=0.8, top_k=5, top_p=0.9)
    b = gen.generate_text(model, tok, "the quick", 20, seed=7, temperature=0.8, top_k=5, top_p=0.9)
    c = gen.generate_text(model, tok, "the quick", 20, seed=7, temperature=0.8, top_k=5, top_p=0.9,
                          use_cache=False)
    assert a == b == c and len(a) == 20
    long_prompt = "the lazy dog " * 10  # longer than the 32-token context: cropped, not an error
    assert len(gen.generate_text(model, tok, long_prompt, 40, seed=1, greedy=True)) == 40


def test_generate_cli_streams_text(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main(small_args(corpus, run, "--max-steps", "10")) == 0
    capsys.readouterr()
    assert gen.main(["--run", str(run), "--prompt", "the ", "--max-new-tokens", "12", "--seed", "3",
                     "--num-samples", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("the ") >= 2 and "--- sample 2" in out


def test_sampling_filters():
    rng = np.random.default_rng(0)
    logits = np.array([0.0, 5.0, 4.9, -3.0])
    assert gen.sample_next(logits, rng, greedy=True) == 1
    picks = {gen.sample_next(logits, rng, top_k=2) for _ in range(200)}
    assert picks == {1, 2}
    picks = {gen.sample_next(logits, rng, top_p=0.3) for _ in range(50)}
    assert picks == {1}


@pytest.mark.parametrize("make,args,message", [
    (None, ["--data", "missing.txt"], "corpus not found: missing.txt"),
    ("", [], "is empty"),
    (b"\xff\xfe\x00bad", [], "not UTF-8"),
    ("short text", [], "too short"),
    (TEXT, ["--block-size", "64"], "--block-size 64 is above the model's context of 32"),
    (TEXT, ["--preset", "huge"], "unknown preset 'huge'"),
    (TEXT, ["--device", "tpu"], "unknown device 'tpu'"),
])
def test_bad_input_gives_one_line_and_exit_2(tmp_path, capsys, make, args, message):
    path = tmp_path / "c.txt"
    if isinstance(make, bytes):
        path.write_bytes(make)
    elif make is not None:
        path.write_text(make)
    base = ["--data", str(path), "--preset", "nano", "--tokenizer", "char", "--out", str(tmp_path / "r"),
            "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--max-steps", "1"]
    assert train.main(base + args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("error:")


def test_cuda_without_a_gpu_is_one_line_and_exit_2(tmp_path):
    from minigrad import backend
    try:
        backend.device("cuda")
        pytest.skip("a GPU is present")
    except backend.CudaUnavailableError:
        pass
    proc = subprocess.run([sys.executable, "-m", "tinygpt.train", "--device", "cuda", "--max-steps", "1"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cuda" in lines[0] and ("pip install" in lines[0] or "GPU" in lines[0])


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(corpus, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "tinygpt.train", *small_args(corpus, run, "--max-steps", "100000")]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 90
    while time.time() < deadline and not (run / "metrics.jsonl").exists():
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "checkpoint of step" in out
    saved = json.loads((run / "config.json").read_text())["state"]["step"]
    assert saved > 0 and (run / "model.safetensors").exists()


def test_non_finite_loss_stops_with_the_step_and_last_checkpoint(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main(small_args(corpus, run, "--max-steps", "10", "--lr", "1e30", "--grad-clip", "0")) == 1
    err = capsys.readouterr().err
    assert "loss is nan at step" in err or "loss is inf at step" in err
    assert "Last good checkpoint" in err


def test_grad_accum_equals_one_batch_that_large_in_float64(corpus, tmp_path, capsys):
    """--batch-size 4 --grad-accum 3 is the step of --batch-size 12: same windows, same means (float64)."""
    def run(name, *extra):
        out = tmp_path / name
        args = small_args(corpus, out, "--max-steps", "12", "--dtype", "float64", *extra)
        assert train.main(args) == 0
        return out
    accum, big = run("accum", "--batch-size", "4", "--grad-accum", "3"), run("big", "--batch-size", "12")
    np.testing.assert_allclose(losses(accum), losses(big), rtol=0, atol=1e-12)
    wa, wb = tinygpt.load(accum)[0].state_dict(), tinygpt.load(big)[0].state_dict()
    for k in wa:
        np.testing.assert_allclose(wa[k].numpy(), wb[k].numpy(), rtol=0, atol=1e-12, err_msg=k)
    assert "x 3 micro-batches" in capsys.readouterr().out
    state = json.loads((accum / "config.json").read_text())["state"]
    assert state["tokens_seen"] == 12 * 4 * 3 * 16  # steps x batch x accum x block


def test_grad_accum_resumes_exactly(corpus, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    extra = ("--batch-size", "4", "--grad-accum", "2", "--eval-interval", "5")
    assert train.main(small_args(corpus, full, "--max-steps", "15", *extra)) == 0
    assert train.main(small_args(corpus, part, "--max-steps", "7", *extra)) == 0
    assert train.main(["--resume", str(part), "--data", str(corpus), "--cache-dir", str(tmp_path / "cache"),
                       "--max-steps", "15", "--no-progress"]) == 0
    assert losses(part) == losses(full)
