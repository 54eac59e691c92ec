"""dtypes: their names, the default float dtype, and torch's type promotion (which dtype `a + b` gets).

dtypes are numpy's (np.dtype("float32") on the CPU and on a GPU alike); `as_dtype` also takes torch's
names ("float", "long", "half", ...). `result_type` is torch's rule for mixing tensors and Python numbers:
tensors with dims decide, a 0-d tensor or a Python number only counts when its category is higher.
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np

try:  # numpy has no bfloat16: ml_dtypes (the optional extra `bfloat16`) adds one that cupy >= 14 takes too
    import ml_dtypes
    bfloat16: Any = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - depends on the environment
    bfloat16 = None

float16 = np.dtype("float16")
float32 = np.dtype("float32")
float64 = np.dtype("float64")
int64 = np.dtype("int64")
int32 = np.dtype("int32")
bool_ = np.dtype("bool")
# the names as_dtype takes, torch's aliases included
DTYPES = {"float32": float32, "float64": float64, "float": float32, "double": float64,
          "int64": int64, "long": int64, "int32": int32, "int": int32, "bool": bool_,
          "float16": np.dtype("float16"), "half": np.dtype("float16"), "uint8": np.dtype("uint8"),
          "uint16": np.dtype("uint16"), "int8": np.dtype("int8"), "int16": np.dtype("int16"),
          "short": np.dtype("int16")}
if bfloat16 is not None:
    DTYPES["bfloat16"] = bfloat16
LOW_PRECISION = tuple(d for d in (float16, bfloat16) if d is not None)  # the dtypes autocast computes in
_default_dtype = float32


def kind(dtype: Any) -> str:
    """numpy's dtype.kind ("f" float, "i" int, "u" unsigned, "b" bool, "c" complex), and "f" for bfloat16
    too (ml_dtypes registers it as "V", a void type, for numpy)."""
    k = dtype.kind
    return "f" if k == "V" and bfloat16 is not None and dtype == bfloat16 else k


def as_dtype(dtype: Any) -> np.dtype:
    """Normalise a dtype given as a name, numpy type or np.dtype."""
    if isinstance(dtype, str):
        if dtype == "bfloat16" and bfloat16 is None:
            raise TypeError("dtype 'bfloat16' needs the ml-dtypes package: pip install ml-dtypes "
                            "(the project's optional extra: pip install -e '.[bfloat16]')")
        if dtype not in DTYPES:
            raise TypeError(f"unknown dtype {dtype!r}; expected one of {sorted(DTYPES)}")
        return DTYPES[dtype]
    return np.dtype(dtype)


def set_default_dtype(dtype: Any) -> None:
    """Set the float dtype that new float tensors get (float32 unless changed)."""
    global _default_dtype
    dtype = as_dtype(dtype)
    if kind(dtype) != "f":
        raise TypeError(f"default dtype must be floating point, got {dtype}")
    _default_dtype = dtype


def get_default_dtype() -> np.dtype:
    """The float dtype that new float tensors get."""
    return _default_dtype


# ------------------------------------------------------------------ type promotion
_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2, "c": 3}


def promote_types(type1: Any, type2: Any) -> np.dtype:
    """torch.promote_types: the dtype of the higher category (bool < integer < float) wins; within a
    category the wider one (numpy's rule: int32 + int64 -> int64, uint8 + int8 -> int16)."""
    a, b = as_dtype(type1), as_dtype(type2)
    if a == b:
        return a
    ca, cb = _CATEGORY[kind(a)], _CATEGORY[kind(b)]
    if ca != cb:
        return a if ca > cb else b
    if bfloat16 is not None and bfloat16 in (a, b) and float16 in (a, b):
        return float32  # torch: neither holds the other (bfloat16's range, float16's precision)
    return np.promote_types(a, b)


def _promote_opt(a: Any, b: Any) -> Any:
    return b if a is None else (a if b is None else promote_types(a, b))


def _combine_categories(higher: Any, lower: Any) -> Any:
    """c10's combine_categories: a lower-priority group of operands only counts when its category is higher."""
    if higher is None:
        return lower
    if lower is None or kind(higher) in "fc":
        return higher
    if kind(higher) == "b" or kind(lower) in "fc":
        return promote_types(higher, lower)
    return higher


def result_type(*operands: Any) -> np.dtype:
    """torch.result_type of tensors and Python numbers: tensors with dims decide; a 0-d tensor, then a Python
    number, only counts if its category (bool < int < float) is higher than theirs. A Python float is the
    default dtype, an int int64. float32 tensor + float64 tensor -> float64, float32 tensor + 0-d float64
    tensor -> float32, int32 tensor + 2.5 -> float32."""
    dims = zero = wrapped = None
    for o in operands:
        dt = getattr(o, "dtype", None)
        if dt is not None and not isinstance(o, np.generic):
            if o.ndim:
                dims = _promote_opt(dims, as_dtype(dt))
            else:
                zero = _promote_opt(zero, as_dtype(dt))
        elif isinstance(o, (bool, np.bool_)):
            wrapped = _promote_opt(wrapped, bool_)
        elif isinstance(o, numbers.Integral):
            wrapped = _promote_opt(wrapped, int64)
        elif isinstance(o, numbers.Real):
            wrapped = _promote_opt(wrapped, _default_dtype)
        else:
            raise TypeError(f"result_type: unsupported operand of type {type(o).__name__}")
    out = _combine_categories(dims, _combine_categories(zero, wrapped))
    if out is None:
        raise TypeError("result_type: no operands")
    return out

