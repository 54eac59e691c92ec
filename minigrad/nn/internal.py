"""Helpers shared by nn's modules and the optimizers; internal, not part of minigrad's API.

They live in this one module so that no module imports another's private names: Module, the containers
and MultiheadAttention print themselves with `indent` and `format_repr`; Module.load_state_dict and
MultiheadAttention's masks take arrays through `as_array_on`; Optimizer.load_state_dict uses `is_on`.
It sits in the nn layer (it needs Tensor, which nn sits above), where optim, above nn, can import it too.
"""
from __future__ import annotations

from typing import Any

from minigrad import backend
from minigrad.backend import Device
from minigrad.tensor import Tensor


def is_on(arr: Any, dev: Device) -> bool:
    """Whether arr is an array of dev (host scalars such as numpy.float64 are on no device)."""
    try:
        return backend.device_of(arr) == dev
    except TypeError:
        return False


def as_array_on(value: Any, dev: Device) -> Any:
    """A state_dict value (Tensor or numpy/cupy array) as an array on dev."""
    arr = value.data if isinstance(value, Tensor) else value
    if not hasattr(arr, "shape") or not hasattr(arr, "dtype"):
        raise TypeError(f"expected a Tensor or an array, got {type(value).__name__}")
    return arr if is_on(arr, dev) else backend.from_numpy(dev, backend.to_numpy(arr))


def indent(text: str) -> str:
    return text.replace("\n", "\n  ")


def format_repr(name: str, extra: list, children: list) -> str:
    """PyTorch's layout: Name(extra) on one line when there are no children, else one item per line."""
    if not children and len(extra) <= 1:
        return f"{name}({''.join(extra)})"
    return f"{name}(\n  " + "\n  ".join(extra + children) + "\n)"
