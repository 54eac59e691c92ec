"""Fused ops with hand-derived backward passes, written as whole-array math (llm.c style: derivation in comments).

Shapes in comments: N rows, C classes or channels. Each Function's forward and backward are the reference: plain
array expressions on the device's ``xp`` (NumPy or CuPy) that a learner can check on paper, next to their
derivation. Where a device has a faster version of an op, the Function hands over to it in one visible line,

    fast = kernels_for(ctx.device, "layer_norm")   # minigrad/ops/kernels.py

the CPU's in minigrad/ops/cpu_kernels.py (row blocks over the cores, buffers reused, in-place passes, a fitted
float32 GELU), the CUDA kernels in minigrad/cuda_kernels.py (GELU). ``with minigrad.ops.kernels.reference():``
runs the math below everywhere; tests/minigrad/test_reference_vs_fast.py pins fast = reference on every op.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any

from minigrad import backend
from minigrad.autograd import Context, Function
from minigrad.ops.kernels import kernels_for, native_low_precision
from minigrad.ops.precision import float32_inside


def _check_linear(x: Any, weight: Any, bias: Any) -> None:
    if x.shape[-1] != weight.shape[1]:
        raise RuntimeError(f"linear: input of shape {tuple(x.shape)} does not match weight of shape "
                           f"{tuple(weight.shape)} (in_features {weight.shape[1]})")
    if x.dtype != weight.dtype or (bias is not None and bias.dtype != weight.dtype):
        from minigrad.ops.linalg import torch_dtype_name
        raise RuntimeError(f"linear: expected input and weight to have the same dtype, but got: "
                           f"{torch_dtype_name(x.dtype)} != {torch_dtype_name(weight.dtype)} (cast the input "
                           f"with .to({str(weight.dtype)!r}) or the module with .to({str(x.dtype)!r}))")


@float32_inside(native_on=("cuda",), same_dtype=True)
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


def _check_axis(op: str, axis: int, ndim: int) -> int:
    """axis as a non-negative int; a 0-d input takes 0 or -1 (as torch). IndexError like torch's otherwise."""
    lo, hi = -max(ndim, 1), max(ndim, 1) - 1
    if not isinstance(axis, int) or isinstance(axis, bool) or not lo <= axis <= hi:
        raise IndexError(f"{op}: dim out of range (expected to be in range of [{lo}, {hi}], but got {axis!r})")
    return axis % max(ndim, 1)


@float32_inside
class Softmax(Function):
    """y = exp(x - max) / sum over one axis. A 0-d input is treated as one element (y = 1), and an empty
    input gives an empty output (numpy's max has no identity on a zero-size axis)."""

    @staticmethod
    def forward(ctx: Context, x: Any, axis: int = -1) -> Any:
        xp = ctx.xp
        axis = _check_axis("softmax", axis, x.ndim)
        ctx.axis, ctx.shape = axis, x.shape
        if x.size == 0:
            ctx.y = x.copy()
            return ctx.y
        x1 = x.reshape(1) if x.ndim == 0 else x
        y = x1 - x1.max(axis=axis, keepdims=True)  # subtracting the max changes nothing but overflow
        xp.exp(y, out=y)
        y /= y.sum(axis=axis, keepdims=True)
        ctx.y = y
        return y if x.ndim else y.reshape(())

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # dy_i/dx_j = y_i ([i == j] - y_j), so dx_j = sum_i g_i y_i ([i == j] - y_j) = y_j (g_j - sum_i g_i y_i)
        y = ctx.y
        g = g.reshape(y.shape)
        dx = y * (g - (g * y).sum(axis=ctx.axis, keepdims=True))
        return dx.reshape(ctx.shape)


@float32_inside
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
        return y if x.ndim else y.reshape(())

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # y = x - logsumexp(x), d logsumexp(x) / dx_j = softmax(x)_j = exp(y_j):  dx = g - exp(y) * sum(g)
        g = g.reshape(ctx.y.shape)
        dx = g - ctx.xp.exp(ctx.y) * g.sum(axis=ctx.axis, keepdims=True)
        return dx.reshape(ctx.shape)


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


def _reduce(xp: Any, loss: Any, reduction: str, count: Any) -> Any:
    """loss per row summed ('sum'), kept ('none') or averaged over count ('mean': nan when count is 0, as torch)."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    with _quiet(xp):
        return loss.sum() / count


@float32_inside(keep_float32=True)
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


@float32_inside(keep_float32=True)
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


@float32_inside
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


@float32_inside(native_on=native_low_precision("gelu"))  # CUDA's GELU kernels take float16/bfloat16 themselves
class Gelu(Function):
    """GELU(x) = x Phi(x), Phi the standard normal CDF (approximate="none"), or its tanh approximation."""

    @staticmethod
    def forward(ctx: Context, x: Any, approximate: str = "none") -> Any:
        ctx.approximate = approximate
        ctx.fast = kernels_for(ctx.device, "gelu")
        if ctx.fast is not None:
            return ctx.fast.gelu_forward(ctx, x, approximate)
        ctx.x = x  # the backward recomputes erf or tanh from x
        if approximate == "tanh":  # y = x/2 (1 + tanh u),  u = sqrt(2/pi) (x + 0.044715 x^3)
            return 0.5 * x * (1.0 + ctx.xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))
        return 0.5 * x * (1.0 + backend.erf(x * _INV_SQRT_2))  # Phi(x) = (1 + erf(x / sqrt 2)) / 2

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        if ctx.fast is not None:
            return ctx.fast.gelu_backward(ctx, g)
        xp, x = ctx.xp, ctx.x
        if ctx.approximate == "tanh":
            # t = tanh u, dt/du = 1 - t^2 (sech^2), du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2):
            # dy/dx = (1 + t) / 2 + x/2 (1 - t^2) du/dx
            t = xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))
            du = _SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x * x)
            dydx = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du
        else:
            # dy/dx = Phi(x) + x phi(x),  phi(x) = Phi'(x) = exp(-x^2 / 2) / sqrt(2 pi)
            dydx = 0.5 * (1.0 + backend.erf(x * _INV_SQRT_2)) + x * xp.exp(-0.5 * x * x) * _INV_SQRT_2PI
        return g * dydx


class Dropout(Function):
    """Inverted dropout: keep with probability 1-p and scale by 1/(1-p); the mask is saved as bool."""

    @staticmethod
    def forward(ctx: Context, x: Any, p: float) -> Any:
        ctx.keep, ctx.scale = backend.rand(ctx.device, x.shape, x.dtype) >= p, 1.0 / (1.0 - p)
        return x * Dropout.scaled_mask(ctx, x.dtype)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # dx = g * mask / (1 - p)
        return g * Dropout.scaled_mask(ctx, g.dtype)

    @staticmethod
    def scaled_mask(ctx: Context, dtype: Any) -> Any:
        """mask / (1 - p) in dtype (a bool mask times bfloat16 would promote to float32)."""
        m = ctx.keep.astype(dtype)
        m *= ctx.scale
        return m
