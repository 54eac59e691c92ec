"""minigrad.nn: Module registration and state_dict, layers against PyTorch, initialisers."""
from __future__ import annotations

import math

import numpy as np
import pytest

import minigrad as mg
from minigrad.nn import init
from minigrad.nn import (GELU, Dropout, Embedding, LayerNorm, Linear, ModuleDict, ModuleList, MultiheadAttention,
                                 ReLU, Sequential, Tanh)
from minigrad.nn.module import Module, Parameter


class Block(Module):
    def __init__(self, dim: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.attn = MultiheadAttention(dim, heads)
        self.ln = LayerNorm(dim)
        self.ff = Sequential(Linear(dim, 2 * dim), GELU(), Linear(2 * dim, dim))


class Tiny(Module):
    def __init__(self, vocab: int = 11, dim: int = 8, layers: int = 2) -> None:
        super().__init__()
        self.embed = Embedding(vocab, dim)
        self.pos = Parameter(mg.zeros(1, 4, dim))
        self.blocks = ModuleList([Block(dim) for _ in range(layers)])
        self.drop = Dropout(0.1)
        self.head = Linear(dim, vocab, bias=False)
        self.head.weight = self.embed.weight  # tied, as GPT-2


# ---------------------------------------------------------------------------- registration

def test_parameters_and_submodules_register_under_pytorch_names():
    m = Tiny()
    names = [n for n, _ in m.named_parameters()]
    assert names[:4] == ["pos", "embed.weight", "blocks.0.attn.in_proj_weight", "blocks.0.attn.in_proj_bias"]
    assert "blocks.1.ff.2.bias" in names and "blocks.0.attn.out_proj.weight" in names
    assert "head.weight" not in names  # the tied weight is listed once, under its first name
    assert len(list(m.parameters())) == len(names) == 2 + 2 * 10
    assert [n for n, _ in m.named_children()] == ["embed", "blocks", "drop", "head"]
    assert [type(c).__name__ for c in m.children()] == ["Embedding", "ModuleList", "Dropout", "Linear"]
    mods = dict(m.named_modules())
    assert mods[""] is m and mods["blocks.1.ff.1"] is m.blocks[1].ff[1]
    assert len(list(m.modules())) == len(mods)
    assert m.num_parameters() == 4 * 8 + 11 * 8 + 2 * (3 * 64 + 24 + 64 + 8 + 16 + (128 + 16) + (128 + 8))


def test_state_dict_keys_match_pytorch_and_include_tied_weights_twice():
    m = Tiny()
    sd = m.state_dict()
    assert list(sd)[:3] == ["pos", "embed.weight", "blocks.0.attn.in_proj_weight"]
    assert list(sd)[-1] == "head.weight"
    assert all(isinstance(v, mg.Tensor) and not v.requires_grad for v in sd.values())
    assert sd["head.weight"].data is m.embed.weight.data  # shares the array, like torch's detach()


def test_assigning_a_plain_tensor_over_a_parameter_is_an_error_and_none_unregisters():
    lin = Linear(3, 2)
    with pytest.raises(TypeError, match="Parameter or None expected"):
        lin.weight = mg.zeros(2, 3)
    lin.bias = None
    assert [n for n, _ in lin.named_parameters()] == ["weight"]
    lin.extra = 5  # plain attributes are not registered
    assert "extra" not in lin.state_dict() and lin.extra == 5
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        lin.missing


def test_attribute_set_before_init_says_to_call_super():
    class Broken(Module):
        def __init__(self) -> None:
            self.w = Parameter(mg.zeros(2))

    with pytest.raises(AttributeError, match="super\\(\\).__init__"):
        Broken()


def test_buffers_persistent_in_state_dict_and_non_persistent_not():
    m = Linear(2, 2)
    m.register_buffer("running", mg.ones(2))
    m.register_buffer("scratch", mg.zeros(2), persistent=False)
    assert [n for n, _ in m.named_buffers()] == ["running", "scratch"]
    assert list(m.state_dict()) == ["weight", "bias", "running"]
    m.running = mg.full((2,), 3.0)  # reassigning a buffer keeps it a buffer
    assert m.state_dict()["running"].tolist() == [3.0, 3.0]


def test_sequential_indexing_len_iteration_and_slicing():
    seq = Sequential(Linear(2, 3), ReLU(), Linear(3, 1))
    assert len(seq) == 3 and isinstance(seq[-1], Linear) and isinstance(seq[1], ReLU)
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert len(seq[:2]) == 2 and seq[:2][0] is seq[0]
    x = mg.randn(4, 2)
    np.testing.assert_allclose(seq(x).numpy(), seq[2](seq[1](seq[0](x))).numpy())
    with pytest.raises(IndexError):
        seq[3]


def test_module_list_and_dict_register_their_items():
    ml = ModuleList([Linear(2, 2)])
    ml.append(Tanh())
    ml += [Linear(2, 1)]
    assert len(ml) == 3 and [n for n, _ in ml.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    md = ModuleDict({"a": Linear(1, 1)})
    md["b"] = Linear(1, 2, bias=False)
    assert list(md.keys()) == ["a", "b"] and "b" in md
    assert list(md.state_dict()) == ["a.weight", "a.bias", "b.weight"]


# ---------------------------------------------------------------------------- state_dict loading

def test_load_state_dict_copies_in_place_and_round_trips():
    mg.manual_seed(1)
    a, b = Tiny(), Tiny()
    params_before = list(b.parameters())
    b.load_state_dict(a.state_dict())
    assert all(p is q for p, q in zip(b.parameters(), params_before))  # same objects: optimizers stay valid
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_array_equal(v.numpy(), w.numpy(), err_msg=k)
    assert b.head.weight is b.embed.weight


def test_load_state_dict_accepts_numpy_arrays_and_casts_to_the_parameter_dtype():
    lin = Linear(2, 2)
    lin.load_state_dict({"weight": np.eye(2), "bias": np.array([1.0, 2.0])})
    assert lin.weight.dtype == np.float32 and lin.weight.tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_strict_mismatch_lists_missing_unexpected_and_shape_errors_in_one_message():
    lin = Linear(3, 2)
    bad = {"weight": mg.zeros(2, 4), "extra.thing": mg.zeros(1)}
    with pytest.raises(RuntimeError) as info:
        lin.load_state_dict(bad)
    msg = str(info.value)
    assert msg.startswith("Error(s) in loading state_dict for Linear:")
    assert 'Missing key(s) in state_dict: "bias".' in msg
    assert 'Unexpected key(s) in state_dict: "extra.thing".' in msg
    assert "size mismatch for weight: copying a param with shape (2, 4) from checkpoint, " \
           "the shape in current model is (2, 3)." in msg


def test_non_strict_load_reports_keys_but_still_rejects_shape_mismatch():
    lin = Linear(3, 2)
    result = lin.load_state_dict({"weight": mg.ones(2, 3), "other": mg.ones(1)}, strict=False)
    assert result.missing_keys == ["bias"] and result.unexpected_keys == ["other"]
    assert lin.weight.tolist() == [[1.0] * 3] * 2
    with pytest.raises(RuntimeError, match="size mismatch for weight"):
        lin.load_state_dict({"weight": mg.ones(3, 3)}, strict=False)


# ---------------------------------------------------------------------------- modes, devices, grads

def test_train_and_eval_propagate_to_every_submodule():
    m = Tiny()
    assert all(x.training for x in m.modules())
    assert m.eval() is m
    assert not any(x.training for x in m.modules())
    m.blocks.train()
    assert m.blocks[1].ff[0].training and not m.training
    x = mg.randn(3, 8)
    m.eval()
    assert m.drop(x) is x  # dropout is the identity in eval mode


def test_to_dtype_keeps_parameter_objects_and_casts_grads_but_not_integer_buffers():
    m = Tiny()
    m.register_buffer("ids", mg.arange(4))
    params = list(m.parameters())
    loss = m.blocks[0].ff(mg.randn(2, 8)).sum()
    loss.backward()
    assert m.to("float64") is m
    assert all(p is q for p, q in zip(m.parameters(), params))
    assert all(p.dtype == np.float64 and isinstance(p, Parameter) and p.requires_grad for p in m.parameters())
    assert m.blocks[0].ff[0].weight.grad.dtype == np.float64
    assert m.ids.dtype == np.int64
    assert m.head.weight is m.embed.weight
    m.float()
    assert m.embed.weight.dtype == np.float32
    m.double()
    assert m.embed.weight.dtype == np.float64
    m.to("cpu", dtype="float32")
    assert m.pos.dtype == np.float32 and m.pos.device == "cpu"


def test_zero_grad_sets_to_none_or_zeroes_in_place():
    lin = Linear(2, 2)
    lin(mg.randn(3, 2)).sum().backward()
    g = lin.weight.grad
    lin.zero_grad(set_to_none=False)
    assert lin.weight.grad is g and not g.numpy().any()
    lin.zero_grad()
    assert lin.weight.grad is None and lin.bias.grad is None


def test_repr_reads_like_pytorch():
    m = Tiny(layers=3)
    text = repr(m)
    assert text.startswith("Tiny(\n  (embed): Embedding(11, 8)\n  (blocks): ModuleList(\n    (0-2): 3 x Block(\n")
    assert "      (ln): LayerNorm((8,), eps=1e-05, elementwise_affine=True, bias=True)\n" in text
    assert "        (1): GELU(approximate='none')\n" in text
    assert text.endswith("  (drop): Dropout(p=0.1, inplace=False)\n"
                         "  (head): Linear(in_features=8, out_features=11, bias=False)\n)")
    assert repr(ReLU()) == "ReLU()"
    assert repr(Parameter(mg.zeros(2))).startswith("Parameter containing:\ntensor(")


def _same_model(nn):
    """One model written once for either library: (B, T, C) blocks with MHA, a GELU MLP and a tied head."""
    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln = nn.LayerNorm(8)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.mlp = nn.Sequential(nn.Linear(8, 32), nn.GELU(approximate="tanh"), nn.Linear(32, 8), nn.Dropout(0.1))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(100, 8)
            self.blocks = nn.ModuleList([Layer() for _ in range(2)])
            self.head = nn.Linear(8, 100, bias=False)

    return Model()


def test_repr_names_and_parameter_count_equal_pytorch_for_the_same_model():
    torch = pytest.importorskip("torch")
    ours, theirs = _same_model(mg.nn), _same_model(torch.nn)
    # torch's MHA names its out_proj class NonDynamicallyQuantizableLinear (a quantization detail)
    assert repr(ours) == repr(theirs).replace("NonDynamicallyQuantizableLinear", "Linear")
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [(n, p.shape) for n, p in ours.named_parameters()] == \
        [(n, tuple(p.shape)) for n, p in theirs.named_parameters()]
    assert ours.num_parameters() == sum(p.numel() for p in theirs.parameters()) == 3312


# ---------------------------------------------------------------------------- initialisation

def test_manual_seed_makes_initialisation_reproducible():
    mg.manual_seed(123)
    a = Tiny()
    mg.manual_seed(123)
    b = Tiny()
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_array_equal(v.numpy(), w.numpy(), err_msg=k)


def test_default_initialisations_follow_pytorch():
    mg.manual_seed(0)
    lin = Linear(400, 300)
    bound = 1 / math.sqrt(400)  # kaiming_uniform(a=sqrt(5)) and the bias both give U(+-1/sqrt(fan_in))
    w, b = lin.weight.numpy(), lin.bias.numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.01 * bound
    assert np.abs(b).max() <= bound and b.std() > 0.5 * bound / math.sqrt(3)
    emb = Embedding(500, 200).weight.numpy()
    assert abs(emb.mean()) < 0.01 and abs(emb.std() - 1.0) < 0.01
    ln = LayerNorm(5)
    assert ln.weight.tolist() == [1.0] * 5 and ln.bias.tolist() == [0.0] * 5
    mha = MultiheadAttention(64, 4)
    xb = math.sqrt(6 / (64 + 3 * 64))
    assert np.abs(mha.in_proj_weight.numpy()).max() <= xb and mha.in_proj_weight.numpy().std() > 0.5 * xb / 1.8
    assert not mha.in_proj_bias.numpy().any() and not mha.out_proj.bias.numpy().any()
    assert np.abs(mha.out_proj.weight.numpy()).max() <= 1 / 8


def test_init_functions_fill_in_place_with_the_requested_distribution():
    mg.manual_seed(0)
    t = Parameter(mg.zeros(200, 300, dtype="float64"))
    data = t.data
    assert init.uniform_(t, -2.0, 3.0) is t and t.data is data
    assert t.numpy().min() >= -2.0 and t.numpy().max() < 3.0 and abs(t.numpy().mean() - 0.5) < 0.05
    init.normal_(t, 1.0, 0.5)
    assert abs(t.numpy().mean() - 1.0) < 0.01 and abs(t.numpy().std() - 0.5) < 0.01
    init.constant_(t, 7.0)
    assert (t.numpy() == 7.0).all()
    init.kaiming_uniform_(t, a=0.0, nonlinearity="relu")
    assert abs(t.numpy().std() - math.sqrt(2 / 300)) < 0.01 * math.sqrt(2 / 300) * 5
    init.trunc_normal_(t, std=1.0, a=-1.0, b=1.0)
    assert np.abs(t.numpy()).max() <= 1.0
    init.zeros_(t)
    init.ones_(t)
    assert t.dtype == np.float64 and (t.numpy() == 1.0).all()


# ---------------------------------------------------------------------------- against PyTorch (float64)

def _torch():
    return pytest.importorskip("torch")


def _copy_to_torch(ours: Module, theirs) -> None:
    torch = _torch()
    theirs.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in ours.state_dict().items()})


