"""Optimizer: parameter groups, per-parameter state, zero_grad and a resumable state_dict (as torch.optim)."""
from __future__ import annotations

from typing import Any, Callable, Iterable

from minigrad import backend
from minigrad.autograd import enable_grad
from minigrad.nn.internal import is_on
from minigrad.nn.module import zero_grads
from minigrad.tensor import Tensor
from minigrad.dtypes import kind


def _state_value_like(value: Any, p: Tensor, name: str) -> Any:
    """A loaded state entry as the optimizer keeps it: arrays copied onto p's device (floats in p's dtype)."""
    if name == "step":
        return int(value.item() if hasattr(value, "item") else value)
    arr = value.data if isinstance(value, Tensor) else value
    if not (hasattr(arr, "shape") and hasattr(arr, "dtype")):
        return value
    if arr.ndim and tuple(arr.shape) != tuple(p.shape):  # caught here, not as a broadcast error mid-training
        raise ValueError(f"loaded state {name!r} has shape {tuple(arr.shape)}, its parameter has {tuple(p.shape)}")
    if not is_on(arr, p.device):
        arr = backend.from_numpy(p.device, backend.to_numpy(arr))
    dtype = p.dtype if kind(arr.dtype) == "f" else arr.dtype
    return p.device.xp.array(arr, dtype=dtype, copy=True)  # own a copy: steps update it in place


class Optimizer:
    """Base class: holds param_groups (dicts with "params" and options) and state (per-parameter dicts)."""

    def __init__(self, params: Iterable[Any], defaults: dict, flat: bool = False) -> None:
        self.defaults = dict(defaults)
        self._flat = None  # FlatBuffers when flat=True (see optim/flat.py)
        self.param_groups: list[dict] = []
        self.state: dict = {}  # Parameter -> dict of its buffers (keyed by the object: Tensor hashes by identity)
        self._scratch: dict = {}  # (device, dtype) -> a flat work buffer shared by all parameters
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, dict):  # one group, or {name: parameter} as from dict(model.named_parameters())
            params = [params] if "params" in params else list(params.values())
        else:
            params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        for group in params:
            self.add_param_group(group)
        if flat:
            from minigrad.optim.flat import FlatBuffers
            self._flat = FlatBuffers(self.param_groups)

    @property
    def flat_grad(self) -> Any:
        """With flat=True, the one array that holds every parameter's gradient (for an all-reduce); else None."""
        return None if self._flat is None else self._flat.grad

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines + [")"])

    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters with its own options (missing options take the defaults)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        ps = group.get("params")
        group["params"] = [ps] if isinstance(ps, Tensor) else list(ps if ps is not None else [])
        for p in group["params"]:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        ids = [id(p) for p in group["params"]]
        if len(set(ids)) != len(ids):
            raise ValueError("a parameter group contains the same parameter twice")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if seen & set(ids):
            raise ValueError("some parameters appear in more than one parameter group")
        if self._flat is not None:
            raise ValueError("add_param_group: a flat=True optimizer's parameters are fixed when it is made")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop (or zero in place) the .grad of every parameter."""
        params = [p for group in self.param_groups for p in group["params"]]
        if self._flat is not None and not set_to_none:  # one pass over the flat gradient array
            self._flat.grad[...] = 0
            params = [p for p in params if p.grad is not None and p.grad.data.base is not self._flat.grad]
        zero_grads(params, set_to_none)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; returns closure() when one is given."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._update_group(group)
            for p in group["params"]:  # an in-place change: graphs that saved p refuse to backward
                if p.grad is not None:
                    p._vc[0] += 1
        return loss

    def _update_group(self, group: dict) -> None:
        raise NotImplementedError

    def _work(self, p: Tensor, slot: int = 0) -> Any:
        """A scratch array of p's shape (slot 0 or 1), a view of one buffer reused by every parameter and step."""
        key = (p.device, p.dtype)
        buf, n = self._scratch.get(key), p.data.size
        if buf is None or buf.size < 2 * n:
            size = max(q.data.size for g in self.param_groups for q in g["params"]
                       if q.device == p.device and q.dtype == p.dtype)
            buf = self._scratch[key] = p.device.xp.empty(2 * max(size, n), dtype=p.dtype)
        return buf[slot * n:(slot + 1) * n].reshape(p.shape)

    # ------------------------------------------------------------------ state_dict
    def state_dict(self) -> dict:
        """{"state": {index: {name: array or number}}, "param_groups": [{options, "params": [index]}]}.

        Parameters are numbered in group order, as torch does; arrays are the live buffers (not copies).
        """
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {index[id(p)]: dict(s) for p, s in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore options and buffers saved by state_dict() (group sizes must match), so training resumes exactly."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(saved_groups)} parameter groups, "
                             f"the optimizer has {len(self.param_groups)}")
        by_index = {}
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(group["params"]) != len(saved["params"]):
                raise ValueError(f"loaded state dict's parameter group {i} has {len(saved['params'])} parameters, "
                                 f"the optimizer's has {len(group['params'])}")
            by_index.update({int(k): p for k, p in zip(saved["params"], group["params"])})
        state = {}
        for k, entries in state_dict["state"].items():
            p = by_index[int(k)]  # int(): JSON turns integer keys into strings
            state[p] = {name: _state_value_like(v, p, name) for name, v in entries.items()}
        for group, saved in zip(self.param_groups, saved_groups):
            for key, value in saved.items():
                if key != "params":
                    group[key] = tuple(value) if isinstance(self.defaults.get(key), tuple) else value
        self.state = state
        self._after_load()

    def _after_load(self) -> None:
        """Hook: optimizers with flat state put loaded buffers back into their flat arrays."""
