"""Optional fused CUDA kernels (cupy RawKernel), each next to its array-namespace reference.

Only where one kernel replaces several passes over memory: GELU forward and backward (exact
erf form and tanh form) and the AdamW update. The reference methods of ``ReferenceKernels``
do the same math with ``xp`` calls (numpy or cupy, the op code's usual style); ``CudaKernels``
launches the raw kernels on cupy arrays and falls back to the reference for dtypes without a
kernel or non-contiguous arrays. A device exposes one of them as ``Device.kernels`` (None on
the CPU, which keeps its tuned numpy path).

dtypes: GELU has float32, float64, float16 (``__half``) and bfloat16 (``__nv_bfloat16``) kernels;
the low-precision ones load and store 16 bits and compute in float32 (one rounding, at the store),
and the reference does the same in float32 for float16/bfloat16 arrays. AdamW has float32 and
float64 (master weights and moments stay float32 under mixed precision). The low-precision
sources include cuda_fp16.h / cuda_bf16.h, which NVRTC does not build in: cupy adds the include
directory of the CUDA runtime headers (a toolkit's, or the nvidia-cuda-runtime-cu12 wheel's, which
cupy-cuda12x[ctk] installs), as cupy's own float16 kernels need.

Status: the CUDA sources are compiled with NVRTC for sm_75..sm_90 in CI and their logic is run
as host-compiled C++ against the references, but they have NOT yet been run on a GPU.
Set MINIGRAD_CUDA_KERNELS=0 to run the reference paths on the GPU instead.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

ARCHS = ("sm_75", "sm_80", "sm_86", "sm_89", "sm_90")  # Turing, Ampere (A100, RTX 30), Ada, Hopper
NVRTC_OPTIONS = ("--std=c++17",)
BLOCK = 256
MAX_GRID = 65535  # grid-stride loops cover the rest

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

# dtype name -> (symbol suffix, storage C type, compute C type)
C_TYPES = {
    "float32": ("f32", "float", "float"),
    "float64": ("f64", "double", "double"),
    "float16": ("f16", "__half", "float"),  # cuda_fp16.h
    "bfloat16": ("bf16", "__nv_bfloat16", "float"),  # cuda_bf16.h
}
FLOAT_DTYPES = ("float32", "float64")
ALL_DTYPES = ("float32", "float64", "float16", "bfloat16")
LOW_DTYPES = ("float16", "bfloat16")

# Float and double spellings of the math functions, so one template body serves every dtype; k_load / k_store
# read and write an element of the storage type in the compute type (identity for float and double).
_PRELUDE = r"""
__device__ __forceinline__ float k_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double k_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float k_erf(float x) { return erff(x); }
__device__ __forceinline__ double k_erf(double x) { return erf(x); }
__device__ __forceinline__ float k_exp(float x) { return expf(x); }
__device__ __forceinline__ double k_exp(double x) { return exp(x); }
__device__ __forceinline__ float k_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double k_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float k_load(float v) { return v; }
__device__ __forceinline__ double k_load(double v) { return v; }
__device__ __forceinline__ void k_store(float* p, float v) { *p = v; }
__device__ __forceinline__ void k_store(double* p, double v) { *p = v; }
"""
# 16-bit storage, float32 compute: round to nearest even on the store
_LOW_PRELUDE = {
    "float16": r"""#include <cuda_fp16.h>
__device__ __forceinline__ float k_load(__half v) { return __half2float(v); }
__device__ __forceinline__ void k_store(__half* p, float v) { *p = __float2half_rn(v); }
""",
    "bfloat16": r"""#include <cuda_bf16.h>
