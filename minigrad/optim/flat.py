"""Flat buffers: every parameter a view of one array, and every gradient a view of another.

With `AdamW(..., flat=True)` (or SGD) the optimizer copies its parameters into one contiguous
array per device and dtype and makes each parameter's `.data` a view of its slice; backward then
writes each leaf's gradient into the matching slice of a second array. An update, zero_grad, the
gradient norm and an all-reduce each become one pass over one array instead of one per parameter.
Parameters stay the same objects with the same shapes, so the model, `state_dict` and checkpoints
see no difference.

If a parameter is rebound later (for instance `model.to("cuda")`), the flat pass is skipped for its
group and the optimizer updates parameter by parameter, which gives the same numbers.
"""
from __future__ import annotations

from typing import Any

from minigrad import autograd
from minigrad.tensor import Tensor


class FlatBuffers:
    """One array of parameter values and one of gradients for a list of parameter groups."""

    def __init__(self, param_groups: list[dict]) -> None:
        params = [p for g in param_groups for p in g["params"]]
        dev, dtype = params[0].device, params[0].dtype
        for p in params:
            if p.device is not dev or p.dtype != dtype:
                raise ValueError(f"flat=True needs every parameter on one device with one dtype; got {dev}/{dtype} "
                                 f"and {p.device}/{p.dtype}")
        xp = dev.xp
        self.xp, self.device, self.dtype = xp, dev, dtype
        total = sum(int(p.data.size) for p in params)
        self.data = xp.empty(total, dtype=dtype)
        self.grad = xp.zeros(total, dtype=dtype)
        self.segments: list[tuple[int, int]] = []  # (start, stop) of each group, groups in order
        self.views: dict[int, tuple[Any, Any]] = {}  # id(param) -> (its data view, its grad view)
        self.offsets: dict[int, int] = {}  # id(param) -> where its slice starts
        start = 0
        for group in param_groups:
            begin = start
            for p in group["params"]:
                n = int(p.data.size)
                data, grad = self.data[start:start + n].reshape(p.shape), self.grad[start:start + n].reshape(p.shape)
                data[...] = p.data
                p.data = data
                if p.grad is not None:
                    grad[...] = p.grad.data
                    p.grad = Tensor(grad, device=dev, _copy=False)
                autograd.set_grad_buffer(p, grad)
                self.views[id(p)] = (data, grad)
                self.offsets[id(p)] = start
                start += n
            self.segments.append((begin, start))

    def intact(self, group: dict) -> bool:
        """Whether every parameter of the group still is its view and holds its gradient in its grad view."""
        for p in group["params"]:
            data, grad = self.views[id(p)]
            if p.data is not data or p.grad is None or p.grad.data is not grad:
                return False
        return True

    def segment(self, index: int, array: Any) -> Any:
        start, stop = self.segments[index]
        return array[start:stop]

    def new_like(self) -> Any:
        """A zeroed array of the flat size (optimizer state), with per-parameter views taken by view_of."""
        return self.xp.zeros_like(self.data)

    def view_of(self, p: Tensor, array: Any) -> Any:
        """p's slice of a flat array, shaped like p."""
        start = self.offsets[id(p)]
        return array[start:start + p.data.size].reshape(p.shape)
