# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Backprop from scratch with minigrad
#
# This notebook starts with four numbers and ends with a small neural network that learns. Along the way:
#
# 1. a scalar expression, differentiated by hand with the chain rule and then by `.backward()`;
# 2. its graph, drawn with `mg.viz.draw`;
# 3. the backward pass printed op by op with `mg.trace()`;
# 4. what happens when a tensor is used twice (gradients add up);
# 5. a tiny MLP trained on a toy dataset with plain gradient descent;
# 6. `mg.gradcheck`, which checks every gradient of the MLP against finite differences, and why it needs float64.
#
# minigrad has PyTorch's API (`mg.tensor`, `.backward()`, `.grad`, `mg.no_grad()`), so what you learn here
# carries over to `torch`. Run it in Jupyter (`jupyter lab examples/`) or as a script
# (`python examples/01_backprop_from_scratch.py`); it takes about a second.

# %%
import numpy as np

import minigrad as mg

# %% [markdown]
# ## 1. A scalar expression, by hand and by `.backward()`
#
# micrograd's first example: `L = (a * b + c) * f`. We give each intermediate result a name so we can talk
# about it: `e = a * b`, `d = e + c`, `L = d * f`. `requires_grad=True` asks minigrad to record every op
# applied to these tensors, so it can go backwards later. (We use float64 here so the values are exact and the
# checks below can demand equality.)

# %%
a = mg.tensor(2.0, dtype=mg.float64, requires_grad=True)
b = mg.tensor(-3.0, dtype=mg.float64, requires_grad=True)
c = mg.tensor(10.0, dtype=mg.float64, requires_grad=True)
f = mg.tensor(-2.0, dtype=mg.float64, requires_grad=True)
e = a * b
d = e + c
L = d * f
print("e =", e.item(), " d =", d.item(), " L =", L.item())
print(L)  # grad_fn names the op that made L

# %% [markdown]
# **The chain rule, by hand.** We want dL/da, dL/db, dL/dc, dL/df: how much L moves when each input is nudged.
# Walk from L backwards, one op at a time. Each op only knows its *local* derivative; the chain rule says
# multiply it by the gradient that arrives from above:
#
# - `L = d * f`: dL/dd = f = -2 and dL/df = d = 4 (for a product, the derivative with respect to one factor is
#   the other factor).
# - `d = e + c`: a sum passes the gradient through unchanged (local derivative 1), so
#   dL/de = dL/dd * 1 = -2 and dL/dc = -2.
# - `e = a * b`: dL/da = dL/de * b = (-2)(-3) = 6 and dL/db = dL/de * a = (-2)(2) = -4.

# %%
by_hand = {}
by_hand["d"] = f.item()                  # dL/dd
by_hand["f"] = d.item()                  # dL/df
by_hand["e"] = by_hand["d"] * 1.0        # through the Add
by_hand["c"] = by_hand["d"] * 1.0
by_hand["a"] = by_hand["e"] * b.item()   # through the Mul
by_hand["b"] = by_hand["e"] * a.item()
print({k: by_hand[k] for k in "abcf"})

# %% [markdown]
# ## 2. The graph that minigrad recorded
#
# Every op stored its inputs on its output, so `L` knows the whole expression. `mg.viz.draw(L)` turns that into
# [Graphviz](https://graphviz.org) DOT text: ellipses are tensors (shape, dtype, value; blue ones are the leaves
# you made), boxes are ops, and the green ellipse is `L`. Paste the text into any Graphviz viewer, or install
# the optional `graphviz` Python package and the `dot` program (`pip install -e ".[viz]"` plus your system's
# graphviz) and the graph shows as a picture right here in Jupyter. Without them, Jupyter shows one line of
# text instead. We draw *before* calling backward: backward frees the graph's saved tensors.

# %%
graph = mg.viz.draw(L)
print(graph)  # the DOT text

# %%
graph  # a picture in Jupyter when graphviz is installed (nothing in a plain script)

# %% [markdown]
# ## 3. `.backward()`, op by op
#
# `L.backward()` does what we just did by hand: it visits the ops from L back to the leaves (a reverse
# topological order), calls each op's backward with the gradient arriving from above, and adds the results into
# the `.grad` of the leaves. Inside `with mg.trace():` it prints each step: the op, its input shapes, the norm of
# the gradient that arrives (for a scalar, its absolute value) and of the gradient it hands to each input. Read it
# from the top: the first `Mul` is `L = d * f` (it receives dL/dL = 1), then the `Add` (`d = e + c`), then
# the `Mul` that made `e`. The leaves get their `.grad` at the end.

