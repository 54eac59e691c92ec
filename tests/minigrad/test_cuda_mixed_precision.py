"""Mixed precision on the CUDA path, on the strict CuPy stand-in (a numpy-backed SIMULATION, tests/strict_cupy.py).

- GELU takes float16/bfloat16 as it is on a CUDA device with kernels (the __half/__nv_bfloat16 kernels of
  minigrad/cuda_kernels.py; on the stand-in their float32 reference, rounded once), and runs its reference math on
  float32 copies where there are none (MINIGRAD_CUDA_KERNELS=0, ``with reference():``), as on the CPU.
- One TinyGPT training step under ``mg.autocast("float16")`` with ``mg.amp.GradScaler`` and under "bfloat16" gives
  the CPU's loss and gradients within the tolerances below, with float32 master weights and AdamW state.
- Its host syncs are counted. The loss scaler adds exactly ONE per optimizer step (GradScaler.unscale_'s float() of
  the float64 sum of the flat gradient, with flat=True as tinygpt.train's AdamW), a skipped step included;
  bfloat16 (no scaler) adds none. Forward and loss sync as in float32 (SYNC_BUDGET_PER_STEP of
  test_cuda_standin.py); backward, clipping, the optimizer step and scaler.update() sync 0 times.
This proves the device discipline of the mixed-precision step, not CUDA numerics or speed: nothing here ran on a GPU.
"""
from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
from minigrad import backend
from minigrad.nn import functional as F
from minigrad.ops.kernels import CudaOps, reference
from tests.minigrad import test_cuda_standin as standin
from tests.strict_cupy import cupy_or_skip

LOW = ["float16", pytest.param("bfloat16", marks=pytest.mark.skipif(mg.bfloat16 is None,
                                                                     reason="bfloat16 needs ml_dtypes"))]
FORMS = ["none", "tanh"]
# GELU, device (float32 math with erff's float32 form, rounded once) vs CPU (float32 math with the CPU's fitted erf,
# rounded once): one unit in the last place where the two float32 values straddle a rounding boundary, and
# float32's own atol (1 + erf cancels in the negative tail)
GELU_TOL = {"float16": dict(rtol=2 ** -10, atol=5e-6), "bfloat16": dict(rtol=2 ** -7, atol=5e-6)}
# One TinyGPT step (nano preset, batch 4 x 16), device vs CPU under the same autocast. The two compute the same
# rounded-once float32 math in a different order (matmuls natively in the low dtype with float32 accumulation on
# the device, on float32 copies on the CPU; the CPU's fused kernels vs the reference math), so an element here and
# there rounds to the neighbouring low-precision value and that spreads through the layers. Measured (this
# machine, numpy 2.4.6): |loss| relative 2.3e-6 (float16), 5.0e-5 (bfloat16); worst |grad difference| over a
# tensor's max |grad| 9.3e-4 (float16: ~1 ulp, 2**-10), 8.8e-3 (bfloat16: ~1 ulp, 2**-7).
STEP_TOL = {"float16": dict(loss=2e-5, grad=4e-3), "bfloat16": dict(loss=4e-4, grad=3e-2)}
SCALER_SYNCS_PER_STEP = {"float16": 1, "bfloat16": 0}
SYNC_BUDGET_PER_STEP = standin.SYNC_BUDGET_PER_STEP  # forward and loss.item(), as in float32
dev, syncs = standin.dev, standin.syncs  # the stand-in device 'cuda:99' and its sync counter (pytest fixtures)


def gelu_input(seed=5, n=3000):
    return (np.random.default_rng(seed).standard_normal(n) * 3).astype(np.float32)


def gelu_forward_backward(x, dtype, device, approximate):
    """(input, output, what the forward saved: low_dtype, fast and the dtype of the saved x) after backward."""
    t = mg.tensor(x).to(dtype).to(device).requires_grad_()
    y = F.gelu(t, approximate=approximate)
    ctx = y._ctx
    x_saved = getattr(ctx, "x", None)  # (the CPU's fast GELU saves its own arrays)
    saved = dict(low_dtype=ctx.low_dtype, fast=ctx.fast, x_dtype=getattr(x_saved, "dtype", None))  # backward frees ctx
    y.backward(mg.tensor(np.linspace(-2, 2, x.size), dtype=dtype, device=device))
    return t, y, saved


