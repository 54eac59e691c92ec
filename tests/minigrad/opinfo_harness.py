"""Run minigrad against PyTorch's own OpInfo samples (torch.testing._internal's op_db).

Shared by tests/minigrad/test_opinfo.py (one test per matched op and dtype) and tools/opinfo_report.py
(the full per-op table and every failing sample). Importing this module needs torch.

Which ops: every OpInfo whose name minigrad has (a Tensor method, an mg.* function, F.* for
"nn.functional.X", or the same for one of the OpInfo's aliases), plus the names in ALIASES (x + y for
"add", x.T for "T", mg.where(c, x, y) for OpInfo's where(x, c, y), ...). Samples are op.sample_inputs(
"cpu", dtype, requires_grad=op.supports_autograd), seeded per op. torch tensors become minigrad tensors
with the same dtype and requires_grad (inside lists/tuples/kwargs too), torch dtypes become numpy dtypes,
torch.Size a tuple; Python scalars, dims and slices are passed as they are.

What is compared, per sample of every matched OpInfo (see `match_ops`), in float64 and in float32:

* forward: every output (tuples flattened) must have torch's type, shape and dtype (torch.float32 <-> numpy
  float32, ...); integer/bool outputs must be equal; float outputs must be close (below).
* backward: one seeded random cotangent per float output that requires grad in torch; minigrad gets the
  same numbers (outputs that torch differentiates must be differentiable in minigrad). Then the gradient
  of every input tensor that requires grad (inside lists too) must match torch's in shape, dtype and value
  (an unused input counts as a zero gradient on both sides); a gradient's dtype must be its input's.
* random ops (randn, randint, dropout in training, attention with dropout_p > 0): type, shape and dtype
  only; dropout also checks that each output is 0 or x / (1 - p) and its gradient g / (1 - p) where kept.

Tolerances:
* float64: |minigrad - torch| <= 1e-7 + 1e-7 * |torch|, elementwise.
* float32: torch's own float32 error is the yardstick. The sample is rerun in torch in float64
  (float32 tensors upcast); with t64 that result and t32 torch's float32 one, a float32 output or
  gradient passes when  max|minigrad - t64| <= 10 * max|t32 - t64| + 1e-5 * max(1, max|t64|)  over the
  tensor's finite entries. inf/nan must sit where torch's float32 result has them.
  The 1e-5 term is ~84 float32 ulps of the tensor's largest entry (or of 1 for small ones). When the
  float64 rerun is impossible (torch refuses it), t64 = t32 and only the 1e-5 term remains.

Each sample ends as one of (see `classify_exception` for the exact exception rule):
  pass / mismatch (numbers, shapes, dtypes or types differ) / error (minigrad raised something other than a
  clean refusal) / unsupported (minigrad cleanly refused: a TypeError from binding the arguments to the
  minigrad signature, or a TypeError/NotImplementedError raised by a `raise` statement in minigrad).
When an OpInfo maps to several minigrad spellings (Tensor.softmax and F.softmax, clamp and clip, ...)
every spelling is run and the sample gets the worst outcome (error > mismatch > unsupported > pass).
Samples on which torch itself raises are dropped (counted as `skipped`).
"""
from __future__ import annotations

import contextlib
import inspect
import random
import re
import sys
import traceback
import types
import unittest
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import minigrad as mg
import minigrad.nn.functional as F

MINIGRAD_DIR = str(Path(mg.__file__).resolve().parent)
DTYPES = {"float64": torch.float64, "float32": torch.float32}
OUTCOMES = ("pass", "mismatch", "error", "unsupported")
_SEVERITY = {"pass": 0, "unsupported": 1, "mismatch": 2, "error": 3}


# ---------------------------------------------------------------------------------------------- op_db

def load_op_db() -> list:
    """torch's op_db. torch's test helpers import `expecttest` (not a torch dependency): a stand-in is
    used when it is missing. Their import freezes torch.backends flags; that is undone."""
    if "expecttest" not in sys.modules:
        try:
            import expecttest  # noqa: F401
        except ImportError:
            stub = types.ModuleType("expecttest")
            stub.TestCase = unittest.TestCase
            stub.ACCEPT = False
            sys.modules["expecttest"] = stub
    frozen = torch.backends.flags_frozen()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.testing._internal.common_methods_invocations import op_db
    if not frozen and torch.backends.flags_frozen():  # undo torch.backends.disable_global_flags()
        torch.backends.flags_frozen.__globals__["__allow_nonbracketed_mutation_flag"] = True
    return op_db


