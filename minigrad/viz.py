"""See a graph: `minigrad.viz.draw(loss)` turns the ops that made a Tensor into Graphviz DOT text.

No dependency is needed for the DOT text (paste it into any Graphviz viewer). With the optional
`graphviz` package and the `dot` program installed (`pip install -e ".[viz]"` plus your system's
graphviz), `.render("graph", format="svg")` writes a picture and Jupyter shows the graph inline.

    import minigrad as mg
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    g = mg.viz.draw(y)      # a Graph: print(g) for the DOT text, g in a notebook for the picture

Each op is a box (its Function's name); each tensor an ellipse with its shape and dtype, its value
and gradient when it has at most `show_values` elements, and "leaf" for tensors you made yourself.
Draw before backward to see the whole graph: backward frees it (unless retain_graph=True), and a
freed op is drawn with "(freed)".
"""
from __future__ import annotations

import html
from typing import Any

import numpy as np

from minigrad import autograd
from minigrad.tensor import Tensor


class Graph:
    """DOT text of a graph, rendered by the optional graphviz package when present."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __str__(self) -> str:
        return self.source

    def __repr__(self) -> str:
        return f"<minigrad.viz.Graph: {self.source.count('->')} edges; print() it for the DOT text>"

    def _graphviz(self) -> Any:
        try:
            import graphviz
        except ImportError:
            raise ImportError("rendering needs the graphviz package and the dot program: pip install graphviz "
                              "(and apt install graphviz / brew install graphviz); print(graph) gives DOT text") from None
        return graphviz.Source(self.source)

    def render(self, filename: str, format: str = "svg") -> str:
        """Write filename.<format> with graphviz's dot; returns the path written."""
        return self._graphviz().render(filename, format=format, cleanup=True)

    def _repr_svg_(self) -> "str | None":  # Jupyter: an inline picture when graphviz can draw it
        try:
            return self._graphviz().pipe(format="svg").decode("utf-8")
        except Exception:  # no graphviz: Jupyter falls back to repr()
            return None


def _summary(t: Tensor, show_values: int) -> str:
    lines = [f"{tuple(t.shape)} {t.dtype}"]
    if t.data.size <= show_values:
        lines.append("data " + np.array2string(t.numpy(), precision=4, separator=", "))
        if t.grad is not None:
            lines.append("grad " + np.array2string(t.grad.numpy(), precision=4, separator=", "))
    return "\n".join(lines)


def draw(root: Tensor, show_values: int = 8, rankdir: str = "LR") -> Graph:
    """The graph of ops that made root, as DOT text (tensors as ellipses, ops as boxes)."""
    nodes = autograd.topological_order(root) if root.requires_grad else [root]
    out = ["digraph minigrad {", f"  rankdir={rankdir};", '  node [fontname="Helvetica", fontsize=10];']

    def tensor_id(t: Tensor) -> str:
        return f"t{id(t)}"

    for t in nodes:
        kind = "leaf" if t._ctx is None else ""
        label = _summary(t, show_values) + (f"\n{kind}" if kind else "")
        fill = "lightblue" if t._ctx is None and t.requires_grad else "white"
        if t is root:
            fill = "palegreen"
        out.append(f'  {tensor_id(t)} [shape=ellipse, style=filled, fillcolor="{fill}", '
                   f'label="{_escape(label)}"];')
        ctx = t._ctx
        if ctx is None:
            continue
        op = f"op{id(t)}"
        name = ctx.fn.__name__ + (" (freed)" if ctx.freed else "")
        out.append(f'  {op} [shape=box, style=filled, fillcolor="lightyellow", label="{_escape(name)}"];')
        out.append(f"  {op} -> {tensor_id(t)};")
        if not ctx.freed:
            for i, parent in enumerate(ctx.inputs):
                if parent.requires_grad:
                    out.append(f'  {tensor_id(parent)} -> {op} [label="{i}", fontsize=8];')
    out.append("}")
    return Graph("\n".join(out))


def _escape(text: str) -> str:
    return html.escape(text, quote=True).replace("\n", "\\n")
