"""Reductions over one axis, several axes, or all of them (axis=None)."""
from __future__ import annotations

import math
from typing import Any

from minigrad.autograd import Context, Function


def _expand_back(g: Any, in_shape: tuple, axis: Any, keepdims: bool) -> Any:
    """Reshape a reduced gradient so it broadcasts against the input again."""
    if keepdims or axis is None:
        return g.reshape([1] * len(in_shape)) if axis is None and not keepdims else g
    axes = (axis,) if isinstance(axis, int) else axis
    shape = list(in_shape)
    for a in axes:
        shape[a % len(in_shape)] = 1
    return g.reshape(shape)


def _count(shape: tuple, axis: Any) -> int:
    if axis is None:
        n = 1
        for s in shape:
            n *= s
        return n
    axes = (axis,) if isinstance(axis, int) else axis
    n = 1
    for a in axes:
        n *= shape[a]
    return n


class Sum(Function):
    @staticmethod
    def forward(ctx: Context, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        ctx.shape, ctx.axis, ctx.keepdims = x.shape, axis, keepdims
        return x.sum(axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # d sum(x)/dx_i = 1: broadcast g back over the reduced axes
        g = _expand_back(g, ctx.shape, ctx.axis, ctx.keepdims)
        return ctx.xp.broadcast_to(g, ctx.shape)


class Mean(Function):
    @staticmethod
    def forward(ctx: Context, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        ctx.shape, ctx.axis, ctx.keepdims = x.shape, axis, keepdims
        if x.size == 0:  # torch: nan (numpy would warn "mean of empty slice")
            return x.sum(axis=axis, keepdims=keepdims) * math.nan
        return x.mean(axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # d mean(x)/dx_i = 1/N (N = 0: the input is empty, so is its gradient)
        n = _count(ctx.shape, ctx.axis)
        g = _expand_back(g, ctx.shape, ctx.axis, ctx.keepdims) * (1.0 / n if n else math.nan)
        return ctx.xp.broadcast_to(g, ctx.shape)


class Max(Function):
    """amax: the gradient is split evenly among tied maxima (as torch.amax and torch.max(x))."""

    @staticmethod
    def forward(ctx: Context, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        out = x.max(axis=axis, keepdims=keepdims)
        ctx.x, ctx.out, ctx.axis, ctx.keepdims = x, out, axis, keepdims
        return out

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # d max(x)/dx_i = [x_i == max] / (number of ties)
        x = ctx.x
        out = _expand_back(ctx.out, x.shape, ctx.axis, ctx.keepdims)
        g = _expand_back(g, x.shape, ctx.axis, ctx.keepdims)
        mask = (x == out).astype(g.dtype)
        mask /= mask.sum(axis=ctx.axis, keepdims=True)
        return mask * g


def _var_forward(ctx: Context, x: Any, axis: Any, correction: float, keepdims: bool) -> Any:
    """sum((x - mean)^2) / max(N - correction, 0), as torch.var; saves what _var_backward needs."""
    n = _count(x.shape, axis)
    ctx.axis, ctx.keepdims, ctx.n, ctx.correction = axis, keepdims, n, correction
    if n == 0:  # torch: nan (no mean to centre on)
        ctx.centered = x
        return x.sum(axis=axis, keepdims=keepdims) * math.nan
    centered = x - x.mean(axis=axis, keepdims=True)
    ctx.centered = centered
    ss = (centered * centered).sum(axis=axis, keepdims=keepdims)
    denom = n - correction
    # no degrees of freedom left: 0/0 = nan, c/0 = inf (torch's values, without numpy's warnings)
    return ss / denom if denom > 0 else ss * math.inf


def _var_backward(ctx: Context, g: Any) -> Any:
    # d var/dx_i = 2 (x_i - mean) / (N - correction), with torch's choices where N - correction <= 0:
    # over all elements g * (nan where x_i == mean else inf); over given dims 2 / (N - correction) as it is
    c, dof = ctx.centered, ctx.n - ctx.correction
    g = _expand_back(g, c.shape, ctx.axis, ctx.keepdims)
    if ctx.n == 0:
        return ctx.xp.zeros(c.shape, dtype=g.dtype)
    if ctx.axis is None and dof <= 0:
        return g * ctx.xp.where(c == 0, math.nan, math.inf).astype(g.dtype)
    return g * c * (2.0 / dof if dof else math.inf)


class Var(Function):
    """torch.var: correction 1 (unbiased) unless told otherwise."""

    @staticmethod
    def forward(ctx: Context, x: Any, axis: Any = None, correction: float = 1, keepdims: bool = False) -> Any:
        return _var_forward(ctx, x, axis, correction, keepdims)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        return _var_backward(ctx, g)


class Std(Function):
    """torch.std = sqrt(var); the gradient is 0 where the std is 0 (as torch), not inf * 0."""

    @staticmethod
    def forward(ctx: Context, x: Any, axis: Any = None, correction: float = 1, keepdims: bool = False) -> Any:
        ctx.out = ctx.xp.sqrt(_var_forward(ctx, x, axis, correction, keepdims))
        return ctx.out

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # d std = d var / (2 std), masked to 0 where std == 0
        xp, out = ctx.xp, ctx.out
        zero = out == 0
        g_var = xp.where(zero, 0, g / (2 * xp.where(zero, 1, out))).astype(g.dtype, copy=False)
        return _var_backward(ctx, g_var)


class LogSumExp(Function):
    @staticmethod
    def forward(ctx: Context, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        xp = ctx.xp
        m = x.max(axis=axis, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)  # all -inf rows give -inf, not nan
        s = xp.log(xp.exp(x - m).sum(axis=axis, keepdims=True)) + m
        ctx.x, ctx.lse, ctx.axis, ctx.keepdims = x, s, axis, keepdims
        return s if keepdims else (s.reshape(()) if axis is None else s.squeeze(axis))

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # d logsumexp(x)/dx_i = softmax(x)_i
        g = _expand_back(g, ctx.x.shape, ctx.axis, ctx.keepdims)
        return ctx.xp.exp(ctx.x - ctx.lse) * g
