"""The public API surface: what `import minigrad as mg` offers, with PyTorch's names."""
from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg

TOP_LEVEL = ["Tensor", "tensor", "zeros", "ones", "full", "randn", "rand", "randint", "arange", "zeros_like",
             "ones_like", "cat", "stack", "where", "maximum", "minimum", "no_grad", "enable_grad", "is_grad_enabled",
             "manual_seed", "Function", "gradcheck", "GradcheckError", "save", "load", "float32", "float64", "int64",
             "set_default_dtype", "get_default_dtype", "device", "nn", "optim", "__version__"]
NN = ["Module", "Parameter", "Linear", "Embedding", "LayerNorm", "Dropout", "GELU", "ReLU", "Tanh", "Sigmoid",
      "Identity", "Sequential", "ModuleList", "ModuleDict", "MultiheadAttention", "functional", "init"]
FUNCTIONAL = ["linear", "embedding", "softmax", "log_softmax", "cross_entropy", "nll_loss", "mse_loss", "layer_norm",
              "gelu", "relu", "tanh", "sigmoid", "dropout", "scaled_dot_product_attention"]
INIT = ["normal_", "zeros_", "ones_", "uniform_", "constant_", "trunc_normal_", "xavier_uniform_", "xavier_normal_",
        "kaiming_uniform_", "kaiming_normal_", "calculate_gain"]
OPTIM = ["Optimizer", "SGD", "AdamW", "clip_grad_norm_", "clip_grad_value_", "lr_scheduler", "LambdaLR",
         "CosineWithWarmup", "constant", "cosine_with_warmup"]
TENSOR_METHODS = ["backward", "item", "numpy", "tolist", "detach", "requires_grad_", "to", "float", "double",
                  "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "abs", "pow", "maximum", "minimum", "clip", "clamp",
                  "sum", "mean", "max", "min", "amax", "amin", "var", "std", "logsumexp", "argmax", "argmin",
                  "reshape", "view", "transpose", "permute", "expand", "broadcast_to", "squeeze", "unsqueeze",
                  "flatten", "split", "chunk", "gather", "softmax", "log_softmax", "size", "numel", "dim"]


@pytest.mark.parametrize("module,names", [(mg, TOP_LEVEL), (mg.nn, NN), (mg.nn.functional, FUNCTIONAL),
                                          (mg.nn.init, INIT), (mg.optim, OPTIM), (mg.Tensor, TENSOR_METHODS)],
                         ids=["minigrad", "nn", "functional", "init", "optim", "Tensor"])
def test_public_names_exist(module, names):
    missing = [n for n in names if not hasattr(module, n)]
    assert not missing, f"{module.__name__} lacks {missing}"


def test_the_tutorial_imports_work_as_in_pytorch():
    import minigrad.nn as nn
    import minigrad.nn.functional as F
    from minigrad.optim import AdamW
    model = nn.Sequential(nn.Linear(4, 8), nn.GELU(approximate="tanh"), nn.Linear(8, 3))
    opt = AdamW(model.parameters(), lr=1e-3)
    loss = F.cross_entropy(model(mg.randn(5, 4)), mg.tensor([0, 1, 2, 0, 1]))
    loss.backward()
    opt.step()
    assert mg.nn.Linear is nn.Linear and mg.optim.AdamW is AdamW and callable(mg.save)


def test_tensor_attributes():
    x = mg.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    assert isinstance(x.data, np.ndarray) and x.grad is None and x.requires_grad
    assert x.shape == (2, 3) and x.ndim == 2 and x.dtype == mg.float32 and str(x.device) == "cpu"
    assert x.T.shape == (3, 2) and x.T.tolist() == [[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]]
    assert x[1, 2].item() == 6.0 and isinstance(x[1, 2].item(), float)
    assert isinstance(x.numpy(), np.ndarray) and x.tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    d = x.detach()
    assert not d.requires_grad and d.grad_fn is None and np.shares_memory(d.data, x.data)
    y = mg.zeros(2).requires_grad_()
    assert y.requires_grad and y.is_leaf
    assert x.size() == (2, 3) and x.size(1) == 3 and x.numel() == 6 and len(x) == 2


def test_repr_shows_values_dtype_and_the_op():
    x = mg.tensor([1.0, 2.0], dtype="float64", requires_grad=True)
    assert repr(x) == "tensor([1., 2.], dtype=float64, requires_grad=True)"
    assert repr(x * 2.0) == "tensor([2., 4.], dtype=float64, grad_fn=<Mul>)"
    assert repr(mg.tensor([1, 2])) == "tensor([1, 2])"
    assert "grad_fn=<Sum>" in repr((x * x).sum())


