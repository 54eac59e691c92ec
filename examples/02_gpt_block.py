# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # One GPT block, forward and backward, with shapes
#
# `tinygpt` is a small decoder-only transformer (a GPT) built only on minigrad. This notebook builds one with a
# tiny configuration and follows a batch through it, printing the shape of every tensor on the way:
#
# token ids → embeddings → attention with heads (B, nh, T, hs) → MLP → head → logits → loss
#
# then runs backward and looks at which parameters got gradients. Last, it takes one *fused* op (attention,
# whose forward and backward are written out by hand as a single op for speed) and checks it against the same
# computation built from primitive ops, values and gradients, in float64. Everything is tiny: it runs in about a
# second. Run it in Jupyter (`jupyter lab examples/`) or as a script (`python examples/02_gpt_block.py`).
#
# Letters used for shapes: **B** batch size, **T** sequence length (tokens), **C** embedding width (`n_embd`),
# **nh** number of heads, **hs** head size = C / nh, **V** vocabulary size.

# %%
import numpy as np

import minigrad as mg
from minigrad.nn import functional as F
from tinygpt.config import GPTConfig
from tinygpt.model import TinyGPT

# %% [markdown]
# ## A tiny model
#
# One block (`n_layers=1`), 16-wide embeddings split into 2 heads of 8, a vocabulary of 13 tokens and a context
# of 8 positions. The default block is the tutorial's post-norm one: `x = LN(x + attention(x))`, then
# `x = LN(x + MLP(x))` (GPT-2 uses `norm="pre"`: `x = x + attention(LN(x))`).

# %%
mg.manual_seed(0)
cfg = GPTConfig(vocab_size=13, block_size=8, n_embd=16, n_heads=2, n_layers=1)
model = TinyGPT(cfg)
print(cfg)
print()
for name, p in model.named_parameters():
    print(f"{name:30s} {str(tuple(p.shape)):10s} {p.numel():5d}")
print(f"{'total':30s} {'':10s} {sum(p.numel() for p in model.parameters()):5d}")

# %% [markdown]
# A batch of B = 2 sequences of T = 6 random token ids, and the targets a language model learns: each position's
# next token (here just the ids shifted by one, with a random last token).

# %%
B, T = 2, 6
C, nh, V = cfg.n_embd, cfg.n_heads, cfg.vocab_size
hs = C // nh
rng = np.random.default_rng(0)
ids = rng.integers(0, V, size=(B, T + 1))
idx, targets = ids[:, :-1], ids[:, 1:]
print("idx\n", idx, "\ntargets\n", targets)


def show(name, t):
    print(f"{name:44s} {str(tuple(t.shape)):14s}")


# %% [markdown]
# ## Forward, step by step
#
# We call the model's own modules one by one (the same computation as `model(idx)`, which we check at the end;
# `tinygpt/model.py`'s `CausalSelfAttention.forward` holds the same attention steps as below).
# **Embeddings**: each token id picks a row of `tok_embed.weight` (V, C); each position adds a learned vector
# from `pos_embed` (1, block_size, C), broadcast over the batch.

# %%
block = model.blocks[0]
tok = model.tok_embed(idx)
pos = model.pos_embed[:, :T]
x = tok + pos
show("token embeddings  tok_embed(idx)", tok)
show("position embeddings  pos_embed[:, :T]", pos)
show("x = tok + pos  (broadcast over B)", x)

# %% [markdown]
# **Attention.** One matrix multiply makes queries, keys and values for all heads at once: (B, T, C) → (B, T, 3C).
# Split it into q, k, v and give each head its own slice of hs = C / nh channels: reshape to (B, T, nh, hs) and
# move the head axis forward, (B, nh, T, hs), so every head is an independent batch of (T, hs) matrices.
# Then for each head: scores = q kᵀ / √hs (T × T: how much each position attends to each other), the causal mask
# (position t sees only positions ≤ t), softmax over the keys, and the weighted sum of the values. Finally the
# heads are put side by side again, (B, T, C), and mixed by the output projection.

