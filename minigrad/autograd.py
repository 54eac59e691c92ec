"""Reverse-mode automatic differentiation: Function, the backward pass, no_grad.

A ``Function`` subclass pairs ``forward(ctx, *arrays, **attrs)`` with
``backward(ctx, grad)``; both work on raw backend arrays (numpy or cupy), never
on Tensors, so backward builds no graph (higher-order gradients are out of scope).

``Function.apply`` runs the forward and, when grad mode is on and an input needs a
gradient, records a ``Context`` on the output: the op, its input Tensors and what
the forward saved. ``backward`` walks those records in reverse topological order.
"""
from __future__ import annotations

import functools
import time
import weakref
from typing import Any, Callable

# The Tensor class. autograd sits below tensor.py in minigrad's layers (tensor.py imports this module,
# never the reverse), so tensor.py hands its class over when it is imported: `autograd.Tensor = Tensor`.
Tensor: Any = None

_grad_enabled = True
_profiler = None  # a minigrad.profile while one is active (minigrad/observe.py sets these two)
_tracer = None  # a minigrad.trace while one is active


class Context:
    """Per-call record of an op: its Function, inputs, saved arrays and attributes."""

    def __init__(self, fn: type, inputs: tuple, device: Any) -> None:
        self.fn = fn
        self.inputs = inputs
        self.device = device
        self.xp = device.xp
        self.needs_input_grad = tuple(t.requires_grad for t in inputs)
        # whether this call goes into the graph: forward need not save anything for backward otherwise
        self.recording = _grad_enabled and True in self.needs_input_grad
        self.freed = False

    def free(self) -> None:
        """Drop the inputs and everything saved for backward (the graph is released)."""
        fn = self.fn
        self.__dict__.clear()
        self.fn = fn
        self.freed = True


class Function:
    """Base class of every differentiable op; subclasses define forward and backward."""

    @staticmethod
    def forward(ctx: Context, *arrays: Any, **attrs: Any) -> Any:
        raise NotImplementedError

    @staticmethod
    def backward(ctx: Context, grad: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs: "Tensor", **attrs: Any) -> "Tensor":
        """Run the op on Tensors and record it for backward when needed."""
        first = inputs[0]
        dev = first.device
        for t in inputs[1:]:
            if t.device is not dev:
                raise RuntimeError(f"{cls.__name__}: expected all tensors on one device, got {dev} and {t.device}")
        ctx = Context(cls, inputs, dev)
        if _profiler is None:
            out = cls.forward(ctx, *[t.data for t in inputs], **attrs)
        else:
            t0 = time.perf_counter()
            out = cls.forward(ctx, *[t.data for t in inputs], **attrs)
            _profiler.record(cls.__name__, "forward", time.perf_counter() - t0, dev)
        if not isinstance(out, dev.xp.ndarray):  # numpy reductions return scalars, not 0-d arrays
            out = dev.xp.asarray(out)
        result = Tensor(out, device=dev, _copy=False)
        if getattr(out, "base", None) is not None:  # a view (reshape, permute, basic indexing, ...)
            _share_version(result, inputs, dev.xp)
        if ctx.recording:
            result.requires_grad = True
            result._ctx = ctx
            ctx.saved_versions = _saved_versions(ctx, result)
        return result


def _share_version(result: "Tensor", inputs: tuple, xp: Any) -> None:
    """A view shares the version counter of the tensor whose memory it shows (as in torch)."""
    for t in inputs:
        if xp.may_share_memory(result.data, t.data):
            result._vc, result._base = t._vc, (t._base if t._base is not None else t)
            return


def _saved_versions(ctx: Context, result: "Tensor") -> tuple:
    """(version counter, version then, which tensor) for each input or output whose memory forward saved.

    backward compares them with the counters' values then: an in-place change in between would make
    the saved arrays, and so the gradient, wrong.
    """
    xp = ctx.xp
    saved = []
    for name, value in ctx.__dict__.items():
        if name == "inputs":
            continue
        if isinstance(value, xp.ndarray):
            saved.append(value)
        elif isinstance(value, (tuple, list)):
            saved.extend(v for v in value if isinstance(v, xp.ndarray))
    if not saved:
        return ()
    watched = []
    for i, t in enumerate((*ctx.inputs, result)):
        if any(xp.may_share_memory(a, t.data) for a in saved):
            which = "its output" if t is result else f"input {i}"
            watched.append((t._vc, t._vc[0], which, tuple(t.shape), t.dtype))
    return tuple(watched)


def _check_versions(ctx: Context) -> None:
    for vc, version, which, shape, dtype in getattr(ctx, "saved_versions", ()):
        if vc[0] != version:
            raise RuntimeError(
                f"one of the variables needed for gradient computation has been modified by an inplace "
                f"operation: the {dtype} tensor of shape {list(shape)} that {ctx.fn.__name__} saved ({which}) is at "
                f"version {vc[0]}; expected version {version} instead. Use an out-of-place op (x = x + 1, "
                f"not x += 1), or clone() the tensor before changing it")