__device__ __forceinline__ float k_load(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ void k_store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
""",
}


def dtype_name(dtype: Any) -> str:
    """"float32", "float64", "float16", "bfloat16", ... for a dtype or its name (no ml_dtypes needed for the name)."""
    return dtype if isinstance(dtype, str) else np.dtype(dtype).name


@dataclass(frozen=True)
class KernelSpec:
    """One elementwise kernel: parameters (C type, name) and a per-element body, for each of ``dtypes``.

    In the C types S is the array element (storage) type and T the compute type: float for float32, float16
    and bfloat16, double for float64. The body runs for each index i in [0, n) of a grid-stride loop (``n`` is
    the last parameter); it reads elements with k_load and writes them with k_store.
    """

    name: str
    params: tuple
    body: str
    dtypes: tuple = FLOAT_DTYPES

    def symbol(self, dtype: Any) -> str:
        return f"{self.name}_{C_TYPES[dtype_name(dtype)][0]}"

    def c_params(self, dtype: Any) -> list:
        """(C type, name) of every parameter for dtype, ``long long n`` last."""
        _, storage, compute = C_TYPES[dtype_name(dtype)]
        return [(t.replace("S", storage).replace("T", compute), n) for t, n in self.params] + [("long long", "n")]

    def source(self, dtype: Any) -> str:
        """The complete CUDA C++ source of the kernel for one of its dtypes."""
        name = dtype_name(dtype)
        if name not in self.dtypes:
            raise ValueError(f"{self.name}: no {name} kernel (has {', '.join(self.dtypes)})")
        _, storage, compute = C_TYPES[name]
        params = ", ".join(f"{t} {n}" for t, n in self.c_params(name))
        return (_LOW_PRELUDE.get(name, "") + _PRELUDE
                + f'\nextern "C" __global__ void {self.symbol(name)}({params}) {{\n'
                f"    typedef {storage} S;\n"
                f"    typedef {compute} T;\n"
                "    long long stride = (long long)gridDim.x * blockDim.x;\n"
                "    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {\n"
                f"{self.body}    }}\n}}\n")


# y = 0.5 x (1 + erf(x / sqrt 2))
GELU_ERF_FORWARD = KernelSpec("gelu_erf_forward", (("const S*", "x"), ("S*", "y")), f"""\
        T xi = k_load(x[i]);
        k_store(y + i, T(0.5) * xi * (T(1) + k_erf(xi * T({_INV_SQRT_2!r}))));
""", ALL_DTYPES)
# dy/dx = 0.5 (1 + erf(x/sqrt 2)) + x exp(-x^2/2) / sqrt(2 pi);  dx may alias g
GELU_ERF_BACKWARD = KernelSpec("gelu_erf_backward", (("const S*", "x"), ("const S*", "g"), ("S*", "dx")), f"""\
        T xi = k_load(x[i]);
        T cdf = T(0.5) * (T(1) + k_erf(xi * T({_INV_SQRT_2!r})));
        T pdf = k_exp(T(-0.5) * xi * xi) * T({_INV_SQRT_2PI!r});
        k_store(dx + i, k_load(g[i]) * (cdf + xi * pdf));
""", ALL_DTYPES)
# y = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
GELU_TANH_FORWARD = KernelSpec("gelu_tanh_forward", (("const S*", "x"), ("S*", "y")), f"""\
        T xi = k_load(x[i]);
        T t = k_tanh(T({_SQRT_2_OVER_PI!r}) * xi * (T(1) + T(0.044715) * xi * xi));
        k_store(y + i, T(0.5) * xi * (T(1) + t));
""", ALL_DTYPES)
# dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2),  t = tanh(u);  dx may alias g
GELU_TANH_BACKWARD = KernelSpec("gelu_tanh_backward", (("const S*", "x"), ("const S*", "g"), ("S*", "dx")), f"""\
        T xi = k_load(x[i]);
        T t = k_tanh(T({_SQRT_2_OVER_PI!r}) * xi * (T(1) + T(0.044715) * xi * xi));
        T du = T({0.5 * _SQRT_2_OVER_PI!r}) * xi * (T(1) + T({3 * 0.044715!r}) * xi * xi);
        k_store(dx + i, k_load(g[i]) * (T(0.5) * (T(1) + t) + (T(1) - t * t) * du));
""", ALL_DTYPES)
# AdamW, in place, as minigrad.optim.AdamW (torch.optim.AdamW):
#   p *= 1 - lr wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
#   p += -(lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
ADAMW_STEP = KernelSpec("adamw_step", (
    ("T*", "p"), ("const T*", "g"), ("T*", "m"), ("T*", "v"), ("T", "decay"), ("T", "beta1"), ("T", "one_minus_beta1"),
    ("T", "beta2"), ("T", "one_minus_beta2"), ("T", "bias_correction2_sqrt"), ("T", "eps"), ("T", "neg_step_size")), """\
        T gi = g[i];
        T mi = m[i] * beta1 + gi * one_minus_beta1;
        T vi = v[i] * beta2 + gi * gi * one_minus_beta2;
        m[i] = mi;
        v[i] = vi;
        T denom = k_sqrt(vi) / bias_correction2_sqrt + eps;
        p[i] = p[i] * decay + (mi / denom) * neg_step_size;
""")

SPECS = (GELU_ERF_FORWARD, GELU_ERF_BACKWARD, GELU_TANH_FORWARD, GELU_TANH_BACKWARD, ADAMW_STEP)


def kernel_sources() -> list:
    """(symbol, source) of every kernel for every one of its dtypes: what CI compiles with NVRTC."""
    return [(spec.symbol(dt), spec.source(dt)) for spec in SPECS for dt in spec.dtypes]


def is_low(a: Any) -> bool:
    """Whether a is a float16 or bfloat16 array."""
    dt = getattr(a, "dtype", None)
    return dt is not None and dt.itemsize == 2 and dt.name in LOW_DTYPES


def adamw_scalars(lr: float, beta1: float, beta2: float, eps: float, weight_decay: float, step: int) -> dict:
    """The per-step scalars of the AdamW kernel, computed on the host in double precision."""
    return dict(decay=1.0 - lr * weight_decay, beta1=beta1, one_minus_beta1=1.0 - beta1, beta2=beta2,
                one_minus_beta2=1.0 - beta2, bias_correction2_sqrt=math.sqrt(1.0 - beta2 ** step), eps=eps,
                neg_step_size=-lr / (1.0 - beta1 ** step))


class ReferenceKernels:
    """The kernels' math written with array-namespace calls: runs on numpy, cupy or the test stand-in.

    ``erf`` is the error function for xp's arrays (the device's ``erf`` hook: numpy and cupy have none of their
    own); the device that builds the kernels passes it in, so this module imports nothing of minigrad's.
    """

    fused = False

    def __init__(self, xp: Any, erf: Callable[[Any], Any]) -> None:
        self.xp = xp
        self.erf = erf

    def _tanh_u(self, x: Any) -> Any:
        """tanh(u), u = sqrt(2/pi) (x + 0.044715 x^3), in a fresh buffer."""
        t = x * x
        t *= 0.044715
        t += 1.0
        t *= x
        t *= _SQRT_2_OVER_PI
        return self.xp.tanh(t, out=t)

    def gelu_forward(self, x: Any, approximate: str = "none") -> Any:
        """GELU(x); approximate is "none" (erf) or "tanh". float16/bfloat16: in float32, rounded once to x's dtype."""
        if is_low(x):  # as the 16-bit kernels: float32 math, one rounding at the end
            return self.gelu_forward(x.astype("float32"), approximate).astype(x.dtype)
        t = self._tanh_u(x) if approximate == "tanh" else self.erf(x * _INV_SQRT_2)
        t += 1.0
        t *= x
        t *= 0.5
        return t

    def gelu_backward(self, x: Any, g: Any, approximate: str = "none") -> Any:
        """g * GELU'(x), recomputing tanh(u) or erf from x (nothing but x is saved by the forward). float16/bfloat16
        x: in float32 (g as it is, or upcast), the result rounded once to x's dtype."""
        if is_low(x):
            return self.gelu_backward(x.astype("float32"), g.astype("float32"), approximate).astype(x.dtype)
        xp = self.xp
        if approximate == "tanh":
            t = self._tanh_u(x)
            du = x * x
            du *= 3 * 0.044715
            du += 1.0
            du *= x
            du *= 0.5 * _SQRT_2_OVER_PI
            sech2 = t * t
            xp.subtract(1.0, sech2, out=sech2)
            sech2 *= du
            t += 1.0
            t *= 0.5
            t += sech2
        else:
            t = self.erf(x * _INV_SQRT_2)
            pdf = x * x
            pdf *= -0.5
            xp.exp(pdf, out=pdf)
            pdf *= x
            pdf *= _INV_SQRT_2PI
            t += 1.0
            t *= 0.5
            t += pdf
        t *= g
        return t

    def adamw_step(self, p: Any, g: Any, m: Any, v: Any, *, lr: float, beta1: float, beta2: float, eps: float,
                   weight_decay: float, step: int) -> None:
        """One AdamW update of p, m and v in place (step counts from 1)."""
        xp, s = self.xp, adamw_scalars(lr, beta1, beta2, eps, weight_decay, step)
        tmp = xp.empty_like(p)
        if weight_decay != 0.0:
            p *= s["decay"]
        m *= beta1
        xp.multiply(g, s["one_minus_beta1"], out=tmp)
        m += tmp
        v *= beta2
        xp.multiply(g, g, out=tmp)
        tmp *= s["one_minus_beta2"]
        v += tmp
        xp.sqrt(v, out=tmp)
        tmp /= s["bias_correction2_sqrt"]
        tmp += eps
        xp.divide(m, tmp, out=tmp)
        tmp *= s["neg_step_size"]
        p += tmp


