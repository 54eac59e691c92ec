"""Fused ops with hand-derived backward passes (llm.c style: math in comments, few passes).

Shapes in comments: N rows, C classes or channels. Each backward says which arrays it
overwrites in place; that is only done when the graph is freed after backward
(``ctx.retain_graph`` is False), so a saved buffer is never reused twice.
"""
from __future__ import annotations

import math
from typing import Any

from minigrad import backend
from minigrad.autograd import Context, Function


class Linear(Function):
    """y = x W^T + b for x (..., in), W (out, in), b (out,) or None: one GEMM each way."""

    @staticmethod
    def forward(ctx: Context, x: Any, weight: Any, bias: Any = None) -> Any:
        if x.shape[-1] != weight.shape[1]:
            raise RuntimeError(f"linear: input of shape {tuple(x.shape)} does not match weight of shape "
                               f"{tuple(weight.shape)} (in_features {weight.shape[1]})")
        ctx.x, ctx.weight = x, weight
        y = x @ weight.T
        if bias is not None:
            y += bias
        return y

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple:
        # dx = g W,  dW = g^T x (summed over all leading dims in one GEMM),  db = sum g
        x, w = ctx.x, ctx.weight
        need_x, need_w = ctx.needs_input_grad[:2]
        g2 = g.reshape(-1, g.shape[-1])
        dx = g @ w if need_x else None
        dw = g2.T @ x.reshape(-1, x.shape[-1]) if need_w else None
        db = g2.sum(axis=0) if len(ctx.needs_input_grad) > 2 and ctx.needs_input_grad[2] else None
        return dx, dw, db


class Embedding(Function):
    """out[...] = weight[ids[...]]; ids is an integer array attribute."""

    @staticmethod
    def forward(ctx: Context, weight: Any, ids: Any) -> Any:
        ctx.ids, ctx.shape = ids, weight.shape
        return weight[ids]

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # dweight[v] = sum of g over the positions whose id is v (a scatter-add; repeats accumulate)
        dweight = ctx.xp.zeros(ctx.shape, dtype=g.dtype)
        backend.scatter_add(dweight, ctx.ids.reshape(-1), g.reshape(-1, ctx.shape[-1]))
        return dweight


def _softmax_into(xp: Any, x: Any, axis: int) -> Any:
    """Numerically stable softmax in 3 passes over a fresh buffer: y = exp(x - max) / sum."""
    y = x - x.max(axis=axis, keepdims=True)
    xp.exp(y, out=y)
    y /= y.sum(axis=axis, keepdims=True)
    return y


class Softmax(Function):
    @staticmethod
    def forward(ctx: Context, x: Any, axis: int = -1) -> Any:
        ctx.axis = axis
        ctx.y = _softmax_into(ctx.xp, x, axis)
        return ctx.y

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # dx = y * (g - sum(g * y))
        y = ctx.y
        return y * (g - (g * y).sum(axis=ctx.axis, keepdims=True))


class LogSoftmax(Function):
    @staticmethod
    def forward(ctx: Context, x: Any, axis: int = -1) -> Any:
        xp = ctx.xp
        y = x - x.max(axis=axis, keepdims=True)
        y -= xp.log(xp.exp(y).sum(axis=axis, keepdims=True))
        ctx.axis, ctx.y = axis, y
        return y

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # y = x - logsumexp(x):  dx = g - softmax(x) * sum(g) = g - exp(y) * sum(g)
        return g - ctx.xp.exp(ctx.y) * g.sum(axis=ctx.axis, keepdims=True)


class CrossEntropy(Function):
    """Softmax + negative log-likelihood over rows of (N, C) logits, with ignore_index."""

    @staticmethod
    def forward(ctx: Context, logits: Any, targets: Any, ignore_index: int = -100, reduction: str = "mean") -> Any:
        xp = ctx.xp
        n, c = logits.shape
        valid = targets != ignore_index
        safe_t = xp.where(valid, targets, 0)
        if bool(((safe_t < 0) | (safe_t >= c)).any()):
            bad = backend.to_numpy(targets[(safe_t < 0) | (safe_t >= c)])[:5].tolist()
            raise IndexError(f"cross_entropy: target ids {bad} out of range for {c} classes "
                             f"(ignore_index={ignore_index})")
        rows = xp.arange(n)
        # probs = softmax(logits) written into one (N, C) buffer, kept for backward
        m = logits.max(axis=1, keepdims=True)
        probs = logits - m
        picked = probs[rows, safe_t]  # z_t - max
        xp.exp(probs, out=probs)
        s = probs.sum(axis=1, keepdims=True)
        probs /= s
        # loss_i = logsumexp(z_i) - z_i[t_i] = log(s_i) - (z_t - max)
        loss = (xp.log(s[:, 0]) - picked) * valid
        ctx.probs, ctx.t, ctx.valid, ctx.reduction = probs, safe_t, valid, reduction
        if reduction == "none":
            return loss
        if reduction == "sum":
            return loss.sum()
        ctx.count = valid.sum().astype(logits.dtype)
        return loss.sum() / ctx.count  # nan when every target is ignored, as PyTorch

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple:
        # dlogits_i = (probs_i - onehot(t_i)) * dloss_i, written over the probs buffer
        xp = ctx.xp
        probs = ctx.probs if not ctx.retain_graph else ctx.probs.copy()
        n = probs.shape[0]
        probs[xp.arange(n), ctx.t] -= 1.0
        if ctx.reduction == "none":
            scale = g * ctx.valid
        elif ctx.reduction == "sum":
            scale = g * ctx.valid
        else:
            scale = (g / ctx.count) * ctx.valid
        probs *= scale.astype(probs.dtype, copy=False)[:, None]
        return probs, None


