"""In-place changes and autograd: torch's version-counter semantics, checked case by case against torch.

Each in-place op bumps the tensor's version; backward refuses an array an op saved if its tensor
changed since. In-place ops on tensors in the graph are recorded; on a leaf that requires grad they
are refused outside no_grad.
"""
from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg

torch = pytest.importorskip("torch")

# Each case is source code run with `lib` bound to minigrad or torch; it either leaves `out`
# (a list of arrays to compare) or raises. Both libraries must do the same.
CASES = {
    "issue: x += 10 after w*x": """
w = lib.tensor([1., 2.], requires_grad=True); x = lib.tensor([3., 4.])
y = (w * x).sum(); x += 10; y.backward()""",
    "exp result zeroed": """
w = lib.tensor([1., 2.], requires_grad=True); h = w.exp(); h.zero_(); h.sum().backward()""",
    "leaf zero_": """
w = lib.tensor([1., 2.], requires_grad=True); w.zero_()""",
    "leaf += outside no_grad": """
w = lib.tensor([1., 2.], requires_grad=True); w += 1""",
    "no_grad update after building a graph": """
w = lib.tensor([1., 2.], requires_grad=True); y = (w * w).sum()
with no_grad():
    w -= 0.5
y.backward()""",
    "zero_ on a non-leaf stops the gradient": """
x = lib.tensor([1., 2.], requires_grad=True); y = x * 3; y.zero_(); y.sum().backward(); out = [x.grad]""",
    "add into a non-leaf is recorded": """
x = lib.tensor([1., 2.], requires_grad=True); y = x * 3; y += x; y *= x; y.sum().backward(); out = [x.grad, y]""",
    "add a tensor that needs grad into a plain tensor": """
w = lib.tensor([1., 2.], requires_grad=True); x = lib.tensor([5., 6.]); x += w * 2; (x * x).sum().backward()
out = [w.grad, x]""",
    "fill_ then use": """
x = lib.tensor([1., 2., 3.], requires_grad=True); y = x * 2; y.fill_(4.0); (y * x).sum().backward(); out = [x.grad]""",
    "copy_ into a non-leaf": """
x = lib.tensor([1., 2.], requires_grad=True); s = lib.tensor([5.], requires_grad=True)
y = x * 1.0; y.copy_(s); (y * x).sum().backward(); out = [x.grad, s.grad]""",
    "clamp_ on a non-leaf": """
x = lib.tensor([-2., 0.5, 3.], requires_grad=True); y = x * 1.0; y.clamp_(-1, 1); y.sum().backward(); out = [x.grad]""",
    "in-place after a sum is fine (sum saves nothing)": """
x = lib.tensor([1., 2.], requires_grad=True); y = x * 1.0; z = y.sum(); y += 1; z.backward(); out = [x.grad]""",
    "in-place on a tensor mul saved": """
x = lib.tensor([1., 2.], requires_grad=True); y = x * 1.0; z = (y * y).sum(); y += 1; z.backward()""",
    "optimizer step between two backwards": """
w = lib.tensor([1., 2.], requires_grad=True); loss = (w * w).sum()
opt = SGD([w], lr=0.1); loss.backward(retain_graph=True); opt.step(); loss.backward()""",
    "no_grad in-place on an unrelated tensor": """
w = lib.tensor([1., 2.], requires_grad=True); x = lib.tensor([3., 4.]); y = (w + x).sum()
with no_grad():
    x *= 2
y.backward(); out = [w.grad]""",
    "the version counter": """
x = lib.tensor([1., 2.]); v0 = x._version; x += 1; x.mul_(2); x.zero_(); out = [lib.tensor([x._version - v0])]""",
    "a view shares its base's version": """
x = lib.tensor([[1., 2.], [3., 4.]]); v = x[0]; v += 1; out = [x, lib.tensor([x._version])]""",
    "integer tensor += float refused": """
x = lib.tensor([1, 2]); x += 1.5""",
}


def run_case(code: str, lib) -> tuple[str, list]:
    ns = {"lib": lib, "no_grad": lib.no_grad, "SGD": lib.optim.SGD}
    try:
        exec(code, ns)
    except RuntimeError as e:
        return "error", [str(e)]
    return "ok", [np.asarray(t.detach().numpy() if hasattr(t, "detach") else t, dtype=np.float64)
                  for t in ns.get("out", [])]


@pytest.mark.parametrize("name", list(CASES))
def test_inplace_semantics_match_torch(name):
    code = CASES[name].strip()
    mine, theirs = run_case(code, mg), run_case(code, torch)
    assert mine[0] == theirs[0], (mine, theirs)
    if mine[0] == "ok":
        assert len(mine[1]) == len(theirs[1])
        for a, b in zip(mine[1], theirs[1]):
            np.testing.assert_allclose(a, b, rtol=1e-6)


def test_the_error_names_the_op_and_the_versions():
    w = mg.tensor([1.0, 2.0], requires_grad=True)
    h = w.exp()
    h.zero_()
    with pytest.raises(RuntimeError, match=r"modified by an inplace operation: .*Exp saved \(its output\) is at "
                                           r"version 1; expected version 0"):
        h.sum().backward()


def test_training_steps_do_not_trip_the_check():
    model = mg.nn.Linear(3, 2)
    opt = mg.optim.AdamW(model.parameters(), lr=0.1)
    x = mg.randn(4, 3)
    for _ in range(3):
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model.weight._version == 3 + 1  # three steps after the init's one write
