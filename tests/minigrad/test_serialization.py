"""minigrad.serialization: .safetensors save/load, atomic writes, clear errors, interchange with PyTorch."""
from __future__ import annotations

import os

import numpy as np
import pytest

import minigrad as mg
from minigrad import serialization
from minigrad.nn import Embedding, LayerNorm, Linear
from minigrad.nn.module import Module
from minigrad.serialization import load, load_metadata, save


class Net(Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = Embedding(10, 4)
        self.ln = LayerNorm(4)
        self.head = Linear(4, 3)


def test_round_trip_keeps_values_dtypes_and_shapes(tmp_path):
    state = {
        "w": mg.tensor(np.arange(12, dtype=np.float32).reshape(3, 4) / 7),
        "d": mg.tensor(np.linspace(-1, 1, 5), dtype="float64"),
        "ids": mg.arange(6),
        "flag": mg.tensor([True, False, True]),
        "scalar": mg.tensor(2.5, dtype="float64"),
        "raw": np.array([1, 2, 3], dtype=np.uint16),  # raw arrays are accepted too
    }
    path = tmp_path / "state.safetensors"
    save(state, path, metadata={"step": "12", "note": "hi"})
    back = load(path)
    assert set(back) == set(state)
    for key, value in state.items():
        expected = value.numpy() if isinstance(value, mg.Tensor) else value
        assert isinstance(back[key], mg.Tensor)
        assert back[key].dtype == expected.dtype and back[key].shape == expected.shape, key
        np.testing.assert_array_equal(back[key].numpy(), expected, err_msg=key)
    assert load_metadata(path) == {"step": "12", "note": "hi"}


def test_model_state_dict_round_trip_reproduces_outputs(tmp_path):
    mg.manual_seed(0)
    a = Net()
    mg.manual_seed(1)
    b = Net()
    save(a.state_dict(), tmp_path / "model.safetensors")
    b.load_state_dict(load(tmp_path / "model.safetensors"))
    ids = mg.tensor([[1, 2, 3]])
    np.testing.assert_array_equal(a.head(a.ln(a.embed(ids))).numpy(), b.head(b.ln(b.embed(ids))).numpy())


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "m.safetensors"
    save({"x": mg.ones(3)}, path)
    save({"x": mg.zeros(3)}, path)  # overwriting is a rename too
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]
    assert load(path)["x"].tolist() == [0.0, 0.0, 0.0]
    assert (path.stat().st_mode & 0o777) != 0o600 or os.name != "posix"  # not left private by mkstemp


def test_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    save({"x": mg.ones(3)}, path)

    def crash(arrays, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a fi")
        raise KeyboardInterrupt

    monkeypatch.setattr(serialization, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        save({"x": mg.zeros(3)}, path)
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]
    assert load(path)["x"].tolist() == [1.0, 1.0, 1.0]


def test_missing_file_and_bad_values_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file .*nope.safetensors"):
        load(tmp_path / "nope.safetensors")
    with pytest.raises(TypeError, match="key 'step' is a int, not a Tensor"):
        save({"w": mg.ones(2), "step": 3}, tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match="metadata keys and values must be strings"):
        save({"w": mg.ones(2)}, tmp_path / "x.safetensors", metadata={"step": 3})
    with pytest.raises(FileNotFoundError, match="folder"):
        save({"w": mg.ones(2)}, tmp_path / "no" / "such" / "x.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"this is not a safetensors file")
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        load(junk)
    assert sorted(os.listdir(tmp_path)) == ["junk.safetensors"]  # failed saves wrote nothing


def test_loads_a_file_written_by_torch_and_torch_loads_ours(tmp_path):
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    tnet = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    st_torch.save_file(tnet.state_dict(), str(tmp_path / "torch.safetensors"))
    ours = load(tmp_path / "torch.safetensors")
    for key, value in tnet.state_dict().items():
        np.testing.assert_array_equal(ours[key].numpy(), value.numpy(), err_msg=key)

    mg.manual_seed(0)
    net = Net()
    save(net.state_dict(), tmp_path / "ours.safetensors")
    theirs = st_torch.load_file(str(tmp_path / "ours.safetensors"))
    assert set(theirs) == set(net.state_dict())
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(theirs[key].numpy(), value.numpy(), err_msg=key)


def test_the_file_is_plain_safetensors_and_minigrad_uses_no_pickle(tmp_path):
    import json
    import struct
    from pathlib import Path
    path = tmp_path / "x.safetensors"
    save({"w": mg.ones(2, 3)}, path)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])  # safetensors: 8-byte header length, a JSON header, then raw bytes
    header = json.loads(raw[8:8 + n])
    assert header["w"] == {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}
    assert len(raw) == 8 + n + 24
    sources = Path(mg.__file__).parent.rglob("*.py")
    offenders = [str(p) for p in sources
                 if any(word in p.read_text() for word in ("import pickle", "allow_pickle=True", "torch.load"))]
    assert not offenders, f"pickle-based loading in {offenders}"
