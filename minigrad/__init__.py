"""minigrad: a small reverse-mode autograd tensor library on NumPy (CPU) and CuPy (CUDA)."""
from minigrad.tensor import Tensor  # noqa: F401
from minigrad.dtypes import (as_dtype, bfloat16, bool_, float16, float32, float64, get_default_dtype, int32, int64,  # noqa: F401
                             promote_types, result_type, set_default_dtype)
from minigrad.autograd import Function, enable_grad, is_grad_enabled, no_grad  # noqa: F401
from minigrad.observe import profile, trace  # noqa: F401
from minigrad import amp  # noqa: F401
from minigrad.amp import autocast  # noqa: F401
from minigrad.backend import Device, device, manual_seed  # noqa: F401
from minigrad.creation import (add, arange, cat, clamp, clip, div, divide, floor_divide, full, maximum,  # noqa: F401
                               minimum, mul, multiply, ones, ones_like, rand, randint, randn, stack, sub, subtract,
                               tensor, true_divide, where, zeros, zeros_like)
from minigrad.gradcheck import GradcheckError, gradcheck  # noqa: F401

__version__ = "0.1.0"
from minigrad import nn  # noqa: E402,F401
from minigrad import optim  # noqa: E402,F401
from minigrad.serialization import load, save  # noqa: E402,F401
from minigrad import viz  # noqa: E402,F401
from minigrad.ops.buffers import keep_freed_memory as tune_malloc  # noqa: E402,F401
