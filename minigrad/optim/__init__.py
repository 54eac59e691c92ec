"""Optimizers (SGD, AdamW), learning-rate schedules and gradient clipping, with torch.optim's names."""
from minigrad.optim import lr_scheduler  # noqa: F401
from minigrad.optim.adamw import AdamW  # noqa: F401
from minigrad.optim.clip import clip_grad_norm_, clip_grad_value_  # noqa: F401
from minigrad.optim.lr_scheduler import CosineWithWarmup, LambdaLR, constant, cosine_with_warmup  # noqa: F401
from minigrad.optim.optimizer import Optimizer  # noqa: F401
from minigrad.optim.sgd import SGD  # noqa: F401
