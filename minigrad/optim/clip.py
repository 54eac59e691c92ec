"""Gradient clipping by global norm or by value (torch.nn.utils.clip_grad_norm_ / clip_grad_value_)."""
from __future__ import annotations

import math
from typing import Iterable

from minigrad.tensor import Tensor


def _with_grads(parameters: "Iterable[Tensor] | Tensor") -> list:
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    return [p for p in params if p.grad is not None]


def clip_grad_norm_(parameters: "Iterable[Tensor] | Tensor", max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> Tensor:
    """Scale all gradients in place so their joint norm is at most max_norm; returns the norm before clipping."""
    params = _with_grads(parameters)
    if not params:
        return Tensor(0.0)
    dev = params[0].device
    xp = dev.xp
    grads = [p.grad.data for p in params]
    whole = _one_flat_array(grads)
    if whole is not None:  # every gradient is a slice of one flat array (optim.flat): one pass over it
        grads = [whole]
    norm_type = float(norm_type)
    if norm_type == math.inf:
        total = xp.stack([xp.abs(g).max() for g in grads]).max()
    elif norm_type == 2.0:
        # vdot: one pass per gradient and no temporary array
        total = xp.sqrt(sum(xp.vdot(g.reshape(-1), g.reshape(-1)) for g in grads))
    else:
        total = sum((xp.abs(g) ** norm_type).sum() for g in grads) ** (1.0 / norm_type)
    total = xp.asarray(total)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is non-finite "
                           f"({float(total)}), so they cannot be clipped")
    if dev.type == "cpu":
        coef = float(max_norm) / (float(total) + 1e-6)
        if coef < 1.0:
            for g in grads:
                g *= coef
    else:
        coef = xp.minimum(float(max_norm) / (total + 1e-6), 1.0)  # stays on the device: no host sync per step
        for g in grads:
            g *= coef.astype(g.dtype)
    return Tensor(total, device=dev, _copy=False)


def _one_flat_array(grads: list) -> "object | None":
    """The flat array the gradients exactly tile (each a view of it, sizes adding up to it), or None."""
    base = getattr(grads[0], "base", None)
    if base is None or base.ndim != 1 or not all(getattr(g, "base", None) is base for g in grads):
        return None
    return base if sum(int(g.size) for g in grads) == base.size and len({id(g) for g in grads}) == len(grads) else None


def clip_grad_value_(parameters: "Iterable[Tensor] | Tensor", clip_value: float) -> None:
    """Clamp every gradient element into [-clip_value, clip_value] in place."""
    for p in _with_grads(parameters):
        p.device.xp.clip(p.grad.data, -clip_value, clip_value, out=p.grad.data)
