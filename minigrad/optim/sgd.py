"""Stochastic gradient descent with momentum, dampening, Nesterov and L2 weight decay, as torch.optim.SGD."""
from __future__ import annotations

from typing import Any, Iterable

from minigrad.optim.optimizer import Optimizer


class SGD(Optimizer):
    """d = g + wd*p;  buf = momentum*buf + (1-dampening)*d;  p -= lr * (d + momentum*buf if nesterov else buf)."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, maximize: bool = False, flat: bool = False) -> None:
        if lr < 0.0 or momentum < 0.0 or weight_decay < 0.0:
            raise ValueError(f"SGD: invalid lr {lr}, momentum {momentum} or weight_decay {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize), flat=flat)

    def _update_group(self, group: dict) -> None:
        lr, momentum = float(group["lr"]), float(group["momentum"])
        dampening, wd = float(group["dampening"]), float(group["weight_decay"])
        for p in group["params"]:
            if p.grad is None:
                continue
            xp, x, d = p.device.xp, p.data, p.grad.data
            tmp = self._work(p, 0)
            if group["maximize"]:
                d = xp.negative(d, out=tmp)
            if wd != 0.0:  # L2 penalty through the gradient (never modify p.grad itself)
                d = xp.add(d, x * wd if d is tmp else xp.multiply(x, wd, out=tmp), out=tmp)
            if momentum != 0.0:
                state = self.state.setdefault(p, {})
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = xp.array(d, copy=True)
                else:
                    buf *= momentum
                    if dampening == 0.0:
                        buf += d
                    else:
                        buf += xp.multiply(d, 1.0 - dampening, out=self._work(p, 1))
                if group["nesterov"]:
                    d = xp.add(d, xp.multiply(buf, momentum, out=self._work(p, 1)), out=tmp)
                else:
                    d = buf
            x -= xp.multiply(d, lr, out=tmp)
