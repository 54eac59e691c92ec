"""Fused ops with hand-derived backward passes (llm.c style: math in comments, few passes).

Shapes in comments: N rows, C classes or channels. Each backward says which arrays it
overwrites in place; that is only done when the graph is freed after backward
(``ctx.retain_graph`` is False), so a saved buffer is never reused twice.

On the CPU the big ops run their passes block by block over rows (``parallel.for_row_blocks``):
each block's temporaries stay in cache (L2 or L3) between passes, and the blocks are spread over
the cores. The math is the same on every block, and on CuPy the whole array is one block.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any

from minigrad import backend
from minigrad.autograd import Context, Function
from minigrad.ops import buffers, parallel
from minigrad.ops.kernels import kernels_for
from minigrad.ops.parallel import for_row_blocks


def _check_linear(x: Any, weight: Any, bias: Any) -> None:
    if x.shape[-1] != weight.shape[1]:
        raise RuntimeError(f"linear: input of shape {tuple(x.shape)} does not match weight of shape "
                           f"{tuple(weight.shape)} (in_features {weight.shape[1]})")
    if x.dtype != weight.dtype or (bias is not None and bias.dtype != weight.dtype):
        from minigrad.ops.linalg import torch_dtype_name
        raise RuntimeError(f"linear: expected input and weight to have the same dtype, but got: "
                           f"{torch_dtype_name(x.dtype)} != {torch_dtype_name(weight.dtype)} (cast the input "
                           f"with .to({str(weight.dtype)!r}) or the module with .to({str(x.dtype)!r}))")


class Linear(Function):
    """y = x W^T + b for x (..., in), W (out, in), b (out,) or None."""

    @staticmethod
    def forward(ctx: Context, x: Any, weight: Any, bias: Any = None) -> Any:
        _check_linear(x, weight, bias)
        ctx.fast = kernels_for(ctx.device, "linear")
        if ctx.fast is not None:
            return ctx.fast.linear_forward(ctx, x, weight, bias)
        # every leading dim is a row of one (rows, in) matrix: one matrix product; W^T is a view, not a copy
        ctx.x, ctx.weight = x, weight
        y = x.reshape(-1, x.shape[-1]) @ weight.T
        if bias is not None:
            y += bias  # b broadcast over the rows
        return y.reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple:
        if ctx.fast is not None:
            return ctx.fast.linear_backward(ctx, g)
        # y_ni = sum_k x_nk W_ik + b_i, so with g = dL/dy (rows n):
        #   dx_nk = sum_i g_ni W_ik  -> dx = g W;   dW_ik = sum_n g_ni x_nk  -> dW = g^T x;   db_i = sum_n g_ni
        need = ctx.needs_input_grad
        x2, g2 = ctx.x.reshape(-1, ctx.x.shape[-1]), g.reshape(-1, g.shape[-1])
        dx = (g2 @ ctx.weight).reshape(ctx.x.shape) if need[0] else None
        dw = g2.T @ x2 if need[1] else None
        db = g2.sum(axis=0) if len(need) > 2 and need[2] else None
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
        if ctx.ids.size:  # no ids (an empty batch): no row gets a gradient
            backend.scatter_add(dweight, ctx.ids.reshape(-1), g.reshape(-1, ctx.shape[-1]))
        return dweight


def _quiet(xp: Any) -> Any:
    """Silence 0/0 and x/0 warnings where torch silently gives nan/inf (numpy's errstate; a no-op elsewhere)."""
    errstate = getattr(xp, "errstate", None)
    return errstate(divide="ignore", invalid="ignore") if errstate is not None else contextlib.nullcontext()


def _softmax_into(xp: Any, x: Any, axis: int) -> Any:
    """Numerically stable softmax in 3 passes over a fresh buffer: y = exp(x - max) / sum."""
    y = x - x.max(axis=axis, keepdims=True)
    xp.exp(y, out=y)
    y /= y.sum(axis=axis, keepdims=True)
    return y


def _check_axis(op: str, axis: int, ndim: int) -> int:
    """axis as a non-negative int; a 0-d input takes 0 or -1 (as torch). IndexError like torch's otherwise."""
    lo, hi = -max(ndim, 1), max(ndim, 1) - 1
    if not isinstance(axis, int) or isinstance(axis, bool) or not lo <= axis <= hi:
        raise IndexError(f"{op}: dim out of range (expected to be in range of [{lo}, {hi}], but got {axis!r})")
    return axis % max(ndim, 1)


class Softmax(Function):
    """y = exp(x - max) / sum over one axis. A 0-d input is treated as one element (y = 1), and an empty
    input gives an empty output (numpy's max has no identity on a zero-size axis)."""

    @staticmethod
    def forward(ctx: Context, x: Any, axis: int = -1) -> Any:
        axis = _check_axis("softmax", axis, x.ndim)
        ctx.axis, ctx.shape = axis, x.shape
        if x.size == 0:
            ctx.y = x.copy()
        elif x.ndim == 0:
            ctx.y = _softmax_into(ctx.xp, x.reshape(1), 0)
            return ctx.y.reshape(())
        else:
            ctx.y = _softmax_into(ctx.xp, x, axis)
        return ctx.y

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # dx = y * (g - sum(g * y))
        y = ctx.y
        if g.ndim == 0:
            g = g.reshape(1)
        dx = y * (g - (g * y).sum(axis=ctx.axis, keepdims=True))
        return dx.reshape(ctx.shape) if dx.shape != ctx.shape else dx


class LogSoftmax(Function):
    """y = x - logsumexp(x) over one axis (0-d and empty inputs as Softmax)."""

    @staticmethod
    def forward(ctx: Context, x: Any, axis: int = -1) -> Any:
        xp = ctx.xp
        axis = _check_axis("log_softmax", axis, x.ndim)
        ctx.shape = x.shape
        if x.size == 0:
            y = x.copy()
        else:
            x1 = x.reshape(1) if x.ndim == 0 else x
            y = x1 - x1.max(axis=axis, keepdims=True)
            y -= xp.log(xp.exp(y).sum(axis=axis, keepdims=True))
        ctx.axis, ctx.y = axis, y
        return y.reshape(()) if x.ndim == 0 else y

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # y = x - logsumexp(x):  dx = g - softmax(x) * sum(g) = g - exp(y) * sum(g)
        if g.ndim == 0:
            g = g.reshape(1)
        dx = g - ctx.xp.exp(ctx.y) * g.sum(axis=ctx.axis, keepdims=True)
        return dx.reshape(ctx.shape) if dx.shape != ctx.shape else dx


def _reduce(xp: Any, loss: Any, reduction: str, count: Any) -> Any:
    """loss per row summed ('sum'), kept ('none') or averaged over count ('mean': nan when count is 0, as torch)."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    with _quiet(xp):
        return loss.sum() / count


class CrossEntropy(Function):
    """Softmax + negative log-likelihood over rows of (N, C) logits z, with targets t and ignore_index.

    loss_i = -log softmax(z_i)[t_i] = logsumexp(z_i) - z_i[t_i], 0 for an ignored row; 'mean' averages over the
    rows that count.
    """

    @staticmethod
    def forward(ctx: Context, logits: Any, targets: Any, ignore_index: int = -100, reduction: str = "mean") -> Any:
        xp = ctx.xp
        valid, t = class_targets(xp, "cross_entropy", targets, logits.shape[1], ignore_index)
        ctx.t, ctx.valid, ctx.reduction = t, valid, reduction
        ctx.count = valid.sum().astype(logits.dtype) if reduction == "mean" else None
        ctx.fast = kernels_for(ctx.device, "cross_entropy")
        if ctx.fast is not None:
            return _reduce(xp, ctx.fast.cross_entropy_forward(ctx, logits, t, valid), reduction, ctx.count)
        # logsumexp(z) = m + log(s), m = max z, s = sum exp(z - m): no exp overflows, and the largest term is 1
        m = logits.max(axis=1, keepdims=True)
        e = logits - m
        xp.exp(e, out=e)  # in place: one (N, C) array in all
        s = e.sum(axis=1, keepdims=True)
        loss = (xp.log(s[:, 0]) - (logits[xp.arange(len(t)), t] - m[:, 0])) * valid
        e /= s  # softmax(z): what the backward needs
        ctx.probs = e
        return _reduce(xp, loss, reduction, ctx.count)

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple:
        # d loss_i / dz_i = softmax(z_i) - onehot(t_i)  (from d logsumexp(z)/dz = softmax(z) and dz[t]/dz = onehot),
        # times w_i = dL/dloss_i: g / count for 'mean', g for 'sum', g_i for 'none'; 0 for an ignored row
        xp = ctx.xp
        if ctx.reduction == "mean":  # every target ignored: the loss is nan but the gradient 0, as torch
            g = g / xp.maximum(ctx.count, 1)
        w = g * ctx.valid
        if ctx.fast is not None:
            return ctx.fast.cross_entropy_backward(ctx, w), None
        dz = ctx.probs * w[:, None]
        dz[xp.arange(len(w)), ctx.t] -= w  # one entry per row
        return dz, None


def class_targets(xp: Any, op: str, targets: Any, n_classes: int, ignore_index: int) -> tuple:
    """(valid, safe): valid = targets != ignore_index, safe = targets with ignored ids replaced by 0.
    IndexError naming the first bad ids when a kept target is outside [0, n_classes)."""
    valid = targets != ignore_index
    safe = xp.where(valid, targets, 0)
    bad = (safe < 0) | (safe >= n_classes)
    if bool(bad.any()):
        ids = backend.to_numpy(targets[bad])[:5].tolist()
        raise IndexError(f"{op}: target ids {ids} out of range for {n_classes} classes (ignore_index={ignore_index})")
    return valid, safe


class NLLLoss(Function):
    """Weighted negative log-likelihood with label smoothing: the general loss path behind F.nll_loss and
    F.cross_entropy (whatever the fused CrossEntropy does not take: weights, smoothing, (C,) and (N, C, d...)).

    y: log-probabilities with the classes on axis 1 of (N, C, d1, ...), or axis 0 of (C,). targets: integer class
    ids of y's shape without that axis. weight: (C,) or None (all ones). Per position r (over N, d1, ...), with
    v_r = [t_r != ignore_index], w = weight, eps = label_smoothing and C classes:

        loss_r = -v_r * ((1 - eps) * w[t_r] * y[r, t_r]  +  eps / C * sum_c w[c] * y[r, c])

    'mean' divides the sum by D = sum_r v_r w[t_r] (torch's normaliser, for the smoothing term too: nan when every
    target is ignored or weighs 0), 'sum' sums, 'none' keeps loss_r (the targets' shape). Backward, with
    G_r = dL/dloss_r (g, or g / D for 'mean') and 0 exactly at ignored positions (torch never writes them):

        dy[r, c] = -G_r * ((1 - eps) * w[t_r] * [c == t_r]  +  eps / C * w[c])

    a scatter of one value per position, plus one broadcast multiply when eps > 0.
    """

    @staticmethod
    def forward(ctx: Context, y: Any, targets: Any, weight: Any = None, ignore_index: int = -100,
                reduction: str = "mean", label_smoothing: float = 0.0, op: str = "nll_loss") -> Any:
        xp = ctx.xp
        ax = 0 if y.ndim == 1 else 1
        c = y.shape[ax]
        valid, safe = class_targets(xp, op, targets, c, ignore_index)
        idx = xp.expand_dims(safe, ax)
        picked = xp.take_along_axis(y, idx, axis=ax).squeeze(ax)  # y[r, t_r]
        wt = valid.astype(y.dtype) if weight is None else xp.where(valid, weight[safe], 0).astype(y.dtype)
        nll = -wt * picked
        smooth = None
        wb = None if weight is None else weight.reshape((c,) + (1,) * (y.ndim - 1 - ax))  # broadcast over y
        if label_smoothing > 0.0:
            total = y.sum(axis=ax) if wb is None else (y * wb).sum(axis=ax)
            smooth = -xp.where(valid, total, 0)
        ctx.idx, ctx.valid, ctx.wt, ctx.wb, ctx.ax = idx, valid, wt, wb, ax
        ctx.y_shape, ctx.eps, ctx.reduction = y.shape, label_smoothing, reduction
        if reduction == "mean":  # each term over D apart, as torch: 0 / 0 = nan when nothing counts
            ctx.denom = wt.sum()
            with _quiet(xp):
                loss = (1.0 - label_smoothing) * (nll.sum() / ctx.denom)
                return loss if smooth is None else loss + (label_smoothing / c) * (smooth.sum() / ctx.denom)
        loss = nll if smooth is None else (1.0 - label_smoothing) * nll + (label_smoothing / c) * smooth
        return loss if reduction == "none" else loss.sum()

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        with _quiet(ctx.xp):  # D = 0 gives inf/nan gradients, as torch
            return NLLLoss._grad(ctx, g)

    @staticmethod
    def _grad(ctx: Context, g: Any) -> Any:
        xp, ax, eps = ctx.xp, ctx.ax, ctx.eps
        if ctx.reduction == "mean":
            g = g / ctx.denom
        G = xp.where(ctx.valid, g, 0).astype(g.dtype)  # (targets' shape); g is 0-d unless reduction='none'
        dy = xp.zeros(ctx.y_shape, dtype=g.dtype)
        if eps > 0.0:  # the smoothing term: -G_r * eps / C * w[c] on every class
            spread = xp.expand_dims(G * (-eps / ctx.y_shape[ax]), ax)
            dy += spread if ctx.wb is None else spread * ctx.wb
        # the target term, one entry per position (wt already holds w[t_r], 0 where ignored)
        pick = xp.expand_dims(G * ctx.wt * -(1.0 - eps), ax)
        if eps > 0.0:
            pick = pick + xp.take_along_axis(dy, ctx.idx, axis=ax)
        xp.put_along_axis(dy, ctx.idx, pick.astype(g.dtype, copy=False), axis=ax)
        return dy


class LayerNorm(Function):
    """y = (x - mean) * rstd * weight + bias over the last axis (C entries), rstd = 1 / sqrt(var + eps)."""

    @staticmethod
    def forward(ctx: Context, x: Any, weight: Any, bias: Any, eps: float = 1e-5) -> Any:
        ctx.fast = kernels_for(ctx.device, "layer_norm")
        if ctx.fast is not None:
            return ctx.fast.layer_norm_forward(ctx, x, weight, bias, eps)
        # per row: mean and the biased variance (divided by C, as torch)
        mean = x.mean(axis=-1, keepdims=True)
        xc = x - mean
        rstd = 1.0 / ctx.xp.sqrt((xc * xc).mean(axis=-1, keepdims=True) + eps)
        xhat = xc * rstd  # each row now has mean 0 and variance 1 (up to eps)
        ctx.xhat, ctx.rstd, ctx.weight = xhat, rstd, weight  # x itself is not needed again
        return xhat * weight + bias

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple:
        if ctx.fast is not None:
            return ctx.fast.layer_norm_backward(ctx, g)
        # y = xhat * w + b:  db = sum g,  dw = sum g * xhat (over every row),  dL/dxhat = g * w =: gh.
        # xhat_i = (x_i - mean) * rstd, per row of C entries. x_j reaches xhat_i three ways:
        #   directly:      d xhat_i / d x_j = rstd [i == j]
        #   through mean:  d mean / d x_j = 1 / C,                  so  -rstd / C
        #   through rstd:  d rstd / d x_j = -rstd^2 xhat_j / C,     so  -rstd xhat_i xhat_j / C
        # Summed over i with gh_i:  dx_j = rstd (gh_j - mean(gh) - xhat_j mean(gh * xhat))
        xhat, rstd, need = ctx.xhat, ctx.rstd, ctx.needs_input_grad
        gh = g * ctx.weight
        dx = rstd * (gh - gh.mean(axis=-1, keepdims=True) - xhat * (gh * xhat).mean(axis=-1, keepdims=True))
        rows = tuple(range(g.ndim - 1))  # every axis but the last
        dw = (g * xhat).sum(axis=rows) if need[1] else None
        db = g.sum(axis=rows) if need[2] else None
        return dx, dw, db


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _gelu_erf_block(xp: Any, x: Any, y: Any, d: Any) -> None:
    """y = x Phi(x) and d = dy/dx = Phi(x) + x phi(x) for one block, Phi(x) = (1 + erf(x / sqrt 2)) / 2.

    Any dtype and array library (float64 in practice: float32 takes _gelu_erf_block_f32).
    """
    e = x * x
    e *= -0.5
    xp.exp(e, out=e)  # e = exp(-x^2 / 2) = sqrt(2 pi) phi(x)
    cdf = backend.erf(x * _INV_SQRT_2)  # a fresh array: updated in place below
    cdf += 1.0
    cdf *= 0.5
    xp.multiply(x, cdf, out=y)
    if d is not None:
        xp.multiply(x, e, out=d)
        d *= _INV_SQRT_2PI
        d += cdf


# Phi(-a) = erfc(a / sqrt 2) / 2 ~= exp(-a^2 / 2) * t * (c1 + c2 t + ... + c6 t^5), t = 1 / (1 + p a / sqrt 2), a >= 0:
# the form of Abramowitz & Stegun 7.1.26 with one more term, refitted (minimax, Lawson's iterations in float64)
# to |error| < 8.5e-9 for every a; the halves are folded into the c's. It needs no exp of its own: exp(-x^2/2)
# is computed for phi(x) anyway, and its 20 passes cost less than a rational erf's 25 plus the final ones.
# tools/fit_gelu_phi.py refits them.
_PHI_P = 0.55 * _INV_SQRT_2
_PHI_C = (0.30158341359046015 / 2, 0.3908422908206769 / 2, -0.04142673853664183 / 2, 0.7597152575920728 / 2,
          -0.5180388396397063 / 2, 0.10732463308930205 / 2)
_SIGN_BIT = -(1 << 31)  # as int32


def _gelu_erf_block_f32(np_: Any, x: Any, y: Any, d: Any) -> None:
    """The float32 form of _gelu_erf_block: |error| of y at most 4.5e-7 and of dy/dx 2.5e-7 against the float64
    result on [-12, 12] (the rational-erf path: 1.4e-6 for y); like any float32 1/2 + erf/2, it is absolute,
    not relative, accuracy where y is tiny. np_ is numpy, or cupy where a GPU runs without minigrad's kernels; x is a
    contiguous 1-D block."""
    f32 = np_.float32
    e = np_.multiply(x, x)
    e *= f32(-0.5)
    np_.exp(e, out=e)  # e = exp(-x^2 / 2)
    t = np_.abs(x)
    t *= f32(_PHI_P)
    t += f32(1.0)
    np_.divide(f32(1.0), t, out=t)
    h = np_.multiply(t, f32(_PHI_C[5]))  # Horner in t
    for c in _PHI_C[4::-1]:
        h += f32(c)
        h *= t
    h *= e  # h = Phi(-|x|), in (0, 1/2]
    # Phi(x) = 1/2 + sign(x) (1/2 - h): the sign bit of x set into (1/2 - h) >= 0 (cheaper than copysign or where)
    cdf = np_.subtract(f32(0.5), h, out=h)
    sign = np_.bitwise_and(x.view(np_.int32), np_.int32(_SIGN_BIT), out=t.view(np_.int32))
    np_.bitwise_or(cdf.view(np_.int32), sign, out=cdf.view(np_.int32))
    cdf += f32(0.5)
    np_.multiply(x, cdf, out=y)
    if d is not None:
        e *= x
        e *= f32(_INV_SQRT_2PI)
        np_.add(cdf, e, out=d)


def _gelu_tanh_block(xp: Any, x: Any, y: Any, d: Any) -> None:
    """y = 0.5 x (1 + tanh(u)) and d = dy/dx (when d is given) for one block, u = sqrt(2/pi) (x + 0.044715 x^3)
    (x*x*x, never x**3)."""
    t = x * x
    t *= 0.044715
    t += 1.0
    t *= x
    t *= _SQRT_2_OVER_PI
    xp.tanh(t, out=t)
    if d is not None:
        # dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)   (sech^2 = 1 - tanh^2)
        xp.multiply(x, x, out=d)
        d *= 3 * 0.044715
        d += 1.0
        d *= x
        d *= 0.5 * _SQRT_2_OVER_PI
        sech2 = t * t
        xp.subtract(1.0, sech2, out=sech2)
        d *= sech2
    t += 1.0
    t *= 0.5
    if d is not None:
        d += t
    xp.multiply(x, t, out=y)


class Gelu(Function):
    """GELU, exact (erf) or tanh form. Forward computes dy/dx alongside y and saves only that, so
    backward is one multiply (and x need not be kept). A device with fused kernels (``device.kernels``,
    CUDA) runs one kernel each way instead.
    """

    @staticmethod
    def forward(ctx: Context, x: Any, approximate: str = "none") -> Any:
        xp, kernels = ctx.xp, ctx.device.kernels
        ctx.x_shape, ctx.approximate = x.shape, approximate
        if kernels is not None:
            ctx.x = x
            return kernels.gelu_forward(x, approximate)
        xf = x.reshape(-1)
        y = xp.empty_like(xf)
        d = xp.empty_like(xf) if ctx.recording else None
        if approximate == "tanh":
            block_fn = _gelu_tanh_block
        elif xf.dtype == xp.float32:
            block_fn = _gelu_erf_block_f32
        else:
            block_fn = _gelu_erf_block

        def block(a: int, b: int) -> None:  # without d (no grad) the derivative is skipped
            block_fn(xp, xf[a:b], y[a:b], None if d is None else d[a:b])

        for_row_blocks(ctx.device, xf.size, xf.itemsize, block)
        ctx.d = d
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        xp = ctx.xp
        if ctx.device.kernels is not None:
            return ctx.device.kernels.gelu_backward(ctx.x, g, ctx.approximate)
        d, gf = ctx.d, g.reshape(-1)
        dx = d if not ctx.retain_graph else xp.empty_like(d)  # d is overwritten when the graph is freed

        def block(a: int, b: int) -> None:
            xp.multiply(d[a:b], gf[a:b], out=dx[a:b])  # dx = g * dy/dx

        for_row_blocks(ctx.device, d.size, d.itemsize, block)
        return dx.reshape(ctx.x_shape)


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
