"""gradcheck: compare analytic gradients with central finite differences in float64.

The output is contracted with a random upstream gradient c, L(x) = sum(f(x) * c),
never f(x).sum(): the sum of a softmax or of a plain layer norm is constant, so a
backward that returned zeros would pass a sum-based check.

Small inputs get the full gradient, one central difference per element. Large
inputs get random projections: the directional derivative (L(x + eps u) -
L(x - eps u)) / 2 eps is compared with grad . u; when a projection fails on an input
of at most ``full_on_failure`` elements, the full gradient is computed to name the
worst element. The report names the ops in the checked graph, the input index, the
worst elements with their analytic and numeric values.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from minigrad.autograd import no_grad, topological_order
from minigrad.dtypes import float64
from minigrad.tensor import Tensor


class GradcheckError(AssertionError):
    """Raised when an analytic gradient disagrees with the numerical one."""


def gradcheck(fn: Callable[..., Tensor], inputs: Sequence[Tensor], eps: float = 1e-6, atol: float = 1e-5,
              rtol: float = 1e-3, full_max_numel: int = 64, n_projections: int = 3, seed: int = 0,
              name: str | None = None, full_on_failure: int = 4096) -> bool:
    """Check fn's gradients for every float64 input that requires grad; raise GradcheckError on failure."""
    inputs = list(inputs)
    for i, t in enumerate(inputs):
        if isinstance(t, Tensor) and t.requires_grad and t.dtype != float64:
            raise TypeError(f"gradcheck: input {i} is {t.dtype}; finite differences need float64 inputs")
    rng = np.random.default_rng(seed)
    out = fn(*inputs)
    if not out.requires_grad:
        raise GradcheckError(f"gradcheck {name or getattr(fn, '__name__', 'fn')}: output does not require grad "
                             "(no input took part)")
    ops = graph_ops(out)
    label = name or (out._ctx.fn.__name__ if out._ctx is not None else getattr(fn, "__name__", "fn"))
    if len(ops) > 1:
        label += f" (ops in the graph, inputs first: {', '.join(ops)})"
    xp = out.device.xp
    c = xp.asarray(rng.standard_normal(out.shape))
    for t in inputs:
        if isinstance(t, Tensor):
            t.grad = None
    out.backward(Tensor(c, device=out.device, _copy=False))

    def loss() -> float:
        with no_grad():
            return float((fn(*inputs).data * c).sum())

    for i, t in enumerate(inputs):
        if not (isinstance(t, Tensor) and t.requires_grad):
            continue
        analytic = np.zeros(t.shape) if t.grad is None else t.grad.numpy().astype(np.float64)
        x = t.data
        if x.size <= full_max_numel:
            _compare(label, i, analytic, _numeric_gradient(x, loss, eps), atol, rtol)
            continue
        for k in range(n_projections):
            u = rng.standard_normal(t.shape)
            orig = x.copy()
            x += eps * xp.asarray(u)
            plus = loss()
            x[...] = orig - eps * xp.asarray(u)
            minus = loss()
            x[...] = orig
            numeric = np.array([(plus - minus) / (2 * eps)])
            projected = np.array([float((analytic * u).sum())])
            try:
                _compare(label, i, projected, numeric, atol, rtol, what=f"projection {k} (grad . u)")
            except GradcheckError:
                if x.size <= full_on_failure:
                    # name the worst elements: the full gradient costs 2 forwards per element, only on failure
                    _compare(label, i, analytic, _numeric_gradient(x, loss, eps), atol, rtol,
                             what=f"gradient (projection {k} failed, full gradient computed)")
                raise
    return True


def graph_ops(out: Tensor) -> list[str]:
    """Names of the ops that made out, each once, inputs first (the order a forward pass ran them)."""
    return list(dict.fromkeys(node._ctx.fn.__name__ for node in topological_order(out)
                              if node._ctx is not None and not node._ctx.freed))


def _numeric_gradient(x: Any, loss: Callable[[], float], eps: float) -> np.ndarray:
    """Central differences of loss() with respect to every element of the array x (perturbed in place)."""
    numeric = np.zeros(x.shape)
    flat = x.reshape(-1)  # a view: perturbing it perturbs the input
    for j in range(flat.size):
        orig = float(flat[j])
        flat[j] = orig + eps
        plus = loss()
        flat[j] = orig - eps
        minus = loss()
        flat[j] = orig
        numeric.reshape(-1)[j] = (plus - minus) / (2 * eps)
    return numeric


def _compare(label: str, index: int, analytic: np.ndarray, numeric: np.ndarray, atol: float, rtol: float,
             what: str = "gradient") -> None:
    err = np.abs(analytic - numeric)
    bad = err > atol + rtol * np.abs(numeric)
    if not bad.any():
        return
    worst = np.argsort(-(err - rtol * np.abs(numeric)).reshape(-1))[:5]
    rows = []
    for flat in worst:
        idx = np.unravel_index(flat, numeric.shape) if numeric.ndim else ()
        rows.append(f"    {str(tuple(int(v) for v in idx)):>16}  analytic {analytic.reshape(-1)[flat]: .8e}  "
                    f"numeric {numeric.reshape(-1)[flat]: .8e}  abs err {err.reshape(-1)[flat]:.2e}")
    first = worst[0]
    idx0 = tuple(int(v) for v in np.unravel_index(first, numeric.shape)) if numeric.ndim else ()
    raise GradcheckError(
        f"gradcheck failed for {label}, input {index}, {what}: {int(bad.sum())} of {bad.size} entries off; "
        f"worst at {idx0}: analytic {analytic.reshape(-1)[first]:.8e} vs numeric {numeric.reshape(-1)[first]:.8e} "
        f"(max abs err {err.max():.2e}, atol {atol}, rtol {rtol})\n    worst entries:\n" + "\n".join(rows))
