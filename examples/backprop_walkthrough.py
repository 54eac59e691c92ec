"""Backprop by hand, then by minigrad: every gradient printed and checked.

Run: python examples/backprop_walkthrough.py
"""
import numpy as np

import minigrad as mg

# 1. A small expression: f(a, b) = tanh(a * b + b^2).
#    By the chain rule, with u = a*b + b^2 and f = tanh(u):
#      df/du = 1 - tanh(u)^2,   du/da = b,   du/db = a + 2b
a = mg.tensor(0.7, dtype="float64", requires_grad=True)
b = mg.tensor(-0.4, dtype="float64", requires_grad=True)
u = a * b + b ** 2
f = u.tanh()
f.backward()  # walks the graph f -> u -> (a, b) in reverse, summing every path

dfdu = 1 - np.tanh(u.item()) ** 2
by_hand = {"a": dfdu * b.item(), "b": dfdu * (a.item() + 2 * b.item())}
print(f"f = tanh(a*b + b^2) = {f.item():.6f}   (made by {f.grad_fn.__name__})")
for name, t in (("a", a), ("b", b)):
    print(f"  df/d{name}: minigrad {t.grad.item(): .10f}   by hand {by_hand[name]: .10f}")
    assert abs(t.grad.item() - by_hand[name]) < 1e-12

# 2. A 2-layer MLP on a batch: logits = relu(x W1 + b1) W2 + b2, loss = cross-entropy.
mg.manual_seed(0)
x = mg.randn(8, 3, dtype="float64")
y = mg.tensor(np.array([0, 1, 1, 0, 2, 2, 1, 0]))
W1 = mg.randn(3, 5, dtype="float64", requires_grad=True)
b1 = mg.zeros(5, dtype="float64", requires_grad=True)
W2 = mg.randn(5, 3, dtype="float64", requires_grad=True)
b2 = mg.zeros(3, dtype="float64", requires_grad=True)


def mlp(W1, b1, W2, b2):
    h = (x @ W1 + b1).relu()  # hidden layer
    logits = h @ W2 + b2
    return mg.nn.functional.cross_entropy(logits, y)


loss = mlp(W1, b1, W2, b2)
loss.backward()
print(f"\nMLP loss {loss.item():.6f}")

# The same gradients by hand, layer by layer (the backward pass written out):
h_pre = x.numpy() @ W1.numpy() + b1.numpy()
h = np.maximum(h_pre, 0)
logits = h @ W2.numpy() + b2.numpy()
p = np.exp(logits - logits.max(1, keepdims=True))
p /= p.sum(1, keepdims=True)
dlogits = p.copy()
dlogits[np.arange(8), y.numpy()] -= 1  # d loss / d logits = (softmax - onehot) / N
dlogits /= 8
manual = {"W2": h.T @ dlogits, "b2": dlogits.sum(0)}
dh = dlogits @ W2.numpy().T * (h_pre > 0)  # relu passes gradient only where its input was > 0
manual.update({"W1": x.numpy().T @ dh, "b1": dh.sum(0)})
for name, t in (("W1", W1), ("b1", b1), ("W2", W2), ("b2", b2)):
    err = np.abs(t.grad.numpy() - manual[name]).max()
    print(f"  d loss/d {name:2s} shape {str(t.shape):7s} max |minigrad - by hand| = {err:.1e}")
    assert err < 1e-12

# 3. And against central finite differences (float64, random upstream gradient):
mg.gradcheck(mlp, [W1, b1, W2, b2])
print("\ngradcheck: analytic gradients match finite differences for W1, b1, W2, b2")
