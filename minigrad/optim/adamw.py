"""AdamW (Loshchilov & Hutter): Adam with decoupled weight decay, step for step as torch.optim.AdamW."""
from __future__ import annotations

import math
from typing import Any, Iterable

from minigrad.optim.optimizer import Optimizer


class AdamW(Optimizer):
    """p *= 1 - lr*wd;  m, v = EMAs of g, g^2;  p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, flat: bool = False) -> None:
        if lr < 0.0 or eps < 0.0 or weight_decay < 0.0:
            raise ValueError(f"AdamW: invalid lr {lr}, eps {eps} or weight_decay {weight_decay}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"AdamW: betas must be in [0, 1), got {betas}")
        if flat and amsgrad:
            raise ValueError("AdamW: flat=True does not support amsgrad")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad), flat=flat)
        if self._flat is not None:  # the moments as two flat arrays too; per-parameter state holds views
            self._moments = (self._flat.new_like(), self._flat.new_like())

    def _new_state(self, p: Any, group: dict) -> dict:
        xp = p.device.xp
        if self._flat is not None and id(p) in self._flat.views:
            m, v = (self._flat.view_of(p, a) for a in self._moments)
            return {"step": 0, "exp_avg": m, "exp_avg_sq": v}
        state = {"step": 0, "exp_avg": xp.zeros_like(p.data), "exp_avg_sq": xp.zeros_like(p.data)}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = xp.zeros_like(p.data)
        return state

    def _after_load(self) -> None:
        if self._flat is None:
            return
        for p, state in self.state.items():
            if id(p) in self._flat.views:
                for key, flat in zip(("exp_avg", "exp_avg_sq"), self._moments):
                    view = self._flat.view_of(p, flat)
                    view[...] = state[key]
                    state[key] = view

    def _update_group(self, group: dict) -> None:
        # Python floats only: a numpy float64 scalar would upcast float32 arrays
        hyper = dict(lr=float(group["lr"]), eps=float(group["eps"]), wd=float(group["weight_decay"]),
                     beta1=float(group["betas"][0]), beta2=float(group["betas"][1]))
        params = group["params"]
        if self._flat is not None and self._flat.intact(group):  # the whole group in one pass
            states = [self.state.get(p) or self.state.setdefault(p, self._new_state(p, group)) for p in params]
            steps = {s["step"] for s in states}
            if len(steps) == 1:
                for s in states:
                    s["step"] += 1
                index = self.param_groups.index(group)
                x, g = self._flat.segment(index, self._flat.data), self._flat.segment(index, self._flat.grad)
                m, v = (self._flat.segment(index, a) for a in self._moments)
                if getattr(self, "_flat_tmp", None) is None:
                    self._flat_tmp = self._flat.new_like()
                tmp = self._flat.segment(index, self._flat_tmp)
                self._update(self._flat.device, x, g, m, v, None, states[0]["step"], **hyper, tmp=tmp)
                return
        for p in params:
            if p.grad is None:
                continue
            state = self.state.get(p)
            if not state:
                state = self.state[p] = self._new_state(p, group)
            state["step"] += 1
            vmax = state.get("max_exp_avg_sq") if group["amsgrad"] else None
            self._update(p.device, p.data, p.grad.data, state["exp_avg"], state["exp_avg_sq"], vmax, state["step"],
                         **hyper, tmp=None if p.device.kernels is not None else self._work(p))

    @staticmethod
    def _update(dev: Any, x: Any, g: Any, m: Any, v: Any, vmax: Any, t: int, lr: float, eps: float, wd: float,
                beta1: float, beta2: float, tmp: Any = None) -> None:
        """One AdamW step of the arrays x (in place) with gradient g and moments m, v (in place)."""
        xp, kernels = dev.xp, dev.kernels
        if kernels is not None and vmax is None:  # one fused kernel (CUDA)
            kernels.adamw_step(x, g, m, v, lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=wd, step=t)
            return
        tmp = xp.empty_like(x) if tmp is None else tmp
        if wd != 0.0:
            x *= 1.0 - lr * wd  # decoupled decay: shrink p, not the gradient
        m *= beta1  # m = b1 m + (1 - b1) g
        xp.multiply(g, 1.0 - beta1, out=tmp)
        m += tmp
        v *= beta2  # v = b2 v + (1 - b2) g^2
        xp.multiply(g, g, out=tmp)
        tmp *= 1.0 - beta2
        v += tmp
        if vmax is not None:  # amsgrad
            v = xp.maximum(vmax, v, out=vmax)
        # denom = sqrt(v) / sqrt(1 - b2^t) + eps;  p -= lr / (1 - b1^t) * m / denom
        xp.sqrt(v, out=tmp)
        tmp /= math.sqrt(1.0 - beta2 ** t)
        tmp += eps
        xp.divide(m, tmp, out=tmp)
        tmp *= -lr / (1.0 - beta1 ** t)
        x += tmp
