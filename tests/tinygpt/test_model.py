"""TinyGPT: parity with the tutorial's PyTorch model, the KV cache, parameter names."""
from __future__ import annotations

import math

import numpy as np
import pytest

import minigrad as mg
from tinygpt import GPTConfig, TinyGPT, preset

TUTORIAL_NAMES = ["tok_embed.weight", "pos_embed", "blocks.0.attn.in_proj_weight", "blocks.0.attn.in_proj_bias",
                  "blocks.0.attn.out_proj.weight", "blocks.0.attn.out_proj.bias", "blocks.0.ln1.weight",
                  "blocks.0.ln1.bias", "blocks.0.ff.0.weight", "blocks.0.ff.0.bias", "blocks.0.ff.2.weight",
                  "blocks.0.ff.2.bias", "blocks.0.ln2.weight", "blocks.0.ln2.bias", "ln_f.weight", "ln_f.bias",
                  "head.weight"]


def small_cfg(**kw):
    return GPTConfig(**{**dict(vocab_size=50, block_size=16, n_embd=24, n_heads=3, n_layers=2), **kw})


def test_tutorial_parameter_names_and_shapes():
    mg.manual_seed(0)
    model = TinyGPT(preset("tutorial"))
    sd = model.state_dict()
    assert {k for k in sd if not k.startswith("blocks.") or k.startswith("blocks.0.")} == set(TUTORIAL_NAMES)
    assert len(sd) == 2 + 12 * 6 + 3
    assert sd["pos_embed"].shape == (1, 128, 128) and not sd["pos_embed"].numpy().any()
    assert sd["blocks.5.attn.in_proj_weight"].shape == (384, 128)
    assert sd["blocks.0.ff.0.weight"].shape == (512, 128) and sd["head.weight"].shape == (8000, 128)
    assert 3.0e6 < sum(p.numel() for p in model.parameters()) < 3.4e6


def torch_tutorial_model(torch, cfg):
    """The tutorial's TinyGPT, as its own PyTorch code writes it."""
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, n_embd, n_heads):
            super().__init__()
            self.attn = nn.MultiheadAttention(n_embd, n_heads, batch_first=True)
            self.ln1 = nn.LayerNorm(n_embd)
            self.ff = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd))
            self.ln2 = nn.LayerNorm(n_embd)

        def forward(self, x, mask):
            attn_out, _ = self.attn(x, x, x, attn_mask=mask)
            x = self.ln1(x + attn_out)
            x = self.ln2(x + self.ff(x))
            return x

    class TorchTinyGPT(nn.Module):
        def __init__(self, vocab_size, n_embd, n_heads, n_layers, block_size):
            super().__init__()
            self.tok_embed = nn.Embedding(vocab_size, n_embd)
            self.pos_embed = nn.Parameter(torch.zeros(1, block_size, n_embd))
            self.blocks = nn.ModuleList([Block(n_embd, n_heads) for _ in range(n_layers)])
            self.ln_f = nn.LayerNorm(n_embd)
            self.head = nn.Linear(n_embd, vocab_size, bias=False)

        def forward(self, idx, targets=None):
            b, t = idx.shape
            x = self.tok_embed(idx) + self.pos_embed[:, :t, :]
            mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
            for block in self.blocks:
                x = block(x, mask)
            logits = self.head(self.ln_f(x))
            loss = None
            if targets is not None:
                loss = nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
            return logits, loss

    return TorchTinyGPT(cfg.vocab_size, cfg.n_embd, cfg.n_heads, cfg.n_layers, cfg.block_size)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-5), ("float32", 1e-4)])