class CudaKernels(ReferenceKernels):
    """The raw kernels on cupy arrays, compiled by cupy (NVRTC) on first use for the current GPU.

    ``raw_kernel(source, symbol)`` builds a launchable kernel (``cupy.RawKernel`` on a GPU; tests pass
    a host-compiled emulation); it is called ``kernel(grid, block, args)``. ``erf`` serves the reference
    paths it falls back to.
    """

    fused = True

    def __init__(self, xp: Any, erf: Callable[[Any], Any],
                 raw_kernel: "Callable[[str, str], Any] | None" = None) -> None:
        super().__init__(xp, erf)
        self._raw_kernel = raw_kernel or (lambda src, name: xp.RawKernel(src, name, options=NVRTC_OPTIONS))
        self._compiled: dict = {}

    @staticmethod
    def _usable(spec: KernelSpec, *arrays: Any) -> bool:
        """Whether spec has a kernel for the arrays: one dtype that it has, every array C-contiguous."""
        dt = arrays[0].dtype
        return dt.name in spec.dtypes and all(a.dtype == dt and a.flags.c_contiguous for a in arrays)

    def _launch(self, spec: KernelSpec, arrays: tuple, scalars: tuple = ()) -> None:
        dtype, n = arrays[0].dtype, arrays[0].size
        key = spec.symbol(dtype)
        kernel = self._compiled.get(key)
        if kernel is None:
            kernel = self._compiled[key] = self._raw_kernel(spec.source(dtype), key)
        if n == 0:
            return
        scalar_type = np.float64 if dtype == np.float64 else np.float32  # the compute type T
        grid = min((n + BLOCK - 1) // BLOCK, MAX_GRID)
        kernel((grid,), (BLOCK,), (*arrays, *(scalar_type(s) for s in scalars), np.int64(n)))

    def gelu_forward(self, x: Any, approximate: str = "none") -> Any:
        spec = GELU_TANH_FORWARD if approximate == "tanh" else GELU_ERF_FORWARD
        if not self._usable(spec, x):
            return super().gelu_forward(x, approximate)
        y = self.xp.empty_like(x)
        self._launch(spec, (x, y))
        return y

    def gelu_backward(self, x: Any, g: Any, approximate: str = "none") -> Any:
        spec = GELU_TANH_BACKWARD if approximate == "tanh" else GELU_ERF_BACKWARD
        if not self._usable(spec, x, g) or x.shape != g.shape:
            return super().gelu_backward(x, g, approximate)  # float32 g for float16 x, say: float32 math there
        dx = self.xp.empty_like(x)
        self._launch(spec, (x, g, dx))
        return dx

    def adamw_step(self, p: Any, g: Any, m: Any, v: Any, *, lr: float, beta1: float, beta2: float, eps: float,
                   weight_decay: float, step: int) -> None:
        if not self._usable(ADAMW_STEP, p, g, m, v) or not (p.shape == g.shape == m.shape == v.shape):
            return super().adamw_step(p, g, m, v, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                                      weight_decay=weight_decay, step=step)
        s = adamw_scalars(lr, beta1, beta2, eps, weight_decay, step)
        names = [n for _, n in ADAMW_STEP.params[4:]]
        self._launch(ADAMW_STEP, (p, g, m, v), tuple(s[n] for n in names))
