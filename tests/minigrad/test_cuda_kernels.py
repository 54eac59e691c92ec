"""The fused CUDA kernels (minigrad/cuda_kernels.py), checked as far as a machine without a GPU allows.

1. Their array-namespace references match minigrad's own ops (GELU both forms, AdamW), on numpy.
2. Every kernel's CUDA source (float32, float64 and GELU's float16/bfloat16 variants) compiles with NVRTC
   for sm_75, sm_80, sm_86, sm_89 and sm_90 with no error, no warning and no register spills ([cuda-check]
   extra; skipped when it is absent). The 16-bit sources include cuda_fp16.h / cuda_bf16.h from the
   directory cupy itself uses (cuda-pathfinder's "cudart" headers: the nvidia-cuda-runtime-cu12 wheel).
3. The same sources, compiled as host C++ with a few shims (threadIdx, blockIdx, ...; __half and
   __nv_bfloat16 as 16-bit structs with host conversions) and run thread by thread on the CPU, match the
   references through CudaKernels' real launch code. This is a SIMULATION of the launch: it checks
   indexing, the grid-stride loop, argument order, scalar types and 16-bit loads/stores, not the GPU's
   math library, its conversion intrinsics, memory model or timing.
4. Marked cuda (skipped without a GPU): the kernels run by cupy on a real GPU match the references.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
from minigrad import backend
from minigrad import cuda_kernels as ck
from minigrad.cuda_kernels import ARCHS, SPECS, CudaKernels, ReferenceKernels, kernel_sources
from tests.strict_cupy import cupy_or_skip

# float32: the kernels and the references round differently (both within ~2e-6 of the float64 result).
# float16/bfloat16: both compute in float32 (float32's atol: 1 + erf cancels in the negative tail) and round once;
# where the two float32 values straddle a rounding boundary they differ by one unit in the last place:
# 2**-10 (float16) or 2**-7 (bfloat16) relative
TOL = {np.float32: dict(rtol=1e-5, atol=5e-6), np.float64: dict(rtol=1e-12, atol=1e-14),
       "float16": dict(rtol=2 ** -10, atol=5e-6), "bfloat16": dict(rtol=2 ** -7, atol=5e-6)}
FORMS = ["none", "tanh"]
LOW = ["float16", pytest.param("bfloat16", marks=pytest.mark.skipif(mg.bfloat16 is None,
                                                                     reason="bfloat16 needs ml_dtypes"))]


def low_dtype(name):
    return mg.as_dtype(name)


def gelu_inputs(dtype, n=1000, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.standard_normal(n - 6) * 3, [0.0, -1e-8, 6.0, -6.0, 12.0, -12.0]]).astype(dtype)
    return x, rng.standard_normal(n).astype(dtype)


# ---------------------------------------------------------------- 1. references vs minigrad's ops

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("approximate", FORMS)
def test_reference_gelu_matches_the_gelu_op_forward_and_backward(approximate, dtype):
    x, g = gelu_inputs(dtype)
    t = mg.tensor(x, requires_grad=True)
    y = mg.nn.functional.gelu(t, approximate=approximate)
    y.backward(mg.tensor(g))
    ref = ReferenceKernels(np, backend.erf)
    np.testing.assert_allclose(ref.gelu_forward(x, approximate), y.numpy(), **TOL[dtype])
    np.testing.assert_allclose(ref.gelu_backward(x, g, approximate), t.grad.numpy(), **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reference_gelu_of_a_transposed_array_matches_the_contiguous_one(dtype):
    # the CPU's float32 erf once wrote into a temporary for non-C-contiguous input and returned garbage
    x = np.linspace(-3, 3, 40, dtype=dtype).reshape(5, 8)
    ref = ReferenceKernels(np, backend.erf)
    np.testing.assert_array_equal(ref.gelu_forward(x.T), ref.gelu_forward(np.ascontiguousarray(x.T)))
    np.testing.assert_array_equal(backend.erf(x.T), backend.erf(np.ascontiguousarray(x.T)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_reference_adamw_matches_the_optimizer_step_for_step(weight_decay, dtype):
    rng = np.random.default_rng(1)
    p0 = rng.standard_normal((7, 5)).astype(dtype)
    grads = [rng.standard_normal((7, 5)).astype(dtype) for _ in range(5)]
    param = mg.nn.Parameter(mg.tensor(p0.copy()))
    opt = mg.optim.AdamW([param], lr=1e-2, betas=(0.8, 0.95), eps=1e-6, weight_decay=weight_decay)
    p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    for step, g in enumerate(grads, 1):
        param.grad = mg.tensor(g)
        opt.step()
        ReferenceKernels(np, backend.erf).adamw_step(p, g, m, v, lr=1e-2, beta1=0.8, beta2=0.95, eps=1e-6,
                                        weight_decay=weight_decay, step=step)
        np.testing.assert_allclose(p, param.numpy(), **TOL[dtype])


# ---------------------------------------------------------------- 2. NVRTC compile for real GPUs

def _nvrtc():
    cupy_or_skip("the NVRTC compile check")
    from cupy.cuda import nvrtc
    try:
        nvrtc.getVersion()
    except Exception as e:  # cuda-pathfinder's DynamicLibNotFoundError when no libnvrtc is installed
        msg = f"NVRTC not found ({type(e).__name__}); pip install -e \".[cuda-check]\""
        if os.environ.get("MINIGRAD_REQUIRE_CUDA_CHECK") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return nvrtc


def cuda_include_dir() -> str:
    """Where cuda_fp16.h and cuda_bf16.h are: the CUDA runtime headers as cupy finds them (cuda-pathfinder's
    "cudart": the nvidia-cuda-runtime-cu12 wheel of [cuda-check], a conda or system toolkit). NVRTC 12.9 has
    no built-in copy: its wheel ships nvrtc.h and the libraries only."""
    try:
        from cuda.pathfinder import find_nvidia_header_directory
        found = find_nvidia_header_directory("cudart")
    except ImportError:
        found = None
    if found is None or not all((Path(found) / h).is_file() for h in ("cuda_fp16.h", "cuda_bf16.h")):
        msg = "cuda_fp16.h/cuda_bf16.h not found; pip install -e \".[cuda-check]\" (nvidia-cuda-runtime-cu12)"
        if os.environ.get("MINIGRAD_REQUIRE_CUDA_CHECK") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return found


def nvrtc_compile(nvrtc, source: str, name: str, arch: str, include_dir: "str | None" = None) -> tuple[bool, str]:
    """Compile CUDA C++ to a cubin for one architecture (NVRTC then ptxas, no GPU needed): (ok, log)."""
    prog = nvrtc.createProgram(source, f"{name}.cu", [], [])
    includes = [f"-I{include_dir}"] if include_dir else []
    try:
        nvrtc.compileProgram(prog, [f"--gpu-architecture={arch}", *ck.NVRTC_OPTIONS, "--ptxas-options=-v", *includes])
        ok = len(nvrtc.getCUBIN(prog)) > 0
    except nvrtc.NVRTCError:
        ok = False
    log = nvrtc.getProgramLog(prog)
    nvrtc.destroyProgram(prog)
    return ok, log


def compile_problems(nvrtc, source: str, name: str, arch: str, include_dir: "str | None" = None) -> list[str]:
    ok, log = nvrtc_compile(nvrtc, source, name, arch, include_dir)
    problems = [] if ok else [f"{name} [{arch}] failed to compile"]
    problems += [f"{name} [{arch}]: {line.strip()}" for line in log.splitlines()
                 if "warning" in line.lower() or "error" in line.lower()
                 or ("spill" in line and " 0 bytes spill stores, 0 bytes spill loads" not in line)]
    return problems


@pytest.mark.parametrize("arch", ARCHS)
def test_every_kernel_compiles_for_the_architecture_without_errors_warnings_or_spills(arch):
    nvrtc = _nvrtc()
    include_dir = cuda_include_dir()
    problems = [p for name, src in kernel_sources() for p in compile_problems(nvrtc, src, name, arch, include_dir)]
    assert not problems, "\n".join(problems)


def test_the_compile_check_fails_on_a_warning_and_on_an_error():
    nvrtc = _nvrtc()
    warn = 'extern "C" __global__ void k(float* y) { int unused = 3; y[0] = 1.0f; }'
    err = 'extern "C" __global__ void k(float* y) { y[0] = INFINITY; }'  # NVRTC defines no INFINITY
    assert any("warning" in p for p in compile_problems(nvrtc, warn, "k", "sm_80"))
    assert any("failed to compile" in p for p in compile_problems(nvrtc, err, "k", "sm_80"))


def test_every_spec_has_its_dtypes_and_a_distinct_symbol():
    names = [name for name, _ in kernel_sources()]
    assert len(names) == len(set(names)) == sum(len(spec.dtypes) for spec in SPECS)
    assert all(spec.dtypes == ck.ALL_DTYPES for spec in SPECS if spec.name.startswith("gelu"))
    assert ck.ADAMW_STEP.dtypes == ("float32", "float64")  # master weights and AdamW state stay float32
    for dtype, header, storage in (("float16", "cuda_fp16.h", "const __half* x"),
                                   ("bfloat16", "cuda_bf16.h", "const __nv_bfloat16* x")):
        src = ck.GELU_ERF_FORWARD.source(dtype)
        assert f"#include <{header}>" in src and storage in src and "typedef float T;" in src
    assert "#include" not in ck.GELU_ERF_FORWARD.source("float32")  # float32/float64 need no header


# ---------------------------------------------------------------- 3. the sources run as host C++

_SHIMS = r"""
#include <math.h>
struct dim3_shim { unsigned x, y, z; };
static dim3_shim threadIdx, blockIdx, blockDim, gridDim;
#define __global__
#define __device__
#define __forceinline__ inline
"""
_C_SCALARS = {"float": (ctypes.c_float, np.float32), "double": (ctypes.c_double, np.float64)}
# what the 16-bit sources use of cuda_fp16.h and cuda_bf16.h, emulated on the host (found first through -I)
_HOST_HEADERS = {
    "cuda_fp16.h": r"""#pragma once