class LayerNorm(Function):
    """y = (x - mean) * rstd * weight + bias over the last axis; saves mean and rstd only."""

    @staticmethod
    def forward(ctx: Context, x: Any, weight: Any, bias: Any, eps: float = 1e-5) -> Any:
        xp = ctx.xp
        mean = x.mean(axis=-1, keepdims=True)
        xc = x - mean
        var = xp.einsum("...i,...i->...", xc, xc)[..., None] / x.shape[-1]  # biased, as PyTorch
        rstd = 1.0 / xp.sqrt(var + eps)
        xc *= rstd  # xc is now xhat
        ctx.x, ctx.mean, ctx.rstd, ctx.weight = x, mean, rstd, weight
        xc *= weight
        xc += bias
        return xc

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple:
        # xhat = (x - mean) * rstd,  gh = g * weight
        # dx = rstd * (gh - mean(gh) - xhat * mean(gh * xhat)),  dw = sum g*xhat,  db = sum g
        xp = ctx.xp
        x, mean, rstd, w = ctx.x, ctx.mean, ctx.rstd, ctx.weight
        xhat = (x - mean) * rstd
        c = x.shape[-1]
        g2 = g.reshape(-1, c)
        dweight = xp.einsum("ni,ni->i", g2, xhat.reshape(-1, c)) if ctx.needs_input_grad[1] else None
        dbias = g2.sum(axis=0) if ctx.needs_input_grad[2] else None
        gh = g * w
        mean_gh = gh.mean(axis=-1, keepdims=True)
        mean_gh_xhat = xp.einsum("...i,...i->...", gh, xhat)[..., None] / c
        xhat *= mean_gh_xhat
        gh -= mean_gh
        gh -= xhat
        gh *= rstd
        return gh, dweight, dbias


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class Gelu(Function):
    @staticmethod
    def forward(ctx: Context, x: Any, approximate: str = "none") -> Any:
        xp = ctx.xp
        ctx.x, ctx.approximate = x, approximate
        if approximate == "tanh":
            # y = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
            t = x * x
            t *= 0.044715
            t += 1.0
            t *= x
            t *= _SQRT_2_OVER_PI
            xp.tanh(t, out=t)
            ctx.t = t.copy()
        else:
            # y = 0.5 x (1 + erf(x / sqrt(2)))
            t = backend.erf(x * _INV_SQRT_2)
            ctx.t = t.copy()
        t += 1.0
        t *= x
        t *= 0.5
        return t

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        xp, x = ctx.xp, ctx.x
        t = ctx.t if not ctx.retain_graph else ctx.t.copy()
        if ctx.approximate == "tanh":
            # dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)   (sech^2 = 1 - tanh^2)
            x2 = x * x
            x2 *= 3 * 0.044715
            x2 += 1.0
            x2 *= x
            x2 *= 0.5 * _SQRT_2_OVER_PI
            sech2 = t * t
            xp.subtract(1.0, sech2, out=sech2)
            sech2 *= x2
            t += 1.0
            t *= 0.5
            t += sech2
        else:
            # dy/dx = 0.5 (1 + erf(x/sqrt 2)) + x * exp(-x^2/2) / sqrt(2 pi)
            pdf = x * x
            pdf *= -0.5
            xp.exp(pdf, out=pdf)
            pdf *= x
            pdf *= _INV_SQRT_2PI
            t += 1.0
            t *= 0.5
            t += pdf
        t *= g
        return t


class Dropout(Function):
    """Inverted dropout: keep with probability 1-p and scale by 1/(1-p); the mask is saved as bool."""

    @staticmethod
    def forward(ctx: Context, x: Any, p: float) -> Any:
        keep = backend.rand(ctx.device, x.shape, x.dtype) >= p
        ctx.keep, ctx.scale = keep, 1.0 / (1.0 - p)
        return x * keep * ctx.scale

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # dx = g * mask / (1 - p)
        return g * ctx.keep * ctx.scale
