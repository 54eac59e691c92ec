"""float16 and bfloat16 inputs to a fused op are computed in float32: mixed precision's rule inside the ops.

``@float32_inside`` on a Function: when an array input is float16 or bfloat16, forward runs on float32
copies of its inputs and casts its result back to that low dtype (``keep_float32=True`` keeps it float32:
a loss); backward casts the incoming gradient up, runs in float32 and casts each input's gradient to that
input's own dtype. So softmax, logsumexp, layer-norm statistics, GELU's erf and the loss never see float16's
range or bfloat16's 8-bit mantissa, while what flows between ops (and what backward saves) is the low dtype
as autocast (minigrad/amp.py) chose.

A matmul this way equals one with float32 accumulation, as tensor cores do it: the product of two rounded
float16 or bfloat16 numbers is exact in float32. It is also the fast way on the CPU, where numpy's float16
matmul runs ~170x slower than float32's. ``native_on=("cuda",)`` lets a device with fast low-precision
matmuls (cuBLAS: float16/bfloat16 inputs, float32 accumulation) take the low dtype as it is; ``native_on`` may
also be a predicate of the device (ops/kernels.py's ``native_low_precision(op)``: a CUDA device with the op's kernel).
"""
from __future__ import annotations

from typing import Any

LOW_NAMES = ("float16", "bfloat16")


def is_low(a: Any) -> bool:
    """Whether a is a float16 or bfloat16 array."""
    dt = getattr(a, "dtype", None)
    return dt is not None and dt.itemsize == 2 and dt.name in LOW_NAMES


def float32_inside(cls: Any = None, *, keep_float32: bool = False, native_on: Any = (),
                   same_dtype: bool = False) -> Any:
    """Class decorator for a Function: low-precision inputs are computed in float32 (see the module docstring).

    same_dtype: the op refuses inputs of different dtypes (matmul, linear, as torch): those go to forward as
    they are, so its own check raises.
    """
    def wrap(fn_cls: Any) -> Any:
        forward, backward = fn_cls.forward, fn_cls.backward

        def forward_f32(ctx: Any, *arrays: Any, **attrs: Any) -> Any:
            low = next((a.dtype for a in arrays if is_low(a)), None)
            if same_dtype and low is not None and any(getattr(a, "dtype", low) != low for a in arrays):
                low = None
            native = native_on(ctx.device) if callable(native_on) else ctx.device.type in native_on
            ctx.low_dtype = None if low is None or native else low
            if ctx.low_dtype is None:
                return forward(ctx, *arrays, **attrs)
            ctx.input_dtypes = tuple(getattr(a, "dtype", None) for a in arrays)
            out = forward(ctx, *[a.astype("float32") if is_low(a) else a for a in arrays], **attrs)
            return out if keep_float32 else out.astype(low)

        def backward_f32(ctx: Any, g: Any) -> Any:
            if ctx.low_dtype is None:
                return backward(ctx, g)
            grads = backward(ctx, g.astype("float32"))
            single = not isinstance(grads, tuple)
            grads = (grads,) if single else grads
            out = tuple(gi if gi is None or dt is None or gi.dtype == dt else gi.astype(dt)
                        for gi, dt in zip(grads, ctx.input_dtypes))
            return out[0] if single else out

        fn_cls.forward, fn_cls.backward = staticmethod(forward_f32), staticmethod(backward_f32)
        return fn_cls

    return wrap if cls is None else wrap(cls)
