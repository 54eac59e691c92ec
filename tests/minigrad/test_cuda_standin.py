"""nn, optim and tinygpt on the strict CuPy stand-in (a numpy-backed SIMULATION of a device, tests/strict_cupy.py).

Each test runs the same thing on the CPU and on the stand-in device 'cuda:99' and asks for the same
numbers, device arrays throughout, and no implicit host conversion, numpy mixing or cupy-missing API.
It also pins the host-sync budget of a training step. It proves device discipline, not CUDA numerics.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

import minigrad as mg
from minigrad import backend, nn
from minigrad.nn import functional as F
from tests.strict_cupy import cupy_or_skip
from tests.tinygpt.test_train import losses, small_args

# Host syncs of one training step of tinygpt.train (forward, loss.item(), zero_grad, backward, clip, AdamW):
#   2  nn.functional.embedding's id range check (int(ids.min()), int(ids.max()))
#   1  the cross-entropy target range check in ops/fused.py (bool(... .any()))
#   1  loss.item() in the training loop (the logged loss)
# backward, clip_grad_norm_ and the optimizer step sync 0 times.
SYNC_BUDGET_PER_STEP = 4


@pytest.fixture(scope="module")
def dev():
    cupy_or_skip("the strict cupy stand-in")
    from tests.strict_cupy import make_device
    return make_device()


@pytest.fixture
def syncs():
    from tests.strict_cupy import Syncs
    return Syncs


def assert_on(dev, *tensors):
    from tests.strict_cupy import StrictArray
    for t in tensors:
        assert t.device == dev and isinstance(t.data, StrictArray)


def forward_backward(module, inputs, dev_or_cpu, seed=3):
    """Module on a device: output, input grads and parameter grads as host arrays (random upstream grad)."""
    module = module.to(dev_or_cpu)
    xs = [mg.tensor(a, requires_grad=a.dtype.kind == "f", device=dev_or_cpu) if isinstance(a, np.ndarray) else a
          for a in inputs]
    out = module(*xs)
    out = out[0] if isinstance(out, tuple) else out
    out.backward(mg.tensor(np.random.default_rng(seed).standard_normal(out.shape), dtype=out.dtype, device=dev_or_cpu))
    grads = {n: p.grad.numpy() for n, p in module.named_parameters()}
    return out, [x.grad.numpy() for x in xs if isinstance(x, mg.Tensor) and x.requires_grad], grads


def layer_cases():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 8)).astype(np.float32)
    ids = rng.integers(0, 11, (3, 7))
    ids[0, :3] = 4  # repeated ids: the scatter-add accumulates
    return [
        ("Linear", lambda: nn.Linear(8, 6), [x]),
        ("Linear no bias", lambda: nn.Linear(8, 6, bias=False), [x]),
        ("Embedding", lambda: nn.Embedding(11, 4), [ids]),
        ("LayerNorm", lambda: nn.LayerNorm(8), [x]),
        ("LayerNorm no bias", lambda: nn.LayerNorm(8, bias=False), [x]),
        ("GELU erf", lambda: nn.GELU(), [x]),
        ("GELU tanh", lambda: nn.GELU(approximate="tanh"), [x]),
        ("Sequential MLP", lambda: nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 8), nn.LayerNorm(8)), [x]),
        ("MultiheadAttention self", lambda: _SelfAttention(nn.MultiheadAttention(8, 2, batch_first=True)), [x]),
        ("MultiheadAttention causal", lambda: _SelfAttention(nn.MultiheadAttention(8, 4, batch_first=True), True), [x]),
    ]


class _SelfAttention(nn.Module):
    def __init__(self, mha, causal=False):
        super().__init__()
        self.mha, self.causal = mha, causal

    def forward(self, x):
        mask = None
        if self.causal:
            t = x.shape[1]
            mask = mg.tensor(np.triu(np.ones((t, t), bool), 1), device=x.device)
        return self.mha(x, x, x, attn_mask=mask, need_weights=False)[0]


@pytest.mark.parametrize("name,make,inputs", layer_cases(), ids=[c[0] for c in layer_cases()])
def test_layer_forward_and_backward_match_the_cpu(dev, name, make, inputs):
    mg.manual_seed(0)
    layer = make()
    twin = copy.deepcopy(layer)
    out_c, xg_c, pg_c = forward_backward(layer, inputs, "cpu")
    out_d, xg_d, pg_d = forward_backward(twin, inputs, dev)
    assert_on(dev, out_d, *twin.parameters())
    # atol 3e-7 and 1e-6: the CPU's float32 GELU (a fitted erfc form) and the device's GELU kernel (erff; here its
    # numpy reference) are each within ~2e-7 of the float64 truth and differ by up to ~1.3e-7; a layer norm after
    # the GELU (Sequential MLP) scales that up in the input gradient, and a weight gradient sums it over rows
    np.testing.assert_allclose(out_d.numpy(), out_c.numpy(), rtol=1e-6, atol=3e-7)
    for a, b in zip(xg_d, xg_c):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    assert pg_d.keys() == pg_c.keys()
    for k in pg_c:
        np.testing.assert_allclose(pg_d[k], pg_c[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_dropout_in_training_draws_on_the_device_and_eval_is_identity(dev, syncs):
    drop = nn.Dropout(0.3).to(dev)
    x = mg.ones(200, device=dev, requires_grad=True)
    before = syncs.count
    y = drop(x)
    y.sum().backward()
    assert syncs.count == before
    kept = y.numpy() != 0
    assert 0.5 < kept.mean() < 0.9 and np.allclose(y.numpy()[kept], 1 / 0.7)
    np.testing.assert_array_equal(x.grad.numpy(), y.numpy())
    drop.eval()
    np.testing.assert_array_equal(drop(x).numpy(), x.numpy())


def test_module_to_moves_parameters_in_place_and_back(dev):
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    params = list(model.parameters())
    before = [p.numpy().copy() for p in params]
    (model(mg.randn(2, 3)).sum()).backward()
    assert model.to(dev) is model
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]
    assert_on(dev, *params, *(p.grad for p in params))
    model.to("cpu")
    assert all(p.device == mg.device("cpu") and isinstance(p.data, np.ndarray) for p in params)
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p.numpy(), b)


def test_state_dict_moves_between_the_device_and_the_cpu(dev, tmp_path):
    mg.manual_seed(1)
    on_dev = nn.Sequential(nn.Linear(4, 5), nn.LayerNorm(5)).to(dev)
    mg.save(on_dev.state_dict(), tmp_path / "m.safetensors")
    on_cpu = nn.Sequential(nn.Linear(4, 5), nn.LayerNorm(5))
    on_cpu.load_state_dict(mg.load(tmp_path / "m.safetensors"))
    back = nn.Sequential(nn.Linear(4, 5), nn.LayerNorm(5)).to(dev)
    back.load_state_dict(on_cpu.state_dict())  # CPU arrays copied onto the device
    loaded = mg.load(tmp_path / "m.safetensors", device=dev)
    for (k, a), b, c in zip(on_dev.state_dict().items(), on_cpu.state_dict().values(), back.state_dict().values()):
        assert_on(dev, c, loaded[k])
        np.testing.assert_array_equal(loaded[k].numpy(), a.numpy())
        np.testing.assert_array_equal(b.numpy(), a.numpy())
        np.testing.assert_array_equal(c.numpy(), a.numpy())


OPTIMIZERS = [
    ("SGD", lambda ps: mg.optim.SGD(ps, lr=0.1)),
    ("SGD momentum nesterov wd", lambda ps: mg.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("AdamW", lambda ps: mg.optim.AdamW(ps, lr=1e-2, weight_decay=0.1)),
    ("AdamW amsgrad", lambda ps: mg.optim.AdamW(ps, lr=1e-2, amsgrad=True)),
]


@pytest.mark.parametrize("name,make", OPTIMIZERS, ids=[o[0] for o in OPTIMIZERS])
@pytest.mark.parametrize("clip", ["norm2", "norm_inf", "value"])
def test_optimizer_steps_with_clipping_match_the_cpu_and_never_sync(dev, syncs, name, make, clip):
    def run(device):
        mg.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 8), nn.GELU(), nn.Linear(8, 3)).double().to(device)
        opt = make(model.parameters())
        sched = mg.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
        x = mg.tensor(np.linspace(-1, 1, 30).reshape(5, 6), dtype="float64", device=device)
        n = syncs.count
        for _ in range(4):
            loss = (model(x) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            if clip == "norm2":
                mg.optim.clip_grad_norm_(model.parameters(), 0.05)
            elif clip == "norm_inf":
                mg.optim.clip_grad_norm_(model.parameters(), 0.05, norm_type=float("inf"))
            else:
                mg.optim.clip_grad_value_(model.parameters(), 0.01)
            opt.step()
            sched.step()
        return model, opt, syncs.count - n

    cpu, _, _ = run("cpu")
    ours, opt, n_syncs = run(dev)
    assert n_syncs == 0, "forward, backward, clipping and the optimizer step must not sync with the host"
    for (k, p), q in zip(cpu.named_parameters(), ours.parameters()):
        assert_on(dev, q)
        np.testing.assert_allclose(q.numpy(), p.numpy(), rtol=1e-10, atol=1e-12, err_msg=k)
    for state in opt.state.values():
        for v in state.values():
            if hasattr(v, "shape"):
                assert backend.device_of(v) == dev


def test_optimizer_state_dict_from_the_device_resumes_on_the_cpu(dev):
    def model_and_opt(device):
        mg.manual_seed(0)
        model = nn.Linear(4, 2).to(device)
        return model, mg.optim.AdamW(model.parameters(), lr=1e-2)

    def step(model, opt):
        loss = (model(mg.tensor(np.ones((3, 4), np.float32), device=model.weight.device)) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()

    m_dev, o_dev = model_and_opt(dev)
    m_ref, o_ref = model_and_opt("cpu")
    for _ in range(2):
        step(m_dev, o_dev)
        step(m_ref, o_ref)
    m_cpu, o_cpu = model_and_opt("cpu")
    m_cpu.load_state_dict(m_dev.state_dict())
    o_cpu.load_state_dict(o_dev.state_dict())
    step(m_cpu, o_cpu)
    step(m_ref, o_ref)
    np.testing.assert_allclose(m_cpu.weight.numpy(), m_ref.weight.numpy(), rtol=1e-6)


# ---------------------------------------------------------------- tinygpt on the stand-in

def tiny_gpt(preset_name, **kw):
    from tinygpt import TinyGPT, preset
    mg.manual_seed(0)
    return TinyGPT(preset(preset_name, **kw))


@pytest.mark.parametrize("preset_name,kw", [("nano", {}), ("shakespeare-char", dict(n_layers=1, block_size=16))])
def test_tinygpt_loss_and_gradients_match_the_cpu(dev, preset_name, kw):
    cpu, ours = tiny_gpt(preset_name, **kw), tiny_gpt(preset_name, **kw).to(dev)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, cpu.cfg.vocab_size, (2, 2, 16))
    _, loss_c = cpu(x, y)
    _, loss_d = ours(backend.from_numpy(dev, x), backend.from_numpy(dev, y))
    loss_c.backward()
    loss_d.backward()
    np.testing.assert_allclose(loss_d.item(), loss_c.item(), rtol=1e-6)
    for (k, p), q in zip(cpu.named_parameters(), ours.parameters()):
        assert_on(dev, q.grad)
        np.testing.assert_allclose(q.grad.numpy(), p.grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=k)


def test_tinygpt_generation_with_the_kv_cache_gives_the_cpu_tokens(dev):
    from tinygpt.generate import generate_ids
    cpu, ours = tiny_gpt("nano"), tiny_gpt("nano").to(dev)
    a = generate_ids(cpu, [1, 2, 3], 12, np.random.default_rng(5))
    b = generate_ids(ours, [1, 2, 3], 12, np.random.default_rng(5))
    assert list(a) == list(b)


def test_a_training_step_syncs_with_the_host_at_most_the_budget(dev, syncs):
    """The budget is SYNC_BUDGET_PER_STEP (documented above and in docs/cuda.md); backward+clip+step: 0."""
    model = tiny_gpt("nano", dropout=0.1).to(dev)
    opt = mg.optim.AdamW(model.param_groups(0.01), lr=1e-3)
    rng = np.random.default_rng(0)
    for _ in range(3):
        x, y = rng.integers(0, model.cfg.vocab_size, (2, 4, 16))
        start = syncs.count
        _, loss = model(backend.from_numpy(dev, x), backend.from_numpy(dev, y))
        loss.item()
        after_forward = syncs.count
        opt.zero_grad()
        loss.backward()
        mg.optim.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        assert syncs.count == after_forward, "backward, clip_grad_norm_ and AdamW.step must not sync"
        assert syncs.count - start <= SYNC_BUDGET_PER_STEP


def test_the_train_command_runs_on_the_device_like_on_the_cpu_and_resumes_on_the_cpu(dev, tmp_path):
    from tinygpt import train
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 80, encoding="utf-8")

    def args(out, device, steps):
        return small_args(corpus, out, "--batch-size", "4", "--eval-interval", "4", "--eval-batches", "1",
                          "--sample-tokens", "4", "--device", device, "--max-steps", str(steps))

    assert train.main(args(tmp_path / "cpu", "cpu", 8)) == 0
    assert train.main(args(tmp_path / "dev", str(dev), 4)) == 0
    assert train.main(args(tmp_path / "dev", "cpu", 8) + ["--resume", str(tmp_path / "dev")]) == 0  # device -> cpu

    np.testing.assert_allclose(losses(tmp_path / "dev"), losses(tmp_path / "cpu"), rtol=1e-5)


def test_float32_gelu_without_kernels_runs_the_reference_math_on_the_device():
    # MINIGRAD_CUDA_KERNELS=0 on a GPU: GELU runs its reference math (erf through the device's hook), which must be
    # cupy-clean; the CPU runs its fitted float32 form, so the two agree to float32 accuracy (|error| < 2e-6 each)
    cupy_or_skip("the strict cupy stand-in")
    from tests.strict_cupy import make_device
    dev = make_device(97)
    kernels, dev.kernels = dev.kernels, None
    try:
        x = np.random.default_rng(5).standard_normal(3000).astype(np.float32) * 3
        t = mg.tensor(x).to(dev).requires_grad_()
        y = F.gelu(t)
        assert y._ctx.fast is None  # the reference path
        y.backward(mg.ones(3000).to(dev))
        tc = mg.tensor(x, requires_grad=True)
        yc = F.gelu(tc)
        yc.backward(mg.ones(3000))
        assert_on(dev, y, t.grad)
        np.testing.assert_allclose(y.numpy(), yc.numpy(), rtol=0, atol=3e-6)
        np.testing.assert_allclose(t.grad.numpy(), tc.grad.numpy(), rtol=0, atol=3e-6)
    finally:
        dev.kernels = kernels