# ---------------------------------------------------------------------------------------------- mapping

@dataclass
class Variant:
    how: str        # "method", "function", "functional" or "alias"
    label: str      # how minigrad spells it, e.g. "Tensor.softmax", "mg.cat", "F.gelu", "x + y"
    call: Callable  # call(input, *args, **kwargs) with minigrad values


@dataclass
class Matched:
    key: str        # op name, plus "." + variant_test_name when there is one
    opinfo: Any
    variants: list


def _method(name: str) -> Callable:
    def call(x, *args, **kwargs):
        return getattr(x, name)(*args, **kwargs)
    call.__name__ = name
    return call


def _own_attr(cls: type, name: str) -> bool:
    """Whether cls (not object, nor the metaclass: type.__ror__ exists) defines name."""
    return any(name in vars(k) for k in cls.__mro__ if k is not object)


def _clone(x):
    return x.clone() if hasattr(x, "clone") else x * 1  # a differentiable copy


# op_db names that minigrad spells differently. Each entry replaces the automatic name matching.
ALIASES: dict[str, list] = {
    "add": [("alias", "x + y", _method("__add__"))],
    "sub": [("alias", "x - y", _method("__sub__"))],
    "mul": [("alias", "x * y", _method("__mul__"))],
    "div": [("alias", "x / y", _method("__truediv__"))],
    "true_divide": [("alias", "x / y", _method("__truediv__"))],
    "__rdiv__": [("alias", "y / x", _method("__rtruediv__"))],
    "rsub": [("alias", "y - x", _method("__rsub__"))],
    "neg": [("alias", "-x", _method("__neg__"))],
    "matmul": [("alias", "x @ y", _method("__matmul__"))],
    "mm": [("alias", "x @ y", _method("__matmul__"))],
    "bmm": [("alias", "x @ y", _method("__matmul__"))],
    "mv": [("alias", "x @ y", _method("__matmul__"))],
    "eq": [("alias", "x == y", _method("__eq__"))],
    "ne": [("alias", "x != y", _method("__ne__"))],
    "lt": [("alias", "x < y", _method("__lt__"))],
    "le": [("alias", "x <= y", _method("__le__"))],
    "gt": [("alias", "x > y", _method("__gt__"))],
    "ge": [("alias", "x >= y", _method("__ge__"))],
    "clamp_min": [("alias", "x.clip(min=m)", lambda x, m: x.clip(min=m))],
    "clamp_max": [("alias", "x.clip(max=m)", lambda x, m: x.clip(max=m))],
    "T": [("alias", "x.T", lambda x: x.T)],
    # OpInfo's where is where(self, condition, other) = torch.where(condition, self, other)
    "where": [("alias", "mg.where(c, x, y)", lambda x, c, y, **kw: mg.where(c, x, y, **kw))],
    # OpInfo's embedding takes (weight, idx)
    "nn.functional.embedding": [("alias", "F.embedding(idx, w)", lambda w, idx, **kw: F.embedding(idx, w, **kw))],
    # OpInfo's zero_ is torch.zero_(x.clone()): zeroing a copy must zero its gradient too
    "zero_": [("alias", "x.clone().zero_()", lambda x: _clone(x).zero_())],
}


def _variants_for(name: str) -> list:
    out = []
    if name.startswith("nn.functional."):
        short = name[len("nn.functional."):]
        if callable(getattr(F, short, None)) and not isinstance(getattr(F, short), type):
            out.append(Variant("functional", f"F.{short}", getattr(F, short)))
        return out
    if _own_attr(mg.Tensor, name) and callable(getattr(mg.Tensor, name)):
        out.append(Variant("method", f"Tensor.{name}", _method(name)))
    fn = getattr(mg, name, None)
    if callable(fn) and not isinstance(fn, type) and not inspect.ismodule(fn):
        out.append(Variant("function", f"mg.{name}", fn))
    return out