def _grads_match(ours: Module, theirs, rtol: float = 1e-10, atol: float = 1e-12) -> None:
    expected = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), expected[name].grad.numpy(), rtol=rtol, atol=atol, err_msg=name)


def _run_both(ours, theirs, inputs: list) -> None:
    """Forward both on the same float64 inputs, backward a random upstream grad, compare outputs and input grads."""
    torch = _torch()
    rng = np.random.default_rng(0)
    xs = [mg.tensor(a, requires_grad=a.dtype.kind == "f") for a in inputs]  # float64 arrays stay float64
    ts = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in inputs]
    out, ref = ours(*xs), theirs(*ts)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = rng.standard_normal(ref.shape)
    out.backward(mg.tensor(g, dtype="float64"))
    ref.backward(torch.tensor(g))
    for x, t in zip(xs, ts):
        if t.grad is not None:
            np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_linear_matches_torch_values_and_gradients():
    torch = _torch()
    for bias in (True, False):
        ours = Linear(5, 3, bias=bias).double()
        theirs = torch.nn.Linear(5, 3, bias=bias, dtype=torch.float64)
        _copy_to_torch(ours, theirs)
        _run_both(ours, theirs, [np.random.default_rng(1).standard_normal((2, 4, 5))])
        _grads_match(ours, theirs)


