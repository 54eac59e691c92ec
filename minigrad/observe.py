"""Watching the engine run: profile (time per op) and trace (print backward as it runs).

Function.apply and autograd.backward call the active profile's record() and the active trace's op() and
leaf() (autograd._profiler, autograd._tracer); entering one of these makes it the active one.
"""
from __future__ import annotations

import sys
import time
from typing import Any

from minigrad import autograd
from minigrad.autograd import Context, SliceGrad


class profile:
    """Time every Function's forward and backward while active: `with minigrad.profile() as p: ...; print(p.table())`.

    With sync=True each measurement waits for the device first (needed on CUDA, where launches are async).
    """

    def __init__(self, sync: bool = False) -> None:
        self.sync = sync
        self.stats: dict[tuple[str, str], list] = {}

    def record(self, name: str, phase: str, seconds: float, device: Any) -> None:
        if self.sync:
            t0 = time.perf_counter()
            device.synchronize()
            seconds += time.perf_counter() - t0
        entry = self.stats.setdefault((name, phase), [0, 0.0])
        entry[0] += 1
        entry[1] += seconds

    def __enter__(self) -> "profile":
        self._prev, autograd._profiler = autograd._profiler, self
        return self

    def __exit__(self, *exc: Any) -> None:
        autograd._profiler = self._prev

    def total(self) -> float:
        """Seconds spent inside ops (forward and backward)."""
        return sum(s for _, s in self.stats.values())

    def table(self, top: int | None = None) -> str:
        """Ops sorted by total time: calls, total ms, ms per call and share, forward and backward apart."""
        rows = sorted(self.stats.items(), key=lambda kv: -kv[1][1])[:top]
        total = self.total() or 1.0
        lines = [f"{'op':28s} {'phase':9s} {'calls':>7s} {'total ms':>10s} {'ms/call':>9s} {'share':>6s}"]
        for (name, phase), (calls, secs) in rows:
            lines.append(f"{name:28s} {phase:9s} {calls:7d} {secs * 1e3:10.2f} {secs * 1e3 / calls:9.3f} "
                         f"{100 * secs / total:5.1f}%")
        lines.append(f"{'total':28s} {'':9s} {sum(c for c, _ in self.stats.values()):7d} {total * 1e3:10.2f}")
        return "\n".join(lines)


class trace:
    """Print what backward does, op by op, while active: `with minigrad.trace(): loss.backward()`.

    For each op, in the order backward visits them: its name, the shapes of its inputs, the norm of
    the gradient arriving from above, and the norm of the local gradient it hands each input (the
    chain rule at work). Leaves show the gradient added to their .grad.
    """

    def __init__(self, file: Any = None) -> None:
        self.file = file
        self.lines: list[str] = []
        self._n = 0

    def _emit(self, line: str) -> None:
        self.lines.append(line)
        print(line, file=self.file if self.file is not None else sys.stdout)

    @staticmethod
    def _norm(a: Any) -> str:
        return f"{float((a.astype('float64') ** 2).sum()) ** 0.5:.4g}"

    def op(self, ctx: Context, g: Any, input_grads: tuple) -> None:
        self._n += 1
        shapes = ", ".join(str(tuple(t.shape)) for t in ctx.inputs)
        self._emit(f"{self._n:3d}. {ctx.fn.__name__}({shapes}) <- grad {tuple(g.shape)} norm {self._norm(g)}")
        for i, (inp, ig) in enumerate(zip(ctx.inputs, input_grads)):
            if ig is not None and inp.requires_grad:
                what = "leaf" if inp._ctx is None else f"from {inp._ctx.fn.__name__}"
                ig = ig.g if isinstance(ig, SliceGrad) else ctx.xp.asarray(ig)  # its norm is that of the slice
                self._emit(f"       input {i} {tuple(inp.shape)} ({what}): local grad norm {self._norm(ig)}")

    def leaf(self, leaf: Any, g: Any) -> None:
        self._emit(f"       leaf {tuple(leaf.shape)}: .grad += grad of norm {self._norm(g)}")

    def __enter__(self) -> "trace":
        self._prev, autograd._tracer = autograd._tracer, self
        return self

    def __exit__(self, *exc: Any) -> None:
        autograd._tracer = self._prev
