"""Mixed precision: where autocast casts, what the fused ops compute in float32, GradScaler's state machine,
and float32 master weights (minigrad/amp.py, minigrad/ops/precision.py)."""
import numpy as np
import pytest

import minigrad as mg
from minigrad import nn
from minigrad.nn import functional as F

LOW = ["float16", pytest.param("bfloat16", marks=pytest.mark.skipif(mg.bfloat16 is None,
                                                                     reason="bfloat16 needs ml_dtypes"))]


def rand(*shape, seed=0, dtype="float32", requires_grad=False):
    x = np.random.default_rng(seed).standard_normal(shape)
    return mg.tensor(x, dtype=dtype, requires_grad=requires_grad)


def rounded(t, dtype):
    """t's values rounded to dtype, as float32 numpy (what autocast's cast keeps of them)."""
    return t.numpy().astype(mg.as_dtype(dtype)).astype(np.float32)


@pytest.mark.parametrize("dtype", LOW)
def test_cast_placement_follows_torch_autocast(dtype):
    low = mg.as_dtype(dtype)
    x, w, b = rand(4, 8, requires_grad=True), rand(6, 8, seed=1, requires_grad=True), rand(6, seed=2, requires_grad=True)
    q = rand(2, 3, 5, 4, seed=3)
    with mg.autocast(dtype):
        y = F.linear(x, w, b)
        assert y.dtype == low  # matmul class: low precision
        assert (x @ w.T).dtype == low
        assert F.scaled_dot_product_attention(q, q, q, is_causal=True).dtype == low
        assert F.cached_causal_attention(q, q, q).dtype == low
        assert F.layer_norm(y, (6,)).dtype == mg.float32  # float32 class: statistics in float32
        assert F.softmax(y, dim=-1).dtype == mg.float32
        assert F.log_softmax(y, dim=-1).dtype == mg.float32
        loss = F.cross_entropy(y, np.array([0, 1, 2, 3]))
        assert loss.dtype == mg.float32
        assert (y + x[:, :6]).dtype == mg.float32  # elementwise ops promote: the residual stream stays float32
        assert F.gelu(y).dtype == low  # everything else: its input's dtype
    assert F.linear(x, w, b).dtype == mg.float32  # outside: nothing changes
    loss.backward()  # backward outside autocast, as in torch
    assert x.grad.dtype == w.grad.dtype == b.grad.dtype == mg.float32  # the casts' gradients come back float32


def test_autocast_nests_restores_and_can_be_disabled():
    x, w = rand(2, 3), rand(4, 3, seed=1)
    with mg.autocast("float16"):
        with mg.autocast("float16", enabled=False):
            assert F.linear(x, w).dtype == mg.float32
        assert F.linear(x, w).dtype == mg.float16
    assert mg.amp.autocast_dtype() is None

    @mg.autocast("float16")
    def f():
        return F.linear(x, w)
    assert f().dtype == mg.float16 and mg.amp.autocast_dtype() is None
    with pytest.raises(TypeError, match="float16 or bfloat16"):
        mg.autocast("float64")


@pytest.mark.parametrize("dtype", LOW)
def test_a_low_precision_matmul_is_float32_accumulation_of_the_rounded_inputs(dtype):
    """The product of two rounded low-precision numbers is exact in float32: the op equals a float32 matmul
    of the rounded inputs, rounded once at the end (what tensor cores with float32 accumulation give)."""
    low = mg.as_dtype(dtype)
    x, w = rand(16, 64).to(dtype), rand(32, 64, seed=1).to(dtype)
    x.requires_grad_(), w.requires_grad_()
    y = F.linear(x, w)
    want = (rounded(x, dtype) @ rounded(w, dtype).T).astype(low)
    np.testing.assert_array_equal(y.numpy(), want)
    g = rand(16, 32, seed=2).to(dtype)
    y.backward(g)
    np.testing.assert_array_equal(x.grad.numpy(), (rounded(g, dtype) @ rounded(w, dtype)).astype(low))
    np.testing.assert_array_equal(w.grad.numpy(), (rounded(g, dtype).T @ rounded(x, dtype)).astype(low))
    assert x.grad.dtype == w.grad.dtype == low


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("op", ["layer_norm", "gelu", "softmax", "cross_entropy", "attention"])
def test_fused_ops_on_low_precision_inputs_compute_in_float32(op, dtype):
    """Each fused op given low-precision inputs equals the float32 op on the rounded inputs, rounded once."""
    low = mg.as_dtype(dtype)
    if op == "attention":
        base = [rand(2, 3, 6, 4, seed=s) for s in range(3)]
        fn = lambda *a: F.scaled_dot_product_attention(*a, is_causal=True)  # noqa: E731
    elif op == "layer_norm":
        base = [rand(5, 8), rand(8, seed=1), rand(8, seed=2)]
        fn = lambda x, w, b: F.layer_norm(x, (8,), w, b)  # noqa: E731
    elif op == "cross_entropy":
        base = [rand(5, 7) * 3]
        fn = lambda x: F.cross_entropy(x, np.array([0, 6, 2, 3, 1]))  # noqa: E731
    else:
        base = [rand(5, 8) * 3]
        fn = (lambda x: F.gelu(x)) if op == "gelu" else (lambda x: F.softmax(x, dim=-1))
    lows = [t.to(dtype).requires_grad_() for t in base]
    ref = [mg.tensor(rounded(t, dtype), requires_grad=True) for t in lows]
    out, want = fn(*lows), fn(*ref)
    assert out.dtype == (mg.float32 if op == "cross_entropy" else low)  # the loss stays float32
    np.testing.assert_array_equal(out.numpy(), want.numpy().astype(out.dtype))
    g = np.random.default_rng(9).standard_normal(out.shape)
    out.backward(mg.tensor(g, dtype=out.dtype))
    want.backward(mg.tensor(np.asarray(g, dtype=out.dtype).astype(np.float32)))
    for a, r in zip(lows, ref):
        assert a.grad.dtype == low
        np.testing.assert_array_equal(a.grad.numpy(), r.grad.numpy().astype(low))