def match_ops(op_db: list) -> list:
    """Every OpInfo that minigrad has under the same name (Tensor method, mg function, F function for
    nn.functional.X, or one of the OpInfo's aliases) or under a name in ALIASES."""
    matched = []
    for op in op_db:
        if op.name in ALIASES:
            variants = [Variant(*v) for v in ALIASES[op.name]]
        else:
            variants = _variants_for(op.name)
            for alias in op.aliases:
                seen = {v.label for v in variants}
                variants += [v for v in _variants_for(alias.name) if v.label not in seen]
        if variants:
            key = op.name + (f".{op.variant_test_name}" if op.variant_test_name else "")
            matched.append(Matched(key, op, variants))
    return matched


# ---------------------------------------------------------------------------------------------- samples

def samples(op: Any, dtype: torch.dtype, cap: int | None = None) -> list:
    """The OpInfo's sample inputs, drawn from torch/numpy/random generators seeded once per op (torch's
    iterator would reseed before every sample, which costs more than the sample). Call under _rng_guard."""
    seed = zlib.crc32(f"{op.name}.{op.variant_test_name}".encode())
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = []
        for s in op.sample_inputs("cpu", dtype, requires_grad=op.supports_autograd, set_seed=False):
            out.append(s)
            if cap is not None and len(out) >= cap:
                break
    return out


@contextlib.contextmanager
def _rng_guard():
    """Leave torch's, numpy's, random's and minigrad's CPU generators as they were (the rest of a pytest
    run must not see them reseeded or advanced); minigrad draws from a generator of its own meanwhile."""
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    cpu = mg.backend.device("cpu")
    mg_rng = getattr(cpu, "rng", None)
    if mg_rng is not None:
        cpu.rng = np.random.default_rng(0)
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
        if mg_rng is not None:
            cpu.rng = mg_rng


def _np_dtype(dtype: torch.dtype) -> Any:
    name = str(dtype).removeprefix("torch.")
    try:
        return np.dtype(name)
    except TypeError:
        return dtype  # bfloat16, complex32, ...: left as torch's (minigrad then refuses or fails)


def to_minigrad(obj: Any, leaves: list) -> Any:
    """torch tensors -> minigrad tensors (requires_grad kept; pairs (torch, minigrad) of tensors that
    require grad appended to leaves), torch dtypes/devices/sizes -> numpy dtypes/str/tuple, recursively."""
    if isinstance(obj, torch.Tensor):
        arr = obj.detach().cpu().resolve_conj().resolve_neg().numpy().copy()
        t = mg.tensor(arr, dtype=arr.dtype, requires_grad=bool(obj.requires_grad))
        if obj.requires_grad:
            leaves.append((obj, t))
        return t
    if isinstance(obj, torch.Size):
        return tuple(obj)
    if isinstance(obj, torch.dtype):
        return _np_dtype(obj)
    if isinstance(obj, torch.device):
        return str(obj)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(to_minigrad(o, leaves) for o in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_minigrad(o, leaves) for o in obj)
    if isinstance(obj, dict):
        return {k: to_minigrad(v, leaves) for k, v in obj.items()}
    return obj


