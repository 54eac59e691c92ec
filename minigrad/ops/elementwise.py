"""Elementwise ops. Broadcast inputs are summed back to their shapes by the engine."""
from __future__ import annotations

import contextlib
from typing import Any

from minigrad.autograd import Context, Function


class Add(Function):
    @staticmethod
    def forward(ctx: Context, x: Any, y: Any) -> Any:
        return x + y

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple:
        # d(x+y)/dx = 1, d(x+y)/dy = 1
        return g, g


class Sub(Function):
    @staticmethod
    def forward(ctx: Context, x: Any, y: Any) -> Any:
        return x - y

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple:
        # d(x-y)/dx = 1, d(x-y)/dy = -1
        return g, (-g if ctx.needs_input_grad[1] else None)


class Mul(Function):
    @staticmethod
    def forward(ctx: Context, x: Any, y: Any) -> Any:
        ctx.x, ctx.y = x, y
        return x * y

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple:
        # d(xy)/dx = y, d(xy)/dy = x
        nx, ny = ctx.needs_input_grad
        return (g * ctx.y if nx else None), (g * ctx.x if ny else None)


class Div(Function):
    @staticmethod
    def forward(ctx: Context, x: Any, y: Any) -> Any:
        ctx.x, ctx.y = x, y
        return x / y

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple:
        # d(x/y)/dx = 1/y, d(x/y)/dy = -x/y^2
        nx, ny = ctx.needs_input_grad
        gx = g / ctx.y
        gy = -gx * ctx.x / ctx.y if ny else None
        return (gx if nx else None), gy


class DivRounded(Function):
    """torch.div(x, y, rounding_mode='trunc' | 'floor'). Floats: trunc(x / y), or numpy's floor_divide (the
    same algorithm as torch's div_floor); inf/nan where y == 0, silently. Integers: exact integer quotients;
    a zero divisor raises, as torch. The result is piecewise constant: zero gradients (torch's grad * 0)."""

    @staticmethod
    def forward(ctx: Context, x: Any, y: Any, mode: str) -> Any:
        xp = ctx.xp
        if x.dtype.kind in "iub":
            if (y == 0).any():
                raise RuntimeError("ZeroDivisionError (integer division by zero in div with rounding_mode)")
            q = xp.floor_divide(x, y)
            if mode == "trunc":  # floor -> toward zero: one up where the quotient is negative and inexact
                q = q + ((q < 0) & (q * y != x)).astype(q.dtype)
            return q
        with _quiet(xp):
            return xp.trunc(x / y) if mode == "trunc" else xp.floor_divide(x, y)

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple:
        # d round(x / y) = 0 almost everywhere; g * 0 keeps torch's nan for a nan or inf g
        zero = g * 0
        return zero, zero


def _quiet(xp: Any) -> Any:
    """numpy's errstate silencing x/0 warnings (torch gives inf/nan silently); a no-op for other backends."""
    errstate = getattr(xp, "errstate", None)
    return errstate(divide="ignore", invalid="ignore") if errstate is not None else contextlib.nullcontext()


class Neg(Function):
    @staticmethod
    def forward(ctx: Context, x: Any) -> Any:
        return -x

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # d(-x)/dx = -1
        return -g


class Pow(Function):
    """x ** y with both sides tensors."""

    @staticmethod
    def forward(ctx: Context, x: Any, y: Any) -> Any:
        out = ctx.xp.power(x, y)
        ctx.x, ctx.y, ctx.out = x, y, out
        return out

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple:
        # d(x^y)/dx = y x^(y-1) (0 where y = 0, also at x = 0, as torch),
        # d(x^y)/dy = x^y log(x)  (taken as 0 where x = 0 and y >= 0, as torch)
        xp, x, y, out = ctx.xp, ctx.x, ctx.y, ctx.out
        nx, ny = ctx.needs_input_grad
        gx = g * xp.where(y == 0, 0, y * xp.power(x, y - 1)) if nx else None
        gy = g * out * xp.log(xp.where((x == 0) & (y >= 0), 1, x)) if ny else None
        return gx, gy