def test_matmul_and_linear_still_refuse_mixed_dtypes():
    with pytest.raises(RuntimeError, match="same dtype"):
        rand(2, 3).half() @ rand(3, 2)
    with pytest.raises(RuntimeError, match="same dtype"):
        F.linear(rand(2, 3).half(), rand(4, 3))


@pytest.mark.skipif(mg.bfloat16 is None, reason="bfloat16 needs ml_dtypes")
def test_bfloat16_tensors_promote_like_torch():
    b = mg.zeros(3, dtype="bfloat16")
    assert b.dtype == mg.bfloat16 and str(b.dtype) == "bfloat16" and "dtype=bfloat16" in repr(b)
    assert (b + rand(3)).dtype == mg.float32  # bfloat16 + float32 -> float32
    assert (b + 1.5).dtype == mg.bfloat16  # a Python float takes the tensor's float dtype
    assert (b + mg.tensor([1, 2, 3])).dtype == mg.bfloat16  # float beats int
    assert mg.promote_types("bfloat16", "float16") == mg.float32  # torch: bf16 + f16 -> f32
    assert rand(3).to("bfloat16").requires_grad_().requires_grad


@pytest.mark.parametrize("dtype", LOW)
def test_random_draws_and_init_in_16_bit_floats(dtype):
    """numpy's and cupy's generators draw float32/float64 only: 16-bit floats are drawn in float32 and rounded,
    so mg.rand/randn, nn.init and dropout work in float16 and bfloat16 too."""
    low = mg.as_dtype(dtype)
    u, n = mg.rand(1000, dtype=dtype), mg.randn(1000, dtype=dtype)
    assert u.dtype == n.dtype == low
    assert 0.0 <= u.numpy().astype(np.float32).min() and u.numpy().astype(np.float32).max() <= 1.0
    assert abs(float(n.numpy().astype(np.float32).std()) - 1.0) < 0.1
    w = mg.zeros(64, 32, dtype=dtype)
    nn.init.xavier_uniform_(w)
    assert w.dtype == low and np.abs(w.numpy().astype(np.float32)).max() > 0
    x = rand(8, 50).to(dtype).requires_grad_()
    y = F.dropout(x, 0.5)
    y.backward(mg.ones(8, 50, dtype=dtype))
    assert y.dtype == x.grad.dtype == low  # a bool mask would promote bfloat16 to float32
    np.testing.assert_array_equal(y.numpy(), x.numpy() * x.grad.numpy())  # y = x * mask / (1 - p), dx = mask / (1 - p)
    assert set(np.unique(x.grad.numpy().astype(np.float32))) == {0.0, 2.0}


# ------------------------------------------------------------------ GradScaler


class FakeOptimizer:
    def __init__(self, params):
        self.param_groups = [{"params": params}]
        self.steps = 0

    def step(self):
        self.steps += 1


def with_grads(*grads):
    params = []
    for g in grads:
        p = mg.zeros(len(g), requires_grad=True)
        p.grad = mg.tensor(np.asarray(g, dtype=np.float32))
        params.append(p)
    return params


