"""Mistakes that torch refuses at forward are refused at forward here too (not later, at backward)."""
from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
from minigrad.nn import functional as F


def test_linear_with_a_float64_input_and_float32_weights_fails_at_forward():
    layer = mg.nn.Linear(3, 2)
    with pytest.raises(RuntimeError, match=r"expected input and weight to have the same dtype, but got: "
                                           r"double != float"):
        layer(mg.randn(4, 3, dtype="float64"))
    with pytest.raises(RuntimeError, match="same dtype"):
        F.linear(mg.randn(4, 3), mg.randn(2, 3, dtype="float64"))


def test_embedding_backward_with_no_ids_gives_a_zero_gradient():
    emb = mg.nn.Embedding(5, 3)
    out = emb(mg.tensor(np.zeros((0,), dtype=np.int64)))
    assert out.shape == (0, 3)
    out.sum().backward()
    assert emb.weight.grad is not None and not emb.weight.grad.numpy().any()