@pytest.mark.parametrize("kwargs", [{}, {"bias": False}, {"elementwise_affine": False}, {"eps": 1e-3}])
def test_layer_norm_matches_torch_values_and_gradients(kwargs):
    torch = _torch()
    ours = LayerNorm(6, **kwargs).double()
    theirs = torch.nn.LayerNorm(6, dtype=torch.float64, **kwargs)
    rng = np.random.default_rng(2)
    with mg.no_grad():
        for p in ours.parameters():
            p.data[...] = rng.standard_normal(p.shape)
    _copy_to_torch(ours, theirs)
    _run_both(ours, theirs, [rng.standard_normal((3, 4, 6)) * 3 + 1])
    _grads_match(ours, theirs)


def test_embedding_matches_torch_values_and_gradients_with_repeated_ids():
    torch = _torch()
    ours = Embedding(7, 4).double()
    theirs = torch.nn.Embedding(7, 4, dtype=torch.float64)
    _copy_to_torch(ours, theirs)
    ids = np.array([[0, 3, 3], [6, 0, 3]])
    _run_both(ours, theirs, [ids])
    _grads_match(ours, theirs)


def _mha_pair(embed: int = 8, heads: int = 2, bias: bool = True, batch_first: bool = True):
    torch = _torch()
    mg.manual_seed(3)
    ours = MultiheadAttention(embed, heads, bias=bias, batch_first=batch_first).double()
    theirs = torch.nn.MultiheadAttention(embed, heads, bias=bias, batch_first=batch_first, dtype=torch.float64)
    rng = np.random.default_rng(4)
    with mg.no_grad():
        for p in ours.parameters():  # non-zero biases so their gradients and values are really compared
            p.data[...] = rng.standard_normal(p.shape) * 0.3
    _copy_to_torch(ours, theirs)
    return ours, theirs