# ---------------------------------------------------------------- GELU's routing

@pytest.mark.parametrize("approximate", FORMS)
@pytest.mark.parametrize("dtype", LOW)
def test_gelu_takes_low_precision_as_it_is_on_a_device_with_kernels(dev, approximate, dtype):
    low = mg.as_dtype(dtype)
    x = gelu_input()
    t, y, saved = gelu_forward_backward(x, dtype, dev, approximate)
    assert saved["low_dtype"] is None and isinstance(saved["fast"], CudaOps)  # no upcast: the 16-bit kernel's path
    assert saved["x_dtype"] == low  # what backward keeps is the 16-bit input, not a float32 copy
    assert y.dtype == t.grad.dtype == low
    tc, yc, saved_c = gelu_forward_backward(x, dtype, "cpu", approximate)  # the CPU: float32 copies, its fast GELU
    assert saved_c["low_dtype"] == low
    np.testing.assert_allclose(y.numpy().astype(np.float32), yc.numpy().astype(np.float32), **GELU_TOL[dtype])
    np.testing.assert_allclose(t.grad.numpy().astype(np.float32), tc.grad.numpy().astype(np.float32),
                               **GELU_TOL[dtype])


@pytest.mark.parametrize("dtype", LOW)
def test_gelu_without_kernels_or_under_reference_runs_the_reference_math_in_float32(dtype):
    cupy_or_skip("the strict cupy stand-in")
    from tests.strict_cupy import make_device
    dev = make_device(96)  # its own device: kernels are switched off here
    low, x = mg.as_dtype(dtype), gelu_input()
    native_t, native, _ = gelu_forward_backward(x, dtype, dev, "none")
    kernels, dev.kernels = dev.kernels, None  # MINIGRAD_CUDA_KERNELS=0
    try:
        off = gelu_forward_backward(x, dtype, dev, "none")
    finally:
        dev.kernels = kernels
    with reference():
        ref = gelu_forward_backward(x, dtype, dev, "none")
    for tt, yy, saved in (off, ref):
        assert saved["fast"] is None and saved["low_dtype"] == low and saved["x_dtype"] == np.float32
        assert yy.dtype == tt.grad.dtype == low
        # the same float32 math as the kernels' reference, rounded once: equal
        np.testing.assert_array_equal(yy.numpy(), native.numpy())
        np.testing.assert_array_equal(tt.grad.numpy(), native_t.grad.numpy())


# ---------------------------------------------------------------- a TinyGPT step

class GeluDtypes:
    """Wraps a device's kernels and records the dtype of every GELU the model runs."""

    def __init__(self, kernels):
        self.kernels, self.seen = kernels, []

    def gelu_forward(self, x, approximate="none"):
        self.seen.append(x.dtype.name)
        return self.kernels.gelu_forward(x, approximate)

    def __getattr__(self, name):
        return getattr(self.kernels, name)


def mixed_precision_step(device, dtype, syncs, *, overflow=False, flat=True):
    """One training step as tinygpt.train takes it with --dtype float16|bfloat16 (forward under autocast, the scaled
    loss's backward outside it, unscale_, clip, scaler.step, scaler.update); the syncs of each phase."""
    from tinygpt import TinyGPT, preset
    mg.manual_seed(0)
    model = TinyGPT(preset("nano")).to(device)
    opt = mg.optim.AdamW(model.param_groups(0.01), lr=1e-3, flat=flat)
    scaler = mg.amp.GradScaler(enabled=dtype == "float16")
    x, y = np.random.default_rng(0).integers(0, model.cfg.vocab_size, (2, 4, 16))
    if device != "cpu":
        x, y = backend.from_numpy(device, x), backend.from_numpy(device, y)
    counts, start = {}, syncs.count
    with mg.autocast(dtype):
        _, loss = model(x, y)
    loss_value = loss.item()
    counts["forward + loss.item()"], start = syncs.count - start, syncs.count
    opt.zero_grad()
    scaler.scale(loss).backward()
    counts["backward"], start = syncs.count - start, syncs.count
    if overflow:
        opt.flat_grad[3] = np.inf if device == "cpu" else backend.from_numpy(device, np.array(np.inf, np.float32))
    scaler.unscale_(opt)
    counts["unscale_"], start = syncs.count - start, syncs.count
    grads = {k: p.grad.numpy().copy() for k, p in model.named_parameters()}
    start = syncs.count  # .numpy() above is the test's own transfer
    if not scaler.found_inf:  # as tinygpt.train: no clipping of a step that is skipped
        mg.optim.clip_grad_norm_(model.parameters(), 1.0)
    took = scaler.step(opt)
    scaler.update()
    counts["clip + step + update"] = syncs.count - start
    return dict(model=model, opt=opt, scaler=scaler, loss=loss, loss_value=loss_value, grads=grads, took=took,
                syncs=counts)