def _upcast(obj: Any, leaves: list) -> Any:
    """A float64 copy of a float32 sample (for the float32 yardstick); leaves as in to_minigrad."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().clone()
        if t.dtype == torch.float32:
            t = t.double()
        t.requires_grad_(bool(obj.requires_grad))
        if obj.requires_grad:
            leaves.append((obj, t))
        return t
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(_upcast(o, leaves) for o in obj)
    if isinstance(obj, dict):
        return {k: _upcast(v, leaves) for k, v in obj.items()}
    return obj


def _torch_leaves(obj: Any, leaves: list) -> list:
    if isinstance(obj, torch.Tensor):
        if obj.requires_grad:
            leaves.append(obj)
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            _torch_leaves(o, leaves)
    elif isinstance(obj, dict):
        for o in obj.values():
            _torch_leaves(o, leaves)
    return leaves


def describe(obj: Any) -> str:
    """A short, readable rendering of a sample argument (tensors as shape + dtype)."""
    if isinstance(obj, torch.Tensor):
        dt = str(obj.dtype).removeprefix("torch.")
        return f"T{list(obj.shape)}:{dt}" + ("+grad" if obj.requires_grad else "")
    if isinstance(obj, torch.Size):
        return f"Size({list(obj)})"
    if isinstance(obj, list):
        return "[" + ", ".join(describe(o) for o in obj) + "]"
    if isinstance(obj, tuple):
        return "(" + ", ".join(describe(o) for o in obj) + ("," if len(obj) == 1 else "") + ")"
    if isinstance(obj, dict):
        return "{" + ", ".join(f"{k}={describe(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, float):
        return f"{obj:.4g}"
    return repr(obj)


def describe_sample(s: Any) -> str:
    parts = [describe(s.input)] + [describe(a) for a in s.args] + [f"{k}={describe(v)}" for k, v in s.kwargs.items()]
    return "(" + ", ".join(parts) + ")"


# ---------------------------------------------------------------------------------------------- exceptions

_BINDING = re.compile(r"unexpected keyword argument|positional arguments? but \d+ (were|was) given|"
                      r"missing \d+ required (positional|keyword-only) argument|takes no arguments|"
                      r"takes no keyword arguments")


def classify_exception(exc: BaseException) -> tuple:
    """(outcome, kind, where) of an exception raised while running minigrad.

    unsupported:
      "signature": a TypeError raised by Python when binding the sample's arguments to the minigrad entry
                   point (no minigrad frame on the traceback), e.g. "got an unexpected keyword argument 'alpha'".
      "refused":   a TypeError or NotImplementedError raised by a `raise` statement in minigrad's own code.
    error:
      "raised":    another exception type raised by a `raise` statement in minigrad (ValueError, ...) on an
                   input torch accepts.
      "raw":       anything else: numpy/Python errors from inside minigrad (AxisError, IndexError,
                   AttributeError, a TypeError inside minigrad, ...).
    where: "file:line" of the innermost minigrad frame (or of the harness call when none).
    """
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if str(Path(f.filename).resolve()).startswith(MINIGRAD_DIR)]
    where_frame = mine[-1] if mine else (frames[-1] if frames else None)
    where = ""
    if where_frame is not None:
        rel = Path(where_frame.filename).resolve()
        base = Path(MINIGRAD_DIR).parent
        where = f"{rel.relative_to(base) if rel.is_relative_to(base) else rel.name}:{where_frame.lineno}"
    if not mine:
        if isinstance(exc, TypeError) and _BINDING.search(str(exc)):
            return "unsupported", "signature", where
        return "error", "raw", where
    innermost = frames[-1]
    deliberate = innermost is mine[-1] and (innermost.line or "").lstrip().startswith("raise")
    if deliberate and isinstance(exc, (TypeError, NotImplementedError)):
        return "unsupported", "refused", where
    return "error", "raised" if deliberate else "raw", where


# ---------------------------------------------------------------------------------------------- comparing

class Mismatch(Exception):
    pass


def _flatten(out: Any) -> list:
    if isinstance(out, (tuple, list)):
        return [x for o in out for x in _flatten(o)]
    return [out]


def _np_of(t: Any) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().resolve_conj().resolve_neg().numpy()
    return np.asarray(t.numpy() if hasattr(t, "numpy") else t)


def _close(what: str, got: np.ndarray, want: np.ndarray, want64: np.ndarray, dtype: torch.dtype) -> None:
    """Raise Mismatch unless got is close to torch's result (module docstring): want is torch's result in
    the sample's dtype, want64 its float64 rerun (the same as want in float64 or when there is none)."""
    if got.dtype.kind not in "fc" or want.dtype.kind not in "fc":
        if got.shape != want.shape or not np.array_equal(got, want):
            bad = np.argwhere(got != want)[:3].tolist() if got.shape == want.shape else "?"
            raise Mismatch(f"{what}: values differ (exact compare) at {bad}")
        return
    got64, t32, t64 = got.astype(np.float64), want.astype(np.float64), want64.astype(np.float64)
    gf, wf = np.isfinite(got64), np.isfinite(t32)
    if not np.array_equal(gf, wf) or not np.array_equal(got64[~gf], t32[~wf], equal_nan=True):
        raise Mismatch(f"{what}: inf/nan in different places")
    fin = gf & np.isfinite(t64)
    if not fin.any():
        return
    err = np.abs(got64[fin] - t64[fin])
    if dtype == torch.float64:
        tol = 1e-7 + 1e-7 * np.abs(t64[fin])
        if (err > tol).any():
            i = int(np.argmax(err - tol))
            raise Mismatch(f"{what}: max |diff| {err.max():.3g} (got {got64[fin][i]:.10g}, torch {t64[fin][i]:.10g})")
        return
    ref_err = np.abs(t32[fin] - t64[fin])
    tol = 10 * float(ref_err.max()) + 1e-5 * max(1.0, float(np.abs(t64[fin]).max()))
    if err.max() > tol:
        i = int(np.argmax(err))
        raise Mismatch(f"{what}: max |diff| {err.max():.3g} > tol {tol:.3g} "
                       f"(got {got64[fin][i]:.8g}, torch float64 {t64[fin][i]:.8g})")


