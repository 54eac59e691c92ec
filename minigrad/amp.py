"""Mixed precision: ``autocast`` (matmuls and attention in float16 or bfloat16) and ``GradScaler``.

    model = TinyGPT(cfg)                      # float32 parameters: the master weights
    scaler = mg.amp.GradScaler(enabled=dtype == "float16")
    with mg.autocast("float16"):              # or "bfloat16": no scaler needed
        _, loss = model(x, y)                 # loss is float32
    scaler.scale(loss).backward()             # backward outside autocast, as in torch
    scaler.unscale_(optimizer)                # gradients are float32: divide the scale out
    mg.optim.clip_grad_norm_(model.parameters(), 1.0)
    scaler.step(optimizer)                    # skipped when a gradient is inf/NaN
    scaler.update()                           # halve the scale after a skip, double it after N good steps

The rules inside ``with autocast(dtype):`` (torch.autocast's, for the ops minigrad has):
- linear, matmul (@), scaled_dot_product_attention, cached_causal_attention and packed_self_attention
  cast their floating-point inputs to ``dtype``; their results are ``dtype``. The ops compute the
  products with float32 accumulation, and attention's softmax in float32, inside (ops/precision.py).
- layer_norm, softmax, log_softmax, cross_entropy and nll_loss cast low-precision inputs up to float32:
  their statistics, exponentials and sums, and so the loss, are float32.
- every other op runs in its inputs' dtype; elementwise ops promote, so ``bfloat16 + float32`` is float32
  and the residual stream of a transformer stays float32.
Parameters never change dtype. The casts are ops, so each parameter's gradient comes back float32: clipping,
AdamW (its moments too) and checkpoints only ever see float32.

float16 has 5 exponent bits: gradients below ~6e-8 flush to zero. GradScaler multiplies the loss by a large
scale (2**16 to start) so they stay representable, divides it out of the float32 gradients before clipping,
and skips a step whose gradients overflowed (inf/NaN), halving the scale; after ``growth_interval`` good steps
in a row it doubles the scale again. bfloat16 has float32's exponent range and needs none.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from minigrad.dtypes import LOW_PRECISION, as_dtype, kind

_dtype = None  # the active autocast dtype, or None


class autocast:
    """Context manager (and decorator): run matmuls and attention in ``dtype`` ("bfloat16" or "float16")."""

    def __init__(self, dtype: Any = "bfloat16", enabled: bool = True) -> None:
        dt = as_dtype(dtype)
        if dt not in LOW_PRECISION:
            raise TypeError(f"autocast: dtype must be float16 or bfloat16, got {dt}")
        self.dtype = dt if enabled else None

    def __enter__(self) -> "autocast":
        global _dtype
        self._prev, _dtype = _dtype, self.dtype
        return self

    def __exit__(self, *exc: Any) -> None:
        global _dtype
        _dtype = self._prev

    def __call__(self, fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)
        return wrapper


def autocast_dtype() -> Any:
    """The dtype autocast runs matmuls and attention in now, or None outside autocast."""
    return _dtype


def to_low(*tensors: Any) -> tuple:
    """The floating-point tensors cast to the autocast dtype (others, and everything outside autocast, as given)."""
    if _dtype is None:
        return tensors
    return tuple(t.to(_dtype) if t is not None and hasattr(t, "dtype") and kind(t.dtype) == "f" and t.dtype != _dtype
                 else t for t in tensors)


def to_float32(t: Any) -> Any:
    """Under autocast, a low-precision tensor cast up to float32 (the ops that need float32 range and sums)."""
    if _dtype is None or t is None or t.dtype not in LOW_PRECISION:
        return t
    return t.float()


class GradScaler:
    """Dynamic loss scaling for float16 (torch.amp.GradScaler's algorithm and method names).

    enabled=False makes every method a pass-through, so one training loop serves every dtype.
    """

    def __init__(self, init_scale: float = 2.0 ** 16, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000, enabled: bool = True) -> None:
        if not (init_scale > 0 and math.isfinite(init_scale)) or growth_factor <= 1 or not 0 < backoff_factor < 1:
            raise ValueError("GradScaler: need init_scale > 0, growth_factor > 1 and 0 < backoff_factor < 1")
        if growth_interval < 1:
            raise ValueError(f"GradScaler: growth_interval must be >= 1, got {growth_interval}")
        self.enabled = enabled
        self.scale_value = float(init_scale)
        self.growth_factor, self.backoff_factor, self.growth_interval = growth_factor, backoff_factor, growth_interval
        self.growth_tracker = 0  # good steps in a row since the scale last changed
        self.found_inf = False  # whether the gradients unscale_ saw held an inf or NaN
        self._unscaled = False

    def get_scale(self) -> float:
        return self.scale_value if self.enabled else 1.0

    def is_enabled(self) -> bool:
        return self.enabled

    def scale(self, loss: Any) -> Any:
        """loss * scale: backward of it gives scale times the true gradients."""
        return loss * self.scale_value if self.enabled else loss

    def unscale_(self, optimizer: Any) -> None:
        """Divide the scale out of optimizer's gradients in place and note whether any is inf/NaN (one host sync)."""
        if not self.enabled or self._unscaled:
            return
        inv = 1.0 / self.scale_value
        flat = getattr(optimizer, "flat_grad", None)
        arrays = [flat] if flat is not None else [p.grad.data for group in optimizer.param_groups
                                                  for p in group["params"] if p.grad is not None]
        total = 0.0
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is expected here now and then: no warning
            for a in arrays:
                a *= inv
                total = total + a.sum(dtype="float64")  # on the device: no host sync per array
        # the float64 sum of float32 or float16 values is finite exactly when they all are (it cannot
        # overflow): one host sync for the whole step
        self.found_inf = not math.isfinite(float(total))
        self._unscaled = True

    def step(self, optimizer: Any) -> bool:
        """optimizer.step() unless the gradients overflowed; True when the step was taken."""
        if not self.enabled:
            optimizer.step()
            return True
        self.unscale_(optimizer)
        if self.found_inf:
            return False
        optimizer.step()
        return True

    def update(self) -> None:
        """After step(): halve the scale after an overflow, grow it after growth_interval good steps in a row."""
        if not self.enabled:
            return
        if self.found_inf:
            self.scale_value *= self.backoff_factor
            self.growth_tracker = 0
        else:
            self.growth_tracker += 1
            if self.growth_tracker == self.growth_interval:
                self.scale_value *= self.growth_factor
                self.growth_tracker = 0
        self.found_inf = False
        self._unscaled = False

    def state_dict(self) -> dict:
        return {"scale": self.scale_value, "growth_tracker": self.growth_tracker, "growth_factor": self.growth_factor,
                "backoff_factor": self.backoff_factor, "growth_interval": self.growth_interval} if self.enabled else {}

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        self.scale_value = float(state["scale"])
        self.growth_tracker = int(state["growth_tracker"])
        self.growth_factor = float(state["growth_factor"])
        self.backoff_factor = float(state["backoff_factor"])
        self.growth_interval = int(state["growth_interval"])
