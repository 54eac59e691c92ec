"""Neural-network building blocks: Module, layers, functional forms and initialisers."""
from minigrad.nn import functional, init  # noqa: F401
from minigrad.nn.layers import (GELU, Dropout, Embedding, Identity, LayerNorm, Linear, ModuleDict,  # noqa: F401
                                ModuleList, MultiheadAttention, ReLU, Sequential, Sigmoid, Tanh)
from minigrad.nn.module import Module, Parameter  # noqa: F401
