"""TensorShape, a mixin of Tensor (see tensor.py): reshape/view, flatten, squeeze, unsqueeze, permute,
transpose, expand, gather, split, chunk, indexing (x[...]) and contiguous.

Each is an op in minigrad/ops/shape.py (whose backward puts the gradient back in the input's shape);
`arguments.py` reads the dims, shapes and indices they are given.

Tensor's mixins sit below tensor.py in the layers (tensor.py imports them, never the reverse), so tensor.py
hands its class over when it is imported, as it does to autograd: `Tensor` below is that class.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from minigrad.arguments import check_memory_format, index_arg, numpy_axis, shape_arg, to_array, wrap_dim
from minigrad.ops import shape as shape_ops
from minigrad.dtypes import kind

# The Tensor class, handed over by tensor.py (see the module docstring); None until minigrad.tensor is imported.
Tensor: Any = None


class TensorShape:
    """Shape changes and indexing (mixed into Tensor)."""

    __slots__ = ()  # Tensor's instances keep their __slots__ (no __dict__)

    def reshape(self, *shape: Any) -> "Tensor":
        shape = shape_arg(shape)
        if shape == self.shape:
            return self
        try:
            return shape_ops.Reshape.apply(self, shape=shape)
        except ValueError:  # numpy's "cannot reshape array of size ...": torch's error instead
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {self.numel()}") from None

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> "Tensor":
        s, e = wrap_dim(start_dim, self.ndim), wrap_dim(end_dim, self.ndim)
        if self.ndim == 0:
            return self.reshape(1)
        if s > e:
            raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
        shape = self.shape
        n = 1
        for k in shape[s:e + 1]:
            n *= k
        return self.reshape(shape[:s] + (n,) + shape[e + 1:])

    def squeeze(self, dim: Any = None) -> "Tensor":
        """Drop size-1 dims: all of them, one (dim) or several (a tuple of dims; () drops none), as torch."""
        if dim is None:
            return self.reshape(tuple(n for n in self.shape if n != 1))
        if isinstance(dim, (tuple, list)):
            dims = numpy_axis(tuple(dim), self.ndim) if dim else ()
            dims = () if dims is None else dims
        else:
            dims = (wrap_dim(dim, self.ndim),)
        if self.ndim == 0:
            return self
        return self.reshape(tuple(n for i, n in enumerate(self.shape) if n != 1 or i not in dims))

    def unsqueeze(self, dim: int) -> "Tensor":
        dim = wrap_dim(dim, self.ndim + 1)
        return self.reshape(self.shape[:dim] + (1,) + self.shape[dim:])

    def permute(self, *dims: Any) -> "Tensor":
        dims = shape_arg(dims)
        if len(dims) != self.ndim:
            raise RuntimeError(f"permute: the number of dims ({len(dims)}) does not match the {self.ndim} dims "
                               f"of shape {self.shape}")
        dims = tuple(wrap_dim(d, self.ndim) for d in dims)
        if sorted(dims) != list(range(self.ndim)):
            raise RuntimeError(f"permute: {dims} is not a permutation of the {self.ndim} dims of shape {self.shape}")
        return shape_ops.Permute.apply(self, dims=dims)

    def transpose(self, dim0: int, dim1: int) -> "Tensor":
        d0, d1 = wrap_dim(dim0, self.ndim), wrap_dim(dim1, self.ndim)
        dims = list(range(self.ndim))
        if self.ndim:
            dims[d0], dims[d1] = dims[d1], dims[d0]
        return shape_ops.Permute.apply(self, dims=tuple(dims))

    def expand(self, *shape: Any) -> "Tensor":
        shape = shape_arg(shape)
        lead = len(shape) - self.ndim
        shape = tuple(self.shape[i - lead] if n == -1 else n for i, n in enumerate(shape))
        try:
            np.broadcast_shapes(self.shape, shape)
        except ValueError:
            raise ValueError(f"expand: shape {self.shape} cannot be broadcast to {shape}") from None
        return shape_ops.Expand.apply(self, shape=shape)

    def broadcast_to(self, shape: Sequence[int]) -> "Tensor":
        return self.expand(*shape)

    def gather(self, dim: int, index: "Tensor") -> "Tensor":
        """out[i][j] = self[i][index[i][j]] along dim (torch.gather / take_along_dim)."""
        idx = index.data if isinstance(index, Tensor) else to_array(index, self.device, None)
        d = wrap_dim(dim, self.ndim)
        if kind(idx.dtype) not in "iu":
            raise TypeError(f"gather(): expected an integer index, got {idx.dtype}")
        if self.ndim == 0:  # torch: a 0-d input acts as shape (1,); the index is 0-d or 1-D
            if idx.ndim > 1:
                raise RuntimeError(f"gather(): index of shape {tuple(idx.shape)} for a 0-d input")
            return self.reshape(1).gather(0, idx.reshape(-1)).reshape(idx.shape)
        if idx.size:
            if idx.ndim != self.ndim:
                raise RuntimeError(f"gather(): Index tensor must have the same number of dimensions as input tensor "
                                   f"(index shape {tuple(idx.shape)}, input shape {self.shape})")
            if any(i > n for k, (i, n) in enumerate(zip(idx.shape, self.shape)) if k != d):
                raise RuntimeError(f"gather(): Size does not match: expected index {list(idx.shape)} to be no larger "
                                   f"than self {list(self.shape)} apart from dimension {d}")
        return shape_ops.Gather.apply(self, index=idx, axis=d)

    def split(self, split_size: Any, dim: int = 0) -> tuple:
        """Split into pieces of split_size (or of the given sizes) along dim."""
        dim = wrap_dim(dim, self.ndim)
        n = self.shape[dim]
        sizes = [split_size] * (n // split_size) + ([n % split_size] if n % split_size else []) \
            if isinstance(split_size, int) else list(split_size)
        if sum(sizes) != n:
            raise ValueError(f"split: sizes {sizes} do not add up to {n} (dim {dim} of shape {self.shape})")
        out, start = [], 0
        for size in sizes:
            index = [slice(None)] * self.ndim
            index[dim] = slice(start, start + size)
            out.append(self[tuple(index)])
            start += size
        return tuple(out)

    def chunk(self, chunks: int, dim: int = 0) -> tuple:
        n = self.shape[wrap_dim(dim, self.ndim)]
        return self.split(-(-n // chunks), dim)

    def __getitem__(self, index: Any) -> "Tensor":
        index, advanced = index_arg(index, self.device, self.data.shape)
        return shape_ops.GetItem.apply(self, index=index, advanced=advanced)

    def contiguous(self, memory_format: Any = None) -> "Tensor":
        check_memory_format(memory_format, "contiguous")
        return self
