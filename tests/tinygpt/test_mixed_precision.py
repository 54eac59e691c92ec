"""python -m tinygpt.train --dtype bfloat16|float16: mixed precision in the training loop (rules: minigrad/amp.py).

Float32 master weights and AdamW state, the forward under mg.autocast, float16's dynamic loss scaling (a skipped
step is counted, never a failure), resume bit for bit with the scaler's state, and float32 checkpoints that
tinygpt.load and python -m tinygpt.generate read as any other run. bfloat16 needs ml_dtypes (the [bfloat16] extra);
its tests skip without it.

How closely the low-precision loss tracks float32: the nano preset on test_train's TEXT (char tokenizer, batch 8 x
16, lr 3e-3, seed 1337, no dropout), STEPS steps per dtype. Measured (2-core CPU, numpy 2.4.6, OpenBLAS Haswell):
  max |loss - float32 loss| over the 300 steps: bfloat16 0.064 (step 268), float16 0.043 (step 267);
  mean over the steps: bfloat16 0.0036, float16 0.0023; max over the first 100 steps: bfloat16 0.0016, float16 0.0005.
Late in the run the model memorizes TEXT (loss ~0.17) and a single batch's loss is sensitive to rounding, so the
late maximum is the loosest figure; the tolerances below sit above each measurement. (On tinyshakespeare, where the
loss is still ~2.4 after 300 steps, the maxima were 0.0015 and 0.0003.)
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import minigrad as mg
import tinygpt
from tests.tinygpt.test_train import ROOT, TEXT, losses, small_args
from tinygpt import checkpoint, train
from tinygpt import generate as gen

STEPS = 300
LOW = ("bfloat16", "float16")
# tolerances: a bit above the measurements in the module docstring
MAX_DIFF = {"bfloat16": 0.1, "float16": 0.07}
MEAN_DIFF = {"bfloat16": 0.008, "float16": 0.005}
EARLY_MAX_DIFF = {"bfloat16": 0.004, "float16": 0.0015}  # steps 1-100


def need(dtype: str) -> None:
    if dtype == "bfloat16":
        pytest.importorskip("ml_dtypes", reason="--dtype bfloat16 needs ml_dtypes (pip install -e \".[bfloat16]\")")


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def step_records(run: Path) -> list[dict]:
    return [r for r in records(run) if "loss" in r]


def eval_records(run: Path) -> list[dict]:
    """Eval records without their timing (tokens_per_s is the only field allowed to differ between runs)."""
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in records(run) if "val_loss" in r]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mixed")
    (path / "corpus.txt").write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(base):
    """trained(dtype): the run folder of a STEPS-step nano run in that dtype (each trained once, on first use)."""
    runs: dict = {}

    def get(dtype: str) -> Path:
        if dtype not in runs:
            run = base / f"run-{dtype}"
            args = small_args(base / "corpus.txt", run, "--max-steps", str(STEPS), "--eval-interval", "100",
                              "--dtype", dtype)
            assert train.main(args) == 0
            runs[dtype] = run
        return runs[dtype]

    return get


# ------------------------------------------------------------------------------ the loss tracks float32
@pytest.mark.parametrize("dtype", LOW)
def test_the_low_precision_loss_tracks_float32(trained, dtype):
    need(dtype)
    ref, low = np.array(losses(trained("float32"))), np.array(losses(trained(dtype)))
    assert len(ref) == len(low) == STEPS
    diff = np.abs(low - ref)
    print(f"{dtype}: max |loss - float32 loss| {diff.max():.4f} at step {diff.argmax() + 1}, mean {diff.mean():.5f}, "
          f"max over steps 1-100 {diff[:100].max():.4f}; last loss {low[-1]:.4f} (float32 {ref[-1]:.4f})")
    assert diff.max() < MAX_DIFF[dtype]
    assert diff.mean() < MEAN_DIFF[dtype]
    assert diff[:100].max() < EARLY_MAX_DIFF[dtype]
    assert np.mean(low[-20:]) < np.mean(low[:5]) - 2  # it learns as float32 does
    assert 0 < diff.max()  # and is not float32 by accident


# ------------------------------------------------------------------------------ a low-precision run's files
@pytest.mark.parametrize("dtype", LOW)
def test_a_low_precision_run_keeps_float32_weights_and_loads_and_generates_in_float32(trained, dtype, capsys):
    need(dtype)
    run = trained(dtype)
    saved = json.loads((run / "config.json").read_text())
    assert saved["args"]["dtype"] == dtype  # the dtype it trained with
    assert ("grad_scaler" in saved["state"]) == (dtype == "float16")  # the scaler's state: float16 only
    for name in ("model.safetensors", "optimizer.safetensors"):  # master weights and AdamW moments
        assert {a.dtype.name for a in load_file(run / name).values()} == {"float32"}, name
    model, tok = tinygpt.load(run)
    assert {p.dtype.name for p in model.parameters()} == {"float32"}
    text = gen.generate_text(model, tok, "the ", 12, seed=3)
    assert len(text) == 12
    capsys.readouterr()
    assert gen.main(["--run", str(run), "--prompt", "the ", "--max-new-tokens", "12", "--seed", "3"]) == 0
    assert text in capsys.readouterr().out  # the command line loads the same float32 model
    steps = step_records(run)
    if dtype == "float16":  # no overflow at the default scale on this run: nothing skipped
        assert all(r["skipped"] is False and r["loss_scale"] == 2.0 ** 16 for r in steps)
        assert [r["skipped_steps"] for r in eval_records(run)] == [0, 0, 0]
    else:
        assert all("skipped" not in r and "loss_scale" not in r for r in steps)


# ------------------------------------------------------------------------------ float16's loss scaler in the loop
def test_an_overflow_in_float16_is_a_skipped_step_and_the_scale_halves(base, monkeypatch, capsys):
    """A loss scale of 2**30 overflows float16 gradients: the step is skipped (weights and AdamW's step count
    unchanged), the scale halves until the gradients fit, then grows after growth_interval good steps."""
    growth = 4
    monkeypatch.setattr(train, "grad_scaler", lambda args: mg.amp.GradScaler(init_scale=2.0 ** 30,
                                                                             growth_interval=growth))
    seen: dict = {}
    real_setup, real_accumulate = train.setup, train.accumulate_gradients

    def spy_setup(args, given):
        out = real_setup(args, given)
        seen["model"], seen["optimizer"] = out[3], out[4]
        return out

    snaps: list = []  # at the start of every step: (all weights, AdamW's step count)

    def snapshot():
        weights = np.concatenate([p.numpy().ravel() for p in seen["model"].parameters()])
        counts = {s["step"] for s in seen["optimizer"].state.values()} or {0}
        assert len(counts) == 1
        return weights, counts.pop()

    def spy_accumulate(*a, **k):
        snaps.append(snapshot())
        return real_accumulate(*a, **k)

    monkeypatch.setattr(train, "setup", spy_setup)
    monkeypatch.setattr(train, "accumulate_gradients", spy_accumulate)
    run = base / "overflow"
    n = 20
    assert train.main(small_args(base / "corpus.txt", run, "--max-steps", str(n), "--eval-interval", "10",
                                 "--dtype", "float16")) == 0  # an overflow is not a failure
    snaps.append(snapshot())
    out, err = capsys.readouterr()
    recs = step_records(run)
    assert [r["step"] for r in recs] == list(range(1, n + 1))  # a skipped step still counts as a step
    skipped = [r["skipped"] for r in recs]
    assert skipped[0] and not all(skipped)
    print("loss scales:", [r["loss_scale"] for r in recs], "skipped:", [int(s) for s in skipped])
    scale, good = 2.0 ** 30, 0  # GradScaler's state machine, replayed from the records
    for i, r in enumerate(recs):
        assert r["loss_scale"] == scale, f"step {i + 1}"
        (w0, c0), (w1, c1) = snaps[i], snaps[i + 1]
        if r["skipped"]:
            assert np.array_equal(w0, w1) and c1 == c0, f"step {i + 1} was skipped but changed the model"
            scale, good = scale / 2, 0
        else:
            assert not np.array_equal(w0, w1) and c1 == c0 + 1, f"step {i + 1} was taken"
            good += 1
            if good == growth:
                scale, good = scale * 2, 0
        assert np.isfinite(r["loss"])
    n_skipped = sum(skipped)
    assert snaps[-1][1] == n - n_skipped  # AdamW stepped once per step taken
    state = json.loads((run / "config.json").read_text())["state"]
    assert state["skipped_steps"] == n_skipped and state["grad_scaler"]["scale"] == scale
    assert state["grad_scaler"]["growth_interval"] == growth
    evals = [r for r in records(run) if "val_loss" in r]
    assert [e["skipped_steps"] for e in evals] == [sum(skipped[:10]), n_skipped]
    assert f"{n_skipped} steps skipped (float16 overflow), loss scale {scale:g}" in out.splitlines()[-1]
    assert "Warning" not in err  # an expected overflow prints no numpy warnings
    assert any(r["skipped"] for r in recs[13:]), "the scale should have grown back into an overflow"


@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")  # the divergence
def test_a_non_finite_loss_still_stops_a_float16_run(base, capsys):
    run = base / "diverge"
    assert train.main(small_args(base / "corpus.txt", run, "--max-steps", "10", "--lr", "1e30", "--grad-clip", "0",
                                 "--dtype", "float16")) == 1
    err = capsys.readouterr().err
    assert "loss is nan at step" in err or "loss is inf at step" in err
    assert "Last good checkpoint" in err


# ------------------------------------------------------------------------------ interrupted and resumed
@pytest.mark.parametrize("dtype", LOW)
def test_an_interrupted_low_precision_run_resumes_bit_for_bit(base, monkeypatch, dtype):
    """Ctrl-C at step 13 (between evals), then --resume: the same records, weights and scaler state as an
    uninterrupted run. float16 runs with a scaler that overflows every few steps (scale 2**24, growth after 3
    good steps), so the scale, its growth tracker and the skip count all matter at the resume, and with
    --grad-accum 2 (each micro-batch's loss scaled)."""
    need(dtype)
    if dtype == "float16":
        monkeypatch.setattr(train, "grad_scaler", lambda args: mg.amp.GradScaler(
            init_scale=2.0 ** 24, growth_interval=3, enabled=args.dtype == "float16"))
    corpus, n, stop_at = base / "corpus.txt", 24, 13

    def args(out):
        accum = ("--batch-size", "4", "--grad-accum", "2") if dtype == "float16" else ()
        return small_args(corpus, out, "--max-steps", str(n), "--eval-interval", "10", "--dropout", "0.1",
                          "--dtype", dtype, *accum)

    full, part = base / f"full-{dtype}", base / f"part-{dtype}"
    assert train.main(args(full)) == 0
    real, calls = train.accumulate_gradients, []

    def interrupt(*a, **k):  # a Ctrl-C in the middle of step stop_at: it finishes, is saved, and the run stops
        calls.append(1)
        if len(calls) == stop_at:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*a, **k)

    monkeypatch.setattr(train, "accumulate_gradients", interrupt)
    assert train.main(args(part)) == 128 + signal.SIGINT
    monkeypatch.setattr(train, "accumulate_gradients", real)
    state = json.loads((part / "config.json").read_text())["state"]
    assert state["step"] == stop_at
    if dtype == "float16":
        assert sum(r["skipped"] for r in step_records(part)) == state["skipped_steps"] > 0
        assert state["grad_scaler"]["scale"] not in (2.0 ** 24, 2.0 ** 16)
    assert train.main(["--resume", str(part), "--data", str(corpus), "--cache-dir", str(base / "cache"),
                       "--no-progress"]) == 0
    assert step_records(part) == step_records(full)  # losses, lr, loss scale and skips, bit for bit
    assert eval_records(part) == eval_records(full)
    assert (part / "model.safetensors").read_bytes() == (full / "model.safetensors").read_bytes()
    assert (part / "optimizer.safetensors").read_bytes() == (full / "optimizer.safetensors").read_bytes()
    a, b = (json.loads((r / "config.json").read_text())["state"] for r in (part, full))
    assert {k: a.get(k) for k in ("step", "tokens_seen", "grad_scaler", "skipped_steps")} == \
        {k: b.get(k) for k in ("step", "tokens_seen", "grad_scaler", "skipped_steps")}
    if dtype == "float16":
        assert b["skipped_steps"] > state["skipped_steps"]  # it skipped steps after the resume too