def _same_kind(what: str, got: Any, want: Any) -> None:
    if isinstance(want, torch.Tensor):
        if not isinstance(got, mg.Tensor):
            raise Mismatch(f"{what}: got {type(got).__name__}, torch gives a tensor")
        if tuple(got.shape) != tuple(want.shape):
            raise Mismatch(f"{what}: shape {tuple(got.shape)} vs torch {tuple(want.shape)}")
        want_dt = str(want.dtype).removeprefix("torch.")
        if str(got.dtype) != want_dt:
            raise Mismatch(f"{what}: dtype {got.dtype} vs torch {want_dt}")
    elif isinstance(want, (bool, int, float)):
        if type(got) is not type(want):
            raise Mismatch(f"{what}: got {type(got).__name__} {got!r}, torch gives {type(want).__name__} {want!r}")


def is_random(key: str, s: Any) -> str | None:
    """None, or how a sample whose outputs are random is checked instead of by value."""
    if key in ("randn", "randint"):
        return "shape"
    if key == "nn.functional.dropout":
        p, training = s.kwargs.get("p", 0.5), s.kwargs.get("training", True)
        return "dropout" if training and 0 < p < 1 else None
    if key == "nn.functional.scaled_dot_product_attention" and s.kwargs.get("dropout_p", 0.0) > 0:
        return "shape"
    return None


# ---------------------------------------------------------------------------------------------- running

@dataclass
class SampleResult:
    index: int
    outcome: str
    variant: str = ""       # the minigrad spelling that gave the outcome
    detail: str = ""        # mismatch text or "ExcType: message"
    kind: str = ""          # exceptions: signature / refused / raised / raw; mismatches: forward / backward
    where: str = ""         # file:line for exceptions
    phase: str = ""         # forward / backward
    sample: str = ""        # describe_sample(...)


@dataclass
class OpResult:
    key: str
    dtype: str
    variants: list
    samples: list = field(default_factory=list)
    skipped: int = 0        # torch itself raised on the sample
    seconds: float = 0.0

    def counts(self) -> dict:
        c = {o: 0 for o in OUTCOMES}
        for s in self.samples:
            c[s.outcome] += 1
        return c


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def _torch_run(op: Any, s: Any) -> Any:
    with _quiet():
        return op(s.input, *s.args, **s.kwargs)


def _cotangents(key: str, i: int, outs: list, dtype: torch.dtype) -> list:
    rng = np.random.default_rng(zlib.crc32(f"{key}/{i}".encode()))
    return [torch.tensor(rng.standard_normal(tuple(o.shape)), dtype=o.dtype) for o in outs]


def _torch_grads(outs: list, gs: list, inputs: list) -> list:
    if not outs or not inputs:
        return [None] * len(inputs)
    return list(torch.autograd.grad(outs, inputs, grad_outputs=gs, allow_unused=True))


