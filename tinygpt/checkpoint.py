"""Run folders: model.safetensors, optimizer.safetensors (+ .json), config.json, tokenizer.json.

A checkpoint is first written whole under temporary names in the run folder; only then is each
file renamed into place, config.json (which holds the step) last. A crash or Ctrl-C while writing
leaves the previous checkpoint intact; nothing is ever unpickled.
"""
from __future__ import annotations

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
    """Write the whole run state: every file staged under a temp name first, then renamed, config.json last."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []

    def stage(name: str) -> Path:
        tmp = run / f".{name}.staged.tmp"
        staged.append((tmp, run / name))
        return tmp

    try:
        mg.save(model.state_dict(), stage("model.safetensors"))
        if optimizer is not None:
            arrays: dict = {}
            meta = _flatten_state(optimizer.state_dict(), arrays)
            mg.save({k: mg.Tensor(v) for k, v in arrays.items()}, stage("optimizer.safetensors"))
            atomic_write_text(stage("optimizer.json"), json.dumps(meta))
        tokenizer.save(str(stage("tokenizer.json")))
        atomic_write_text(stage("config.json"), json.dumps({"model": config.to_dict(), **train_state}, indent=2))
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, final in staged:  # all files are complete on disk: now swap them in
        os.replace(tmp, final)


def read_config(run_dir: "str | Path") -> dict:
    """config.json of a run, with a clear error when the folder is not a run."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a tinygpt run folder (no config.json)")
    return json.loads(path.read_text(encoding="utf-8"))


def load_optimizer_state(run_dir: "str | Path", device: Any) -> dict:
    """The optimizer's state_dict as saved by save_checkpoint."""
    run = Path(run_dir)
    arrays = {k: t.numpy() for k, t in mg.load(run / "optimizer.safetensors").items()}
    meta = json.loads((run / "optimizer.json").read_text(encoding="utf-8"))
    return _unflatten_state(meta, arrays, backend.device(device))


def load(run_dir: "str | Path", device: str = "cpu") -> tuple:
    """(model, tokenizer) from a run folder: `model, tok = tinygpt.load("runs/NAME")`."""
    from tinygpt.model import TinyGPT
    cfg = GPTConfig.from_dict(read_config(run_dir)["model"])
    model = TinyGPT(cfg)
    model.load_state_dict(mg.load(Path(run_dir) / "model.safetensors"))
    model.to(device)
    model.eval()
    return model, load_tokenizer(Path(run_dir) / "tokenizer.json")
