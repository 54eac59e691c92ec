"""Issue 12's matrix: every way a user (or a hostile tester) broke a run, as one table.

Each case runs a command line in-process against a copy of one finished run folder and asserts
the exit code, exactly one line on stderr naming the problem, and that nothing in the run folder
(or anywhere else the case watches) changed. The interrupt and kill cases are in
test_interrupt.py; generate's and bpe's deeper cases in test_generate.py and tests/bpe/.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import tinygpt
from bpe import __main__ as bpe_cli
from tests.tinygpt.test_train import TEXT, finished_run, losses
from tinygpt import generate as gen
from tinygpt import train


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """One finished nano run (10 steps, checkpoint at step 10) and its corpus, made once."""
    root = tmp_path_factory.mktemp("hostile")
    corpus, run = finished_run(root, "--dropout", "0.1")
    return root, corpus, run


@pytest.fixture
def case(base, tmp_path):
    """A private copy of the run folder, its corpus and cache paths."""
    _, corpus, run = base
    mine = tmp_path / "run"
    shutil.copytree(run, mine)
    return {"RUN": str(mine), "CORPUS": str(corpus), "CACHE": str(tmp_path / "cache"), "TMP": str(tmp_path)}


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def set_file(run: Path, name: str, data: bytes, keep_record: bool = False) -> None:
    """Replace a checkpoint file; unless keep_record, config.json's size/hash record is updated to match,
    so the loader's content checks (not just the hash check) are what is tested."""
    (run / name).write_bytes(data)
    if keep_record:
        return
    cfg = json.loads((run / "config.json").read_text())
    cfg["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (run / "config.json").write_text(json.dumps(cfg))


def edit_config(run: Path, edit) -> None:
    cfg = json.loads((run / "config.json").read_text())
    edit(cfg)
    (run / "config.json").write_text(json.dumps(cfg))


def wrong_shape_optimizer(run: Path) -> None:
    from safetensors.numpy import load_file, save_file
    arrays = load_file(run / "optimizer.safetensors")
    key = next(k for k, v in arrays.items() if v.ndim == 2)
    arrays[key] = np.zeros((3, 3), dtype=arrays[key].dtype)
    tmp = run / "x.safetensors"
    save_file(arrays, tmp)
    data = tmp.read_bytes()
    tmp.unlink()
    set_file(run, "optimizer.safetensors", data)


WORDPIECE = json.dumps({"version": "1.0", "model": {"type": "WordPiece", "unk_token": "[UNK]",
                                                    "vocab": {"[UNK]": 0, "a": 1}}}).encode()

RESUME = ["--resume", "{RUN}", "--data", "{CORPUS}", "--cache-dir", "{CACHE}", "--no-progress"]
NEW = ["--data", "{CORPUS}", "--preset", "nano", "--tokenizer", "char", "--cache-dir", "{CACHE}", "--no-progress",
       "--max-steps", "5"]

# (id, tool, argv, prepare(run) or None, exit code, what the one stderr line must contain)
CASES = [
    # 1. a second run never destroys the first
    ("new-run-into-a-run", "train", [*NEW, "--out", "{RUN}"], None, 2, "already holds a run"),
    # 5. flags: resume refuses model-shape changes
    ("resume-preset", "train", [*RESUME, "--preset", "tutorial"], None, 2, "--preset tutorial differs"),
    ("resume-block-size", "train", [*RESUME, "--block-size", "64"], None, 2, "--block-size 64 is above"),
    ("resume-dtype", "train", [*RESUME, "--dtype", "float64"], None, 2, "--dtype float64 differs"),
    ("resume-tokenizer", "train", [*RESUME, "--tokenizer", "byte"], None, 2, "--tokenizer byte differs"),
    ("resume-seed", "train", [*RESUME, "--seed", "7"], None, 2, "--seed 7 differs"),
    ("resume-lr-nan", "train", [*RESUME, "--lr", "nan"], None, 2, "--lr must be > 0"),
    ("resume-out-is-a-run", "train", [*RESUME, "--out", "{RUN}2"], lambda r: shutil.copytree(r, str(r) + "2"), 2,
     "already holds a run"),
    ("resume-overwrite", "train", [*RESUME, "--overwrite"], None, 2, "--overwrite with --resume"),
    # 5. every option range-checked before any work
    ("max-steps-0", "train", [*NEW, "--max-steps", "0"], None, 2, "--max-steps must be an integer >= 1"),
    ("max-steps-neg", "train", [*NEW, "--max-steps", "-1"], None, 2, "--max-steps must be an integer >= 1"),
    ("epochs-neg", "train", [*NEW, "--epochs", "-1"], None, 2, "--epochs must be > 0"),
    ("epochs-nan", "train", [*NEW, "--epochs", "nan"], None, 2, "--epochs must be > 0"),
    ("grad-clip-nan", "train", [*NEW, "--grad-clip", "nan"], None, 2, "--grad-clip must be >= 0"),
    ("grad-clip-neg", "train", [*NEW, "--grad-clip", "-1"], None, 2, "--grad-clip must be >= 0"),
    ("lr-nan", "train", [*NEW, "--lr", "nan"], None, 2, "--lr must be > 0"),
    ("lr-0", "train", [*NEW, "--lr", "0"], None, 2, "--lr must be > 0"),
    ("lr-inf", "train", [*NEW, "--lr", "inf"], None, 2, "--lr must be > 0"),
    ("min-lr-nan", "train", [*NEW, "--min-lr", "nan", "--lr-schedule", "cosine"], None, 2, "--min-lr must be >= 0"),
    ("min-lr-neg", "train", [*NEW, "--min-lr", "-1"], None, 2, "--min-lr must be >= 0"),
    ("seed-neg", "train", [*NEW, "--seed", "-1"], None, 2, "--seed must be an integer >= 0"),
    ("seed-huge", "train", [*NEW, "--seed", str(2 ** 64)], None, 2, "--seed must satisfy"),
    ("beta1-1.5", "train", [*NEW, "--beta1", "1.5"], None, 2, "--beta1 must satisfy 0 <= --beta1 < 1"),
    ("beta2-1", "train", [*NEW, "--beta2", "1"], None, 2, "--beta2 must satisfy 0 <= --beta2 < 1"),
    ("beta2-nan", "train", [*NEW, "--beta2", "nan"], None, 2, "--beta2 must satisfy"),
    ("dropout-2", "train", [*NEW, "--dropout", "2"], None, 2, "--dropout must satisfy 0 <= --dropout < 1"),
    ("dropout-neg", "train", [*NEW, "--dropout", "-0.1"], None, 2, "--dropout must satisfy"),
    ("weight-decay-neg", "train", [*NEW, "--weight-decay", "-1"], None, 2, "--weight-decay must be >= 0"),
    ("warmup-neg", "train", [*NEW, "--warmup-steps", "-1"], None, 2, "--warmup-steps must be an integer >= 0"),
    ("batch-0", "train", [*NEW, "--batch-size", "0"], None, 2, "--batch-size must be an integer >= 1"),
    ("batch-abc", "train", [*NEW, "--batch-size", "abc"], None, 2, "argument --batch-size: invalid int value"),
    ("block-0", "train", [*NEW, "--block-size", "0"], None, 2, "--block-size must be an integer >= 1"),
    ("block-too-big", "train", [*NEW, "--block-size", "33"], None, 2, "--block-size 33 is above the model's context"),
    ("eval-interval-0", "train", [*NEW, "--eval-interval", "0"], None, 2, "--eval-interval must be an integer >= 1"),
    ("eval-batches-0", "train", [*NEW, "--eval-batches", "0"], None, 2, "--eval-batches must be an integer >= 1"),
    ("sample-tokens-neg", "train", [*NEW, "--sample-tokens", "-1"], None, 2, "--sample-tokens must be"),
    ("dtype-float8", "train", [*NEW, "--dtype", "float8"], None, 2, "argument --dtype: invalid choice"),
    ("schedule-bad", "train", [*NEW, "--lr-schedule", "linear"], None, 2, "argument --lr-schedule: invalid choice"),
    ("device-tpu", "train", [*NEW, "--device", "tpu"], None, 2, "unknown device 'tpu'"),
    ("preset-bad", "train", [*NEW, "--preset", "huge"], None, 2, "unknown preset 'huge'"),
    ("unknown-option", "train", [*NEW, "--learning-rate", "1"], None, 2, "unrecognized arguments"),
    ("out-is-a-file", "train", [*NEW, "--out", "{CORPUS}"], None, 2, "is a file, not a folder"),
    ("cache-dir-is-a-file", "train", [*NEW, "--out", "{TMP}/new", "--cache-dir", "{CORPUS}"], None, 2,
     "--cache-dir"),
    # 6. corrupt run folders, for --resume and generate alike
    ("truncated-model", "train", RESUME, lambda r: set_file(r, "model.safetensors", b"\x08", keep_record=True), 2,
     "model.safetensors does not match the checkpoint of step 10"),
    ("garbage-model", "train", RESUME, lambda r: set_file(r, "model.safetensors", b"\x08" * 16), 2,
     "model.safetensors is not a valid safetensors file"),
    ("missing-model", "train", RESUME, lambda r: (r / "model.safetensors").unlink(), 2,
     "model.safetensors is missing"),
    ("config-not-json", "train", RESUME, lambda r: (r / "config.json").write_text("{"), 2,
     "config.json is not valid JSON"),
    ("config-empty", "train", RESUME, lambda r: (r / "config.json").write_text(""), 2,
     "config.json is not valid JSON"),
    ("config-a-list", "train", RESUME, lambda r: (r / "config.json").write_text("[]"), 2, "has no \"model\" section"),
    ("config-no-state", "train", RESUME, lambda r: edit_config(r, lambda c: c.pop("state")), 2,
     "no valid training state"),
    ("config-bad-model", "train", RESUME, lambda r: edit_config(r, lambda c: c["model"].update(n_heads=3)), 2,
     "invalid model config"),
    ("config-bad-saved-lr", "train", RESUME, lambda r: edit_config(r, lambda c: c["args"].update(lr="x")), 2,
     "config.json: saved option --lr must be > 0"),
    ("config-bad-rng", "train", RESUME, lambda r: edit_config(r, lambda c: c["state"].update(batch_rng=5)), 2,
     "invalid random-generator state"),
    ("tokenizer-not-json", "train", RESUME, lambda r: set_file(r, "tokenizer.json", b"{"), 2,
     "tokenizer.json is not valid JSON"),
    ("tokenizer-wordpiece", "train", RESUME, lambda r: set_file(r, "tokenizer.json", WORDPIECE), 2,
     "tokenizer.json"),
    ("optimizer-json-bad", "train", RESUME, lambda r: set_file(r, "optimizer.json", b"nope"), 2,
     "optimizer.json is not valid JSON"),
    ("optimizer-json-wrong", "train", RESUME, lambda r: set_file(r, "optimizer.json", b"{}"), 2,
     "does not fit this model's optimizer"),
    ("optimizer-wrong-shape", "train", RESUME, wrong_shape_optimizer, 2, "has shape (3, 3), its parameter has"),
    ("not-a-run", "train", ["--resume", "{TMP}", "--no-progress"], None, 2, "is not a tinygpt run folder"),
    ("no-such-run", "train", ["--resume", "{TMP}/nope", "--no-progress"], None, 2, "run folder not found"),
    ("gen-truncated-model", "generate", ["--run", "{RUN}"],
     lambda r: set_file(r, "model.safetensors", b"\x08", keep_record=True), 2, "model.safetensors does not match"),
    ("gen-config-not-json", "generate", ["--run", "{RUN}"], lambda r: (r / "config.json").write_text("{"), 2,
     "config.json is not valid JSON"),
    ("gen-tokenizer-not-json", "generate", ["--run", "{RUN}"], lambda r: set_file(r, "tokenizer.json", b"{"), 2,
     "tokenizer.json is not valid JSON"),
    ("gen-tokenizer-wordpiece", "generate", ["--run", "{RUN}"], lambda r: set_file(r, "tokenizer.json", WORDPIECE),
     2, "tokenizer.json"),
    # 7. generate's options
    ("gen-temperature-neg", "generate", ["--run", "{RUN}", "--temperature", "-1"], None, 2, "--temperature"),
    ("gen-temperature-nan", "generate", ["--run", "{RUN}", "--temperature", "nan"], None, 2, "--temperature"),
    ("gen-top-p-0", "generate", ["--run", "{RUN}", "--top-p", "0"], None, 2, "--top-p"),
    ("gen-top-p-1.5", "generate", ["--run", "{RUN}", "--top-p", "1.5"], None, 2, "--top-p"),
    ("gen-top-p-nan", "generate", ["--run", "{RUN}", "--top-p", "nan"], None, 2, "--top-p"),
    ("gen-top-k-neg", "generate", ["--run", "{RUN}", "--top-k", "-3"], None, 2, "--top-k"),
    ("gen-device-tpu", "generate", ["--run", "{RUN}", "--device", "tpu"], None, 2, "tpu"),
    ("gen-emoji-on-char-run", "generate", ["--run", "{RUN}", "--prompt", "hi \N{GRINNING FACE}"], None, 2,
     "--prompt"),
    # 8. bpe
    ("bpe-out-a-folder", "bpe", ["train", "{CORPUS}", "--vocab-size", "300", "--out", "{TMP}"], None, 2, "{TMP}"),
    ("bpe-wordpiece", "bpe", ["encode", "hi", "--tokenizer", "{TMP}/wp.json"],
     lambda r: (r.parent / "wp.json").write_bytes(WORDPIECE), 2, "wp.json"),
    ("bpe-tokenizer-not-json", "bpe", ["encode", "hi", "--tokenizer", "{TMP}/bad.json"],
     lambda r: (r.parent / "bad.json").write_text("{"), 2, "bad.json"),
]


def run_cli(tool: str, argv: list[str]) -> int:
    return {"train": train.main, "generate": gen.main, "bpe": bpe_cli.main}[tool](argv)


@pytest.mark.parametrize("name,tool,argv,prepare,code,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(case, capsys, monkeypatch, name, tool, argv, prepare, code,
                                                   message):
    monkeypatch.chdir(case["TMP"])  # a default runs/ folder would land here, where it is checked
    run = Path(case["RUN"])
    if prepare is not None:
        prepare(run)
    before, before_tmp = snapshot(run), snapshot(Path(case["TMP"]))
    argv = [a.format(**case) for a in argv]
    assert run_cli(tool, argv) == code
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: " if tool != "bpe" else "bpe: error: "), err
    assert message.format(**case) in lines[0], err
    assert snapshot(run) == before, "the run folder changed"
    assert snapshot(Path(case["TMP"])) == before_tmp, "something was written"


def test_the_matrix_covers_every_point_of_issue_12():
    assert len(CASES) >= 70


# --------------------------------------------------------------------------- 1. fresh runs
def test_a_second_run_goes_to_a_fresh_folder(base, tmp_path, monkeypatch, capsys):
    _, corpus, _ = base
    monkeypatch.chdir(tmp_path)
    argv = [a.format(CORPUS=corpus, CACHE=tmp_path / "cache") for a in NEW]
    assert train.main(argv) == 0
    first = snapshot(tmp_path / "runs" / "nano")
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"run folder: {Path('runs/nano')} (new)"
    assert train.main([*argv, "--data", str(corpus)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"run folder: {Path('runs/nano-2')} (new)"
    assert snapshot(tmp_path / "runs" / "nano") == first, "the first run changed"
    assert train.main([*argv, "--overwrite"]) == 0  # the user says so: runs/nano is replaced
    assert "(replacing the run there)" in capsys.readouterr().out.splitlines()[0]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["nano", "nano-2"]


# --------------------------------------------------------------------------- 2. only finite models
def test_a_non_finite_loss_keeps_the_last_good_checkpoint(case, capsys):
    run = Path(case["RUN"])
    before = snapshot(run)
    argv = [a.format(**case) for a in RESUME] + ["--max-steps", "40", "--lr", "1e30", "--grad-clip", "0"]
    assert train.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    recorded = len(losses(run))
    assert f"at step {recorded + 1};" in err, (err, recorded)  # the step as metrics.jsonl counts them
    assert f"Last good checkpoint: {run} (step 10)" in err
    after = snapshot(run)
    assert {k: v for k, v in after.items() if k != "metrics.jsonl"} == \
        {k: v for k, v in before.items() if k != "metrics.jsonl"}
    tinygpt.load(run)


def test_non_finite_weights_at_an_eval_are_never_saved(case, capsys, monkeypatch):
    """Weights that turn non-finite right before an eval (the loss of that step was still finite)."""
    run = Path(case["RUN"])
    before = snapshot(run)
    real_step = train.mg.optim.AdamW.step

    def step_then_poison(self, *a, **k):
        out = real_step(self, *a, **k)
        if self.state and next(iter(self.state.values()))["step"] == 20:  # the update before step 20's eval
            self.param_groups[0]["params"][0].data[...] = np.nan
        return out

    monkeypatch.setattr(train.mg.optim.AdamW, "step", step_then_poison)
    argv = [a.format(**case) for a in RESUME] + ["--max-steps", "30"]
    assert train.main(argv) == 1
    err = capsys.readouterr().err
    assert "parameters became non-finite at step 20" in err and f"{run} (step 10)" in err
    assert snapshot(run)["model.safetensors"] == before["model.safetensors"]
    assert json.loads((run / "config.json").read_text())["state"]["step"] == 10


# --------------------------------------------------------------------------- 5. resume semantics
def test_resume_overrides_are_printed_and_used(case, capsys):
    run = Path(case["RUN"])
    argv = [a.format(**case) for a in RESUME] + ["--max-steps", "12", "--lr", "1e-3"]
    assert train.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"run folder: {run} (continuing the run)"
    assert "resume: --lr 0.001 (the run had 0.003)" in out and "resume: --max-steps 12 (the run had 10)" in out
    saved = json.loads((run / "config.json").read_text())
    assert saved["args"]["lr"] == 1e-3 and saved["state"]["step"] == 12


def test_resume_with_nothing_left_to_do_says_how_to_extend(case, capsys):
    run = Path(case["RUN"])
    before = snapshot(run)
    assert train.main([a.format(**case) for a in RESUME]) == 0
    out = capsys.readouterr().out
    assert "nothing to do: the run is at step 10 of --max-steps 10" in out and "--max-steps N" in out
    assert snapshot(run) == before


def test_resume_into_another_folder_leaves_the_original_alone(case, capsys):
    run = Path(case["RUN"])
    before = snapshot(run)
    fork = Path(case["TMP"]) / "fork"
    assert train.main([a.format(**case) for a in RESUME] + ["--max-steps", "15", "--out", str(fork)]) == 0
    assert snapshot(run) == before
    assert losses(fork)[:10] == losses(run) and len(losses(fork)) == 15


# --------------------------------------------------------------------------- 9. untrusted run folders
def test_resume_never_takes_paths_from_the_run_folder(case, capsys, tmp_path):
    """A downloaded run's config.json names a corpus, a cache and an output folder: none is touched."""
    run = Path(case["RUN"])
    secret = tmp_path / "secret.txt"
    secret.write_text("a different text " * 500)
    evil_cache, evil_out = tmp_path / "evil-cache", tmp_path / "evil-out"
    edit_config(run, lambda c: c["args"].update(data=str(secret), cache_dir=str(evil_cache), out=str(evil_out)))
    argv = [a.format(**case) for a in RESUME] + ["--max-steps", "12"]
    assert train.main(argv) == 0  # had it read `secret`, the corpus check would have refused
    assert not evil_cache.exists() and not evil_out.exists()
    assert json.loads((run / "config.json").read_text())["state"]["step"] == 12


def test_resume_on_another_corpus_is_refused(case, capsys, tmp_path):
    run = Path(case["RUN"])
    other = tmp_path / "other.txt"
    other.write_text(TEXT.upper())
    before = snapshot(run)
    argv = ["--resume", str(run), "--data", str(other), "--cache-dir", case["CACHE"], "--max-steps", "12"]
    assert train.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not the text the run was trained on" in err
    assert snapshot(run) == before


# --------------------------------------------------------------------------- newcomer
def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "peak learning rate (default: 0.0003)" in out and "--batch-size BATCH_SIZE sequences per micro-batch (default: 32)" in out


def test_leftover_temporary_files_are_removed_at_the_next_start(case, capsys):
    run = Path(case["RUN"])
    for name in (".model.safetensors.staged.tmp", ".model.safetensors.staged.tmp.abc123.tmp", ".config.json.x.tmp"):
        (run / name).write_bytes(b"\0" * 1000)
    tinygpt.load(run)  # loading only reads
    assert (run / ".config.json.x.tmp").exists()
    assert train.main([a.format(**case) for a in RESUME] + ["--max-steps", "11"]) == 0
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


def test_a_damaged_token_cache_is_rebuilt_not_trusted(base, tmp_path, capsys):
    _, corpus, _ = base
    cache = tmp_path / "cache"
    argv = [a.format(CORPUS=corpus, CACHE=cache) for a in NEW]
    assert train.main([*argv, "--out", str(tmp_path / "a")]) == 0
    for npy in cache.glob("tokens-*.npy"):
        npy.write_bytes(npy.read_bytes()[:40])  # cut short, as by a full disk
    assert train.main([*argv, "--out", str(tmp_path / "b")]) == 0
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