def run_variant(key: str, i: int, s: Any, variant: Variant, dtype: torch.dtype, ref: dict) -> SampleResult:
    """One sample through one minigrad spelling, compared with the torch results in ref."""
    res = SampleResult(i, "pass", variant=variant.label)
    leaves: list = []
    mg_input = to_minigrad(s.input, leaves)
    mg_args = to_minigrad(tuple(s.args), leaves)
    mg_kwargs = to_minigrad(dict(s.kwargs), leaves)
    phase = "forward"
    try:
        with _quiet():
            got = variant.call(mg_input, *mg_args, **mg_kwargs)
        want = ref["out"]
        got_flat, want_flat = _flatten(got), _flatten(want)
        if isinstance(want, (tuple, list)) != isinstance(got, (tuple, list)) or len(got_flat) != len(want_flat):
            raise Mismatch(f"output structure: {type(got).__name__} of {len(got_flat)} vs torch "
                           f"{type(want).__name__} of {len(want_flat)}")
        randomness = ref["random"]
        flat64 = None if ref["out64"] is None else _flatten(ref["out64"])
        for k, (g, w) in enumerate(zip(got_flat, want_flat)):
            what = f"output {k}" if len(want_flat) > 1 else "output"
            _same_kind(what, g, w)
            if randomness:
                continue
            if isinstance(w, (torch.Tensor, float)):
                w32 = _np_of(w) if isinstance(w, torch.Tensor) else np.asarray(w)
                w64 = w32 if flat64 is None else (_np_of(flat64[k]) if isinstance(w, torch.Tensor)
                                                  else np.asarray(flat64[k]))
                _close(what, _np_of(g) if isinstance(g, mg.Tensor) else np.asarray(g), w32, w64, dtype)
            elif g != w:
                raise Mismatch(f"{what}: {g!r} vs torch {w!r}")
        # backward
        diff_idx = ref["diff_idx"]
        if diff_idx and leaves:
            phase = "backward"
            for k in diff_idx:
                if not getattr(got_flat[k], "requires_grad", False):
                    raise Mismatch(f"output {k} does not require grad (torch's does)")
            with _quiet():
                for n, k in enumerate(diff_idx):
                    g = mg.tensor(ref["cot"][n].numpy(), dtype=str(ref["cot"][n].dtype).removeprefix("torch."))
                    got_flat[k].backward(g, retain_graph=n < len(diff_idx) - 1)
            tgrads = ref["grads"]
            if len(tgrads) != len(leaves):
                raise Mismatch(f"harness: {len(leaves)} minigrad leaves vs {len(tgrads)} torch inputs")
            for n, ((tt, mt), tg) in enumerate(zip(leaves, tgrads)):
                what = f"grad of input {n}"
                want_g = np.zeros(tuple(tt.shape)) if tg is None else _np_of(tg)
                mgrad = mt.grad
                got_g = np.zeros(tuple(tt.shape)) if mgrad is None else _np_of(mgrad)
                if got_g.shape != want_g.shape:
                    raise Mismatch(f"{what}: shape {got_g.shape} vs torch {want_g.shape}")
                if mgrad is not None and str(mgrad.dtype) != str(mt.dtype):
                    raise Mismatch(f"{what}: dtype {mgrad.dtype} vs input dtype {mt.dtype}")
                if randomness == "dropout":
                    _check_dropout_grad(what, got_g, _np_of(got_flat[0]), ref["cot"][0].numpy(),
                                        s.kwargs.get("p", 0.5))
                    continue
                if randomness:
                    continue
                want64 = want_g
                if ref["grads64"] is not None:
                    g64 = ref["grads64"][n]
                    want64 = np.zeros(tuple(tt.shape)) if g64 is None else _np_of(g64)
                _close(what, got_g, want_g, want64, dtype)
        if randomness == "dropout":
            _check_dropout_out(_np_of(got_flat[0]), _np_of(s.input), s.kwargs.get("p", 0.5))
    except Mismatch as e:
        res.outcome, res.detail, res.kind = "mismatch", str(e), phase
    except Exception as e:  # noqa: BLE001 - classified, never hidden
        res.outcome, res.kind, res.where = classify_exception(e)
        res.detail = f"{type(e).__name__}: {e}".splitlines()[0][:300]
    res.phase = phase
    return res


def _check_dropout_out(out: np.ndarray, x: np.ndarray, p: float) -> None:
    scaled = x / (1 - p)
    ok = (out == 0) | np.isclose(out, scaled, rtol=1e-5, atol=1e-6)
    if not ok.all():
        raise Mismatch("dropout output: entries neither 0 nor x / (1 - p)")


