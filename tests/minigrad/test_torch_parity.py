"""Each op's forward and backward against PyTorch on the same float64 inputs (skips without torch)."""
from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
from tests.minigrad.op_specs import all_cases, draw, minigrad_lib, torch_lib

torch = pytest.importorskip("torch")
MG, TORCH = minigrad_lib(), torch_lib()
CASES = [(n, i, c) for n, i, c in all_cases() if c.torch]


@pytest.mark.parametrize("name,i,case", CASES, ids=[f"{n}-{i}" for n, i, _ in CASES])
def test_matches_torch(name, i, case):
    rng = np.random.default_rng(0)
    arrays = [draw(s, case.domain, rng) for s in case.shapes]
    ours = [mg.tensor(a, dtype="float64", requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out, ref = case.fn(MG, *ours), case.fn(TORCH, *theirs)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = rng.standard_normal(ref.shape)
    out.backward(mg.tensor(g, dtype="float64"))
    ref.backward(torch.tensor(g))
    for k, (a, b) in enumerate(zip(ours, theirs)):
        expected = np.zeros(a.shape) if b.grad is None else b.grad.numpy()
        got = np.zeros(a.shape) if a.grad is None else a.grad.numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12, err_msg=f"{name}[{i}] input {k}")
