"""Flat parameter/gradient buffers (optim.flat): the same numbers as per-parameter updates, in one pass."""
from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn


def mlp(seed: int = 0, dtype: str = "float64") -> nn.Module:
    mg.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.GELU(), nn.LayerNorm(7), nn.Linear(7, 3)).to(dtype)


def groups(model: nn.Module) -> list:
    decay = [p for p in model.parameters() if p.ndim == 2]
    rest = [p for p in model.parameters() if p.ndim != 2]
    return [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}]


def train(model: nn.Module, opt, steps: int, clip: float | None = 1.0, skip: bool = False) -> list:
    rng = np.random.default_rng(1)
    out = []
    for _ in range(steps):
        x = mg.tensor(rng.standard_normal((4, 5)), dtype=model[0].weight.dtype)
        body = model[:3] if skip else model  # skip: the last layer gets no gradient
        loss = body(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        if clip is not None:
            out.append(float(mg.optim.clip_grad_norm_(model.parameters(), clip).item()))
        opt.step()
        out.append(loss.item())
    return out


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("make", [
    lambda ps, flat: mg.optim.AdamW(ps, lr=1e-2, flat=flat),
    lambda ps, flat: mg.optim.SGD(ps, lr=1e-2, momentum=0.9, flat=flat),
], ids=["adamw", "sgd"])
def test_flat_gives_the_same_bits_as_per_parameter_updates(make, dtype):
    a, b = mlp(dtype=dtype), mlp(dtype=dtype)
    ra = train(a, make(groups(a), False), 6, clip=None)
    rb = train(b, make(groups(b), True), 6, clip=None)
    assert ra == rb
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert np.array_equal(pa.numpy(), pb.numpy())


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-13), ("float32", 1e-5)])
def test_the_clip_norm_in_one_pass_differs_only_by_summation_order(dtype, tol):
    a, b = mlp(dtype=dtype), mlp(dtype=dtype)
    ra = train(a, mg.optim.AdamW(groups(a), lr=1e-2), 6, clip=0.5)
    rb = train(b, mg.optim.AdamW(groups(b), lr=1e-2, flat=True), 6, clip=0.5)
    np.testing.assert_allclose(ra, rb, rtol=tol)


def test_parameters_and_gradients_are_views_of_two_flat_arrays():
    model = mlp()
    opt = mg.optim.AdamW(groups(model), flat=True)
    train(model, opt, 1)
    flat = opt._flat
    n = sum(p.numel() for p in model.parameters())
    assert flat.data.shape == (n,) and opt.flat_grad.shape == (n,)
    for p in model.parameters():
        assert np.shares_memory(p.data, flat.data) and np.shares_memory(p.grad.data, opt.flat_grad)
        assert np.shares_memory(opt.state[p]["exp_avg"], opt._moments[0])
    flat.data[:] = 0.5  # writing the flat array is writing the parameters
    assert all((p.numpy() == 0.5).all() for p in model.parameters())


def test_state_dict_is_per_parameter_and_a_reload_continues_identically():
    a, b = mlp(), mlp()
    opt_a = mg.optim.AdamW(groups(a), lr=1e-2, flat=True)
    train(a, opt_a, 3, clip=None)
    state = opt_a.state_dict()
    assert set(state["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    assert state["state"][0]["exp_avg"].shape == tuple(a[0].weight.shape)
    b.load_state_dict(a.state_dict())
    opt_b = mg.optim.AdamW(groups(b), lr=1e-2, flat=True)
    opt_b.load_state_dict(state)
    assert np.shares_memory(opt_b.state[b[0].weight]["exp_avg"], opt_b._moments[0])
    assert train(a, opt_a, 3, clip=None) == train(b, opt_b, 3, clip=None)


def test_a_parameter_without_a_gradient_falls_back_to_per_parameter_updates():
    a, b = mlp(), mlp()
    ra = train(a, mg.optim.AdamW(groups(a), lr=1e-2), 4, clip=None, skip=True)
    rb = train(b, mg.optim.AdamW(groups(b), lr=1e-2, flat=True), 4, clip=None, skip=True)
    assert ra == rb
    assert all(np.array_equal(pa.numpy(), pb.numpy()) for pa, pb in zip(a.parameters(), b.parameters()))


def test_zero_grad_without_none_zeroes_the_flat_array():
    model = mlp()
    opt = mg.optim.SGD(model.parameters(), lr=0.1, flat=True)
    train(model, opt, 1, clip=None)
    model(mg.randn(2, 5, dtype="float64")).sum().backward()
    opt.zero_grad(set_to_none=False)
    assert not opt.flat_grad.any() and all(p.grad is not None for p in model.parameters())


def test_flat_needs_one_device_and_dtype():
    with pytest.raises(ValueError, match="one device with one dtype"):
        mg.optim.SGD([mg.zeros(2, requires_grad=True), mg.zeros(2, dtype="float64", requires_grad=True)], flat=True)


def test_tinygpt_step_is_the_same_with_flat_buffers():
    from tinygpt import GPTConfig, TinyGPT
    cfg = GPTConfig(vocab_size=40, block_size=8, n_embd=16, n_heads=2, n_layers=2)
    rng = np.random.default_rng(0)
    x, y = (mg.tensor(rng.integers(0, 40, (3, 8))) for _ in range(2))
    results = []
    for flat in (False, True):
        mg.manual_seed(0)
        model = TinyGPT(cfg)
        opt = mg.optim.AdamW(model.param_groups(0.01), lr=1e-2, flat=flat)
        losses = []
        for _ in range(3):
            _, loss = model(x, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        results.append(losses)
    assert results[0] == results[1]