def unbroadcast(grad: Any, shape: tuple[int, ...]) -> Any:
    """Sum a gradient back to the shape its input had before broadcasting."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(i + extra for i, n in enumerate(shape) if n == 1 and grad.shape[i + extra] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def _broadcasts_to(shape: tuple, target: tuple) -> bool:
    """Whether an input of shape could have been broadcast to target (so its gradient can be summed back)."""
    if len(shape) > len(target):
        return False
    return all(n == m or n == 1 for n, m in zip(shape, target[len(target) - len(shape):]))


def topological_order(root: "Tensor") -> list:
    """Nodes reachable from root, each after all nodes it depends on (iterative DFS)."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        ctx = node._ctx
        if ctx is not None and not ctx.freed:
            for parent in ctx.inputs:
                if parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    return order


def backward(root: "Tensor", grad: Any = None, retain_graph: bool = False) -> None:
    """Accumulate d(root)/d(leaf) into .grad of every leaf that requires grad.

    The chain rule, node by node from the root: each op turns the gradient of its output into
    gradients of its inputs (Function.backward); a tensor used several times gets their sum.
    """
    grads = {id(root): _initial_grad(root, grad)}  # d(root)/d(node), by node
    owned: set[int] = set()  # gradient arrays the engine allocated itself, safe to add into in place
    for node in reversed(topological_order(root)):  # every node after all the nodes that use it
        g = grads.pop(id(node), None)
        if g is None:
            continue
        if node._ctx is None:  # a leaf: accumulate into .grad
            _accumulate_leaf(node, g, id(node) in owned)
            continue
        if node.retains_grad:  # a non-leaf asked to keep its gradient (a copy: ops may reuse g)
            _accumulate_leaf(node, g, owned=False)
        ctx = node._ctx
        input_grads = _call_backward(ctx, g, retain_graph)  # the op's local chain-rule step
        for inp, ig in zip(ctx.inputs, input_grads):
            if ig is not None and inp.requires_grad:
                _add_grad(grads, owned, inp, _checked(ctx, inp, ig))
        if not retain_graph:
            ctx.free()


def _initial_grad(root: "Tensor", grad: Any) -> Any:
    """d(root)/d(root): ones for a scalar root, else the grad the caller passed."""
    if not root.requires_grad:
        raise RuntimeError("backward: tensor does not require grad and has no grad_fn "
                           "(create leaves with requires_grad=True, and do not call backward under no_grad)")
    if root._ctx is not None and root._ctx.freed:
        raise RuntimeError("backward: trying to backward through the graph a second time; its saved arrays "
                           "were freed. Pass retain_graph=True to the first backward() to keep them")
    if grad is None:
        if root.data.size != 1:
            raise RuntimeError(f"backward: grad can be implicitly created only for scalar outputs, "
                               f"got shape {tuple(root.shape)}; pass grad=")
        return root.device.xp.ones(root.shape, dtype=root.dtype)
    grad = grad.data if isinstance(grad, Tensor) else root.device.xp.asarray(grad, dtype=root.dtype)
    if grad.shape != root.shape:
        raise RuntimeError(f"backward: grad shape {tuple(grad.shape)} does not match output shape {tuple(root.shape)}")
    return grad


def _call_backward(ctx: Context, g: Any, retain_graph: bool) -> tuple:
    """ctx.fn.backward(ctx, g) as a tuple, one entry per input; checks, profiling and tracing around it."""
    if ctx.freed:
        raise RuntimeError(f"backward: trying to backward through {ctx.fn.__name__} a second time; "
                           "pass retain_graph=True to the first backward()")
    _check_versions(ctx)
    ctx.retain_graph = retain_graph  # fused ops may overwrite saved buffers when the graph is freed after
    if _profiler is None:
        input_grads = ctx.fn.backward(ctx, g)
    else:
        t0 = time.perf_counter()
        input_grads = ctx.fn.backward(ctx, g)
        _profiler.record(ctx.fn.__name__, "backward", time.perf_counter() - t0, ctx.device)
    if not isinstance(input_grads, tuple):
        input_grads = (input_grads,)
    if _tracer is not None:
        _tracer.op(ctx, g, input_grads)
    return input_grads


class SliceGrad:
    """The gradient of ``x[index]`` (basic slicing) for x: zero everywhere except ``g`` at ``index``.

    GetItem.backward returns this instead of a dense array: the pieces of a split (say q, k, v of a packed
    projection) then fill one gradient buffer of x's shape, instead of each allocating a zeros array of that
    shape and the engine summing them. ``dense()`` is the array it stands for.
    """

    __slots__ = ("like", "index", "g", "xp")

    def __init__(self, like: Any, index: Any, g: Any, xp: Any) -> None:
        self.like, self.index, self.g, self.xp = like, index, g, xp  # like: x's array (shape, dtype, layout)

    @property
    def shape(self) -> tuple:
        return self.like.shape

    @property
    def dtype(self) -> Any:
        return self.like.dtype

    def dense(self) -> Any:
        # zeros laid out in memory as x is (zeros_like keeps the strides' order): for x a permuted view, the
        # gradient then needs no copy to go back through the permute and a reshape
        out = self.xp.zeros_like(self.like)
        out[self.index] = self.g
        return out