def _check_dropout_grad(what: str, grad: np.ndarray, out: np.ndarray, g: np.ndarray, p: float) -> None:
    want = np.where(out != 0, g / (1 - p), 0.0)
    sure = out != 0  # where out is 0 the element was dropped, or x was 0
    if not np.allclose(grad[sure], want[sure], rtol=1e-5, atol=1e-6):
        raise Mismatch(f"{what}: dropout gradient is not g / (1 - p) on the kept entries")


def torch_reference(m: Matched, i: int, s: Any, dtype: torch.dtype) -> dict | None:
    """torch's outputs, cotangents and input gradients for one sample (float64 reruns for float32);
    None when torch itself raises."""
    op = m.opinfo
    try:
        out = _torch_run(op, s)
    except Exception:  # noqa: BLE001 - a sample torch refuses is not a minigrad test
        return None
    flat = _flatten(out)
    diff_idx = [k for k, o in enumerate(flat) if isinstance(o, torch.Tensor) and o.requires_grad
                and o.dtype.is_floating_point]
    inputs = _torch_leaves((s.input, tuple(s.args), dict(s.kwargs)), [])
    cot = _cotangents(m.key, i, [flat[k] for k in diff_idx], dtype)
    ref = {"out": out, "diff_idx": diff_idx, "cot": cot, "out64": None, "grads64": None,
           "random": is_random(m.key, s)}
    with _quiet():
        ref["grads"] = _torch_grads([flat[k] for k in diff_idx], cot, inputs)
    if dtype == torch.float32 and not ref["random"]:
        up_leaves: list = []
        up = _upcast((s.input, tuple(s.args), dict(s.kwargs)), up_leaves)
        try:
            with _quiet():
                out64 = op(up[0], *up[1], **up[2])
            flat64 = _flatten(out64)
            ins64 = [t for _, t in up_leaves]
            outs64 = [flat64[k] for k in diff_idx if flat64[k].requires_grad]
            if len(outs64) != len(diff_idx):
                raise RuntimeError("float64 rerun differs in differentiability")
            with _quiet():
                ref["grads64"] = _torch_grads(outs64, [c.double() if c.dtype == torch.float32 else c for c in cot],
                                              ins64)
            ref["out64"] = out64
        except Exception:  # noqa: BLE001 - no yardstick: compare to float32 torch itself with the float64 rule
            ref["out64"], ref["grads64"] = None, None
    return ref


def run_op(m: Matched, dtype_name: str, cap: int | None = None) -> OpResult:
    """Every sample of one matched OpInfo in one dtype, through every minigrad spelling."""
    import time
    t0 = time.perf_counter()
    dtype = DTYPES[dtype_name]
    result = OpResult(m.key, dtype_name, [v.label for v in m.variants])
    if dtype not in m.opinfo.supported_dtypes("cpu"):
        result.seconds = time.perf_counter() - t0
        return result
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the samples are tiny: torch's thread pool costs ~1 ms per op and backward
    try:
        with _rng_guard():
            _run_samples(m, dtype, cap, result)
    finally:
        torch.set_num_threads(threads)
    result.seconds = time.perf_counter() - t0
    return result


def _run_samples(m: Matched, dtype: torch.dtype, cap: int | None, result: OpResult) -> None:
    for i, s in enumerate(samples(m.opinfo, dtype, cap)):
        ref = torch_reference(m, i, s, dtype)
        if ref is None:
            result.skipped += 1
            continue
        worst = None
        for v in m.variants:
            r = run_variant(m.key, i, s, v, dtype, ref)
            if worst is None or _SEVERITY[r.outcome] > _SEVERITY[worst.outcome]:
                worst = r
        worst.sample = describe_sample(s)
        result.samples.append(worst)


def dtypes_for(m: Matched) -> list:
    """The dtypes of DTYPES that the OpInfo supports on the CPU."""
    sup = m.opinfo.supported_dtypes("cpu")
    return [n for n, d in DTYPES.items() if d in sup]


# ---------------------------------------------------------------------------------------------- reporting