@pytest.mark.parametrize("dtype", LOW)
def test_a_mixed_precision_step_matches_the_cpu_and_keeps_float32_master_weights(dev, syncs, dtype):
    seen = GeluDtypes(dev.kernels)
    dev.kernels = seen
    try:
        ours = mixed_precision_step(dev, dtype, syncs)
    finally:
        dev.kernels = seen.kernels
    cpu = mixed_precision_step("cpu", dtype, syncs)
    assert seen.seen and set(seen.seen) == {dtype}  # every MLP's GELU ran in the low dtype on the device
    assert ours["loss"].dtype == np.float32 and ours["took"] and cpu["took"]
    np.testing.assert_allclose(ours["loss_value"], cpu["loss_value"], rtol=STEP_TOL[dtype]["loss"])
    assert ours["grads"].keys() == cpu["grads"].keys()
    for k, want in cpu["grads"].items():
        got = ours["grads"][k]
        assert got.dtype == np.float32, k  # the casts' gradients come back float32: clip and AdamW see float32
        scale = np.abs(want).max()
        assert np.abs(got - want).max() <= STEP_TOL[dtype]["grad"] * scale, k
    for p in ours["model"].parameters():  # master weights, their gradients and AdamW's moments: float32, on device
        assert p.dtype == p.grad.dtype == np.float32 and p.device == dev
    for state in ours["opt"].state.values():
        for v in state.values():
            if hasattr(v, "dtype") and getattr(v, "ndim", 0):
                assert v.dtype == np.float32 and backend.device_of(v) == dev
    if dtype == "float16":
        assert ours["scaler"].get_scale() == cpu["scaler"].get_scale() == 2.0 ** 16


@pytest.mark.parametrize("dtype", LOW)
def test_the_mixed_precision_step_syncs_with_the_host_once_more_for_the_loss_scaler_and_only_for_float16(
        dev, syncs, dtype):
    counts = mixed_precision_step(dev, dtype, syncs)["syncs"]
    assert counts["forward + loss.item()"] <= SYNC_BUDGET_PER_STEP  # as in float32: no sync added by autocast
    assert counts["backward"] == 0
    assert counts["unscale_"] == SCALER_SYNCS_PER_STEP[dtype]  # float16: one float() of a float64 sum
    assert counts["clip + step + update"] == 0


def test_without_flat_buffers_the_loss_scaler_still_syncs_once_per_step(dev, syncs):
    """unscale_ sums every parameter's gradient on the device and reads the total once (29 arrays on nano)."""
    counts = mixed_precision_step(dev, "float16", syncs, flat=False)["syncs"]
    assert counts["unscale_"] == 1 and counts["backward"] == 0


def test_an_overflow_on_the_device_skips_the_step_halves_the_scale_and_still_syncs_once(dev, syncs):
    ours = mixed_precision_step(dev, "float16", syncs, overflow=True)
    cpu = mixed_precision_step("cpu", "float16", syncs, overflow=True)
    assert not ours["took"] and not cpu["took"]
    assert ours["scaler"].get_scale() == cpu["scaler"].get_scale() == 2.0 ** 15
    assert ours["syncs"]["unscale_"] == 1 and ours["syncs"]["clip + step + update"] == 0
    from tinygpt import TinyGPT, preset
    mg.manual_seed(0)
    fresh = TinyGPT(preset("nano"))
    for (k, p), q in zip(fresh.named_parameters(), ours["model"].parameters()):
        np.testing.assert_array_equal(q.numpy(), p.numpy(), err_msg=k)  # the skipped step left the weights alone
