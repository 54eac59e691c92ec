"""Gradient-check specs: every minigrad Function subclass needs at least one Case here.

A Case is a function of a library namespace ``lib`` (minigrad or torch, see
``minigrad_lib``/``torch_lib``) and input tensors, plus how to draw those inputs.
The same Case drives the finite-difference check, the float32-vs-float64 check and
the PyTorch parity check. Inputs are drawn away from kinks (relu at 0, ties in max)
and from poles (log, sqrt, div near 0); exact tests pin those points separately.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np


@dataclass
class Case:
    fn: Callable[..., Any]
    shapes: list
    domain: str = "normal"  # normal | positive | away0 | distinct
    float32: bool = True  # the float32-vs-float64 comparison applies
    torch: bool = True  # a PyTorch parity check applies
    note: str = ""


def draw(shape: tuple, domain: str, rng: np.random.Generator) -> np.ndarray:
    """Inputs in a domain where the op is smooth."""
    if domain == "positive":
        return rng.uniform(0.5, 2.0, shape)
    if domain == "away0":
        return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 2.0, shape)
    if domain == "distinct":  # no ties anywhere: a shuffled ramp
        n = int(np.prod(shape)) if shape else 1
        return rng.permutation(np.linspace(-2.0, 2.0, n)).reshape(shape)
    return rng.standard_normal(shape)


IDX = np.array([[0, 2], [1, 1], [3, 0]])
IDS = np.array([[1, 4, 4], [0, 2, 1]])
TARGETS = np.array([1, 0, 3, 3, 2])
TARGETS_IGN = np.array([1, -100, 3, 0, -100])
CLASS_W = np.array([0.5, 2.0, 1.0, 3.0])
BIG_IDS = np.random.default_rng(1).integers(0, 50, (4, 10))  # repeats: the scatter-add accumulates
BIG_TARGETS = np.where(np.arange(32) % 7 == 0, -100, np.random.default_rng(2).integers(0, 50, 32))


SPECS: dict[str, list[Case]] = {
    # ---------------- elementwise
    "Add": [Case(lambda lib, x, y: x + y, [(3, 4), (3, 4)]),
            Case(lambda lib, x, y: x.T + y, [(4, 3), (3, 4)], note="non-contiguous (transposed) input"),
            Case(lambda lib, x, y: x + y, [(), (2, 3)], note="0-d tensor"),
            Case(lambda lib, x, y: x + y, [(3, 1), (1, 4)], note="broadcast both"),
            Case(lambda lib, x, y: x + y, [(2, 3, 4), (4,)], note="broadcast rank")],
    "Sub": [Case(lambda lib, x, y: x - y, [(3, 4), (4,)]), Case(lambda lib, x: 2.0 - x, [(5,)])],
    "Mul": [Case(lambda lib, x, y: x * y, [(3, 4), (3, 1)]), Case(lambda lib, x: x * 3.0, [()])],
    "Div": [Case(lambda lib, x, y: x / y, [(3, 4), (3, 4)], domain="positive"),
            Case(lambda lib, x: 1.5 / x, [(4,)], domain="positive")],
    # a rounded quotient is piecewise constant: zero gradient (quotients in (0.07, 0.3): no jump nearby)
    "DivRounded": [Case(lambda lib, x, y: x.div(y * 0.0 + 7.0, rounding_mode="floor") + x, [(3, 4), (4,)],
                        domain="positive"),
                   Case(lambda lib, x, y: x.div(y + 6.0, rounding_mode="trunc") * y, [(5,), (5,)], domain="positive")],
    "Neg": [Case(lambda lib, x: -x, [(2, 3)])],
    "Pow": [Case(lambda lib, x, y: x ** y, [(3, 4), (3, 4)], domain="positive"),
            Case(lambda lib, x: 2.0 ** x, [(5,)])],
    "PowScalar": [Case(lambda lib, x: x ** 2, [(3, 4)]), Case(lambda lib, x: x ** 3, [(6,)]),
                  Case(lambda lib, x: x ** 0.5, [(6,)], domain="positive"),
                  Case(lambda lib, x: x ** -1.5, [(6,)], domain="positive"),
                  Case(lambda lib, x: x ** -1, [(6,)], domain="positive")],
    "Exp": [Case(lambda lib, x: x.exp(), [(3, 4)])],
    "Log": [Case(lambda lib, x: x.log(), [(3, 4)], domain="positive")],
    "Sqrt": [Case(lambda lib, x: x.sqrt(), [(3, 4)], domain="positive")],
    "Tanh": [Case(lambda lib, x: x.tanh(), [(3, 4)])],
    "Sigmoid": [Case(lambda lib, x: x.sigmoid(), [(3, 4)])],
    "Relu": [Case(lambda lib, x: x.relu(), [(3, 4)], domain="away0")],
    "Abs": [Case(lambda lib, x: x.abs(), [(3, 4)], domain="away0")],
    "Maximum": [Case(lambda lib, x, y: lib.maximum(x, y), [(12,), (12,)], domain="distinct"),
                Case(lambda lib, x, y: lib.maximum(x, y), [(3, 4), (4,)], domain="distinct")],
    "Minimum": [Case(lambda lib, x, y: lib.minimum(x, y), [(12,), (12,)], domain="distinct")],
    "Where": [Case(lambda lib, x, y: lib.where(lib.tensor(np.array([True, False, True, True])), x, y),
                   [(3, 4), (3, 4)]),
              Case(lambda lib, x, y: lib.where(x > 0, x, y), [(3, 4), (1, 4)], domain="away0")],
    "Clip": [Case(lambda lib, x: x.clamp(-0.5, 0.7), [(4, 5)], domain="distinct"),
             Case(lambda lib, x: x.clamp(min=0.1), [(9,)], domain="distinct")],
    # tensor bounds, shifted off the inputs' grid (no ties: the gradient has a kink there); some min > max
    "ClampTensor": [Case(lambda lib, x, lo, hi: x.clamp(lo * 0.5 - 0.3, hi * 0.5 + 0.3), [(4, 5), (5,), (4, 1)],
                         domain="distinct"),
                    Case(lambda lib, x, lo: x.clamp(min=lo * 0.5 - 0.3), [(3, 4), (4,)], domain="distinct"),
                    Case(lambda lib, x, hi: x.clamp(max=hi * 0.5 + 0.3), [(6,), (2, 1)], domain="distinct")],
    "Cast": [Case(lambda lib, x: lib.cast(x, "float64") * 2.0, [(3,)], float32=False, torch=False)],
    "Clone": [Case(lambda lib, x: x.clone() * 2.0, [(3, 4)])],
    # in-place ops on a tensor in the graph are recorded: fill_/zero_ cut the old value off, copy_ takes src's
    "Fill": [Case(lambda lib, x: (x * 2.0).fill_(0.5) * x, [(3, 4)]),
             Case(lambda lib, x: (x * 2.0).zero_() + x.exp(), [(5,)])],
    "CopyInto": [Case(lambda lib, x, y: (x * 1.0).copy_(y) * x, [(3, 4), (4,)]),
                 Case(lambda lib, x, y: (x * 3.0).copy_(y).sum(0) + x.sum(0), [(2, 3), (2, 3)])],
    # ---------------- reductions
    "Sum": [Case(lambda lib, x: x.sum(), [(3, 4)]), Case(lambda lib, x: x.sum(dim=1), [(3, 4)]),
            Case(lambda lib, x: x.sum(dim=(0, 2), keepdim=True), [(2, 3, 4)])],
    "Mean": [Case(lambda lib, x: x.mean(), [(3, 4)]), Case(lambda lib, x: x.mean(dim=-1, keepdim=True), [(3, 4)])],
    "Max": [Case(lambda lib, x: x.amax(), [(3, 4)], domain="distinct"),
            Case(lambda lib, x: x.amax(dim=1), [(3, 4)], domain="distinct"),
            Case(lambda lib, x: x.amin(dim=(0, 2), keepdim=True), [(2, 3, 4)], domain="distinct"),
            Case(lambda lib, x: x.max(), [(5,)], domain="distinct"),
            Case(lambda lib, x: x.min(), [(2, 3)], domain="distinct")],
    "Var": [Case(lambda lib, x: x.var(), [(3, 4)]), Case(lambda lib, x: x.var(dim=1, keepdim=True), [(3, 4)]),
            Case(lambda lib, x: x.var(dim=0, correction=0), [(5, 2)]),
            Case(lambda lib, x: x.std(dim=1), [(3, 4)])],
    "Std": [Case(lambda lib, x: x.std(), [(3, 4)]), Case(lambda lib, x: x.std(0, False, True), [(4, 3)]),
            Case(lambda lib, x: x.std(dim=(0, 2), correction=1.5), [(3, 2, 4)])],
    "LogSumExp": [Case(lambda lib, x: x.logsumexp(dim=1), [(3, 4)]),
                  Case(lambda lib, x: x.logsumexp(dim=(0, 1), keepdim=True), [(2, 3)])],
    # ---------------- movement
    "Reshape": [Case(lambda lib, x: x.reshape(4, 3), [(3, 4)]), Case(lambda lib, x: x.view(-1), [(2, 3)]),
                Case(lambda lib, x: x.unsqueeze(1).squeeze(1).flatten(), [(2, 3)]),
                Case(lambda lib, x: x.squeeze(), [(1, 3, 1)]), Case(lambda lib, x: x.unsqueeze(-1), [(3,)]),
                Case(lambda lib, x: x.flatten(1), [(2, 3, 2)])],
    "Permute": [Case(lambda lib, x: x.permute(2, 0, 1), [(2, 3, 4)]), Case(lambda lib, x: x.T, [(3, 4)]),
                Case(lambda lib, x: x.transpose(0, 1), [(3, 4)])],
    "Expand": [Case(lambda lib, x: x.expand(2, 3, 4), [(3, 1)]),
               Case(lambda lib, x: x.broadcast_to((2, 4)), [(4,)]),
               Case(lambda lib, x: x.expand(-1, 3), [(2, 1)])],
    "GetItem": [Case(lambda lib, x: x[1:, ::2], [(3, 4)]), Case(lambda lib, x: x[:, 1], [(3, 4)]),
                Case(lambda lib, x: x[lib.tensor(np.array([0, 2, 0, 1]))], [(3, 4)], note="repeated rows"),
                Case(lambda lib, x: x[lib.tensor(np.array([0, 2, 2])), lib.tensor(np.array([1, 3, 3]))], [(3, 4)]),
                Case(lambda lib, x: x.split(2, dim=1)[1], [(3, 5)]),
                Case(lambda lib, x: x.chunk(2, dim=0)[0], [(4, 3)])],
    "Gather": [Case(lambda lib, x: x.gather(1, lib.tensor(IDX)), [(3, 4)]),
               Case(lambda lib, x: x.max(dim=1)[0], [(3, 4)], domain="distinct"),
               Case(lambda lib, x: x.min(dim=0, keepdim=True)[0], [(3, 4)], domain="distinct")],
    "Cat": [Case(lambda lib, x, y: lib.cat([x, y], dim=1), [(2, 3), (2, 2)]),
            Case(lambda lib, x, y: lib.cat([x, y, x], dim=0), [(1, 3), (2, 3)])],
    "Stack": [Case(lambda lib, x, y: lib.stack([x, y], dim=1), [(2, 3), (2, 3)])],
    # ---------------- linear algebra
    "MatMul": [Case(lambda lib, a, b: a @ b, [(3, 4), (4, 2)]), Case(lambda lib, a, b: a @ b, [(4,), (4, 3)]),
               Case(lambda lib, a, b: a @ b, [(3, 4), (4,)]), Case(lambda lib, a, b: a @ b, [(4,), (4,)]),
               Case(lambda lib, a, b: a @ b, [(2, 3, 4), (4, 2)]),
               Case(lambda lib, a, b: a @ b, [(2, 1, 3, 4), (3, 4, 2)], note="batch broadcast"),
               Case(lambda lib, a, b: a.T @ b, [(4, 3), (4, 2)], note="transposed view"),
               Case(lambda lib, a, b: a @ b, [(2, 8, 16), (16, 12)], note="projection check")],
    # ---------------- fused
    "Linear": [Case(lambda lib, x, w, b: lib.F.linear(x, w, b), [(2, 3, 4), (5, 4), (5,)]),
               Case(lambda lib, x, w: lib.F.linear(x, w), [(3, 4), (2, 4)])],
    "PackedSelfAttention": [Case(lambda lib, qkv: lib.packed_attention(qkv, 2), [(2, 3, 12)]),
                            Case(lambda lib, qkv: lib.packed_attention(qkv, 3), [(2, 5, 18)],
                                 note="projection check")],
    "Embedding": [Case(lambda lib, w: lib.F.embedding(lib.tensor(IDS), w), [(5, 3)]),
                  Case(lambda lib, w: lib.F.embedding(lib.tensor(BIG_IDS), w), [(50, 8)], note="projection check")],
    "Softmax": [Case(lambda lib, x: lib.F.softmax(x, dim=-1), [(3, 5)]),
                Case(lambda lib, x: lib.F.softmax(x, dim=0), [(3, 5)]),
                Case(lambda lib, x: lib.F.softmax(x, dim=-1), [(6, 40)], note="projection check")],
    "LogSoftmax": [Case(lambda lib, x: lib.F.log_softmax(x, dim=-1), [(3, 5)]),
                   Case(lambda lib, x: lib.F.log_softmax(x, dim=1), [(2, 3, 4)])],
    "CrossEntropy": [Case(lambda lib, x: lib.F.cross_entropy(x, lib.tensor(TARGETS)), [(5, 4)]),
                     Case(lambda lib, x: lib.F.cross_entropy(x, lib.tensor(TARGETS_IGN), ignore_index=-100), [(5, 4)]),
                     Case(lambda lib, x: lib.F.cross_entropy(x, lib.tensor(TARGETS), reduction="sum"), [(5, 4)]),
                     Case(lambda lib, x: lib.F.cross_entropy(x, lib.tensor(TARGETS_IGN), reduction="none"), [(5, 4)]),
                     Case(lambda lib, x: lib.F.cross_entropy(x, lib.tensor(TARGETS[:4].reshape(2, 2))), [(2, 4, 2)],
                          note="(N, C, d) layout"),
                     Case(lambda lib, x: lib.F.cross_entropy(x, lib.tensor(BIG_TARGETS)), [(32, 50)],
                          note="projection check")],
    "NLLLoss": [Case(lambda lib, x: lib.F.nll_loss(x, lib.tensor(TARGETS_IGN), weight=lib.tensor(CLASS_W)), [(5, 4)],
                     note="class weights + ignore_index, mean over the kept weights"),
                Case(lambda lib, x: lib.F.nll_loss(x, lib.tensor(TARGETS[:4].reshape(2, 2)), reduction="none"),
                     [(2, 4, 2)], note="(N, C, d) layout"),
                Case(lambda lib, x: lib.F.nll_loss(x, lib.tensor(TARGETS[2])), [(4,)], note="(C,) input, 0-d target"),
                Case(lambda lib, x: lib.F.cross_entropy(x, lib.tensor(TARGETS_IGN), weight=lib.tensor(CLASS_W),
                                                        label_smoothing=0.2), [(5, 4)], note="label smoothing"),
                Case(lambda lib, x: lib.F.cross_entropy(x, lib.tensor(TARGETS[:4].reshape(2, 2)), label_smoothing=0.1,
                                                        reduction="sum"), [(2, 4, 2)], note="projection check")],
    "LayerNorm": [Case(lambda lib, x, w, b: lib.F.layer_norm(x, (6,), w, b), [(4, 6), (6,), (6,)]),
                  Case(lambda lib, x: lib.F.layer_norm(x, (6,)), [(2, 3, 6)], note="no affine: sum is constant"),
                  Case(lambda lib, x, w, b: lib.F.layer_norm(x, (2, 3), w, b), [(2, 2, 3), (2, 3), (2, 3)]),
                  Case(lambda lib, x, w, b: lib.F.layer_norm(x, (32,), w, b), [(4, 8, 32), (32,), (32,)],
                       note="projection check")],
    "Gelu": [Case(lambda lib, x: lib.F.gelu(x), [(3, 5)]), Case(lambda lib, x: lib.F.gelu(x, approximate="tanh"), [(3, 5)]),
             Case(lambda lib, x: lib.F.gelu(x, approximate="tanh"), [(10, 20)], note="projection check")],
    "Dropout": [Case(lambda lib, x: lib.dropout_seeded(x, 0.3), [(4, 5)], float32=False, torch=False)],
    "ScaledDotProductAttention": [
        Case(lambda lib, q, k, v: lib.F.scaled_dot_product_attention(q, k, v, is_causal=True), [(1, 2, 3, 2)] * 3),
        Case(lambda lib, q, k, v: lib.F.scaled_dot_product_attention(q, k, v), [(2, 4, 3), (2, 5, 3), (2, 5, 2)]),
        Case(lambda lib, q, k, v: lib.F.scaled_dot_product_attention(
            q, k, v, attn_mask=lib.tensor(np.tril(np.ones((3, 3), dtype=bool)))), [(1, 3, 2)] * 3, note="bool mask"),
        Case(lambda lib, q, k, v, m: lib.F.scaled_dot_product_attention(q, k, v, attn_mask=m),
             [(2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 4), (2, 1, 3, 5)], note="float mask with a gradient, broadcast"),
        Case(lambda lib, q, k, v: lib.F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3),
             [(1, 2, 2, 3), (1, 2, 5, 3), (1, 2, 5, 3)], note="causal top left with Tq < Tk, scale="),
        Case(lambda lib, q, k, v: lib.F.scaled_dot_product_attention(q, k, v, is_causal=True), [(2, 2, 7, 4)] * 3,
             note="projection check"),
        Case(lambda lib, q, k, v: lib.sdpa_dropout_seeded(q, k, v, 0.25), [(1, 2, 3, 2)] * 3,
             float32=False, torch=False)],
}


def minigrad_lib() -> SimpleNamespace:
    """The namespace the cases call into, for minigrad."""
    import minigrad as mg
    from minigrad.nn import functional as F

    def dropout_seeded(x: Any, p: float) -> Any:
        mg.manual_seed(0)
        return F.dropout(x, p)

    def sdpa_dropout_seeded(q: Any, k: Any, v: Any, p: float) -> Any:
        mg.manual_seed(0)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)

    return SimpleNamespace(packed_attention=F.packed_self_attention, tensor=mg.tensor, cat=mg.cat, stack=mg.stack, where=mg.where, maximum=mg.maximum,
                           minimum=mg.minimum, F=F, cast=_cast,
                           dropout_seeded=dropout_seeded, sdpa_dropout_seeded=sdpa_dropout_seeded)


def _cast(x: Any, dtype: str) -> Any:
    from minigrad.ops.elementwise import Cast
    return Cast.apply(x, dtype=np.dtype(dtype))


def torch_lib() -> SimpleNamespace:
    """The same namespace for PyTorch."""
    import torch
    import torch.nn.functional as F
    def packed_attention(qkv: Any, n_heads: int) -> Any:  # split heads, causal SDPA, merge heads
        b, t, c3 = qkv.shape
        heads = [x.reshape(b, t, n_heads, -1).transpose(1, 2) for x in qkv.split(c3 // 3, dim=-1)]
        return F.scaled_dot_product_attention(*heads, is_causal=True).transpose(1, 2).reshape(b, t, c3 // 3)

    return SimpleNamespace(tensor=lambda a: torch.tensor(a), cat=torch.cat, stack=torch.stack, where=torch.where,
                           maximum=torch.maximum, minimum=torch.minimum, F=F, packed_attention=packed_attention)


def all_cases() -> list[tuple[str, int, Case]]:
    return [(name, i, case) for name, cases in SPECS.items() for i, case in enumerate(cases)]
