"""save/load of state dicts as .safetensors files: no pickle, readable by PyTorch and Hugging Face tools.

A write goes to a temporary file in the target's folder and is renamed over the target
(os.replace is atomic), so a crash mid-write never leaves a truncated checkpoint.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file

from minigrad import backend
from minigrad.tensor import Tensor


def _host_array(key: str, value: Any) -> np.ndarray:
    """A contiguous host copy of a Tensor (or numpy/cupy array) value; anything else is an error."""
    if isinstance(value, Tensor):
        value = value.data
    if not (hasattr(value, "shape") and hasattr(value, "dtype")):
        raise TypeError(f"save: value for key {key!r} is a {type(value).__name__}, not a Tensor; "
                        "safetensors files hold tensors only (put other values in metadata)")
    host = backend.to_numpy(value)
    return host if host.flags.c_contiguous else host.copy(order="C")  # (ascontiguousarray makes 0-d 1-d)


def save(state_dict: Mapping[str, Any], path: "str | os.PathLike", metadata: Mapping[str, str] | None = None) -> None:
    """Write a dict of Tensors to a .safetensors file atomically (metadata: optional str -> str header)."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"save: expected a dict of name -> Tensor, got {type(state_dict).__name__}")
    arrays = {}
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise TypeError(f"save: keys must be strings, got {key!r}")
        arrays[key] = _host_array(key, value)
    meta = None
    if metadata is not None:
        bad = {k: v for k, v in metadata.items() if not (isinstance(k, str) and isinstance(v, str))}
        if bad:
            raise TypeError(f"save: metadata keys and values must be strings, got {bad!r} (json.dumps them first)")
        meta = dict(metadata)
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"save: folder {str(folder)!r} does not exist (for {str(path)!r})")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        save_file(arrays, tmp, metadata=meta)
        # mkstemp makes the file private (0600); give it the mode a plain open() would have had
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        with open(tmp, "rb") as f:  # the bytes reach the disk before the rename makes them visible
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: "str | os.PathLike", device: Any = "cpu") -> dict[str, Tensor]:
    """Read a .safetensors file into a dict of Tensors on device (in the file's key order)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"load: no such file {str(path)!r}")
    if path.is_dir():
        raise IsADirectoryError(f"load: {str(path)!r} is a folder, expected a .safetensors file")
    try:
        arrays = load_file(path)
    except SafetensorError as e:
        raise ValueError(f"load: {str(path)!r} is not a valid safetensors file ({e})") from e
    except TypeError as e:  # e.g. bfloat16, which numpy has no dtype for
        raise ValueError(f"load: {str(path)!r} holds a dtype numpy cannot represent ({e})") from e
    dev = backend.device(device)
    return {k: Tensor(backend.from_numpy(dev, a), device=dev, _copy=False) for k, a in arrays.items()}


def load_metadata(path: "str | os.PathLike") -> dict[str, str]:
    """The str -> str metadata header of a .safetensors file ({} when it has none)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"load_metadata: no such file {str(path)!r}")
    with safe_open(str(path), framework="numpy") as f:
        return dict(f.metadata() or {})
