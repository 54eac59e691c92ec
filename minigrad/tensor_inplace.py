"""TensorInPlace, a mixin of Tensor (see tensor.py): the in-place ops (+=, zero_, fill_, copy_, clamp_, add_,
...) and the version counter they bump.

Each writes into the tensor's memory and bumps its version (`t._vc`, shared with its views): backward
refuses an array that changed after an op saved it. On a tensor in the graph the change is recorded like
the out-of-place op (torch's semantics); on a leaf that requires grad it is refused unless grad mode is off
(as optimizers do).

Tensor's mixins sit below tensor.py in the layers (tensor.py imports them, never the reverse), so tensor.py
hands its class over when it is imported, as it does to autograd: `Tensor` below is that class.
"""
from __future__ import annotations

from typing import Any

from minigrad import autograd
from minigrad.arguments import is_operand, to_array
from minigrad.ops import elementwise
from minigrad.dtypes import kind

# The Tensor class, handed over by tensor.py (see the module docstring); None until minigrad.tensor is imported.
Tensor: Any = None


class TensorInPlace:
    """In-place operators and methods (mixed into Tensor)."""

    __slots__ = ()  # Tensor's instances keep their __slots__ (no __dict__)

    def __iadd__(self, o: Any) -> "Tensor":
        return _inplace(self, o, "add")

    def __isub__(self, o: Any) -> "Tensor":
        return _inplace(self, o, "sub")

    def __imul__(self, o: Any) -> "Tensor":
        return _inplace(self, o, "mul")

    def __itruediv__(self, o: Any) -> "Tensor":
        return _inplace(self, o, "truediv")

    def zero_(self) -> "Tensor":
        return _inplace_apply(self, lambda x: elementwise.Fill.apply(x, value=0), "zero_")

    def fill_(self, value: Any) -> "Tensor":
        if isinstance(value, Tensor):
            if value.ndim:
                raise RuntimeError(f"fill_ only supports 0-dimension value tensor, got shape {value.shape}")
            value = value.item()
        return _inplace_apply(self, lambda x: elementwise.Fill.apply(x, value=value), "fill_")

    def copy_(self, src: Any) -> "Tensor":
        if not isinstance(src, Tensor):
            src = Tensor(to_array(src, self.device, self.dtype), device=self.device, _copy=False)
        return _inplace_apply(self, lambda x: elementwise.CopyInto.apply(x, src.type(x.dtype) if kind(src.dtype) == "f"
                                                               and kind(x.dtype) == "f" else src), "copy_", src)

    def clip_(self, min: Any = None, max: Any = None) -> "Tensor":
        return _inplace_apply(self, lambda x: x.clip(min, max), "clip_", min, max)

    clamp_ = clip_

    def add_(self, other: Any, *, alpha: Any = 1) -> "Tensor":
        return _inplace_apply(self, lambda x: x + (other if alpha == 1 else other * alpha), "add_", other)

    def sub_(self, other: Any, *, alpha: Any = 1) -> "Tensor":
        return _inplace_apply(self, lambda x: x - (other if alpha == 1 else other * alpha), "sub_", other)

    def mul_(self, other: Any) -> "Tensor":
        return _inplace_apply(self, lambda x: x * other, "mul_", other)

    def div_(self, other: Any) -> "Tensor":
        return _inplace_apply(self, lambda x: x / other, "div_", other)


def _inplace(t: "Tensor", o: Any, name: str) -> "Tensor":
    """`t += o` and friends: in place, as torch (see _inplace_apply)."""
    if not is_operand(o):
        return NotImplemented  # Python falls back to t.__op__(o), which raises its "unsupported operand" TypeError
    if not _records_inplace(t, o):  # the common, fast case: numpy's own in-place ufunc
        other = o.data if isinstance(o, Tensor) else o
        if isinstance(o, Tensor) and o.device is not t.device:
            raise RuntimeError(f"{name}: expected both tensors on one device, got {t.device} and {o.device}")
        if kind(t.dtype) in "iub" and (getattr(other, "dtype", None) is not None and kind(other.dtype) == "f"
                                      or isinstance(other, float) or (name == "truediv")):
            raise RuntimeError(f"result type float can't be cast to the desired output type {t.dtype} "
                               f"(in-place {name} on an integer tensor)")
        getattr(t.data, f"__i{name}__")(other)
        t._vc[0] += 1
        return t
    return _inplace_apply(t, lambda x: getattr(x, f"__{name}__")(o), f"__i{name}__", o)


def _records_inplace(t: "Tensor", *others: Any) -> bool:
    """Whether an in-place op on t goes into the graph (grad mode on and t or an operand needs grad)."""
    return autograd.is_grad_enabled() and (t.requires_grad or any(isinstance(o, Tensor)
                                                                   and o.requires_grad for o in others))


def _inplace_apply(t: "Tensor", compute: Any, name: str, *others: Any) -> "Tensor":
    """Write compute(t) into t's memory and bump its version; record it in the graph when t is part of one.

    Recorded, the op runs on a copy of t's old value (so what it saves cannot change under it) and t
    takes over the new node: gradients reaching t flow through the op to t's old graph.
    """
    if not _records_inplace(t, *others):
        with autograd.no_grad():
            new = compute(t)
        _write_into(t, new, name)
        return t
    if t.requires_grad and t._ctx is None:
        raise RuntimeError(f"a leaf tensor that requires grad is being used in an in-place operation ({name}); "
                           "do it under `with minigrad.no_grad():` (as optimizers do) or use the out-of-place op")
    if t._base is not None and (t._base.requires_grad or t.requires_grad):
        raise RuntimeError(f"{name} on a view of a tensor in the graph is not supported (the viewed tensor's "
                           "gradient would be wrong); clone() the view first or use out-of-place ops")
    old = Tensor(t.data.copy(), device=t.device, _copy=False)
    old.requires_grad, old._ctx = t.requires_grad, t._ctx
    new = _write_into(t, compute(old), name)
    t._ctx, t.requires_grad = new._ctx, new.requires_grad
    return t


def _write_into(t: "Tensor", new: "Tensor", name: str) -> "Tensor":
    """Copy new into t's memory (cast to t's dtype, recorded when new is in the graph); returns what was
    written, whose node t takes over."""
    if new.dtype != t.dtype and kind(new.dtype) == "f" and kind(t.dtype) in "iub":
        raise RuntimeError(f"result type {new.dtype} can't be cast to the desired output type {t.dtype} "
                           f"(in-place {name})")
    if new.shape != t.shape:
        raise RuntimeError(f"{name}: output with shape {t.shape} doesn't match the broadcast shape {new.shape}")
    if new.dtype != t.dtype and new._ctx is not None:
        new = new.type(t.dtype)
    t.data[...] = new.data
    t._vc[0] += 1
    return new