# %%
attn = block.attn
qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)
show("qkv = x @ in_proj_weight.T + bias", qkv)
q, k, v = (part.reshape(B, T, nh, hs).transpose(1, 2) for part in qkv.split(C, dim=-1))
show("q, k, v  (B, nh, T, hs)", q)
scores = q @ k.transpose(-2, -1) / hs ** 0.5
show("scores = q @ k^T / sqrt(hs)  (B, nh, T, T)", scores)
y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
show("softmax(causal(scores)) @ v  (B, nh, T, hs)", y)
y = y.transpose(1, 2).reshape(B, T, C)
show("heads side by side  (B, T, C)", y)
att_out = attn.out_proj(y)
show("out_proj", att_out)
x = block.ln1(x + att_out)
show("x = ln1(x + attention)", x)

# %% [markdown]
# The attention weights of the first sequence's first head: row t is how position t spreads its attention over
# positions 0..t. The causal mask zeroes everything above the diagonal, and each row sums to 1.

# %%
causal = np.tril(np.ones((T, T), dtype=bool))
weights = mg.where(mg.tensor(causal), scores, float("-inf")).softmax(dim=-1)
print(np.array2string(weights[0, 0].numpy(), precision=2, suppress_small=True))

# %% [markdown]
# **MLP**: the same small network at every position: widen to 4C, GELU, back to C. Then the second residual
# connection and LayerNorm.

# %%
h = block.ff[0](x)
show("ff[0]: Linear C -> 4C", h)
h = block.ff[1](h)
show("ff[1]: GELU", h)
h = block.ff[2](h)
show("ff[2]: Linear 4C -> C", h)
x = block.ln2(x + h)
show("x = ln2(x + MLP)", x)

# %% [markdown]
# **Head and loss.** A final LayerNorm, then a linear layer to one score (logit) per vocabulary entry at every
# position. The loss is the cross-entropy of the logits against the next tokens, averaged over all B·T positions;
# at initialisation it is near ln V, the loss of guessing uniformly.

# %%
logits = model.head(model.ln_f(x))
show("logits = head(ln_f(x))  (B, T, V)", logits)
loss = F.cross_entropy(logits.reshape(B * T, V), targets.reshape(-1))
show("loss (mean over B*T positions)", loss)
print(f"loss {loss.item():.4f}   ln V = {np.log(V):.4f}")

ref_logits, ref_loss = model(idx, targets)
print("max |step-by-step - model(idx)| =", float(np.abs(logits.numpy() - ref_logits.numpy()).max()))
assert np.allclose(logits.numpy(), ref_logits.numpy(), atol=1e-5)

# %% [markdown]
# ## Backward
#
# One call sends the gradient of the loss through everything above, in reverse. Every parameter that took part
# gets a `.grad` of its own shape. Two things to notice in the table:
#
# - `pos_embed` has 8 positions but the batch used only T = 6: the rows of the unused positions get zero
#   gradient. Likewise `tok_embed.weight` rows of tokens that do not appear in the batch stay zero: an embedding's
#   backward adds each position's gradient into the row that position looked up (twice when a token appears twice:
#   accumulation again).
# - Every other parameter has a nonzero gradient: a parameter whose gradient is always zero (or `None`) is not
#   connected to the loss, a classic bug this table makes easy to spot.

# %%
model.zero_grad()
ref_loss.backward()
print(f"{'parameter':30s} {'shape':10s} {'grad norm':>10s}")
for name, p in model.named_parameters():
    g = p.grad.numpy()
    print(f"{name:30s} {str(tuple(p.shape)):10s} {np.linalg.norm(g):10.4f}")
    assert g.shape == tuple(p.shape)

