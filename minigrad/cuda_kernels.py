"""Optional fused CUDA kernels (cupy RawKernel), each next to its array-namespace reference.

Only where one kernel replaces several passes over memory: GELU forward and backward (exact
erf form and tanh form) and the AdamW update. The reference methods of ``ReferenceKernels``
do the same math with ``xp`` calls (numpy or cupy, the op code's usual style); ``CudaKernels``
launches the raw kernels on cupy arrays and falls back to the reference for dtypes other than
float32/float64 or non-contiguous arrays. A device exposes one of them as ``Device.kernels``
(None on the CPU, which keeps its tuned numpy path).

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

# Float and double spellings of the math functions, so one template body serves both dtypes.
_PRELUDE = r"""
__device__ __forceinline__ float k_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double k_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float k_erf(float x) { return erff(x); }
__device__ __forceinline__ double k_erf(double x) { return erf(x); }
__device__ __forceinline__ float k_exp(float x) { return expf(x); }
__device__ __forceinline__ double k_exp(double x) { return exp(x); }
__device__ __forceinline__ float k_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double k_sqrt(double x) { return sqrt(x); }
"""


@dataclass(frozen=True)
class KernelSpec:
    """One elementwise kernel: parameters (C type with T for the float type, name) and a per-element body.

    The body runs for each index i in [0, n) of a grid-stride loop; ``n`` is the last parameter.
    """

    name: str
    params: tuple
    body: str

    def symbol(self, dtype: Any) -> str:
        return f"{self.name}_{'f32' if np.dtype(dtype) == np.float32 else 'f64'}"

    def source(self, dtype: Any) -> str:
        """The complete CUDA C++ source of the kernel for float32 or float64."""
        ctype = "float" if np.dtype(dtype) == np.float32 else "double"
        params = ", ".join(f"{t.replace('T', ctype)} {n}" for t, n in self.params)
        return (_PRELUDE + f'\nextern "C" __global__ void {self.symbol(dtype)}({params}, long long n) {{\n'
                f"    typedef {ctype} T;\n"
                "    long long stride = (long long)gridDim.x * blockDim.x;\n"
                "    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {\n"
                f"{self.body}    }}\n}}\n")


# y = 0.5 x (1 + erf(x / sqrt 2))
GELU_ERF_FORWARD = KernelSpec("gelu_erf_forward", (("const T*", "x"), ("T*", "y")), f"""\
        T xi = x[i];
        y[i] = T(0.5) * xi * (T(1) + k_erf(xi * T({_INV_SQRT_2!r})));
""")
# dy/dx = 0.5 (1 + erf(x/sqrt 2)) + x exp(-x^2/2) / sqrt(2 pi);  dx may alias g
GELU_ERF_BACKWARD = KernelSpec("gelu_erf_backward", (("const T*", "x"), ("const T*", "g"), ("T*", "dx")), f"""\
        T xi = x[i];
        T cdf = T(0.5) * (T(1) + k_erf(xi * T({_INV_SQRT_2!r})));
        T pdf = k_exp(T(-0.5) * xi * xi) * T({_INV_SQRT_2PI!r});
        dx[i] = g[i] * (cdf + xi * pdf);
""")
# y = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
GELU_TANH_FORWARD = KernelSpec("gelu_tanh_forward", (("const T*", "x"), ("T*", "y")), f"""\
        T xi = x[i];
        T t = k_tanh(T({_SQRT_2_OVER_PI!r}) * xi * (T(1) + T(0.044715) * xi * xi));
        y[i] = T(0.5) * xi * (T(1) + t);
""")
# dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2),  t = tanh(u);  dx may alias g
GELU_TANH_BACKWARD = KernelSpec("gelu_tanh_backward", (("const T*", "x"), ("const T*", "g"), ("T*", "dx")), f"""\
        T xi = x[i];
        T t = k_tanh(T({_SQRT_2_OVER_PI!r}) * xi * (T(1) + T(0.044715) * xi * xi));
        T du = T({0.5 * _SQRT_2_OVER_PI!r}) * xi * (T(1) + T({3 * 0.044715!r}) * xi * xi);
        dx[i] = g[i] * (T(0.5) * (T(1) + t) + (T(1) - t * t) * du);
""")
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
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def kernel_sources() -> list:
    """(symbol, source) of every kernel for every dtype: what CI compiles with NVRTC."""
    return [(spec.symbol(dt), spec.source(dt)) for spec in SPECS for dt in DTYPES]


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
        """GELU(x); approximate is "none" (erf) or "tanh"."""
        t = self._tanh_u(x) if approximate == "tanh" else self.erf(x * _INV_SQRT_2)
        t += 1.0
        t *= x
        t *= 0.5
        return t

    def gelu_backward(self, x: Any, g: Any, approximate: str = "none") -> Any:
        """g * GELU'(x), recomputing tanh(u) or erf from x (nothing but x is saved by the forward)."""
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

    def _usable(self, *arrays: Any) -> bool:
        dt = arrays[0].dtype
        return dt in DTYPES and all(a.dtype == dt and a.flags.c_contiguous for a in arrays)

    def _launch(self, spec: KernelSpec, arrays: tuple, scalars: tuple = ()) -> None:
        dtype, n = arrays[0].dtype, arrays[0].size
        key = spec.symbol(dtype)
        kernel = self._compiled.get(key)
        if kernel is None:
            kernel = self._compiled[key] = self._raw_kernel(spec.source(dtype), key)
        if n == 0:
            return
        scalar_type = np.float32 if dtype == np.float32 else np.float64
        grid = min((n + BLOCK - 1) // BLOCK, MAX_GRID)
        kernel((grid,), (BLOCK,), (*arrays, *(scalar_type(s) for s in scalars), np.int64(n)))

    def gelu_forward(self, x: Any, approximate: str = "none") -> Any:
        if not self._usable(x):
            return super().gelu_forward(x, approximate)
        y = self.xp.empty_like(x)
        self._launch(GELU_TANH_FORWARD if approximate == "tanh" else GELU_ERF_FORWARD, (x, y))
        return y

    def gelu_backward(self, x: Any, g: Any, approximate: str = "none") -> Any:
        if not self._usable(x, g) or x.shape != g.shape:
            return super().gelu_backward(x, g, approximate)
        dx = self.xp.empty_like(x)
        self._launch(GELU_TANH_BACKWARD if approximate == "tanh" else GELU_ERF_BACKWARD, (x, g, dx))
        return dx

    def adamw_step(self, p: Any, g: Any, m: Any, v: Any, *, lr: float, beta1: float, beta2: float, eps: float,
                   weight_decay: float, step: int) -> None:
        if not self._usable(p, g, m, v) or not (p.shape == g.shape == m.shape == v.shape):
            return super().adamw_step(p, g, m, v, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                                      weight_decay=weight_decay, step=step)
        s = adamw_scalars(lr, beta1, beta2, eps, weight_decay, step)
        names = [n for _, n in ADAMW_STEP.params[4:]]
        self._launch(ADAMW_STEP, (p, g, m, v), tuple(s[n] for n in names))