def test_resume_refuses_a_dtype_change_and_a_damaged_scaler_state(base, capsys):
    run = base / "fixed-dtype"
    corpus = base / "corpus.txt"
    assert train.main(small_args(corpus, run, "--max-steps", "2", "--dtype", "float16")) == 0
    capsys.readouterr()
    assert train.main(["--resume", str(run), "--data", str(corpus), "--cache-dir", str(base / "cache"),
                       "--dtype", "float32", "--max-steps", "4", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: --dtype float32 differs from the run's float16: a resumed run keeps its preset, tokenizer, "
                   "dtype and seed (start a new run to change them)")
    assert checkpoint.read_config(run)["state"]["step"] == 2
    saved = json.loads((run / "config.json").read_text())
    saved["state"]["grad_scaler"]["scale"] = -1.0  # a damaged scaler state: one line naming config.json, exit 2
    (run / "config.json").write_text(json.dumps(saved))
    assert train.main(["--resume", str(run), "--data", str(corpus), "--cache-dir", str(base / "cache"),
                       "--max-steps", "4", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {run / 'config.json'}: invalid loss-scaler state") and len(err.splitlines()) == 1


def test_two_ranks_skip_the_same_float16_steps_and_stay_bitwise_identical(base):
    """Data parallel: the overflow check reads the all-reduced gradient, so every rank skips the same steps."""
    from tests.tinygpt.test_distributed import launch, run_args
    driver = (
        "import hashlib, sys\n"
        "import minigrad as mg\n"
        "from tinygpt import train\n"
        "train.grad_scaler = lambda args: mg.amp.GradScaler(init_scale=2.0 ** 24, growth_interval=3)\n"
        "real, seen = train.accumulate_gradients, []\n"
        "def accumulate(model, optimizer, ids, args, *rest):  # at the start of every step\n"
        "    digest = hashlib.sha256(optimizer._flat.data.tobytes()).hexdigest()\n"
        "    assert len(set(args.comm.gather_host(digest))) == 1, 'the ranks differ'\n"
        "    seen.append(1)\n"
        "    return real(model, optimizer, ids, args, *rest)\n"
        "train.accumulate_gradients = accumulate\n"
        "rc = train.main(sys.argv[1:])\n"
        "print('steps checked', len(seen))\n"
        "sys.exit(rc)\n")
    run = base / "two-ranks"
    args = run_args(base / "corpus.txt", run, "--batch-size", "4", "--max-steps", "12", "--dtype", "float16")[2:]
    proc = launch(2, ["-c", driver, *args])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("steps checked 12") == 2
    recs = step_records(run)
    assert len(recs) == 12 and recs[0]["skipped"] and not all(r["skipped"] for r in recs)


# ------------------------------------------------------------------------------ the command line
def test_bfloat16_without_ml_dtypes_is_one_line_and_exit_2(base):
    code = ("import sys; sys.modules['ml_dtypes'] = None; from tinygpt.train import main; "
            f"sys.exit(main(sys.argv[1:]))")
    argv = small_args(base / "corpus.txt", base / "no-bf16", "--max-steps", "1", "--dtype", "bfloat16")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == ('error: --dtype bfloat16 needs the ml-dtypes package (numpy has no bfloat16): '
                                   'pip install -e ".[bfloat16]"')
    assert not (base / "no-bf16").exists()  # nothing written


def test_help_describes_the_dtypes(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "{float32,float64,bfloat16,float16}" in text
    assert "float16 adds dynamic loss scaling" in text and '".[bfloat16]"' in text
