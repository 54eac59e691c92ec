"""Matrix products: 1-D, 2-D and batched with broadcasting, like torch.matmul."""
from __future__ import annotations

from typing import Any

from minigrad.autograd import Context, Function
from minigrad.ops.precision import float32_inside


@float32_inside(native_on=("cuda",), same_dtype=True)
class MatMul(Function):
    @staticmethod
    def forward(ctx: Context, a: Any, b: Any) -> Any:
        if a.ndim == 0 or b.ndim == 0:
            raise RuntimeError(f"matmul: both arguments need at least 1 dimension, got shapes "
                               f"{tuple(a.shape)} and {tuple(b.shape)}")
        if a.dtype != b.dtype:  # torch.matmul does not promote
            raise RuntimeError(f"expected m1 and m2 to have the same dtype, but got: {torch_dtype_name(a.dtype)} != "
                               f"{torch_dtype_name(b.dtype)} (matmul of {a.dtype} and {b.dtype}; cast one side "
                               f"with .to())")
        k_a = a.shape[-1]
        k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
        if k_a != k_b:
            raise RuntimeError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be multiplied "
                               f"({k_a} != {k_b})")
        ctx.a, ctx.b = a, b
        return a @ b

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple:
        # out = a @ b:  da = g @ b^T,  db = a^T @ g  (batch dims summed by the engine)
        a, b = ctx.a, ctx.b
        need_a, need_b = ctx.needs_input_grad
        # promote 1-D operands to matrices the way matmul did, then undo it
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        if a.ndim == 1:
            g = g[..., None, :] if b.ndim > 1 else g[..., None]
        if b.ndim == 1:
            g = g[..., None]
        da = db = None
        if need_a:
            da = g @ b2.swapaxes(-1, -2)
            if a.ndim == 1:
                da = da.reshape(_rows(da.shape[:-1]), a.shape[0]).sum(axis=0)
        if need_b and b.ndim == 2 and a.ndim > 2:
            # shared weight: one GEMM over all batch rows instead of a batched product and a sum
            db = a.reshape(_rows(a.shape[:-1]), a.shape[-1]).T @ g.reshape(_rows(g.shape[:-1]), g.shape[-1])
        elif need_b:
            db = a2.swapaxes(-1, -2) @ g
            if db.ndim > b2.ndim:  # b was broadcast over batch dims: sum them here, before un-promoting
                db = db.reshape(_rows(db.shape[:db.ndim - b2.ndim]), *b2.shape).sum(axis=0)
            if b.ndim == 1:
                db = db[..., 0]
        return da, db


def _rows(shape: tuple) -> int:
    """The product of shape (reshape(-1, ...) cannot infer it when another dim is 0)."""
    n = 1
    for k in shape:
        n *= k
    return n


_TORCH_NAMES = {"float32": "float", "float64": "double", "float16": "c10::Half", "int64": "long int", "int32": "int",
                "int16": "short int", "int8": "signed char", "uint8": "unsigned char", "bool": "bool"}


def torch_dtype_name(dtype: Any) -> str:
    """The C++ type name torch's dtype errors use ("float", "double", "long int", ...)."""
    return _TORCH_NAMES.get(str(dtype), str(dtype))