#include <string.h>
struct __half { unsigned short bits; };  // g++ >= 12 on x86-64: _Float16 converts with round to nearest even
inline float __half2float(__half h) { _Float16 f; memcpy(&f, &h.bits, 2); return (float)f; }
inline __half __float2half_rn(float v) { _Float16 f = (_Float16)v; __half h; memcpy(&h.bits, &f, 2); return h; }
""",
    "cuda_bf16.h": r"""#pragma once
#include <string.h>
struct __nv_bfloat16 { unsigned short bits; };  // the high 16 bits of a float32
inline float __bfloat162float(__nv_bfloat16 b) { unsigned u = (unsigned)b.bits << 16; float f; memcpy(&f, &u, 4); return f; }
inline __nv_bfloat16 __float2bfloat16_rn(float v) {
  unsigned u; memcpy(&u, &v, 4);
  __nv_bfloat16 b;
  if ((u & 0x7fffffffu) > 0x7f800000u) { b.bits = 0x7fc0; return b; }  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
  b.bits = (unsigned short)(u >> 16);
  return b;
}
""",
}


class HostKernel:
    """A kernel source compiled with g++ and launched like cupy.RawKernel: kernel(grid, block, args)."""

    def __init__(self, spec, dtype, workdir: Path) -> None:
        self.spec, self.dtype_name = spec, ck.dtype_name(dtype)
        sym = spec.symbol(dtype)
        params = spec.c_params(dtype)
        decl = ", ".join(f"{t} {n}" for t, n in params)
        call = ", ".join(n for _, n in params)
        launcher = (f'extern "C" void launch(unsigned grid, unsigned block, {decl}) {{\n'
                    "  gridDim.x = grid; blockDim.x = block;\n"
                    "  for (unsigned b = 0; b < grid; ++b) for (unsigned t = 0; t < block; ++t) {\n"
                    f"    blockIdx.x = b; threadIdx.x = t; {sym}({call}); }}\n}}\n")
        src, lib = workdir / f"{sym}.cpp", workdir / f"{sym}.so"
        src.write_text(_SHIMS + spec.source(dtype) + launcher)
        for header, text in _HOST_HEADERS.items():
            (workdir / header).write_text(text)
        subprocess.run(["g++", "-O1", "-shared", "-fPIC", f"-I{workdir}", "-o", str(lib), str(src)], check=True,
                       capture_output=True, text=True)
        self.fn = ctypes.CDLL(str(lib)).launch
        self.fn.restype = None
        self.params = params
        self.launches = 0

    def __call__(self, grid: tuple, block: tuple, args: tuple) -> None:
        assert len(grid) == 1 and len(block) == 1 and len(args) == len(self.params)
        c_args = []
        for (ctype, name), a in zip(self.params, args):
            if ctype.endswith("*"):
                host = getattr(a, "_a", a)  # the stand-in's StrictArray or a numpy array
                assert isinstance(host, np.ndarray) and host.dtype.name == self.dtype_name and host.flags.c_contiguous, \
                    name
                c_args.append(ctypes.c_void_p(host.ctypes.data))
            elif ctype == "long long":
                assert type(a) is np.int64, f"{name}: pass np.int64, not {type(a).__name__} (cupy would guess)"
                c_args.append(ctypes.c_longlong(int(a)))
            else:
                c_type, np_type = _C_SCALARS[ctype]
                assert type(a) is np_type, f"{name}: pass {np_type.__name__}, got {type(a).__name__}"
                c_args.append(c_type(float(a)))
        self.fn(ctypes.c_uint(grid[0]), ctypes.c_uint(block[0]), *c_args)
        self.launches += 1


@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("needs g++ to run the kernel sources on the CPU")
    workdir = tmp_path_factory.mktemp("kernels")
    built = {spec.symbol(dt): HostKernel(spec, dt, workdir) for spec in SPECS for dt in ck.FLOAT_DTYPES}

    def kernel(source, symbol):
        if symbol not in built:  # the 16-bit ones when first asked for
            spec, dtype = next((sp, dt) for sp in SPECS for dt in sp.dtypes if sp.symbol(dt) == symbol)
            try:
                built[symbol] = HostKernel(spec, dtype, workdir)
            except subprocess.CalledProcessError as e:
                pytest.skip(f"g++ cannot build the {dtype} host emulation (needs _Float16: g++ >= 12 on x86-64): "
                            f"{e.stderr[-300:]}")
        return built[symbol]
    return kernel


@pytest.fixture(params=["numpy", "stand-in"])
def xp_and_wrap(request):
    if request.param == "numpy":
        return np, lambda a: a
    cupy_or_skip("the strict cupy stand-in")
    from tests.strict_cupy import make_device
    dev = make_device()
    return dev.xp, dev.xp.asarray


@pytest.mark.parametrize("n", [1, 33, 1025, 5000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("approximate", FORMS)
def test_gelu_kernels_run_as_host_code_match_the_reference(host_kernels, xp_and_wrap, monkeypatch, approximate,
                                                          dtype, n):
    monkeypatch.setattr(ck, "MAX_GRID", 3)  # more elements than threads: the grid-stride loop is exercised
    xp, wrap = xp_and_wrap
    x, g = gelu_inputs(dtype, n=max(n, 7))
    x, g = x[:n], g[:n]
    fused, ref = CudaKernels(xp, backend.erf, raw_kernel=host_kernels), ReferenceKernels(np, backend.erf)
    y = fused.gelu_forward(wrap(x), approximate)
    dx = fused.gelu_backward(wrap(x), wrap(g), approximate)
    np.testing.assert_allclose(_host(y), ref.gelu_forward(x, approximate), **TOL[dtype])
    np.testing.assert_allclose(_host(dx), ref.gelu_backward(x, g, approximate), **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adamw_kernel_run_as_host_code_matches_the_reference_over_steps(host_kernels, xp_and_wrap, monkeypatch,
                                                                       dtype):
    monkeypatch.setattr(ck, "MAX_GRID", 2)
    xp, wrap = xp_and_wrap
    rng = np.random.default_rng(2)
    p = rng.standard_normal(3000).astype(dtype)
    fused = CudaKernels(xp, backend.erf, raw_kernel=host_kernels)
    dp, dm, dv = wrap(p.copy()), wrap(np.zeros_like(p)), wrap(np.zeros_like(p))
    rp, rm, rv = p.copy(), np.zeros_like(p), np.zeros_like(p)
    opts = dict(lr=3e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01)
    for step in range(1, 6):
        g = rng.standard_normal(p.shape).astype(dtype)
        fused.adamw_step(dp, wrap(g), dm, dv, step=step, **opts)
        ReferenceKernels(np, backend.erf).adamw_step(rp, g, rm, rv, step=step, **opts)
    for got, want in ((dp, rp), (dm, rm), (dv, rv)):
        np.testing.assert_allclose(_host(got), want, **TOL[dtype])


@pytest.mark.parametrize("n", [1, 33, 1025, 5000])
@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("approximate", FORMS)
def test_low_precision_gelu_kernels_run_as_host_code_match_the_float32_reference_rounded_once(
        host_kernels, xp_and_wrap, monkeypatch, approximate, dtype, n):
    monkeypatch.setattr(ck, "MAX_GRID", 3)
    xp, wrap = xp_and_wrap
    low = low_dtype(dtype)
    x, g = gelu_inputs(np.float32, n=max(n, 7))
    x, g = x[:n].astype(low), g[:n].astype(low)
    fused, ref = CudaKernels(xp, backend.erf, raw_kernel=host_kernels), ReferenceKernels(np, backend.erf)
    kernel = host_kernels("", ck.GELU_TANH_FORWARD.symbol(dtype) if approximate == "tanh"
                          else ck.GELU_ERF_FORWARD.symbol(dtype))
    before = kernel.launches
    y = _host(fused.gelu_forward(wrap(x), approximate))
    dx = _host(fused.gelu_backward(wrap(x), wrap(g), approximate))
    assert kernel.launches == before + 1 and y.dtype == dx.dtype == low
    want_y = ref.gelu_forward(x.astype(np.float32), approximate)  # float32 math on the 16-bit values
    want_dx = ref.gelu_backward(x.astype(np.float32), g.astype(np.float32), approximate)
    np.testing.assert_allclose(y.astype(np.float32), want_y, **TOL[dtype])
    np.testing.assert_allclose(dx.astype(np.float32), want_dx, **TOL[dtype])
    # and the reference's own low-precision path is that float32 math rounded once
    np.testing.assert_array_equal(ref.gelu_forward(x, approximate), want_y.astype(low))
    np.testing.assert_array_equal(ref.gelu_backward(x, g, approximate), want_dx.astype(low))


def test_non_contiguous_or_mixed_dtype_inputs_and_dtypes_without_a_kernel_fall_back_to_the_reference(host_kernels):
    fused, ref = CudaKernels(np, backend.erf, raw_kernel=host_kernels), ReferenceKernels(np, backend.erf)
    x = np.linspace(-3, 3, 40).reshape(5, 8)
    h = x.astype(np.float16)
    for spec in SPECS:
        for dt in spec.dtypes:
            host_kernels("", spec.symbol(dt))  # built before counting

    def launches():
        return {s: host_kernels("", s).launches for s, _ in kernel_sources()}

    before = launches()
    np.testing.assert_allclose(fused.gelu_forward(x.T), ref.gelu_forward(x.T), rtol=1e-14)
    np.testing.assert_array_equal(fused.gelu_forward(h.T), ref.gelu_forward(h.T))  # non-contiguous float16
    p = np.ones(8, np.float16)
    fused.adamw_step(p, p.copy(), np.zeros_like(p), np.zeros_like(p), lr=1e-3, beta1=0.9, beta2=0.99, eps=1e-8,
                     weight_decay=0.0, step=1)  # AdamW has no float16 kernel
    assert launches() == before
    # float32 g for a float16 x: no float16 kernel (one dtype per launch), but the reference's float32 math on
    # the upcast arrays runs the float32 kernel; the gradient comes back float16
    dx = fused.gelu_backward(h, np.ones(h.shape, np.float32))
    assert dx.dtype == np.float16
    np.testing.assert_allclose(dx.astype(np.float32), ref.gelu_backward(h.astype(np.float32),
                               np.ones(h.shape, np.float32)), **TOL["float16"])
    after = launches()
    assert {s for s in after if after[s] != before[s]} == {ck.GELU_ERF_BACKWARD.symbol("float32")}


def _host(a):
    return a.get() if hasattr(a, "get") else a


# ---------------------------------------------------------------- 4. on a real GPU

@pytest.mark.cuda
@pytest.mark.parametrize("n", [1, 31, 33, 1025, 100_003])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_on_the_gpu_match_the_reference(dtype, n):
    dev = backend.device("cuda")
    assert dev.kernels is not None and dev.kernels.fused, "MINIGRAD_CUDA_KERNELS=0 is set"
    cp = dev.xp
    x, g = gelu_inputs(dtype, n=max(n, 7))
    x, g = x[:n], g[:n]
    ref = ReferenceKernels(np, backend.erf)
    tol = TOL[dtype] if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    for approximate in FORMS:
        np.testing.assert_allclose(dev.kernels.gelu_forward(cp.asarray(x), approximate).get(),
                                   ref.gelu_forward(x, approximate), **tol)
        np.testing.assert_allclose(dev.kernels.gelu_backward(cp.asarray(x), cp.asarray(g), approximate).get(),
                                   ref.gelu_backward(x, g, approximate), **tol)
    p, m, v = x.copy(), np.zeros_like(x), np.zeros_like(x)
    dp, dm, dv = cp.asarray(p), cp.asarray(m), cp.asarray(v)
    for step in (1, 2, 3):
        dev.kernels.adamw_step(dp, cp.asarray(g), dm, dv, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                               weight_decay=0.1, step=step)
        ref.adamw_step(p, g, m, v, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, step=step)
    for got, want in ((dp, p), (dm, m), (dv, v)):
        np.testing.assert_allclose(got.get(), want, **tol)


@pytest.mark.cuda
@pytest.mark.parametrize("n", [1, 33, 100_003])
@pytest.mark.parametrize("dtype", LOW)
def test_low_precision_gelu_kernels_on_the_gpu_match_the_float32_reference_rounded_once(dtype, n):
    dev = backend.device("cuda")
    assert dev.kernels is not None and dev.kernels.fused, "MINIGRAD_CUDA_KERNELS=0 is set"
    cp, low = dev.xp, low_dtype(dtype)
    x, g = gelu_inputs(np.float32, n=max(n, 7))
    x, g = x[:n].astype(low), g[:n].astype(low)
    ref = ReferenceKernels(np, backend.erf)
    for approximate in FORMS:
        y = dev.kernels.gelu_forward(cp.asarray(x), approximate)
        dx = dev.kernels.gelu_backward(cp.asarray(x), cp.asarray(g), approximate)
        assert y.dtype == dx.dtype == low
        np.testing.assert_allclose(y.get().astype(np.float32), ref.gelu_forward(x.astype(np.float32), approximate),
                                   **TOL[dtype])
        np.testing.assert_allclose(dx.get().astype(np.float32),
                                   ref.gelu_backward(x.astype(np.float32), g.astype(np.float32), approximate),
                                   **TOL[dtype])
