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
        return x.mean(axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # d mean(x)/dx_i = 1/N
        g = _expand_back(g, ctx.shape, ctx.axis, ctx.keepdims) * (1.0 / _count(ctx.shape, ctx.axis))
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


class Var(Function):
    @staticmethod
    def forward(ctx: Context, x: Any, axis: Any = None, correction: int = 1, keepdims: bool = False) -> Any:
        n = _count(x.shape, axis)
        mean = x.mean(axis=axis, keepdims=True)
        centered = x - mean
        ctx.centered, ctx.axis, ctx.keepdims, ctx.denom = centered, axis, keepdims, max(n - correction, 0)
        return (centered * centered).sum(axis=axis, keepdims=keepdims) / ctx.denom

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # d var/dx_i = 2 (x_i - mean) / (N - correction)
        c = ctx.centered
        g = _expand_back(g, c.shape, ctx.axis, ctx.keepdims)
        return g * c * (2.0 / ctx.denom if ctx.denom else math.nan)  # N - correction = 0: nan, as torch


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
