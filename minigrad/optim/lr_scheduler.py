"""Learning-rate schedules: plain functions of the step, and torch-style schedulers that set group["lr"]."""
from __future__ import annotations

import math
from typing import Any, Callable

from minigrad.optim.optimizer import Optimizer


def constant(step: int, max_lr: float, warmup_steps: int = 0) -> float:
    """max_lr, after an optional linear warmup over warmup_steps."""
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)
    return max_lr


def cosine_with_warmup(step: int, max_lr: float, warmup_steps: int, max_steps: int, min_lr: float) -> float:
    """Linear warmup to max_lr, then cosine decay to min_lr at max_steps, min_lr after (nanoGPT's get_lr)."""
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)
    if step >= max_steps:
        return min_lr
    ratio = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (max_lr - min_lr)


class LRScheduler:
    """Base: on construction and on each step() sets every group's lr to get_lr() for the new step count."""

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [float(group["initial_lr"]) for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()  # as torch: the lr for step 0 is set at construction

    def get_lr(self) -> list[float]:
        raise NotImplementedError

    def step(self) -> None:
        """Advance one step (call after optimizer.step()) and set the new learning rates."""
        self.last_epoch += 1
        self._last_lr = [float(lr) for lr in self.get_lr()]
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr

    def get_last_lr(self) -> list[float]:
        """The learning rates set by the last step()."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """Numbers only (no optimizer, no functions), so it can go to JSON."""
        return {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs), "_last_lr": list(self._last_lr)}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the step count and learning rates saved by state_dict()."""
        self.last_epoch = int(state_dict["last_epoch"])
        self.base_lrs = [float(x) for x in state_dict["base_lrs"]]
        self._last_lr = [float(x) for x in state_dict["_last_lr"]]


class LambdaLR(LRScheduler):
    """lr = base_lr * lr_lambda(step), one lambda for all groups or one per group."""

    def __init__(self, optimizer: Optimizer, lr_lambda: "Callable[[int], float] | list", last_epoch: int = -1) -> None:
        n = len(optimizer.param_groups)
        self.lr_lambdas = list(lr_lambda) if isinstance(lr_lambda, (list, tuple)) else [lr_lambda] * n
        if len(self.lr_lambdas) != n:
            raise ValueError(f"LambdaLR: expected {n} lr_lambdas, got {len(self.lr_lambdas)}")
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [base * fn(self.last_epoch) for base, fn in zip(self.base_lrs, self.lr_lambdas)]


class CosineWithWarmup(LRScheduler):
    """cosine_with_warmup for each group, with the group's initial lr as max_lr."""

    def __init__(self, optimizer: Optimizer, warmup_steps: int, max_steps: int, min_lr: float = 0.0,
                 last_epoch: int = -1) -> None:
        self.warmup_steps, self.max_steps, self.min_lr = warmup_steps, max_steps, min_lr
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [cosine_with_warmup(self.last_epoch, base, self.warmup_steps, self.max_steps, self.min_lr)
                for base in self.base_lrs]

    def state_dict(self) -> dict:
        out: dict[str, Any] = super().state_dict()
        out.update(warmup_steps=self.warmup_steps, max_steps=self.max_steps, min_lr=self.min_lr)
        return out

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self.warmup_steps, self.max_steps = int(state_dict["warmup_steps"]), int(state_dict["max_steps"])
        self.min_lr = float(state_dict["min_lr"])
