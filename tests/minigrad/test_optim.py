"""minigrad.optim: SGD and AdamW step for step against torch.optim, param groups, resumable state, clipping, LR."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

import minigrad as mg
from minigrad.nn import functional as F
from minigrad.nn import Linear, Sequential, Tanh
from minigrad.nn.module import Module
from minigrad.optim import (SGD, AdamW, CosineWithWarmup, LambdaLR, clip_grad_norm_, clip_grad_value_, constant,
                            cosine_with_warmup)

RNG = np.random.default_rng(0)
X = RNG.standard_normal((16, 4))
Y = RNG.integers(0, 3, size=16)


def mlp(dtype: str = "float64") -> Module:
    mg.manual_seed(0)
    return Sequential(Linear(4, 8), Tanh(), Linear(8, 3)).to(dtype)


def loss_of(model: Module, step: int) -> mg.Tensor:
    rows = slice(step % 2 * 8, step % 2 * 8 + 8)  # alternate mini-batches so the gradients change
    x = mg.tensor(X[rows], dtype=model[0].weight.dtype)
    return F.cross_entropy(model(x), mg.tensor(Y[rows]))


def train(model: Module, opt, steps: int, start: int = 0) -> list[float]:
    losses = []
    for step in range(start, start + steps):
        loss = loss_of(model, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def torch_twin(model: Module):
    torch = pytest.importorskip("torch")
    twin = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    twin.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in model.state_dict().items()})
    return twin


def torch_step(twin, opt, step: int) -> None:
    torch = pytest.importorskip("torch")
    rows = slice(step % 2 * 8, step % 2 * 8 + 8)
    loss = torch.nn.functional.cross_entropy(twin(torch.from_numpy(X[rows])), torch.from_numpy(Y[rows]))
    opt.zero_grad()
    loss.backward()
    opt.step()


def assert_same_params(model: Module, twin, step: int, tol: float = 1e-10) -> None:
    expected = dict(twin.named_parameters())
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.numpy(), expected[name].detach().numpy(), rtol=tol, atol=tol,
                                   err_msg=f"{name} after step {step}")


def groups_for(model) -> tuple[list, list]:
    """(decay weights, no-decay biases) of a minigrad or torch model, in the same order."""
    named = list(model.named_parameters())
    return [p for n, p in named if n.endswith("weight")], [p for n, p in named if n.endswith("bias")]


OPTIMIZERS = [
    ("AdamW", dict(lr=1e-2)),
    ("AdamW", dict(lr=3e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.0, amsgrad=True)),
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.1, momentum=0.5, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, weight_decay=0.05, nesterov=True, momentum=0.8)),
]


@pytest.mark.parametrize("name,kwargs", OPTIMIZERS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(OPTIMIZERS)])
def test_twenty_steps_match_torch_optim_step_by_step(name, kwargs):
    torch = pytest.importorskip("torch")
    model = mlp()
    twin = torch_twin(model)
    ours = {"AdamW": AdamW, "SGD": SGD}[name](model.parameters(), **kwargs)
    theirs = getattr(torch.optim, name)(twin.parameters(), **kwargs)
    for step in range(20):
        loss = loss_of(model, step)
        ours.zero_grad()
        loss.backward()
        ours.step()
        torch_step(twin, theirs, step)
        assert_same_params(model, twin, step)


def test_param_groups_exclude_biases_from_weight_decay_like_torch():
    torch = pytest.importorskip("torch")
    model = mlp()
    twin = torch_twin(model)
    w, b = groups_for(model)
    tw, tb = groups_for(twin)
    ours = AdamW([{"params": w, "weight_decay": 0.5}, {"params": b, "weight_decay": 0.0, "lr": 5e-3}], lr=2e-2)
    theirs = torch.optim.AdamW([{"params": tw, "weight_decay": 0.5}, {"params": tb, "weight_decay": 0.0, "lr": 5e-3}],
                               lr=2e-2)
    assert [g["lr"] for g in ours.param_groups] == [2e-2, 5e-3]
    assert ours.param_groups[1]["betas"] == (0.9, 0.999)  # missing options take the defaults
    for step in range(20):
        loss = loss_of(model, step)
        ours.zero_grad()
        loss.backward()
        ours.step()
        torch_step(twin, theirs, step)
    assert_same_params(model, twin, 20)


def test_zero_weight_decay_group_leaves_params_without_gradient_untouched():
    a, b = Linear(3, 3), Linear(3, 3)
    before_b = b.weight.numpy().copy()
    before_a = a.weight.numpy().copy()
    opt = AdamW([{"params": a.parameters(), "weight_decay": 0.0}, {"params": b.parameters()}], lr=0.1,
                weight_decay=0.5)
    a(mg.randn(2, 3)).sum().backward()
    opt.step()
    np.testing.assert_array_equal(b.weight.numpy(), before_b)  # no grad: no decay either, as torch
    assert not np.allclose(a.weight.numpy(), before_a)


def test_a_parameter_in_two_groups_is_rejected():
    lin = Linear(2, 2)
    with pytest.raises(ValueError, match="more than one parameter group"):
        SGD([{"params": [lin.weight]}, {"params": [lin.weight, lin.bias]}], lr=0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        SGD([], lr=0.1)


def _to_disk_format(state: dict) -> tuple[dict, str]:
    """Split an optimizer state_dict into host arrays and JSON, as a checkpoint writer would."""
    arrays, meta = {}, {"param_groups": state["param_groups"], "state": {}}
    for idx, entries in state["state"].items():
        meta["state"][idx] = {}
        for key, value in entries.items():
            if hasattr(value, "shape"):
                arrays[f"{idx}.{key}"] = np.array(value)
                meta["state"][idx][key] = {"array": f"{idx}.{key}"}
            else:
                assert isinstance(value, (int, float)), f"{key} is a {type(value).__name__}"
                meta["state"][idx][key] = value
    return arrays, json.dumps(meta)


def _from_disk_format(arrays: dict, text: str) -> dict:
    meta = json.loads(text)  # integer keys come back as strings
    for entries in meta["state"].values():
        for key, value in entries.items():
            if isinstance(value, dict):
                entries[key] = arrays[value["array"]]
    return meta


@pytest.mark.parametrize("make", [lambda ps: AdamW(ps, lr=1e-2, weight_decay=0.1),
                                  lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True)], ids=["AdamW", "SGD"])
def test_state_dict_round_trip_resumes_identically(make):
    straight = mlp()
    opt = make(straight.parameters())
    expected = train(straight, opt, 20)

    first = mlp()
    opt1 = make(first.parameters())
    train(first, opt1, 10)
    model_state = {k: v.numpy().copy() for k, v in first.state_dict().items()}
    arrays, text = _to_disk_format(opt1.state_dict())

    resumed = mlp()
    resumed.load_state_dict(model_state)
    opt2 = make(resumed.parameters())
    opt2.load_state_dict(_from_disk_format(arrays, text))
    assert opt2.param_groups[0]["lr"] == opt1.param_groups[0]["lr"]
    got = train(resumed, opt2, 10, start=10)
    assert got == expected[10:]  # bit for bit
    for p, q in zip(resumed.parameters(), straight.parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_state_dict_holds_only_arrays_and_numbers_and_counts_steps():
    model = mlp()
    opt = AdamW(model.parameters(), lr=1e-2)
    train(model, opt, 3)
    state = opt.state_dict()
    assert sorted(state) == ["param_groups", "state"]
    assert state["param_groups"][0]["params"] == [0, 1, 2, 3]
    json.dumps(state["param_groups"])
    entry = state["state"][0]
    assert entry["step"] == 3 and sorted(entry) == ["exp_avg", "exp_avg_sq", "step"]
    assert entry["exp_avg"].shape == (8, 4)


def test_load_state_dict_rejects_a_different_group_layout():
    a, b = mlp(), mlp()
    opt = AdamW(a.parameters())
    train(a, opt, 1)
    other = AdamW([{"params": list(b.parameters())[:2]}, {"params": list(b.parameters())[2:]}])
    with pytest.raises(ValueError, match="parameter groups"):
        other.load_state_dict(opt.state_dict())


def test_load_state_dict_rejects_a_state_of_the_wrong_shape():
    a = mlp()
    opt = AdamW(a.parameters())
    train(a, opt, 1)
    state = opt.state_dict()
    state["state"][0]["exp_avg"] = np.zeros((3, 3), dtype=np.float64)  # a state saved for another model
    fresh = AdamW(mlp().parameters())
    with pytest.raises(ValueError, match=r"'exp_avg' has shape \(3, 3\), its parameter has"):
        fresh.load_state_dict(state)


def test_float32_training_stays_float32():
    model = mlp("float32")
    opt = AdamW(model.parameters(), lr=1e-2)
    opt.param_groups[0]["lr"] = np.float64(1e-2)  # a numpy scalar lr must not upcast either
    train(model, opt, 2)
    assert all(p.dtype == np.float32 for p in model.parameters())
    assert all(a.dtype == np.float32 for s in opt.state.values() for a in s.values() if hasattr(a, "dtype"))


def test_zero_grad_sets_to_none_or_zeroes():
    model = mlp()
    opt = SGD(model.parameters(), lr=0.1)
    loss_of(model, 0).backward()
    g = model[0].weight.grad
    opt.zero_grad(set_to_none=False)
    assert model[0].weight.grad is g and not g.numpy().any()
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


# ---------------------------------------------------------------------------- clipping

def _with_grads(scale: float) -> list:
    rng = np.random.default_rng(3)
    params = [mg.tensor(rng.standard_normal(s), dtype="float64", requires_grad=True) for s in ((3, 4), (5,))]
    for p in params:
        p.grad = mg.tensor(rng.standard_normal(p.shape) * scale, dtype="float64")
    return params


@pytest.mark.parametrize("max_norm,norm_type", [(1.0, 2.0), (100.0, 2.0), (0.5, math.inf), (0.5, 1.0)])
def test_clip_grad_norm_matches_torch(max_norm, norm_type):
    torch = pytest.importorskip("torch")
    ours = _with_grads(2.0)
    theirs = [torch.tensor(p.numpy(), requires_grad=True) for p in ours]
    for t, p in zip(theirs, ours):
        t.grad = torch.from_numpy(p.grad.numpy().copy())
    total = clip_grad_norm_(iter(ours), max_norm, norm_type=norm_type)  # a generator is fine, as model.parameters()
    ref = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    assert float(total) == pytest.approx(ref.item(), rel=1e-12)
    for p, t in zip(ours, theirs):
        np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_clip_grad_norm_scales_to_max_norm_and_leaves_small_gradients_alone():
    params = _with_grads(10.0)
    total = clip_grad_norm_(params, 1.0)
    assert float(total) > 10.0
    after = math.sqrt(sum(float((p.grad.numpy() ** 2).sum()) for p in params))
    assert after == pytest.approx(1.0, rel=1e-5)
    small = _with_grads(1e-3)
    before = [p.grad.numpy().copy() for p in small]
    clip_grad_norm_(small, 1.0)
    for p, b in zip(small, before):
        np.testing.assert_array_equal(p.grad.numpy(), b)
    with pytest.raises(RuntimeError, match="non-finite"):
        bad = _with_grads(1.0)
        bad[0].grad.data[0, 0] = np.nan
        clip_grad_norm_(bad, 1.0, error_if_nonfinite=True)


def test_clip_grad_value_clamps_in_place():
    params = _with_grads(5.0)
    clip_grad_value_(params, 0.5)
    assert all(np.abs(p.grad.numpy()).max() <= 0.5 for p in params)


# ---------------------------------------------------------------------------- schedules

def test_cosine_with_warmup_values():
    lr = [cosine_with_warmup(s, 1.0, 10, 110, 0.1) for s in range(120)]
    assert lr[0] == pytest.approx(1 / 11) and lr[9] == pytest.approx(10 / 11)
    assert lr[10] == pytest.approx(1.0)  # the peak right after warmup
    assert lr[60] == pytest.approx(0.55)  # halfway: min + (max - min) / 2
    assert lr[110] == lr[119] == 0.1
    assert all(a >= b for a, b in zip(lr[10:], lr[11:]))
    assert constant(3, 0.5) == 0.5 and constant(1, 0.5, warmup_steps=3) == pytest.approx(0.25)


def test_cosine_scheduler_sets_group_lrs_and_resumes_from_state_dict():
    lin = Linear(2, 2)
    opt = AdamW([{"params": [lin.weight]}, {"params": [lin.bias], "lr": 0.5}], lr=1.0)
    sched = CosineWithWarmup(opt, warmup_steps=2, max_steps=10, min_lr=0.01)
    seen = [opt.param_groups[0]["lr"]]
    for _ in range(6):
        sched.step()
        seen.append(opt.param_groups[0]["lr"])
    assert seen == pytest.approx([cosine_with_warmup(s, 1.0, 2, 10, 0.01) for s in range(7)])
    assert opt.param_groups[1]["lr"] == pytest.approx(cosine_with_warmup(6, 0.5, 2, 10, 0.01))
    state = json.loads(json.dumps(sched.state_dict()))
    opt2 = AdamW([{"params": [lin.weight]}, {"params": [lin.bias], "lr": 0.5}], lr=1.0)
    sched2 = CosineWithWarmup(opt2, warmup_steps=0, max_steps=1)
    sched2.load_state_dict(state)
    sched.step()
    sched2.step()
    assert sched2.get_last_lr() == sched.get_last_lr()


def test_lambda_lr_matches_torch():
    torch = pytest.importorskip("torch")
    lin = Linear(2, 2)
    tlin = torch.nn.Linear(2, 2)
    fn = lambda s: 0.9 ** s  # noqa: E731
    ours = LambdaLR(SGD(lin.parameters(), lr=0.3), fn)
    theirs = torch.optim.lr_scheduler.LambdaLR(torch.optim.SGD(tlin.parameters(), lr=0.3), fn)
    for _ in range(5):
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr())
        ours.optimizer.step()
        theirs.optimizer.step()
        ours.step()
        theirs.step()


# ---------------------------------------------------------------------------- learning

def spiral(n_per_class: int = 60, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for c in range(classes):
        r = np.linspace(0.1, 1.0, n_per_class)
        t = np.linspace(c * 4.0, (c + 1) * 4.0, n_per_class) + rng.standard_normal(n_per_class) * 0.15
        xs.append(np.stack([r * np.sin(t), r * np.cos(t)], axis=1))
        ys.append(np.full(n_per_class, c))
    return np.concatenate(xs), np.concatenate(ys)


def test_mlp_learns_a_two_dimensional_spiral_with_minigrad_alone():
    x_np, y_np = spiral()
    mg.manual_seed(0)
    model = Sequential(Linear(2, 32), Tanh(), Linear(32, 32), Tanh(), Linear(32, 3))
    opt = AdamW(model.parameters(), lr=2e-2, weight_decay=1e-4)
    x, y = mg.tensor(x_np, dtype="float32"), mg.tensor(y_np)
    first = None
    for _ in range(200):
        loss = F.cross_entropy(model(x), y)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
    with mg.no_grad():
        accuracy = float((model(x).argmax(-1).numpy() == y_np).mean())
    assert first > 1.0 and loss.item() < 0.15
    assert accuracy >= 0.97


def test_mlp_learns_xor_with_sgd_momentum():
    mg.manual_seed(1)
    model = Sequential(Linear(2, 8), Tanh(), Linear(8, 2))
    opt = SGD(model.parameters(), lr=0.2, momentum=0.9)
    x = mg.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = mg.tensor([0, 1, 1, 0])
    for _ in range(300):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    assert model(x).argmax(-1).tolist() == [0, 1, 1, 0]


# ---------------------------------------------------------------------------- device discipline

def test_layers_and_optimizers_run_on_the_strict_cupy_stand_in_without_host_syncs():
    """Same numbers as on the CPU, device arrays throughout, and no host sync in forward/backward/clip/step."""
    pytest.importorskip("cupy", reason="the stand-in takes its name lists from the installed cupy")
    from minigrad.nn import LayerNorm, MultiheadAttention
    from tests.strict_cupy import StrictArray, Syncs, make_device
    dev = make_device()

    def run(device):
        mg.manual_seed(0)
        model = Sequential(LayerNorm(8), MultiheadAttention(8, 2), Linear(8, 3)).double().to(device)
        opts = [AdamW(list(model.parameters())[:4], lr=1e-2, amsgrad=True),
                SGD(list(model.parameters())[4:], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)]
        x = mg.tensor(X.reshape(2, 8, 4).repeat(2, axis=-1), device=device)
        mask = mg.tensor(np.triu(np.ones((8, 8), bool), 1), device=device)
        syncs = Syncs.count
        for _ in range(3):
            h, _ = model[1](model[0](x), model[0](x), model[0](x), attn_mask=mask)
            loss = (model[2](h) * model[2](h)).mean()
            for opt in opts:
                opt.zero_grad()
            loss.backward()
            clip_grad_norm_(model.parameters(), 0.1)
            for opt in opts:
                opt.step()
        return model, Syncs.count - syncs

    cpu, _ = run("cpu")
    ours, syncs = run(dev)
    assert syncs == 0
    for (name, p), q in zip(cpu.named_parameters(), ours.parameters()):
        assert isinstance(q.data, StrictArray)
        np.testing.assert_allclose(q.numpy(), p.numpy(), rtol=1e-12, atol=1e-12, err_msg=name)