class PowScalar(Function):
    """x ** p for a Python number p; small integer powers avoid the slow generic pow."""

    @staticmethod
    def forward(ctx: Context, x: Any, exponent: float) -> Any:
        ctx.x, ctx.p = x, exponent
        return _power(ctx.xp, x, exponent)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # d(x^p)/dx = p x^(p-1)
        p = ctx.p
        if p == 0:
            return g * 0
        return g * (p * _power(ctx.xp, ctx.x, p - 1))


def _power(xp: Any, x: Any, p: float) -> Any:
    if p == 1:
        return x.copy()
    if p == 2:
        return x * x
    if p == 3:
        return x * x * x
    if p == 0.5:
        return xp.sqrt(x)
    if p == -1:
        return 1.0 / x
    if p == 0:
        return xp.ones_like(x)
    return xp.power(x, p)


class Exp(Function):
    @staticmethod
    def forward(ctx: Context, x: Any) -> Any:
        ctx.out = ctx.xp.exp(x)
        return ctx.out

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # d exp(x)/dx = exp(x)
        return g * ctx.out


class Log(Function):
    @staticmethod
    def forward(ctx: Context, x: Any) -> Any:
        ctx.x = x
        return ctx.xp.log(x)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # d log(x)/dx = 1/x
        return g / ctx.x


class Sqrt(Function):
    @staticmethod
    def forward(ctx: Context, x: Any) -> Any:
        ctx.out = ctx.xp.sqrt(x)
        return ctx.out

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # d sqrt(x)/dx = 1 / (2 sqrt(x))
        return g / (2.0 * ctx.out)


class Tanh(Function):
    @staticmethod
    def forward(ctx: Context, x: Any) -> Any:
        ctx.out = ctx.xp.tanh(x)
        return ctx.out

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # d tanh(x)/dx = 1 - tanh(x)^2
        y = ctx.out
        return g * (1.0 - y * y)


class Sigmoid(Function):
    @staticmethod
    def forward(ctx: Context, x: Any) -> Any:
        # 0.5 (1 + tanh(x/2)) is sigmoid without overflow for large |x|
        ctx.out = 0.5 * (1.0 + ctx.xp.tanh(0.5 * x))
        return ctx.out

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # d sigmoid(x)/dx = s (1 - s)
        s = ctx.out
        return g * (s * (1.0 - s))


class Relu(Function):
    @staticmethod
    def forward(ctx: Context, x: Any) -> Any:
        ctx.out = ctx.xp.maximum(x, 0)
        return ctx.out

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # d relu(x)/dx = 1 if x > 0 else 0 (0 at x = 0, as PyTorch)
        return g * (ctx.out > 0)


class Abs(Function):
    @staticmethod
    def forward(ctx: Context, x: Any) -> Any:
        ctx.x = x
        return ctx.xp.abs(x)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # d|x|/dx = sign(x) (0 at x = 0, as PyTorch)
        return g * ctx.xp.sign(ctx.x)


class Maximum(Function):
    @staticmethod
    def forward(ctx: Context, x: Any, y: Any) -> Any:
        ctx.x, ctx.y = x, y
        return ctx.xp.maximum(x, y)

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple:
        # the larger input gets g; at ties each gets g/2 (as PyTorch)
        return _pick_grads(ctx, g, ctx.x > ctx.y)


class Minimum(Function):
    @staticmethod
    def forward(ctx: Context, x: Any, y: Any) -> Any:
        ctx.x, ctx.y = x, y
        return ctx.xp.minimum(x, y)

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple:
        # the smaller input gets g; at ties each gets g/2 (as PyTorch)
        return _pick_grads(ctx, g, ctx.x < ctx.y)


def _pick_grads(ctx: Context, g: Any, x_wins: Any) -> tuple:
    tie = ctx.x == ctx.y
    wx = x_wins + 0.5 * tie  # 1 where x wins, 0.5 at ties, 0 where y wins
    wx = wx.astype(g.dtype, copy=False)
    nx, ny = ctx.needs_input_grad
    return (g * wx if nx else None), (g * (1.0 - wx) if ny else None)


