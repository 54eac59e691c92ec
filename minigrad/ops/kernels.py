"""Which fast version of a fused op a device runs: ``kernels_for(device, op)``, one line in each Function.

Every fused op's Function (ops/fused.py, ops/attention.py) writes its forward and backward as whole-array
reference math, and first asks here whether the device has something faster:

- the CPU: ``minigrad.ops.cpu_kernels`` (row blocks over the cores, buffer reuse, in-place passes, the fitted
  float32 GELU) for linear, cross_entropy, layer_norm and gelu, ``minigrad.ops.cpu_attention`` (tiled causal
  attention) for attention;
- a CUDA device with raw kernels (``device.kernels``, minigrad/cuda_kernels.py): gelu, which also takes float16 and
  bfloat16 as they are (16-bit loads and stores, float32 math inside the kernel): ``native_low_precision("gelu")``
  tells ops/precision.py's ``@float32_inside`` not to upcast there;
- otherwise (another op on a GPU, a GPU with MINIGRAD_CUDA_KERNELS=0): None, and the Function runs its
  reference math with the device's ``xp``.

``with reference():`` turns every fast version off, so the reference math runs everywhere: to read or step
through it, and for the tests that pin fast = reference (tests/minigrad/test_reference_vs_fast.py).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from minigrad.ops import cpu_attention, cpu_kernels

CPU_OPS = {"linear": cpu_kernels, "cross_entropy": cpu_kernels, "layer_norm": cpu_kernels, "gelu": cpu_kernels,
           "attention": cpu_attention}  # op -> the module with its NAME_forward / NAME_backward
CUDA_OPS = frozenset({"gelu"})
CUDA_LOW_PRECISION_OPS = frozenset({"gelu"})  # their CUDA kernels take float16/bfloat16 inputs themselves

_reference_only = False


def kernels_for(device: Any, op: str) -> Any:
    """The fast implementation of op on device (an object with op's NAME_forward / NAME_backward), or None."""
    if _reference_only:
        return None
    if device.type == "cpu":
        return CPU_OPS.get(op)
    if device.kernels is not None and op in CUDA_OPS:
        return CudaOps(device.kernels)
    return None


def native_low_precision(op: str) -> Any:
    """For ``@float32_inside(native_on=...)``: a predicate that is True on a device whose fast version of op takes
    float16/bfloat16 as it is (a CUDA device with kernels). Elsewhere (the CPU, MINIGRAD_CUDA_KERNELS=0, inside
    ``reference()``) the op's reference math runs on float32 copies of low-precision inputs."""
    def native(device: Any) -> bool:
        return op in CUDA_LOW_PRECISION_OPS and device.type != "cpu" and kernels_for(device, op) is not None
    native.__qualname__ = f"native_low_precision({op!r})"
    return native


class CudaOps:
    """The CUDA kernels (``device.kernels``: CudaKernels, or ReferenceKernels where a stand-in runs them) with the
    calling convention of the fused ops: forward(ctx, ...) saves on ctx what backward(ctx, g) needs."""

    __slots__ = ("kernels",)

    def __init__(self, kernels: Any) -> None:
        self.kernels = kernels

    def gelu_forward(self, ctx: Any, x: Any, approximate: str) -> Any:
        ctx.x = x  # one kernel each way, for x's dtype (float16/bfloat16 too); backward recomputes erf or tanh from x
        return self.kernels.gelu_forward(x, approximate)

    def gelu_backward(self, ctx: Any, g: Any) -> Any:
        return self.kernels.gelu_backward(ctx.x, g, ctx.approximate)


@contextmanager
def reference() -> Iterator[None]:
    """Run the fused ops' reference math on every device while active (process-wide, not per thread)."""
    global _reference_only
    before, _reference_only = _reference_only, True
    try:
        yield
    finally:
        _reference_only = before