def _checked(ctx: Context, inp: "Tensor", ig: Any) -> Any:
    """An op's gradient for one input as an array of the input's shape (broadcasts summed back) and dtype."""
    xp = ctx.xp
    if isinstance(ig, SliceGrad):
        if ig.shape == inp.shape and ig.dtype == inp.dtype:
            return ig
        ig = ig.dense()  # and checked below
    if not isinstance(ig, xp.ndarray):  # 0-d numpy math yields scalars
        ig = xp.asarray(ig)
    if ig.shape != inp.shape:
        if not _broadcasts_to(inp.shape, ig.shape):
            raise RuntimeError(f"{ctx.fn.__name__}.backward returned a gradient of shape {tuple(ig.shape)} "
                               f"for an input of shape {tuple(inp.shape)}")
        ig = unbroadcast(ig, inp.shape)
    if ig.dtype != inp.dtype:
        raise RuntimeError(f"{ctx.fn.__name__}.backward returned a {ig.dtype} gradient "
                           f"for a {inp.dtype} input of shape {tuple(inp.shape)}")
    return ig


def _add_grad(grads: dict, owned: set, inp: "Tensor", ig: Any) -> None:
    """grads[inp] += ig, in place when the engine owns the array (an op's own gradient may be a view)."""
    key = id(inp)
    prev = grads.get(key)
    if isinstance(ig, SliceGrad):  # a slice's gradient: write or add into one buffer the engine owns
        if prev is None:
            grads[key] = ig.dense()
        else:
            if key not in owned:
                prev = grads[key] = prev.copy()
            prev[ig.index] += ig.g
        owned.add(key)
    elif prev is None:
        grads[key] = ig
    elif key in owned:
        prev += ig
    else:
        grads[key] = prev + ig
        owned.add(key)


def _accumulate_leaf(leaf: "Tensor", g: Any, owned: bool) -> None:
    if _tracer is not None:
        _tracer.leaf(leaf, g)
    if leaf.grad is None:
        entry = _grad_buffers.get(id(leaf))
        if entry is not None and entry[0]() is leaf:  # the leaf's slice of a flat gradient array (optim.flat)
            buffer = entry[1]
            buffer[...] = g
            leaf.grad = Tensor(buffer, device=leaf.device, _copy=False)
        else:  # the array may alias an upstream gradient or a saved array: own a copy
            leaf.grad = Tensor(g if owned else g.copy(), device=leaf.device, _copy=False)
    else:
        leaf.grad.data += g


# id(leaf) -> (weak reference to the leaf, its gradient buffer); the entry goes when the leaf does.
# (Not a WeakKeyDictionary: that compares keys with ==, which is elementwise for Tensors.)
_grad_buffers: dict[int, tuple] = {}


def set_grad_buffer(leaf: "Tensor", buffer: Any) -> None:
    """Make backward write leaf's gradient into buffer (an array of leaf's shape) whenever .grad is None."""
    if tuple(buffer.shape) != tuple(leaf.shape) or buffer.dtype != leaf.dtype:
        raise ValueError(f"gradient buffer {tuple(buffer.shape)} {buffer.dtype} does not fit a leaf of "
                         f"{tuple(leaf.shape)} {leaf.dtype}")
    key = id(leaf)
    _grad_buffers[key] = (weakref.ref(leaf, lambda _, key=key: _grad_buffers.pop(key, None)), buffer)


class no_grad:
    """Context manager and decorator (`@no_grad()` or bare `@no_grad`): ops inside it record no graph."""

    def __new__(cls, fn: Callable | None = None) -> Any:
        if fn is not None:  # used bare, as @no_grad: decorate fn at once
            return cls()(fn)
        return super().__new__(cls)

    def __enter__(self) -> None:
        global _grad_enabled
        self._prev = _grad_enabled
        _grad_enabled = False

    def __exit__(self, *exc: Any) -> None:
        global _grad_enabled
        _grad_enabled = self._prev

    def __call__(self, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with no_grad():
                return fn(*args, **kwargs)
        return wrapper


class enable_grad(no_grad):
    """Context manager and decorator: turn graph recording back on inside no_grad."""

    def __enter__(self) -> None:
        global _grad_enabled
        self._prev = _grad_enabled
        _grad_enabled = True

    def __call__(self, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with enable_grad():
                return fn(*args, **kwargs)
        return wrapper


def is_grad_enabled() -> bool:
    """Whether ops currently record a graph."""
    return _grad_enabled