pos_grad = np.abs(model.pos_embed.grad.numpy()[0]).sum(axis=1)
print("\npos_embed: positions with a nonzero gradient:", np.nonzero(pos_grad)[0].tolist())
tok_grad = np.abs(model.tok_embed.weight.grad.numpy()).sum(axis=1)
print("tok_embed: rows with a nonzero gradient:      ", np.nonzero(tok_grad)[0].tolist())
print("token ids in the batch:                       ", sorted(set(idx.reshape(-1).tolist())))
assert np.nonzero(pos_grad)[0].tolist() == list(range(T))
assert np.nonzero(tok_grad)[0].tolist() == sorted(set(idx.reshape(-1).tolist()))

# %% [markdown]
# ## Fused ops against their composition
#
# `F.scaled_dot_product_attention` is one op with a hand-written backward: faster and lighter on memory than
# recording matmul, scale, mask, softmax and matmul as separate ops. So is `F.layer_norm`, used by every
# LayerNorm above. Hand-written backward passes are where bugs hide, so here each one is checked against the same
# computation written with primitive ops, whose backward passes minigrad chains together by itself. In float64,
# so that the two can agree to ~1e-12. For the gradients we backpropagate the same random upstream gradient
# through both (a random one rather than `.sum()`: the sum of a LayerNorm's output does not depend on its input,
# so a backward returning zeros would pass a sum-based check).

# %%
def attention_from_primitives(q, k, v):
    scores = q @ k.transpose(-2, -1) * (1.0 / q.shape[-1] ** 0.5)
    mask = mg.tensor(np.tril(np.ones((q.shape[-2], k.shape[-2]), dtype=bool)))  # True: may attend
    return mg.where(mask, scores, float("-inf")).softmax(dim=-1) @ v


def layer_norm_from_primitives(x, weight, bias, eps=1e-5):
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # the biased variance, as LayerNorm
    return (x - mean) / (var + eps).sqrt() * weight + bias


def value_and_grads(fn, arrays, upstream):
    inputs = [mg.tensor(a, requires_grad=True) for a in arrays]  # float64, like the NumPy arrays
    out = fn(*inputs)
    out.backward(mg.tensor(upstream))
    return out.numpy(), [t.grad.numpy() for t in inputs]


cases = {
    "scaled_dot_product_attention": (
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), attention_from_primitives,
        [rng.standard_normal((B, nh, T, hs)) for _ in "qkv"], "qkv", (B, nh, T, hs)),
    "layer_norm": (
        lambda x, w, b: F.layer_norm(x, (C,), w, b), layer_norm_from_primitives,
        [rng.standard_normal((B, T, C)), 1 + 0.1 * rng.standard_normal(C), 0.1 * rng.standard_normal(C)],
        ["x", "weight", "bias"], (B, T, C)),
}
for op, (fused, composed, arrays, names, out_shape) in cases.items():
    upstream = rng.standard_normal(out_shape)
    fused_out, fused_grads = value_and_grads(fused, arrays, upstream)
    prim_out, prim_grads = value_and_grads(composed, arrays, upstream)
    print(f"{op}: fused vs primitives, max abs difference")
    print(f"  {'output':10s} {str(out_shape):14s} {np.abs(fused_out - prim_out).max():.1e}")
    assert np.allclose(fused_out, prim_out, rtol=0, atol=1e-12)
    for name, a, gf, gp in zip(names, arrays, fused_grads, prim_grads):
        print(f"  d/d {name:6s} {str(a.shape):14s} {np.abs(gf - gp).max():.1e}")
        assert np.allclose(gf, gp, rtol=0, atol=1e-10)

# %% [markdown]
# Both versions could still be wrong in the same way, so finally the fused ops against finite differences
# (see notebook 01):

# %%
for op, (fused, _, arrays, _, _) in cases.items():
    mg.gradcheck(fused, [mg.tensor(a, requires_grad=True) for a in arrays])
    print(f"gradcheck passed for {op}")
