"""In-place initialisers with torch.nn.init's names; draws come from the tensor's device generator.

Every function overwrites ``tensor.data`` in place and returns the tensor, so a Parameter
stays the same object. ``minigrad.manual_seed`` makes the draws reproducible.
"""
from __future__ import annotations

import math
from typing import Any

from minigrad import backend
from minigrad import dtypes
from minigrad.tensor import Tensor


def _draw(tensor: Tensor, kind: str) -> Any:
    """Uniform [0, 1) or standard normal draws of tensor's shape and dtype on its device."""
    dtype = tensor.dtype
    if dtypes.kind(dtype) != "f":
        raise TypeError(f"init: expected a floating point tensor, got {dtype}")
    fn = backend.rand if kind == "uniform" else backend.randn
    return fn(tensor.device, tensor.shape, dtype)


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Fill with draws from U(a, b)."""
    u = _draw(tensor, "uniform")
    u *= b - a
    u += a
    tensor.data[...] = u
    tensor._vc[0] += 1
    return tensor


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """Fill with draws from N(mean, std^2)."""
    z = _draw(tensor, "normal")
    if std != 1.0:
        z *= std
    if mean != 0.0:
        z += mean
    tensor.data[...] = z
    tensor._vc[0] += 1
    return tensor


def trunc_normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0) -> Tensor:
    """Fill with N(mean, std^2) draws, redrawing those outside [a, b]."""
    xp = tensor.device.xp
    normal_(tensor, mean, std)
    for _ in range(100):  # each round redraws the few outliers; 100 rounds leave none in practice
        bad = (tensor.data < a) | (tensor.data > b)
        if not bool(bad.any()):
            break
        fresh = Tensor(xp.empty(tensor.shape, dtype=tensor.dtype), device=tensor.device, _copy=False)
        normal_(fresh, mean, std)
        tensor.data[bad] = fresh.data[bad]
    xp.clip(tensor.data, a, b, out=tensor.data)
    tensor._vc[0] += 1
    return tensor


def constant_(tensor: Tensor, val: float) -> Tensor:
    """Fill with one value."""
    tensor.data[...] = val
    tensor._vc[0] += 1
    return tensor


def zeros_(tensor: Tensor) -> Tensor:
    """Fill with zeros."""
    return constant_(tensor, 0.0)


def ones_(tensor: Tensor) -> Tensor:
    """Fill with ones."""
    return constant_(tensor, 1.0)


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for a nonlinearity (torch.nn.init.calculate_gain)."""
    if nonlinearity in ("linear", "conv1d", "conv2d", "conv3d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope * slope))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of shape (out, in, *kernel), as PyTorch computes them."""
    if tensor.ndim < 2:
        raise ValueError(f"fan in and fan out need a tensor with at least 2 dims, got shape {tensor.shape}")
    receptive = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def xavier_uniform_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010)."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    a = gain * math.sqrt(6.0 / float(fan_in + fan_out))
    return uniform_(tensor, -a, a)


def xavier_normal_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / float(fan_in + fan_out)))


def _kaiming_std(tensor: Tensor, a: float, mode: str, nonlinearity: str) -> float:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"kaiming init: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> Tensor:
    """U(-b, b) with b = gain * sqrt(3 / fan) (He et al., 2015); a=sqrt(5) gives Linear's default."""
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> Tensor:
    """N(0, std^2) with std = gain / sqrt(fan)."""
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity))


def linear_default_(weight: Tensor, bias: Tensor | None = None) -> None:
    """PyTorch's Linear init: kaiming_uniform_(a=sqrt(5)) weight, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) bias."""
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = calculate_fan_in_and_fan_out(weight)
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        uniform_(bias, -bound, bound)


def embedding_default_(weight: Tensor) -> None:
    """PyTorch's Embedding init: N(0, 1)."""
    normal_(weight)
