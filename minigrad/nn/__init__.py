"""Neural-network building blocks: Module, layers, functional forms and initialisers."""
from minigrad.nn import functional  # noqa: F401
