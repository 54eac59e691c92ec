"""The run folder of python -m tinygpt.train: choosing it, resuming (or forking) the run it holds, opening it,
and its metrics.

A run folder holds one checkpoint (tinygpt/checkpoint.py: config.json with the options and the training state,
the weights, the optimizer, the tokenizer) and metrics.jsonl, one record per step and per eval; metrics.png plots
it. --resume continues a run in place, or forks it into another --out: only its options are read from the
folder, and its metrics.jsonl is copied up to the checkpoint's step.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tinygpt import checkpoint
from tinygpt.checkpoint import RunError
from tinygpt.cli import UsageError
from tinygpt.options import FIXED_ON_RESUME, TRAINING_OPTIONS, check_args, defaults, flag
from tinygpt.text_tokenizers import atomic_write_text


def choose_out(args: Any, given: set[str]) -> Path:
    """The run folder: --out, or the first of runs/<preset>, runs/<preset>-2, ... that holds no run.

    A folder that holds a run is refused unless --overwrite says to replace it.
    """
    if args.out is not None:
        out = Path(args.out)
    elif args.overwrite:
        out = Path("runs") / args.preset
    else:
        base, n = Path("runs") / args.preset, 1
        out = base
        while out.exists() and (checkpoint.holds_run(out) or not out.is_dir()):
            n += 1
            out = base.with_name(f"{base.name}-{n}")
        return out
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    if checkpoint.holds_run(out) and not args.overwrite:
        raise UsageError(f"--out {out} already holds a run; continue it with --resume {out}, "
                         f"replace it with --overwrite, or choose another --out")
    return out


def apply_resume(args: Any, given: set[str]) -> dict:
    """Fill args from the run in --resume: its training options, then the command line's overrides.

    Only options are taken from the run folder, never paths: the corpus, cache and output folder
    are the ones given on this command line (or the defaults).
    """
    src = Path(args.resume)
    saved = checkpoint.read_config(src)
    saved_args, state = saved.get("args", {}), saved.get("state")
    cfg_path = src / "config.json"
    if not isinstance(state, dict) or not isinstance(state.get("step"), int) or state["step"] < 0:
        raise RunError(f"{cfg_path} has no valid training state (\"state\" with a step)")
    restored = defaults()
    for name in (*FIXED_ON_RESUME, *TRAINING_OPTIONS):
        if name in saved_args:
            setattr(restored, name, saved_args[name])
    try:
        check_args(restored)
    except UsageError as e:
        raise RunError(f"{cfg_path}: saved option {e}") from None
    for name in FIXED_ON_RESUME:
        if name in given and getattr(args, name) != getattr(restored, name):
            raise UsageError(f"{flag(name)} {getattr(args, name)} differs from the run's "
                             f"{getattr(restored, name)}: a resumed run keeps its preset, tokenizer, dtype and "
                             f"seed (start a new run to change them)")
        setattr(args, name, getattr(restored, name))
    if "epochs" in given and "max_steps" not in given:
        restored.max_steps = None  # recomputed from the new --epochs
    for name in TRAINING_OPTIONS:
        new, old = getattr(args, name), getattr(restored, name)
        if name in given and new != old:
            args.overrides.append(f"resume: {flag(name)} {new} (the run had {old})")
        else:
            setattr(args, name, old)
    return saved


def restored_state(saved: dict, src: Path, dev: Any, rank: int = 0) -> dict:
    """The saved training state to continue from: its random-generator states checked, this rank's device one set."""
    state = dict(saved["state"])
    try:
        np.random.default_rng().bit_generator.state = state["batch_rng"]  # checked here, used by the loop
        device_rng = (state.get("device_rng_ranks") or [state.get("device_rng")])[rank]
        if dev.type == "cpu" and device_rng:
            dev.rng.bit_generator.state = device_rng
        state["tokens_seen"] = int(state.get("tokens_seen", 0))
    except (KeyError, TypeError, ValueError) as e:
        raise RunError(f"{src / 'config.json'}: invalid random-generator state ({type(e).__name__}: {e})") from None
    return state


def args_to_save(args: Any) -> dict:
    """The options as config.json keeps them (not the communicator)."""
    return {k: v for k, v in vars(args).items() if k != "comm"}


def open_run_folder(run: Path, args: Any, resumed_from: "Path | None", step: int) -> None:
    """Create or clean the run folder, and cut metrics.jsonl back to the checkpoint a resume starts from."""
    try:
        run.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {run}: cannot create the run folder ({e.strerror})") from None
    if resumed_from is not None and run.resolve() == resumed_from.resolve():
        checkpoint.finish_commit(run)  # completes a checkpoint a crash interrupted; drops temporaries
    else:
        if args.overwrite:
            checkpoint.remove_run(run)
        checkpoint.finish_commit(run)
    source = resumed_from / "metrics.jsonl" if resumed_from is not None else None
    copy_metrics(source, run / "metrics.jsonl", step)


def copy_metrics(source: "Path | None", target: Path, step: int) -> None:
    """target = the records of source up to `step` (a resumed run's log; empty for a new run)."""
    keep = []
    if source is not None and source.exists():
        with open(source, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a crash
                    continue
                if isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] <= step:
                    keep.append(line if line.endswith("\n") else line + "\n")
    atomic_write_text(target, "".join(keep))


def last_eval(run: Path) -> dict:
    """The last eval record in the run's metrics.jsonl ({} when it has none)."""
    last: dict = {}
    with open(run / "metrics.jsonl", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if "val_loss" in rec:
                last = rec
    return last


def plot_metrics(run: Path) -> None:
    """metrics.png: training loss per step and the eval losses (needs matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed, so no metrics.png (pip install -e \".[plot]\")")
        return
    steps, losses, evals = [], [], []
    with open(run / "metrics.jsonl", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if "loss" in rec:
                steps.append(rec["step"])
                losses.append(rec["loss"])
            if "val_loss" in rec:
                evals.append((rec["step"], rec["train_loss"], rec["val_loss"]))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, losses, lw=0.8, alpha=0.6, label="train (batch)")
    if evals:
        e = np.array(evals)
        ax.plot(e[:, 0], e[:, 1], "o-", label="train (eval)")
        ax.plot(e[:, 0], e[:, 2], "o-", label="val")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss")
    ax.legend()
    fig.tight_layout()
    tmp = run / ".metrics.png.tmp"
    fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    tmp.replace(run / "metrics.png")