def test_grad_scaler_scales_unscales_and_steps():
    scaler = mg.amp.GradScaler(init_scale=8.0)
    loss = mg.tensor(2.0)
    assert float(scaler.scale(loss).item()) == 16.0 and scaler.get_scale() == 8.0
    params = with_grads([8.0, -16.0], [4.0])
    opt = FakeOptimizer(params)
    scaler.unscale_(opt)
    scaler.unscale_(opt)  # a second unscale_ before step does nothing
    np.testing.assert_array_equal(params[0].grad.numpy(), [1.0, -2.0])
    assert scaler.step(opt) is True and opt.steps == 1
    scaler.update()
    assert scaler.get_scale() == 8.0 and scaler.growth_tracker == 1


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_grad_scaler_skips_an_overflowed_step_and_halves_the_scale(bad):
    scaler = mg.amp.GradScaler(init_scale=1024.0, growth_interval=3)
    for _ in range(2):  # two good steps: the tracker counts them
        opt = FakeOptimizer(with_grads([1.0]))
        scaler.step(opt)
        scaler.update()
    assert scaler.growth_tracker == 2
    opt = FakeOptimizer(with_grads([1.0, 2.0], [bad]))  # one bad value in any gradient
    assert scaler.step(opt) is False and opt.steps == 0 and scaler.found_inf
    scaler.update()
    assert scaler.get_scale() == 512.0 and scaler.growth_tracker == 0 and not scaler.found_inf


def test_unscale_does_not_warn_about_the_overflow_it_catches():
    import warnings
    params = with_grads([np.inf, -np.inf, 1.0], [-np.inf])  # inf - inf in the sums: numpy's "invalid value" case
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "overflow/invalid value encountered" would raise here
        scaler = mg.amp.GradScaler(init_scale=4.0)
        scaler.unscale_(FakeOptimizer(params))
    assert scaler.found_inf


def test_grad_scaler_grows_after_growth_interval_good_steps_and_round_trips_its_state():
    scaler = mg.amp.GradScaler(init_scale=4.0, growth_factor=2.0, growth_interval=3)
    scales = []
    for _ in range(7):
        scaler.step(FakeOptimizer(with_grads([1.0])))
        scaler.update()
        scales.append(scaler.get_scale())
    assert scales == [4.0, 4.0, 8.0, 8.0, 8.0, 16.0, 16.0]
    other = mg.amp.GradScaler()
    other.load_state_dict(scaler.state_dict())
    assert other.state_dict() == scaler.state_dict() == {"scale": 16.0, "growth_tracker": 1, "growth_factor": 2.0,
                                                         "backoff_factor": 0.5, "growth_interval": 3}


def test_a_disabled_grad_scaler_passes_everything_through():
    scaler = mg.amp.GradScaler(enabled=False)
    loss = mg.tensor(3.0)
    assert scaler.scale(loss) is loss and scaler.get_scale() == 1.0
    params = with_grads([np.inf])
    opt = FakeOptimizer(params)
    scaler.unscale_(opt)
    assert scaler.step(opt) is True and opt.steps == 1 and params[0].grad.numpy()[0] == np.inf
    scaler.update()
    assert scaler.state_dict() == {}


@pytest.mark.parametrize("bad", [None, "inf"])
def test_grad_scaler_on_a_flat_optimizer_checks_the_one_gradient_array(bad):
    model = nn.Linear(3, 2)
    opt = mg.optim.AdamW(model.parameters(), lr=0.1, flat=True)
    scaler = mg.amp.GradScaler(init_scale=256.0)
    before = [p.numpy().copy() for p in model.parameters()]
    with mg.autocast("float16"):
        loss = model(rand(4, 3)).sum()
    scaler.scale(loss).backward()
    if bad:
        model.weight.grad.data[0, 0] = np.inf
    scaler.unscale_(opt)
    took = scaler.step(opt)
    assert took is (bad is None)
    changed = [not np.array_equal(b, p.numpy()) for b, p in zip(before, model.parameters())]
    assert all(changed) if took else not any(changed)


@pytest.mark.parametrize("dtype", LOW)
def test_float32_master_weights_train_close_to_float32(dtype):
    """A small MLP: AdamW on float32 parameters with autocast gradients tracks plain float32 training."""
    def run(cast):
        mg.manual_seed(0)
        model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 4))
        opt = mg.optim.AdamW(model.parameters(), lr=1e-2)
        scaler = mg.amp.GradScaler(enabled=cast == "float16")
        rng = np.random.default_rng(1)
        x, t = rng.standard_normal((32, 16)), rng.integers(0, 4, 32)  # one batch to fit
        losses = []
        for _ in range(30):
            with mg.autocast(cast or "float16", enabled=cast is not None):
                loss = F.cross_entropy(model(mg.tensor(x, dtype="float32")), t)
            opt.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            losses.append(float(loss.item()))
        assert all(p.dtype == mg.float32 for p in model.parameters())
        assert all(v.dtype == mg.float32 for s in opt.state.values() for v in s.values() if hasattr(v, "dtype"))
        return np.array(losses)

    full, low = run(None), run(dtype)
    assert low[-1] < 0.5 * low[0]  # it learns
    tol = 5e-4 if dtype == "float16" else 5e-3  # measured max |diff| over the 30 steps: 9.3e-5 (float16), 9.0e-4 (bf16)
    assert np.abs(full - low).max() < tol
