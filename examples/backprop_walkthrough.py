"""Backprop by hand, then by minigrad: every node's value and gradient, printed and checked.

Run: python examples/backprop_walkthrough.py
"""
import numpy as np

import minigrad as mg

# 1. A small expression, one node per op:  f = tanh(a*b + b^2).
#    Reverse mode visits the nodes from f back to the inputs. Each node's gradient df/dnode is
#    the sum, over the nodes that use it, of (their gradient) x (the local derivative):
#      df/df = 1;  df/du = 1 - tanh(u)^2;  df/dab = df/dbb = df/du  (d(x+y)/dx = 1)
#      df/da = df/dab * b;  df/db = df/dab * a + df/dbb * 2b   (b is used twice: the paths add up)
a = mg.tensor(0.7, dtype="float64", requires_grad=True)
b = mg.tensor(-0.4, dtype="float64", requires_grad=True)
ab = a * b
bb = b ** 2
u = ab + bb
f = u.tanh()
f.backward()  # minigrad walks f -> u -> (ab, bb) -> (a, b) and keeps the gradients of the leaves

g = {"f": 1.0}
g["u"] = g["f"] * (1 - np.tanh(u.item()) ** 2)
g["ab"] = g["bb"] = g["u"]
g["a"] = g["ab"] * b.item()
g["b"] = g["ab"] * a.item() + g["bb"] * 2 * b.item()
print(f"{'node':4s}  {'made by':10s} {'value':>10s}   {'df/dnode by hand':>16s}   minigrad .grad")
for name, node in (("f", f), ("u", u), ("ab", ab), ("bb", bb), ("a", a), ("b", b)):
    op = node.grad_fn.__name__ if node.grad_fn else "(input)"
    ours = f"{node.grad.item(): .10f}" if node.grad is not None else "(not kept: not a leaf)"
    print(f"{name:4s}  {op:10s} {node.item():10.6f}   {g[name]:16.10f}   {ours}")
for name, leaf in (("a", a), ("b", b)):
    assert abs(leaf.grad.item() - g[name]) < 1e-12
# minigrad keeps .grad only on leaves. To see df/du, make u a leaf of the rest of the graph:
u_leaf = u.detach().requires_grad_()
u_leaf.tanh().backward()
print(f"df/du from a leaf copy of u: {u_leaf.grad.item():.10f}")
assert abs(u_leaf.grad.item() - g["u"]) < 1e-12

# 2. A 2-layer MLP on a batch: logits = relu(x W1 + b1) W2 + b2, loss = mean cross-entropy.
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

# The backward pass written out by hand, layer by layer, from the loss back to W1:
h_pre = x.numpy() @ W1.numpy() + b1.numpy()
h = np.maximum(h_pre, 0)
logits = h @ W2.numpy() + b2.numpy()
p = np.exp(logits - logits.max(1, keepdims=True))
p /= p.sum(1, keepdims=True)
dlogits = p.copy()
dlogits[np.arange(8), y.numpy()] -= 1  # d loss / d logits = (softmax - onehot) / N
dlogits /= 8
manual = {"W2": h.T @ dlogits, "b2": dlogits.sum(0)}  # out = h W2 + b2: dW2 = h^T dout, db2 = sum of rows
dh = dlogits @ W2.numpy().T * (h_pre > 0)  # dh = dout W2^T; relu passes it only where its input was > 0
manual.update({"W1": x.numpy().T @ dh, "b1": dh.sum(0)})
for name, t in (("W1", W1), ("b1", b1), ("W2", W2), ("b2", b2)):
    err = np.abs(t.grad.numpy() - manual[name]).max()
    print(f"  d loss/d {name:2s} shape {str(t.shape):7s} max |minigrad - by hand| = {err:.1e}")
    assert err < 1e-12

# 3. And against central finite differences (float64, random upstream gradient): a wrong backward
#    anywhere in the graph would raise here, naming the input and the worst element.
mg.gradcheck(lambda a, b: (a * b + b ** 2).tanh(), [a, b])
mg.gradcheck(mlp, [W1, b1, W2, b2])
print("\ngradcheck: analytic gradients match finite differences for a, b, W1, b1, W2, b2")
