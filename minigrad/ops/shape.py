"""Movement ops: they move or select elements, never combine them."""
from __future__ import annotations

from typing import Any

from minigrad import backend
from minigrad.autograd import Context, Function, SliceGrad


class Reshape(Function):
    @staticmethod
    def forward(ctx: Context, x: Any, shape: tuple) -> Any:
        ctx.shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # reshape back: every element keeps its gradient
        return g.reshape(ctx.shape)


class Permute(Function):
    @staticmethod
    def forward(ctx: Context, x: Any, dims: tuple) -> Any:
        ctx.dims = dims
        return x.transpose(dims)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # apply the inverse permutation
        inverse = [0] * len(ctx.dims)
        for i, d in enumerate(ctx.dims):
            inverse[d] = i
        return g.transpose(inverse)


class Expand(Function):
    @staticmethod
    def forward(ctx: Context, x: Any, shape: tuple) -> Any:
        ctx.shape = x.shape
        return ctx.xp.broadcast_to(x, shape)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # each input element was copied to many outputs: sum their gradients
        from minigrad.autograd import unbroadcast
        return unbroadcast(g, ctx.shape)


class GetItem(Function):
    """x[index] for basic slicing and integer-array (advanced) indexing."""

    @staticmethod
    def forward(ctx: Context, x: Any, index: Any, advanced: bool = False) -> Any:
        ctx.shape, ctx.dtype, ctx.index, ctx.advanced = x.shape, x.dtype, index, advanced
        return x[index]

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # g goes back where the slice came from, zeros elsewhere; repeated integer indices accumulate
        if not ctx.advanced:
            return SliceGrad(ctx.inputs[0].data, ctx.index, g, ctx.xp)  # the engine writes it into one buffer
        dx = ctx.xp.zeros(ctx.shape, dtype=ctx.dtype)
        backend.scatter_add(dx, ctx.index, g)
        return dx


class Gather(Function):
    """take_along_dim: out[..., i, ...] = x[..., index[..., i, ...], ...] along one axis. As torch, the index
    may be smaller than x in the other dims (it then reads the leading block of x)."""

    @staticmethod
    def forward(ctx: Context, x: Any, index: Any, axis: int) -> Any:
        ctx.shape, ctx.index, ctx.axis = x.shape, index, axis
        if index.size == 0:  # torch: an empty index (of any ndim) picks nothing
            return ctx.xp.zeros(index.shape, dtype=x.dtype)
        return ctx.xp.take_along_axis(x[_block(index.shape, x.shape, axis)], index, axis=axis)

    @staticmethod
    def backward(ctx: Context, g: Any) -> Any:
        # d out/dx: put each gradient back where its value came from
        xp = ctx.xp
        dx = xp.zeros(ctx.shape, dtype=g.dtype)
        if ctx.index.size == 0:
            return dx
        block = dx[_block(ctx.index.shape, ctx.shape, ctx.axis)]  # a view of dx
        if ctx.index.shape[ctx.axis] == 1:
            xp.put_along_axis(block, ctx.index, g, axis=ctx.axis)  # one pick per row: no collisions
        else:
            full = tuple(_along(xp, ctx.index, ctx.axis, i) for i in range(ctx.index.ndim))
            backend.scatter_add(block, full, g)
        return dx


def _block(index_shape: tuple, shape: tuple, axis: int) -> Any:
    """The leading block of x that an index of index_shape reads (all of x when the shapes agree)."""
    if all(i == n for k, (i, n) in enumerate(zip(index_shape, shape)) if k != axis):
        return ...
    return tuple(slice(None) if k == axis else slice(0, i) for k, i in enumerate(index_shape))


def _along(xp: Any, index: Any, axis: int, dim: int) -> Any:
    """Open-mesh coordinates for every dimension, with `index` on `axis`."""
    if dim == axis:
        return index
    shape = [1] * index.ndim
    shape[dim] = index.shape[dim]
    return xp.arange(index.shape[dim]).reshape(shape)


class Cat(Function):
    @staticmethod
    def forward(ctx: Context, *xs: Any, axis: int = 0) -> Any:
        ctx.axis = axis
        ctx.sizes = [x.shape[axis] for x in xs]
        return ctx.xp.concatenate(xs, axis=axis)

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple:
        # each input gets its own slice of g
        out, start = [], 0
        for size, need in zip(ctx.sizes, ctx.needs_input_grad):
            if need:
                index = [slice(None)] * g.ndim
                index[ctx.axis] = slice(start, start + size)
                out.append(g[tuple(index)])
            else:
                out.append(None)
            start += size
        return tuple(out)


class Stack(Function):
    @staticmethod
    def forward(ctx: Context, *xs: Any, axis: int = 0) -> Any:
        ctx.axis = axis
        return ctx.xp.stack(xs, axis=axis)

    @staticmethod
    def backward(ctx: Context, g: Any) -> tuple:
        # input i gets the i-th slice along the new axis
        xp = ctx.xp
        return tuple(xp.take(g, i, axis=ctx.axis) if need else None for i, need in enumerate(ctx.needs_input_grad))
