"""fastdl.optim: optimizers on fused fastdl.ops kernels, gradient clipping, early stopping and
learning-rate schedulers, with PyTorch's names and update rules (DESIGN.md section 3)."""

from . import lr_scheduler
from .early_stopping import EarlyStopping
from .lr_scheduler import CosineAnnealingLR, LRScheduler, StepLR
from .optimizer import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop, clip_grad_norm_

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "clip_grad_norm_",
           "EarlyStopping", "LRScheduler", "StepLR", "CosineAnnealingLR", "lr_scheduler"]
