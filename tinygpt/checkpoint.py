"""Run folders: model.safetensors, optimizer.safetensors (+ .json), tokenizer.json and config.json.

A checkpoint is all-or-nothing, whatever moment a crash or SIGKILL strikes:

1. every file is written whole under a staged name (`.model.safetensors.staged.tmp`, ...);
2. config.json is replaced atomically; it holds the step, the training state and, under
   "files", the size and SHA-256 of each staged file. This rename is the commit point;
3. each staged file is renamed over its final name.

Before step 2 the folder still holds the previous checkpoint whole (the staged files are
leftovers, removed at the next start). After it, config.json describes the new checkpoint and
every file of it exists, under its final name or still under its staged one: `resolve_files`
finds each one by its hash, and the trainer finishes the renames (`finish_commit`) when it opens
the folder again. Loading checks every file against config.json and names the one that does not
match. Nothing is ever unpickled.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

import minigrad as mg
from minigrad import backend
from tinygpt.config import GPTConfig
from tinygpt.text_tokenizers import atomic_write_text, load_tokenizer

ARRAY_REF = "__array__"  # marks where an array sat in a nested optimizer state
FILES = ("model.safetensors", "optimizer.safetensors", "optimizer.json", "tokenizer.json")
RUN_FILES = ("config.json", *FILES, "metrics.jsonl", "metrics.png")  # what makes a folder a run


class RunError(ValueError):
    """A run folder or one of its files that cannot be used: one line naming the file."""


def staged_name(name: str) -> str:
    return f".{name}.staged.tmp"


def is_temporary(name: str) -> bool:
    """Files our writers leave only when killed mid-write: `.NAME...tmp` (and matplotlib's `.tmp.png`)."""
    return name.startswith(".") and (name.endswith(".tmp") or name.endswith(".tmp.png"))


def holds_run(folder: "str | Path") -> list[str]:
    """The run files (checkpoint, metrics, staged files) in folder, [] when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if p.name in RUN_FILES or p.name in {staged_name(n) for n in FILES})


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _record(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": _sha256(path)}


def fsync_dir(folder: Path) -> None:
    """Make the renames in folder durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every platform; the renames are still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------- saving
def _flatten_state(obj: Any, arrays: dict, path: str = "s") -> Any:
    """Replace every array in a nested dict/list by a reference, collecting the arrays."""
    if isinstance(obj, mg.Tensor):
        obj = obj.data
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if hasattr(obj, "shape") and hasattr(obj, "dtype") and not isinstance(obj, (int, float)):
        arrays[path] = np.ascontiguousarray(backend.to_numpy(obj))
        return {ARRAY_REF: path}
    if isinstance(obj, dict):
        return {"__dict__": [[_flatten_state(k, arrays, f"{path}.k{i}"), _flatten_state(v, arrays, f"{path}.{i}")]
                             for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        return [_flatten_state(v, arrays, f"{path}.{i}") for i, v in enumerate(obj)]
    return obj


def _unflatten_state(obj: Any, arrays: dict, device: Any) -> Any:
    if isinstance(obj, dict) and ARRAY_REF in obj:
        return backend.from_numpy(device, arrays[obj[ARRAY_REF]])
    if isinstance(obj, dict) and "__dict__" in obj:
        return {_unflatten_state(k, arrays, device): _unflatten_state(v, arrays, device) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_unflatten_state(v, arrays, device) for v in obj]
    return obj


def save_checkpoint(run_dir: "str | Path", model: Any, optimizer: Any, tokenizer: Any, config: GPTConfig,
                    train_state: dict) -> None:
    """Write the whole run state as one all-or-nothing checkpoint (see the module docstring)."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    staged = {name: run / staged_name(name) for name in FILES}
    try:
        mg.save(model.state_dict(), staged["model.safetensors"])
        arrays: dict = {}
        meta = _flatten_state(optimizer.state_dict(), arrays)
        mg.save({k: mg.Tensor(v) for k, v in arrays.items()}, staged["optimizer.safetensors"])
        atomic_write_text(staged["optimizer.json"], json.dumps(meta))
        tokenizer.save(str(staged["tokenizer.json"]))
        files = {name: _record(path) for name, path in staged.items()}
    except BaseException:  # nothing committed yet: the previous checkpoint stands
        for path in staged.values():
            path.unlink(missing_ok=True)
        raise
    # the commit point: once this rename happens config.json describes the new checkpoint, whose files
    # are the staged ones (so an interruption from here on must not delete them: finish_commit completes it)
    atomic_write_text(run / "config.json",
                      json.dumps({"model": config.to_dict(), **train_state, "files": files}, indent=2))
    finish_commit(run)


def finish_commit(run_dir: "str | Path") -> None:
    """Rename the staged files that config.json describes into place, then drop leftover temporaries.

    Called after every save and when the trainer opens a run folder to continue it, so a checkpoint
    whose renames a crash interrupted is completed, and a half-written one is swept away.
    """
    run = Path(run_dir)
    records = _read_json(run / "config.json").get("files", {}) if (run / "config.json").exists() else {}
    for name, rec in records.items():
        tmp = run / staged_name(name)
        if tmp.exists() and _matches(tmp, rec):
            os.replace(tmp, run / name)
    fsync_dir(run)
    for path in run.iterdir():
        if is_temporary(path.name) and path.is_file():
            path.unlink(missing_ok=True)


def committed_step(run_dir: "str | Path") -> "int | None":
    """The step of the checkpoint config.json describes now (None when there is none or it is unreadable)."""
    try:
        step = json.loads((Path(run_dir) / "config.json").read_text(encoding="utf-8"))["state"]["step"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return step if isinstance(step, int) else None


def remove_run(run_dir: "str | Path") -> None:
    """Delete a run's own files (for --overwrite); other files in the folder are left alone."""
    run = Path(run_dir)
    for name in ("config.json", *RUN_FILES):  # config.json first: the folder stops being a run at once
        (run / name).unlink(missing_ok=True)
    for path in run.iterdir():
        if is_temporary(path.name) and path.is_file():
            path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------- loading
def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunError(f"{path} is missing") from None
    except UnicodeDecodeError:
        raise RunError(f"{path} is not UTF-8 text") from None
    except OSError as e:
        raise RunError(f"cannot read {path}: {e.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise RunError(f"{path} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None


def _matches(path: Path, rec: Any) -> bool:
    try:
        return path.stat().st_size == rec["bytes"] and _sha256(path) == rec["sha256"]
    except (OSError, TypeError, KeyError):
        return False


def read_config(run_dir: "str | Path") -> dict:
    """config.json of a run, checked for the fields a checkpoint must have."""
    run = Path(run_dir)
    if not run.is_dir():
        raise RunError(f"run folder not found: {run}" if not run.exists() else f"{run} is a file, not a run folder")
    path = run / "config.json"
    if not path.exists():
        raise RunError(f"{run} is not a tinygpt run folder (no config.json)")
    cfg = _read_json(path)
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict):
        raise RunError(f"{path} has no \"model\" section: not a tinygpt config.json")
    for key, kind in (("files", dict), ("args", dict), ("state", dict)):
        if key in cfg and not isinstance(cfg[key], kind):
            raise RunError(f"{path}: \"{key}\" should be a JSON object")
    return cfg


def resolve_files(run_dir: "str | Path", cfg: dict) -> dict[str, Path]:
    """Where each file of the checkpoint that config.json describes is, each checked by size and hash.

    A file may still sit under its staged name when a crash interrupted the renames. A folder
    written before checkpoints carried hashes ("files" missing) is taken as it is.
    """
    run = Path(run_dir)
    records = cfg.get("files")
    if records is None:
        return {name: run / name for name in FILES}
    where = {}
    for name in FILES:
        rec = records.get(name)
        if rec is None:
            raise RunError(f"{run / 'config.json'} does not list {name}: not a complete checkpoint")
        for path in (run / name, run / staged_name(name)):
            if path.exists() and _matches(path, rec):
                where[name] = path
                break
        else:
            path = run / name
            if not path.exists():
                raise RunError(f"{path} is missing (the checkpoint of step {_step(cfg)} needs it)")
            size = path.stat().st_size
            detail = (f"{size} bytes, expected {rec.get('bytes')}" if size != rec.get("bytes")
                      else "its SHA-256 differs")
            raise RunError(f"{path} does not match the checkpoint of step {_step(cfg)} in config.json "
                           f"({detail}): the file is damaged or from another checkpoint")
    return where


def _step(cfg: dict) -> Any:
    return (cfg.get("state") or {}).get("step", "?")


def model_config(run_dir: "str | Path", cfg: dict) -> GPTConfig:
    try:
        return GPTConfig.from_dict(cfg["model"])
    except (TypeError, ValueError) as e:
        raise RunError(f"{Path(run_dir) / 'config.json'}: invalid model config ({e})") from None


def load_model_state(model: Any, path: Path) -> None:
    """Copy model.safetensors into model, as one line naming the file when it does not fit."""
    try:
        state = mg.load(path)
    except ValueError as e:
        raise RunError(f"{path} is not a valid safetensors file") from e
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if "\n" in str(e) else str(e)
        raise RunError(f"{path} does not fit the model in config.json: {first}") from None


def load_optimizer_state(optimizer: Any, paths: dict[str, Path], device: Any) -> None:
    """Restore the optimizer saved by save_checkpoint, every array's shape checked against its parameter."""
    try:
        arrays = {k: t.numpy() for k, t in mg.load(paths["optimizer.safetensors"]).items()}
    except ValueError as e:
        raise RunError(f"{paths['optimizer.safetensors']} is not a valid safetensors file") from e
    meta_path = paths["optimizer.json"]
    meta = _read_json(meta_path)
    try:
        state = _unflatten_state(meta, arrays, backend.device(device))
        optimizer.load_state_dict(state)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise RunError(f"{meta_path} with {paths['optimizer.safetensors'].name} does not fit this model's "
                       f"optimizer ({type(e).__name__}: {e})") from None


def load_run_tokenizer(path: Path) -> Any:
    try:
        return load_tokenizer(path)
    except RunError:
        raise
    except (ValueError, KeyError, TypeError, OSError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RunError(msg if str(path) in msg else f"{path}: {msg}") from None


def load(run_dir: "str | Path", device: str = "cpu") -> tuple:
    """(model, tokenizer) from a run folder: `model, tok = tinygpt.load("runs/NAME")`.

    Reads only; every file is checked against config.json, and a problem is a RunError naming the file.
    """
    from tinygpt.model import TinyGPT
    cfg = read_config(run_dir)
    paths = resolve_files(run_dir, cfg)
    model = TinyGPT(model_config(run_dir, cfg))
    load_model_state(model, paths["model.safetensors"])
    tokenizer = load_run_tokenizer(paths["tokenizer.json"])
    if tokenizer.vocab_size > model.cfg.vocab_size:
        raise RunError(f"{paths['tokenizer.json']} has {tokenizer.vocab_size} tokens, more than the model's "
                       f"vocab_size {model.cfg.vocab_size}")
    model.to(device)
    model.eval()
    return model, tokenizer
