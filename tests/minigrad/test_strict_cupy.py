"""The op code runs unchanged on a strict CuPy stand-in (a numpy-backed SIMULATION, see tests/strict_cupy.py).

This proves device/host discipline and API existence in the installed cupy, not CUDA numerics.
"""
from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import minigrad as mg
from tests.minigrad.op_specs import all_cases, draw, minigrad_lib
from tests.strict_cupy import StrictArray, Syncs, cupy_or_skip, make_device

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dev():
    cupy_or_skip("the strict cupy stand-in (it takes its name lists from the installed cupy)")
    return make_device()


def lib_on(dev):
    base = minigrad_lib()
    return SimpleNamespace(**{**vars(base), "tensor": lambda a: mg.tensor(a, device=dev)})


def test_stand_in_refuses_implicit_host_conversion_and_numpy_mixing(dev):
    a = mg.randn(3, device=dev)
    assert isinstance(a.data, StrictArray)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(a.data)
    with pytest.raises(TypeError, match="numpy array"):
        a.data + np.ones(3, dtype=np.float32)
    with pytest.raises(AttributeError, match="normal"):
        dev.rng.normal(size=3)
    with pytest.raises(AttributeError, match="vecdot"):
        dev.xp.vecdot
    with pytest.raises(NotImplementedError):
        dev.xp.maximum.at(a.data, dev.xp.asarray(np.array([0])), 1.0)


def test_stand_in_refuses_hidden_float64_upcasts_and_repeated_index_writes(dev):
    xp = dev.xp
    a = xp.asarray(np.ones(4, dtype=np.float32))
    a * 2.0  # a Python float keeps float32
    with pytest.raises(TypeError, match="hidden float64 upcast"):
        a * xp.asarray(np.float64(2.0))
    with pytest.raises(TypeError, match="hidden float64 upcast"):
        xp.add(a, xp.asarray(np.ones(4)))
    m = xp.asarray(np.zeros((3, 3), dtype=np.float32))
    m[xp.arange(3), xp.asarray(np.array([0, 0, 2]))] = 1.0  # distinct (row, col) pairs: fine
    with pytest.raises(ValueError, match="writes one element twice"):
        m[xp.asarray(np.array([1, 1]))] = 2.0


CASES = all_cases()


@pytest.mark.parametrize("name,i,case", CASES, ids=[f"{n}-{i}" for n, i, _ in CASES])
def test_op_matches_numpy_on_the_stand_in(dev, name, i, case):
    rng = np.random.default_rng(0)
    arrays = [draw(s, case.domain, rng) for s in case.shapes]
    cpu = [mg.tensor(a, dtype="float64", requires_grad=True) for a in arrays]
    gpu = [mg.tensor(a, dtype="float64", requires_grad=True, device=dev) for a in arrays]
    out_c, out_g = case.fn(minigrad_lib(), *cpu), case.fn(lib_on(dev), *gpu)
    assert isinstance(out_g.data, StrictArray) and out_g.device == dev
    g = rng.standard_normal(out_c.shape)
    out_c.backward(mg.tensor(g, dtype="float64"))
    out_g.backward(mg.tensor(g, dtype="float64", device=dev))
    np.testing.assert_allclose(out_g.numpy(), out_c.numpy(), rtol=1e-12, atol=1e-12)
    for a, b in zip(gpu, cpu):
        assert isinstance(a.grad.data, StrictArray)
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_cpu_tensors_do_not_mix_silently_with_device_tensors(dev):
    with pytest.raises(RuntimeError, match="cpu and cuda:99"):
        mg.randn(3) + mg.randn(3, device=dev)


def test_device_to_host_syncs_are_counted(dev):
    x = mg.randn(4, 5, device=dev, requires_grad=True)
    before = Syncs.count
    loss = (x * x).sum()
    loss.backward()
    assert Syncs.count == before  # no host round trip in forward or backward
    loss.item()
    assert Syncs.count == before + 1


# The static guard (an AST scan) for paths the stand-in tests never run. backend.py is where numpy- and
# cupy-specific code lives; gradcheck.py, serialization.py and selftest.py work on host copies by design.
NUMPY_FREE = ["minigrad/autograd.py", "minigrad/ops", "minigrad/nn", "minigrad/optim", "minigrad/creation.py"]
HOST_METADATA_ONLY = {  # files that may use numpy, but only these names: dtypes, type checks, host inputs
    "minigrad/tensor.py", "minigrad/tensor_math.py", "minigrad/tensor_reduce.py", "minigrad/tensor_shape.py",
    "minigrad/tensor_inplace.py", "minigrad/arguments.py", "minigrad/dtypes.py", "minigrad/cuda_kernels.py"}
