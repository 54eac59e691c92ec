"""The CUDA backend on a machine without a GPU: it imports, it fails with one clear line, devices never mix.

Runs in CPU CI. Where cupy is needed it comes from the [cuda-check] extra (cupy imports without a GPU).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import minigrad as mg
from minigrad import backend
from tests.strict_cupy import cupy_or_skip

ROOT = Path(__file__).resolve().parents[2]
NO_CUPY = "import sys; sys.modules['cupy'] = None; "  # makes `import cupy` raise ImportError


def has_gpu() -> bool:
    return backend.cuda_unavailable_reason() is None


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_the_cuda_modules_import_and_build_a_cuda_device_object_without_a_gpu():
    cupy_or_skip("the cuda backend import check")
    proc = run_python(
        "import cupy, minigrad, minigrad.cuda_kernels, minigrad.selftest\n"
        "from minigrad import backend\n"
        "dev = backend._cupy_device(cupy, 0)  # builds the device's hooks; touches no GPU\n"
        "assert dev.xp is cupy and dev.kernels.fused and dev.type == 'cuda', dev\n"
        "print('ok', cupy.__version__, cupy.is_available())")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok ")


def test_cuda_kernels_can_be_disabled_by_environment():
    cupy_or_skip("the cuda backend import check")
    proc = subprocess.run([sys.executable, "-c", "import cupy; from minigrad import backend; "
                           "print(backend._cupy_device(cupy, 0).kernels)"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**__import__("os").environ, "MINIGRAD_CUDA_KERNELS": "0"})
    assert proc.stdout.strip() == "None", proc.stderr


def test_device_cuda_without_cupy_says_what_to_install():
    proc = run_python(NO_CUPY + "import minigrad as mg\ntry:\n    mg.device('cuda')\n"
                      "except mg.backend.CudaUnavailableError as e:\n    print(e)")
    line = proc.stdout.strip()
    assert "needs cupy" in line and 'pip install -e ".[cuda]"' in line and "cupy-cuda12x" in line


@pytest.mark.parametrize("hide_cupy", [True, False], ids=["no cupy", "cupy but no GPU"])
def test_train_on_cuda_without_a_gpu_prints_one_line_and_exits_2(hide_cupy, tmp_path):
    if not hide_cupy:
        cupy_or_skip("the no-GPU message test")
    if has_gpu():
        pytest.skip("a GPU is present")
    code = ("NO_CUPY" if hide_cupy else "") + "import sys; from tinygpt.train import main; sys.exit(main(sys.argv[1:]))"
    proc = run_python(code.replace("NO_CUPY", NO_CUPY), "--device", "cuda", "--max-steps", "1",
                      "--out", str(tmp_path / "run"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert ("pip install" in lines[0]) if hide_cupy else ("no usable GPU" in lines[0])


@pytest.mark.parametrize("hide_cupy", [True, False], ids=["no cupy", "cupy but no GPU"])
def test_selftest_without_a_gpu_says_what_is_missing_first_and_exits_2(hide_cupy):
    if not hide_cupy:
        cupy_or_skip("the no-GPU selftest message")
    if has_gpu():
        pytest.skip("a GPU is present")
    code = (NO_CUPY if hide_cupy else "") + "import sys; from minigrad.selftest import main; sys.exit(main(sys.argv[1:]))"
    proc = run_python(code, "--device", "cuda")
    first = proc.stdout.splitlines()[0]
    assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    if hide_cupy:
        assert first.startswith("minigrad selftest: cupy is not installed") and 'pip install -e ".[cuda]"' in first
    else:
        assert first == "minigrad selftest: no GPU found, nothing was tested."


def test_device_objects_are_cached_and_constructible_like_torch_device():
    assert mg.Device("cpu") is mg.device("cpu") is mg.device(mg.Device("cpu"))
    assert str(mg.device("cpu")) == "cpu" and repr(mg.device("cpu")) == "device(type='cpu')"
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        mg.device("gpu")
    if not has_gpu():
        with pytest.raises(backend.CudaUnavailableError):
            mg.device("cuda:1")
        with pytest.raises(backend.CudaUnavailableError):
            mg.Device("cuda")


def test_devices_compare_with_strings_pickle_and_copy_without_touching_cuda():
    import copy
    import pickle
    cpu = mg.device("cpu")
    assert cpu == "cpu" and cpu != "cuda" and cpu != "cuda:1"  # no cupy import, no error without a GPU
    # the same rules as device(): "cpu:N" is the one CPU device, a malformed name equals nothing
    assert mg.device("cpu:3") is cpu and cpu == "cpu:3" and cpu != "cuda:abc" and cpu != "gpu"
    assert pickle.loads(pickle.dumps(cpu)) is cpu and copy.deepcopy(cpu) is cpu


def test_device_tensor_and_module_moves_on_the_stand_in():
    cupy_or_skip("the strict cupy stand-in")
    from tests.strict_cupy import StrictArray, make_device
    dev = make_device()
    assert mg.Device("cuda:99") is dev and mg.Device("cuda", 99) is dev and mg.device("cuda:99") is dev
    assert repr(dev) == "device(type='cuda', index=99)" and dev == "cuda:99"
    t = mg.tensor([1.0, 2.0]).to("cuda:99")
    assert isinstance(t.data, StrictArray) and t.device is dev and "device='cuda:99'" in repr(t)
    assert t.to("cuda:99") is t and t.to(dev, "float64").dtype == np.float64
    back = t.cpu()
    assert isinstance(back.data, np.ndarray) and back.tolist() == [1.0, 2.0]
    layer = mg.nn.Linear(2, 3).to("cuda:99")
    assert all(p.device is dev for p in layer.parameters())
    assert layer(t).device is dev


def test_mixing_devices_raises_an_error_naming_both(tmp_path):
    cupy_or_skip("the strict cupy stand-in")
    from tests.strict_cupy import make_device
    dev = make_device()
    a, b = mg.randn(2, 3), mg.randn(2, 3, device=dev)
    cases = [lambda: a + b, lambda: b * a, lambda: a @ b.T, lambda: mg.cat([a, b]), lambda: mg.where(a > 0, a, b),
             lambda: mg.nn.functional.linear(b, a), lambda: mg.nn.Linear(3, 2)(b)]
    for case in cases:
        with pytest.raises(RuntimeError) as info:
            case()
        assert "cpu" in str(info.value) and "cuda:99" in str(info.value), str(info.value)


def test_one_gpu_per_process_is_enforced_with_a_clear_error(monkeypatch):
    """Needs no GPU: a fake cupy with two devices stands in for the driver."""
    used = []
    fake = SimpleNamespace(cuda=SimpleNamespace(
        runtime=SimpleNamespace(getDeviceCount=lambda: 2),
        Device=lambda i: SimpleNamespace(use=lambda: used.append(i))))
    monkeypatch.setattr(backend, "_DEVICES", dict(backend._DEVICES))
    for key in [k for k in backend._DEVICES if k[0] == "cuda"]:
        del backend._DEVICES[key]
    monkeypatch.setattr(backend, "_load_cupy", lambda: fake)
    monkeypatch.setattr(backend, "_cupy_device", lambda cupy, i: backend.Device("cuda", i, cupy))
    first = mg.device("cuda:1")
    assert first.index == 1 and used == [1] and mg.device("cuda:1") is first
    with pytest.raises(backend.CudaUnavailableError, match=r"one GPU per process.*cuda:1.*CUDA_VISIBLE_DEVICES=0"):
        mg.device("cuda")
    with pytest.raises(backend.CudaUnavailableError, match="only 2 GPU"):
        mg.device("cuda:2")


def test_memory_stats_hook_is_empty_on_the_cpu():
    assert mg.device("cpu").memory_stats() == {}
    assert mg.device("cpu").kernels is None  # the CPU keeps its numpy path
