"""minigrad.viz (DOT text of a graph) and minigrad.trace (backward, op by op)."""
from __future__ import annotations

import io
import shutil

import numpy as np
import pytest

import minigrad as mg


def small_graph():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    w = mg.tensor([[0.5], [0.25]], requires_grad=True)
    return x, w, (x @ w).tanh().sum()


def test_draw_lists_every_op_and_tensor_with_shapes_and_values():
    x, w, y = small_graph()
    dot = str(mg.viz.draw(y))
    assert dot.startswith("digraph minigrad {") and dot.rstrip().endswith("}")
    for op in ("MatMul", "Tanh", "Sum"):
        assert f'label="{op}"' in dot
    assert dot.count("shape=ellipse") == 5 and dot.count("shape=box") == 3
    assert dot.count("->") == 3 + 4  # op -> output, plus inputs -> op
    assert "(2, 1) float32" in dot and "data [1., 2.]" in dot and "leaf" in dot
    y.backward()
    assert "grad [" in str(mg.viz.draw(x))  # a leaf alone, with its gradient
    assert "(freed)" in str(mg.viz.draw(y))  # backward freed the graph


def test_draw_hides_values_of_big_tensors():
    x = mg.randn(10, 10, requires_grad=True)
    dot = str(mg.viz.draw((x * 2).sum(), show_values=8))
    assert "(10, 10) float32" in dot and "data" not in dot.split("(10, 10) float32")[1].split('"')[0]


def test_render_needs_graphviz_or_says_how_to_get_it(tmp_path):
    _, _, y = small_graph()
    g = mg.viz.draw(y)
    try:
        import graphviz  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install graphviz"):
            g.render(str(tmp_path / "g"))
        assert g._repr_svg_() is None
        return
    if shutil.which("dot") is None:
        pytest.skip("the graphviz package is installed but not the dot program")
    path = g.render(str(tmp_path / "g"), format="svg")
    assert open(path).read().lstrip().startswith(("<?xml", "<svg"))


def test_trace_prints_each_op_with_its_gradient_norms():
    x, w, y = small_graph()
    out = io.StringIO()
    with mg.trace(file=out) as t:
        y.backward()
    lines = out.getvalue().splitlines()
    assert lines == t.lines
    assert [l.split(".", 1)[1].split("(")[0].strip() for l in lines if l[:4].strip().rstrip(".").isdigit()] == \
        ["Sum", "Tanh", "MatMul"]
    assert "input 1 (2, 1) (leaf)" in out.getvalue() and "leaf (2,): .grad += grad of norm" in out.getvalue()
    # the norms printed are the real ones
    gx = float((x.grad.numpy() ** 2).sum()) ** 0.5
    assert f"leaf (2,): .grad += grad of norm {gx:.4g}" in out.getvalue()


def test_trace_is_off_outside_the_block():
    _, _, y = small_graph()
    with mg.trace(file=io.StringIO()):
        pass
    out = io.StringIO()
    import contextlib
    with contextlib.redirect_stdout(out):
        y.backward()
    assert out.getvalue() == ""


def test_retain_grad_keeps_a_non_leafs_gradient_like_torch():
    torch = pytest.importorskip("torch")
    results = []
    for lib in (mg, torch):
        x = lib.tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
        h = x * x
        h.retain_grad()
        y = (h.tanh() * 2).sum()
        y.retain_grad()
        y.backward()
        assert h.retains_grad and not x.retains_grad
        results.append((h.grad.detach().numpy().copy(), float(y.grad), x.grad.detach().numpy().copy()))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    with pytest.raises(RuntimeError, match="requires_grad=False"):
        mg.tensor([1.0]).retain_grad()