NUMPY_METADATA = {"dtype", "ndarray", "generic", "bool_", "float16", "float32", "float64", "int32", "int64", "uint8",
                  "uint16", "integer", "floating", "number", "issubdtype", "result_type", "promote_types", "can_cast",
                  "iinfo", "finfo", "array2string", "broadcast_shapes", "asarray", "array"}
CUPY_ALLOWED = {"minigrad/backend.py", "minigrad/cuda_kernels.py", "minigrad/selftest.py"}


def _python_files(entry: str) -> list:
    path = ROOT / entry
    return [path] if path.is_file() else sorted(path.rglob("*.py"))


def _numpy_aliases_and_imports(tree: ast.AST) -> tuple[set, list]:
    aliases, imports = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in ("numpy", "cupy", "cupyx"):
                    imports.append((node.lineno, a.name))
                    if a.name.split(".")[0] == "numpy":
                        aliases.add(a.asname or a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("numpy", "cupy", "cupyx"):
            imports.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.module == "minigrad.backend":
            aliases.update(a.asname or a.name for a in node.names if a.name == "np")  # backend's own numpy
    return aliases, imports


def numpy_offenders(rel: str, source: str) -> list[str]:
    """Bare numpy (or cupy) use in one file (path relative to the repo) where op code must use the device's xp."""
    offenders = []
    tree = ast.parse(source)
    aliases, imports = _numpy_aliases_and_imports(tree)
    for lineno, mod in imports:
        if mod.split(".")[0] in ("cupy", "cupyx") and rel not in CUPY_ALLOWED:
            offenders.append(f"{rel}:{lineno} imports {mod} (only backend.py and cuda_kernels.py may)")
        if mod.split(".")[0] == "numpy" and any(rel == e or rel.startswith(e + "/") for e in NUMPY_FREE):
            offenders.append(f"{rel}:{lineno} imports {mod}")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        root = node.value
        if isinstance(root, ast.Attribute) and isinstance(root.value, ast.Name) and root.value.id == "backend" \
                and root.attr == "np":
            offenders.append(f"{rel}:{node.lineno} uses backend.np.{node.attr}")
        elif isinstance(root, ast.Name) and root.id in aliases:
            if any(rel == e or rel.startswith(e + "/") for e in NUMPY_FREE):
                offenders.append(f"{rel}:{node.lineno} calls {root.id}.{node.attr}")
            elif rel in HOST_METADATA_ONLY and node.attr not in NUMPY_METADATA:
                offenders.append(f"{rel}:{node.lineno} calls {root.id}.{node.attr} (only dtype and host-input "
                                 "names are allowed here; array math goes through the device's xp)")
    return offenders


def test_op_code_never_calls_numpy_on_tensor_data():
    offenders = [o for f in _python_files("minigrad") for o in numpy_offenders(str(f.relative_to(ROOT)), f.read_text())]
    assert not offenders, "use the device's array module (ctx.xp / t.device.xp) or a backend.py hook:\n" + \
        "\n".join(offenders)


def test_the_numpy_guard_catches_bare_numpy_and_cupy_use():
    op = "import numpy as np\nimport cupy\n\ndef f(x):\n    return np.exp(x)\n"
    found = numpy_offenders("minigrad/ops/probe.py", op)
    assert found == ["minigrad/ops/probe.py:1 imports numpy", "minigrad/ops/probe.py:2 imports cupy "
                     "(only backend.py and cuda_kernels.py may)", "minigrad/ops/probe.py:5 calls np.exp"]
    host = "import numpy as np\nx = np.dtype('float32')\ny = np.tanh(x)\n"
    assert [o.split(" (")[0] for o in numpy_offenders("minigrad/tensor.py", host)] == ["minigrad/tensor.py:3 calls np.tanh"]
    via_backend = "from minigrad import backend\n\ndef f(x):\n    return backend.np.exp(x)\n"
    assert numpy_offenders("minigrad/ops/probe.py", via_backend) == ["minigrad/ops/probe.py:4 uses backend.np.exp"]