# %%
with mg.trace():
    L.backward()

# %%
for name, leaf in (("a", a), ("b", b), ("c", c), ("f", f)):
    print(f"dL/d{name}: by hand {by_hand[name]:5.1f}   minigrad {leaf.grad.item():5.1f}")
    assert leaf.grad.item() == by_hand[name]

# %% [markdown]
# minigrad, like PyTorch, keeps `.grad` only on leaves (the tensors you created). The intermediate `e` and `d`
# had gradients during the pass (the trace shows them flowing through), but they are not stored:

# %%
print("e.grad:", e.grad, "  e.is_leaf:", e.is_leaf, "  a.is_leaf:", a.is_leaf)

# %% [markdown]
# ## 4. A tensor used twice: gradients add up
#
# In `y = x * x`, x reaches y along two paths (both inputs of the `Mul`). The multivariable chain rule says the
# contributions of all paths are **summed**: each input of the Mul gets `grad * (the other input) = x`, and
# x's total gradient is x + x = 2x, the derivative of x² you know. The trace shows the Mul handing x a gradient
# twice and the leaf receiving their sum once. This is why backward *adds* into gradients instead of
# overwriting them, and why a bug that overwrote would be caught by gradcheck below.

# %%
x = mg.tensor(3.0, dtype=mg.float64, requires_grad=True)
y = x * x
with mg.trace():
    y.backward()
print("dy/dx =", x.grad.item(), "(2x = 6)")

# %% [markdown]
# The same addition happens *across* calls: `.backward()` adds into `.grad`, it never resets it. Run a second
# forward and backward without clearing, and the gradient doubles. That is why every training loop clears the
# gradients (`p.grad = None`, or `optimizer.zero_grad()`) before each backward.

# %%
(x * x).backward()
print("after a second backward without clearing:", x.grad.item())
x.grad = None
(x * x).backward()
print("after clearing first:", x.grad.item())

# %% [markdown]
# ## 5. A tiny MLP on a toy dataset
#
# Now tensors instead of scalars; the rules are the same, applied element by element and to matrix products.
# The data: 64 points in the square [-1, 1]², labelled 1 when x₀·x₁ > 0 (the point is in the first or third
# quadrant), else 0. No straight line separates the classes (it is XOR), so the network needs its hidden layer.
#
# The model, written out instead of using `mg.nn`, so every parameter is in plain sight:
# `logits = tanh(X @ W1 + b1) @ W2 + b2`, and the loss is the mean cross-entropy of the logits against the
# labels. We use float64 from the start so that `gradcheck` can check this very function later.

# %%
rng = np.random.default_rng(0)
X_np = rng.uniform(-1, 1, size=(64, 2))
labels = (X_np[:, 0] * X_np[:, 1] > 0).astype(np.int64)
X = mg.tensor(X_np)  # float64, as the NumPy array
Y = mg.tensor(labels)

mg.manual_seed(0)
W1 = (mg.randn(2, 16, dtype=mg.float64) * 1.0).requires_grad_()
b1 = mg.zeros(16, dtype=mg.float64, requires_grad=True)
W2 = (mg.randn(16, 2, dtype=mg.float64) * 0.25).requires_grad_()
b2 = mg.zeros(2, dtype=mg.float64, requires_grad=True)
params = [W1, b1, W2, b2]


def mlp_loss(W1, b1, W2, b2, X=X):
    h = (X @ W1 + b1).tanh()          # (64, 2) @ (2, 16) + (16,) -> (64, 16): b1 is broadcast over the rows
    logits = h @ W2 + b2              # (64, 16) @ (16, 2) + (2,) -> (64, 2)
    return mg.nn.functional.cross_entropy(logits, Y)


def accuracy():
    with mg.no_grad():
        logits = (X @ W1 + b1).tanh() @ W2 + b2
    return float((logits.argmax(dim=1).numpy() == labels).mean())


print(f"{sum(p.numel() for p in params)} parameters; loss at init {mlp_loss(*params).item():.4f} "
      f"(ln 2 = {np.log(2):.4f}), accuracy {accuracy():.2f}")

