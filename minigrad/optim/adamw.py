"""AdamW (Loshchilov & Hutter): Adam with decoupled weight decay, step for step as torch.optim.AdamW."""
from __future__ import annotations

import math
from typing import Any, Iterable

from minigrad.optim.optimizer import Optimizer


class AdamW(Optimizer):
    """p *= 1 - lr*wd;  m, v = EMAs of g, g^2;  p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False) -> None:
        if lr < 0.0 or eps < 0.0 or weight_decay < 0.0:
            raise ValueError(f"AdamW: invalid lr {lr}, eps {eps} or weight_decay {weight_decay}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"AdamW: betas must be in [0, 1), got {betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad))

    def _update_group(self, group: dict) -> None:
        # Python floats only: a numpy float64 scalar would upcast float32 arrays
        lr, eps, wd = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
        beta1, beta2 = (float(b) for b in group["betas"])
        for p in group["params"]:
            if p.grad is None:
                continue
            xp, x, g = p.device.xp, p.data, p.grad.data
            state = self.state.get(p)
            if not state:
                state = self.state[p] = {"step": 0, "exp_avg": xp.zeros_like(x), "exp_avg_sq": xp.zeros_like(x)}
                if group["amsgrad"]:
                    state["max_exp_avg_sq"] = xp.zeros_like(x)
            state["step"] += 1
            t = state["step"]
            m, v = state["exp_avg"], state["exp_avg_sq"]
            kernels = p.device.kernels
            if kernels is not None and not group["amsgrad"]:  # one fused kernel per parameter (CUDA)
                kernels.adamw_step(x, g, m, v, lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=wd, step=t)
                continue
            tmp = self._work(p)
            if wd != 0.0:
                x *= 1.0 - lr * wd  # decoupled decay: shrink p, not the gradient
            m *= beta1  # m = b1 m + (1 - b1) g
            xp.multiply(g, 1.0 - beta1, out=tmp)
            m += tmp
            v *= beta2  # v = b2 v + (1 - b2) g^2
            xp.multiply(g, g, out=tmp)
            tmp *= 1.0 - beta2
            v += tmp
            if group["amsgrad"]:
                v = xp.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            # denom = sqrt(v) / sqrt(1 - b2^t) + eps;  p -= lr / (1 - b1^t) * m / denom
            xp.sqrt(v, out=tmp)
            tmp /= math.sqrt(1.0 - beta2 ** t)
            tmp += eps
            xp.divide(m, tmp, out=tmp)
            tmp *= -lr / (1.0 - beta1 ** t)
            x += tmp