def totals(results: list) -> dict:
    """{dtype: {ops, samples, pass, mismatch, error, unsupported, skipped, and the error/unsupported kinds}}."""
    kinds = ("raised", "raw", "signature", "refused")
    out: dict = {}
    for r in results:
        t = out.setdefault(r.dtype, {"ops": 0, "samples": 0, **{o: 0 for o in OUTCOMES}, "skipped": 0,
                                     **{k: 0 for k in kinds}})
        t["ops"] += 1
        t["samples"] += len(r.samples)
        t["skipped"] += r.skipped
        for s in r.samples:
            t[s.outcome] += 1
            if s.outcome in ("error", "unsupported"):
                t[s.kind] += 1
    return out


def totals_table(results: list) -> list:
    """Per dtype: ops, samples, pass, mismatch, error (raw numpy/Python errors inside minigrad + errors
    minigrad raised on purpose), unsupported (signature refusals + refusals minigrad raised)."""
    lines = [f"{'dtype':8} {'ops':>4} {'samples':>7} {'pass':>5} {'mismatch':>8} {'error':>5} {'(raw/raised)':>12} "
             f"{'unsupported':>11} {'(signature/refused)':>19}"]
    for dt, t in sorted(totals(results).items(), reverse=True):
        lines.append(f"{dt:8} {t['ops']:>4} {t['samples']:>7} {t['pass']:>5} {t['mismatch']:>8} {t['error']:>5} "
                     f"{str(t['raw']) + '/' + str(t['raised']):>12} {t['unsupported']:>11} "
                     f"{str(t['signature']) + '/' + str(t['refused']):>19}")
    return lines


def op_table(results: list) -> list:
    lines = [f"{'op':44} {'dtype':7} {'n':>3} {'pass':>4} {'mis':>4} {'err':>4} {'uns':>4}  minigrad"]
    for r in sorted(results, key=lambda r: (r.key, r.dtype)):
        c = r.counts()
        lines.append(f"{r.key:44} {r.dtype:7} {len(r.samples):>3} {c['pass']:>4} {c['mismatch']:>4} "
                     f"{c['error']:>4} {c['unsupported']:>4}  {', '.join(r.variants)}")
    return lines


def failure_lines(r: OpResult, limit: int | None = None) -> list:
    bad = [s for s in r.samples if s.outcome in ("mismatch", "error")]
    out = []
    for s in bad[:limit]:
        where = f" at {s.where}" if s.where else ""
        out.append(f"  #{s.index} {s.outcome}/{s.kind} {s.variant}{s.sample}: {s.detail}{where}")
    if limit is not None and len(bad) > limit:
        out.append(f"  ... {len(bad) - limit} more")
    return out



def _short_reason(r: OpResult) -> str:
    bad = [s for s in r.samples if s.outcome in ("mismatch", "error")]
    s = bad[0]
    detail = re.sub(r"\(got .*\)$|> tol .*$", "", s.detail).strip()
    detail = re.sub(r"at \[.*\]$", "", detail).strip()
    where = f" at {s.where}" if s.where else ""
    return f"{len(bad)}/{len(r.samples)} {s.outcome}: {s.variant}{s.sample}: {detail}{where}"[:240]


def known_failures_source(results: list) -> str:
    """KNOWN_FAILURES entries (Python source) for every op and dtype with a mismatch or an error: one entry
    per op when both dtypes fail, "key[dtype]" when one does."""
    failing: dict = {}
    for r in results:
        if any(s.outcome in ("mismatch", "error") for s in r.samples):
            failing.setdefault(r.key, {})[r.dtype] = r
    all_dtypes: dict = {}
    for r in results:
        all_dtypes.setdefault(r.key, set()).add(r.dtype)
    lines = []
    for key in sorted(failing):
        by_dt = failing[key]
        if set(by_dt) == all_dtypes[key]:
            r = by_dt.get("float64") or next(iter(by_dt.values()))
            lines.append(f"    {key!r}: {_short_reason(r)!r},")
        else:
            for dt, r in sorted(by_dt.items()):
                lines.append(f"    {key + '[' + dt + ']'!r}: {_short_reason(r)!r},")
    return "\n".join(lines)
