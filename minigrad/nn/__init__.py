"""Neural-network building blocks: Module, layers, functional forms and initialisers."""
from minigrad.nn import functional, init  # noqa: F401
from minigrad.nn.attention import MultiheadAttention  # noqa: F401
from minigrad.nn.containers import ModuleDict, ModuleList, Sequential  # noqa: F401
from minigrad.nn.layers import GELU, Dropout, Embedding, Identity, LayerNorm, Linear, ReLU, Sigmoid, Tanh  # noqa: F401
from minigrad.nn.module import Module, Parameter  # noqa: F401