class Where(Function):
    """where(cond, x, y); cond is a bool array attribute, not differentiable."""

    @staticmethod
    def forward(ctx: Context, x: Any, y: Any, cond: Any) -> Any:
        ctx.cond = cond
        return ctx.xp.where(cond, x, y)

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple:
        # d/dx = cond, d/dy = not cond
        nx, ny = ctx.needs_input_grad
        zero = g.dtype.type(0)
        gx = ctx.xp.where(ctx.cond, g, zero) if nx else None
        gy = ctx.xp.where(ctx.cond, zero, g) if ny else None
        return gx, gy


class Clip(Function):
    @staticmethod
    def forward(ctx: Context, x: Any, min: float | None = None, max: float | None = None) -> Any:
        ctx.x, ctx.lo, ctx.hi = x, min, max
        return ctx.xp.clip(x, min, max)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # gradient passes where min <= x <= max (bounds included, as PyTorch)
        x = ctx.x
        mask = True
        if ctx.lo is not None:
            mask = x >= ctx.lo
        if ctx.hi is not None:
            mask = mask & (x <= ctx.hi)
        return g * mask


class ClampTensor(Function):
    """clamp(x, min, max) with tensor bounds (any of them broadcast), inputs (x, min?, max?) of one dtype.

    The gradients are torch's (derivatives.yaml): x gets g where min <= x <= max; with both bounds min gets g
    where x < min < max and max where x > max or max < min (max wins when the bounds cross); a lone min gets
    g where x < min, a lone max where x > max."""

    @staticmethod
    def forward(ctx: Context, x: Any, *bounds: Any, has_min: bool, has_max: bool) -> Any:
        xp = ctx.xp
        lo = bounds[0] if has_min else None
        hi = bounds[-1] if has_max else None
        ctx.x, ctx.lo, ctx.hi = x, lo, hi
        out = x if lo is None else xp.maximum(x, lo)
        return out if hi is None else xp.minimum(out, hi)

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple:
        xp, x, lo, hi = ctx.xp, ctx.x, ctx.lo, ctx.hi
        zero = g.dtype.type(0)
        if lo is not None and hi is not None:
            gx = xp.where((x >= lo) & (x <= hi), g, zero)
            return gx, xp.where((x < lo) & (lo < hi), g, zero), xp.where((x > hi) | (hi < lo), g, zero)
        if lo is not None:
            return xp.where(x >= lo, g, zero), xp.where(x < lo, g, zero)
        return xp.where(x <= hi, g, zero), xp.where(x > hi, g, zero)


class Cast(Function):
    """Change the floating dtype; the gradient is cast back."""

    @staticmethod
    def forward(ctx: Context, x: Any, dtype: Any) -> Any:
        ctx.in_dtype = x.dtype
        return x.astype(dtype)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # d cast(x)/dx = 1
        return g.astype(ctx.in_dtype)


class Clone(Function):
    """A copy with its own memory."""

    @staticmethod
    def forward(ctx: Context, x: Any) -> Any:
        return x.copy()

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # d clone(x)/dx = 1
        return g


class Fill(Function):
    """x.fill_(value) / x.zero_() as recorded in the graph: the output no longer depends on x."""

    @staticmethod
    def forward(ctx: Context, x: Any, value: Any) -> Any:
        return ctx.xp.full_like(x, value)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # d value/dx = 0
        return ctx.xp.zeros_like(g)


class CopyInto(Function):
    """x.copy_(src) as recorded in the graph: the output is src (broadcast to x's shape, in x's dtype)."""

    @staticmethod
    def forward(ctx: Context, x: Any, src: Any) -> Any:
        ctx.src_dtype = src.dtype
        return ctx.xp.broadcast_to(src, x.shape).astype(x.dtype, copy=True)

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple:
        # d out/dx = 0, d out/dsrc = 1 (the engine sums a broadcast src back to its shape)
        nsrc = ctx.needs_input_grad[1]
        return ctx.xp.zeros_like(g), (g.astype(ctx.src_dtype) if nsrc else None)