def test_matches_the_tutorials_pytorch_model(dtype, tol):
    torch = pytest.importorskip("torch")
    cfg = small_cfg()
    mg.manual_seed(1)
    ours = TinyGPT(cfg).to(dtype)
    with mg.no_grad():
        ours.pos_embed.data[...] = mg.randn(*ours.pos_embed.shape, dtype=dtype).data * 0.1  # not zeros
    theirs = torch_tutorial_model(torch, cfg).to(getattr(torch, dtype))
    theirs.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in ours.state_dict().items()})
    rng = np.random.default_rng(0)
    idx, tgt = rng.integers(0, cfg.vocab_size, (3, 12)), rng.integers(0, cfg.vocab_size, (3, 12))
    logits, loss = ours(idx, tgt)
    logits_t, loss_t = theirs(torch.from_numpy(idx), torch.from_numpy(tgt))
    np.testing.assert_allclose(logits.numpy(), logits_t.detach().numpy(), rtol=tol, atol=tol)
    assert abs(loss.item() - loss_t.item()) < tol
    loss.backward()
    loss_t.backward()
    grads_t = {k: p.grad.numpy() for k, p in theirs.named_parameters()}
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), grads_t[name], rtol=tol, atol=tol, err_msg=name)


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad (preallocated cache)", "grad (concatenated cache)"])
@pytest.mark.parametrize("norm", ["post", "pre"])
def test_kv_cache_gives_the_same_logits(norm, grad):
    cfg = small_cfg(norm=norm)
    mg.manual_seed(2)
    model = TinyGPT(cfg).to("float64")
    with mg.no_grad():
        model.pos_embed.data[...] = mg.randn(*model.pos_embed.shape, dtype="float64").data
    model.eval()
    ids = np.random.default_rng(0).integers(0, cfg.vocab_size, (1, 10))
    with mg.no_grad():
        full = model(ids).numpy()
    with mg.enable_grad() if grad else mg.no_grad():
        caches = model.new_caches()
        parts = [model(ids[:, :4], caches=caches, start_pos=0).numpy()]
        for t in range(4, 10):
            parts.append(model(ids[:, t:t + 1], caches=caches, start_pos=t).numpy())
    np.testing.assert_allclose(np.concatenate(parts, axis=1), full, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_gradients_through_the_kv_cache_equal_the_full_forwards(norm):
    """Backward through a cache (concatenated while grad is on) gives the full sequence's gradients."""
    model = TinyGPT(small_cfg(norm=norm)).to("float64")
    model.eval()
    ids = np.random.default_rng(1).integers(0, 50, (2, 7))
    full = model(ids)
    (full * full).sum().backward()
    want = {n: p.grad.numpy().copy() for n, p in model.named_parameters()}
    model.zero_grad()
    caches = model.new_caches()
    parts = [model(ids[:, :3], caches=caches, start_pos=0)]
    parts += [model(ids[:, t:t + 1], caches=caches, start_pos=t) for t in range(3, 7)]
    assert [len(c) for c in caches] == [7, 7]
    sum((p * p).sum() for p in parts).backward()
    for n, p in model.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), want[n], rtol=1e-9, atol=1e-11, err_msg=n)


def test_kv_cache_refuses_more_positions_than_the_context():
    model = TinyGPT(small_cfg())
    caches = model.new_caches()
    with mg.no_grad():
        model(np.zeros((1, 16), dtype=np.int64), caches=caches)
        with pytest.raises(ValueError, match="exceeds the model's context of 16"):
            model(np.zeros((1, 1), dtype=np.int64), caches=caches, start_pos=16)
        with pytest.raises(ValueError, match="KVCache: 17 positions exceed the context of 16"):
            caches[0].update(*(mg.zeros(1, 3, 1, 8),) * 2)


def test_context_overflow_is_a_clear_error():
    model = TinyGPT(small_cfg())
    with pytest.raises(ValueError, match="exceeds the model's context of 16"):
        model(np.zeros((1, 17), dtype=np.int64))


def test_tied_weights_share_one_parameter():
    model = TinyGPT(small_cfg(tie_weights=True, norm="pre"))
    assert model.head.weight is model.tok_embed.weight
    ids = np.zeros((1, 4), dtype=np.int64)
    _, loss = model(ids, ids)
    loss.backward()
    assert model.head.weight.grad is not None


def test_a_saved_model_safetensors_loads_into_the_tutorials_pytorch_model(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file
    cfg = small_cfg()
    mg.manual_seed(2)
    ours = TinyGPT(cfg)
    mg.save(ours.state_dict(), tmp_path / "model.safetensors")
    theirs = torch_tutorial_model(torch, cfg)
    result = theirs.load_state_dict(load_file(str(tmp_path / "model.safetensors")), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    idx = np.random.default_rng(3).integers(0, cfg.vocab_size, (2, 10))
    np.testing.assert_allclose(ours(idx).numpy(), theirs(torch.from_numpy(idx))[0].detach().numpy(),
                               rtol=1e-4, atol=1e-4)


def test_shakespeare_char_preset_uses_nanogpts_init_and_starts_near_uniform_loss():
    mg.manual_seed(0)
    model = TinyGPT(preset("shakespeare-char"))
    sd = model.state_dict()
    assert abs(float(sd["tok_embed.weight"].numpy().std()) - 0.02) < 0.002
    assert abs(float(sd["blocks.0.ff.2.weight"].numpy().std()) - 0.02 / math.sqrt(8)) < 0.001
    idx = np.random.default_rng(0).integers(0, 65, (4, 33))
    _, loss = model(idx[:, :-1], idx[:, 1:])
    assert abs(loss.item() - math.log(65)) < 0.2  # a tied N(0, 1) embedding would start near 100