# %% [markdown]
# Its graph, before any backward. Tensors larger than 8 elements are shown by shape only. Notice `b1` and `b2`:
# broadcasting them over the batch is part of the `Add`, and its backward sums the gradient over the rows.

# %%
print(mg.viz.draw(mlp_loss(*params)))

# %% [markdown]
# **Training** is the loop micrograd ends with: forward, clear the gradients, backward, and step every parameter
# a little against its gradient. The update runs under `mg.no_grad()` so that it is not recorded as part of the
# next graph. (`mg.optim.SGD(params, lr=0.5)` does the same update; `mg.optim.AdamW` a smarter one.)

# %%
lr = 0.5
for step in range(101):
    loss = mlp_loss(*params)
    for p in params:
        p.grad = None
    loss.backward()
    with mg.no_grad():
        for p in params:
            p -= lr * p.grad
    if step % 20 == 0:
        print(f"step {step:3d}  loss {loss.item():.4f}  accuracy {accuracy():.2f}")
final_loss = mlp_loss(*params).item()
assert final_loss < 0.5, final_loss

# %% [markdown]
# The backward pass of one training step, traced: the ops come out in reverse order of the forward pass,
# with the shapes of their inputs. Every gradient has the shape of the tensor it belongs to (`W1.grad` is
# (2, 16), like `W1`); minigrad checks that for every op.

# %%
for p in params:
    p.grad = None
with mg.trace():
    mlp_loss(*params).backward()
print("W1.grad shape:", W1.grad.shape, " b1.grad shape:", b1.grad.shape)

# %% [markdown]
# ## 6. Checking every gradient with `mg.gradcheck`
#
# How do we know each op's backward is right? Compare it with the definition of the derivative. For every
# element w of every input, nudge it both ways and measure: (L(w + ε) − L(w − ε)) / 2ε (a *central* difference,
# whose error shrinks like ε²). `mg.gradcheck(fn, inputs)` does this for all elements (here 82, two forwards
# each) and compares with the gradient from backward. To avoid being fooled by a backward that is wrong in a
# way a plain sum hides, it contracts the output with a random vector first. On a mismatch it raises
# `GradcheckError` naming the input, the element and both values.

# %%
mg.gradcheck(mlp_loss, params)
print("gradcheck passed: backward matches finite differences for W1, b1, W2, b2")

# %% [markdown]
# **Why float64?** A finite difference subtracts two nearly equal numbers and divides by a tiny one. float32 keeps
# about 7 significant digits, so L(w + ε) − L(w − ε) is only known to about 1e-7 · |L|; divided by 2ε = 2e-6
# that is an error of about 0.05 · |L|: noise larger than many gradients. float64 keeps about 16 digits, so the same
# error is around 1e-10. Watch it happen for one weight: in float32 the nudged losses differ by noise only
# (often by nothing at all: both round to the same float32, and the "derivative" comes out 0). So gradcheck
# refuses float32 inputs:

# %%
for p in params:
    p.grad = None
mlp_loss(*params).backward()
analytic = W1.grad.numpy()[0, 0]


def loss_with_W1(W1_np, dtype):
    """The MLP's loss with W1 replaced by W1_np, computed entirely in dtype."""
    with mg.no_grad():
        return mlp_loss(mg.tensor(W1_np, dtype=dtype), *(p.to(dtype) for p in (b1, W2, b2)), X=X.to(dtype)).item()


eps = 1e-6
for dtype in (mg.float64, mg.float32):
    W_plus, W_minus = W1.numpy().copy(), W1.numpy().copy()
    W_plus[0, 0] += eps
    W_minus[0, 0] -= eps
    numeric = (loss_with_W1(W_plus, dtype) - loss_with_W1(W_minus, dtype)) / (2 * eps)
    print(f"{str(dtype):14s} numeric dL/dW1[0,0] {numeric: .10f}   backward {analytic: .10f}   "
          f"difference {abs(numeric - analytic):.1e}")

try:
    mg.gradcheck(mlp_loss, [p.float().detach().requires_grad_() for p in params])
except TypeError as err:
    print("TypeError:", err)

# %% [markdown]
# That's backprop: record the ops on the way forward, walk them backwards multiplying local derivatives (the
# chain rule), add up the contributions of every path (accumulation), and check it all against finite
# differences. The next notebook, `02_gpt_block.ipynb`, does the same for one block of a GPT.