def test_mha_self_attention_matches_torch():
    ours, theirs = _mha_pair()
    x = np.random.default_rng(5).standard_normal((2, 5, 8))
    xm = mg.tensor(x, dtype="float64")
    assert ours(xm, xm, xm)[1] is None  # (output, None) as torch with need_weights=False
    _run_self(ours, theirs, x, {}, {"need_weights": False})
    _grads_match(ours, theirs)


def _run_self(ours, theirs, x, kw_ours, kw_theirs):
    """Self-attention with query is key is value (the packed fast path) on both sides."""
    torch = _torch()
    xm = mg.tensor(x, dtype="float64", requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    out, _ = ours(xm, xm, xm, **kw_ours)
    ref, _ = theirs(xt, xt, xt, **kw_theirs)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = np.random.default_rng(6).standard_normal(ref.shape)
    out.backward(mg.tensor(g, dtype="float64"))
    ref.backward(torch.tensor(g))
    np.testing.assert_allclose(xm.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    return xm, xt


def test_mha_is_causal_matches_torch_with_its_causal_mask():
    torch = _torch()
    ours, theirs = _mha_pair()
    x = np.random.default_rng(7).standard_normal((2, 5, 8))
    causal = torch.nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64)
    _run_self(ours, theirs, x, {"is_causal": True}, {"attn_mask": causal, "is_causal": True, "need_weights": False})
    _grads_match(ours, theirs)


def test_mha_bool_mask_true_means_not_allowed_as_torch():
    torch = _torch()
    ours, theirs = _mha_pair()
    x = np.random.default_rng(8).standard_normal((2, 4, 8))
    mask = np.array([[0, 1, 1, 0], [0, 0, 1, 1], [1, 0, 0, 0], [0, 1, 0, 0]], dtype=bool)
    _run_self(ours, theirs, x, {"attn_mask": mg.tensor(mask)},
              {"attn_mask": torch.from_numpy(mask), "need_weights": False})
    _grads_match(ours, theirs)


def test_mha_float_additive_mask_and_cross_attention_match_torch():
    torch = _torch()
    ours, theirs = _mha_pair()
    rng = np.random.default_rng(9)
    q, kv = rng.standard_normal((2, 3, 8)), rng.standard_normal((2, 5, 8))
    mask = rng.standard_normal((3, 5))
    mask[0, 2] = -np.inf
    # key is value: the shared k|v projection path
    qm, kvm = mg.tensor(q, dtype="float64", requires_grad=True), mg.tensor(kv, dtype="float64", requires_grad=True)
    qt, kvt = torch.tensor(q, requires_grad=True), torch.tensor(kv, requires_grad=True)
    out, _ = ours(qm, kvm, kvm, attn_mask=mg.tensor(mask, dtype="float64"))
    ref, _ = theirs(qt, kvt, kvt, attn_mask=torch.from_numpy(mask), need_weights=False)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = rng.standard_normal(ref.shape)
    out.backward(mg.tensor(g, dtype="float64"))
    ref.backward(torch.tensor(g))
    np.testing.assert_allclose(qm.grad.numpy(), qt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(kvm.grad.numpy(), kvt.grad.numpy(), rtol=1e-10, atol=1e-12)
    _grads_match(ours, theirs)


def test_mha_separate_key_value_padding_mask_and_weights_match_torch():
    torch = _torch()
    ours, theirs = _mha_pair(batch_first=False)
    rng = np.random.default_rng(10)
    q, k, v = rng.standard_normal((3, 2, 8)), rng.standard_normal((4, 2, 8)), rng.standard_normal((4, 2, 8))
    kpm = np.array([[False, False, True, False], [True, False, False, False]])
    ins = [mg.tensor(a, dtype="float64", requires_grad=True) for a in (q, k, v)]
    tins = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    out, w = ours(*ins, key_padding_mask=mg.tensor(kpm), need_weights=True)
    ref, wt = theirs(*tins, key_padding_mask=torch.from_numpy(kpm), need_weights=True)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(w.numpy(), wt.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = rng.standard_normal(ref.shape)
    out.backward(mg.tensor(g, dtype="float64"))
    ref.backward(torch.tensor(g))
    for a, b in zip(ins, tins):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-10, atol=1e-12)
    _grads_match(ours, theirs)


def test_mha_without_bias_and_unbatched_input_match_torch():
    torch = _torch()
    ours, theirs = _mha_pair(bias=False)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    x = np.random.default_rng(11).standard_normal((5, 8))
    _run_self(ours, theirs, x, {}, {"need_weights": False})
    _grads_match(ours, theirs)


def test_mha_dropout_only_in_training():
    ours = MultiheadAttention(8, 2, dropout=0.5)
    x = mg.randn(2, 6, 8)
    ours.eval()
    a, _ = ours(x, x, x)
    b, _ = ours(x, x, x)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    ours.train()
    c, _ = ours(x, x, x)
    assert not np.allclose(a.numpy(), c.numpy())


def test_mha_per_head_3d_mask_and_causal_with_padding_match_torch():
    torch = _torch()
    ours, theirs = _mha_pair()
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 4, 8))
    mask3 = rng.standard_normal((2 * 2, 4, 4))  # (B*H, T, S), batch-major as torch
    _run_self(ours, theirs, x, {"attn_mask": mg.tensor(mask3, dtype="float64")},
              {"attn_mask": torch.from_numpy(mask3), "need_weights": False})
    ours.zero_grad()
    theirs.zero_grad()
    kpm = np.array([[False, False, False, True], [False, True, False, False]])
    causal = torch.ones(4, 4, dtype=torch.bool).triu(1)  # bool like the padding mask (torch warns on mixed types)
    _run_self(ours, theirs, x, {"is_causal": True, "key_padding_mask": mg.tensor(kpm)},
              {"attn_mask": causal, "is_causal": True, "key_padding_mask": torch.from_numpy(kpm),
               "need_weights": False})
    _grads_match(ours, theirs)


def test_deepcopy_copies_parameters_and_keeps_ties():
    import copy
    m = Tiny()
    c = copy.deepcopy(m)
    assert c.embed.weight is not m.embed.weight and c.head.weight is c.embed.weight
    np.testing.assert_array_equal(c.embed.weight.numpy(), m.embed.weight.numpy())
    c.embed.weight.data[...] = 0
    assert m.embed.weight.numpy().any()