def test_repr_of_a_matrix_aligns_rows_like_pytorch():
    assert repr(mg.ones(2, 2)) == "tensor([[1., 1.],\n        [1., 1.]])"


def test_constructors_shapes_dtypes_and_values():
    assert mg.zeros(2, 3).tolist() == [[0.0] * 3] * 2 and mg.zeros((2, 3)).dtype == mg.float32
    assert mg.ones(4, dtype="float64").dtype == mg.float64
    assert mg.full((2, 2), 7.0).tolist() == [[7.0, 7.0], [7.0, 7.0]]
    assert mg.arange(4).tolist() == [0, 1, 2, 3] and mg.arange(4).dtype == mg.int64
    assert mg.arange(0, 1, 0.25).tolist() == [0.0, 0.25, 0.5, 0.75] and mg.arange(0, 1, 0.25).dtype == mg.float32
    x = mg.randn(3, 2, dtype="float64")
    assert mg.zeros_like(x).dtype == mg.float64 and mg.ones_like(x).shape == (3, 2)
    r = mg.rand(1000)
    assert r.dtype == mg.float32 and 0.0 <= r.numpy().min() and r.numpy().max() < 1.0
    assert mg.randint(0, 5, (100,)).dtype == mg.int64
    t = mg.tensor(np.arange(3.0))  # numpy float64 keeps its dtype, as torch.tensor does
    assert t.dtype == mg.float64
    assert mg.tensor([1.5]).dtype == mg.float32 and mg.tensor([1, 2]).dtype == mg.int64
    assert mg.randn(2, requires_grad=True).requires_grad


def test_tensor_copies_its_input():
    a = np.zeros(3, dtype=np.float32)
    t = mg.tensor(a)
    a[0] = 5.0
    assert t.tolist() == [0.0, 0.0, 0.0]


def test_manual_seed_makes_every_random_draw_reproducible():
    def draws():
        mg.manual_seed(7)
        lin = mg.nn.Linear(3, 2)
        emb = mg.nn.Embedding(4, 2)
        drop = mg.nn.functional.dropout(mg.ones(20), 0.5)
        w = mg.nn.init.normal_(mg.zeros(3), std=2.0)
        return [mg.randn(3), mg.rand(3), mg.randint(0, 100, (3,)), lin.weight, lin.bias, emb.weight, drop, w]

    first, second = draws(), draws()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    mg.manual_seed(8)
    assert not np.array_equal(mg.randn(3).numpy(), first[0].numpy())


def test_default_dtype_can_be_float64():
    mg.set_default_dtype("float64")
    try:
        assert mg.randn(2).dtype == mg.float64 and mg.tensor([1.0]).dtype == mg.float64
        assert mg.nn.Linear(2, 2).weight.dtype == mg.float64
    finally:
        mg.set_default_dtype("float32")
    assert mg.randn(2).dtype == mg.float32


@pytest.mark.parametrize("op", ["t + 'a'", "'a' + t", "t * None", "t @ 'x'", "t - b'x'", "t < 'a'", "t ** 'x'"])
def test_operators_with_a_non_numeric_operand_raise_pythons_type_error(op):
    t = mg.ones(3)
    with pytest.raises(TypeError, match="unsupported operand|not supported between|can only concatenate"):
        eval(op)


def test_inplace_operator_with_a_non_numeric_operand_raises_type_error_and_keeps_the_tensor():
    t = mg.ones(3)
    with pytest.raises(TypeError, match="unsupported operand"):
        t += "a"
    assert t.tolist() == [1.0, 1.0, 1.0]
    assert (mg.ones(2) == "a") is False  # Python's fallback for ==, as with torch


def test_importing_minigrad_changes_no_process_setting(tmp_path):
    """mallopt is called only by minigrad.tune_malloc(), and that is a no-op without glibc (Windows: TypeError)."""
    import subprocess
    import sys
    code = ("import ctypes\n"
            "calls = []\n"
            "real = ctypes.CDLL\n"
            "class Spy:\n"
            "    def __init__(self, name, *a, **k):\n"
            "        self.lib = real(name, *a, **k)\n"
            "    def __getattr__(self, attr):\n"
            "        calls.append(attr)\n"
            "        return getattr(self.lib, attr)\n"
            "ctypes.CDLL = Spy\n"
            "import minigrad\n"
            "import tinygpt\n"
            "assert 'mallopt' not in calls, calls\n"
            "def windows(name, *a, **k):\n"
            "    raise TypeError('expected str, bytes or os.PathLike object, not NoneType')\n"
            "ctypes.CDLL = windows\n"
            "assert minigrad.tune_malloc() is False\n"
            "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
