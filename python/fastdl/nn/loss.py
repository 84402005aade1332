"""Loss modules (reduction 'mean' by default, or 'sum'); targets as a Tensor or an array
(int64 class indices for CrossEntropyLoss)."""

from __future__ import annotations

from . import functional as F
from .module import Module

__all__ = ["CrossEntropyLoss", "MSELoss", "BCEWithLogitsLoss"]


class _Loss(Module):
    def __init__(self, reduction: str = "mean"):
        if reduction not in F._REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction must be 'mean' or 'sum', got "
                             f"{reduction!r} ('none' is not supported)")
        self.reduction = reduction

    def extra_repr(self):
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy: logits (N, C), target (N,) int64 class indices (or (N, C)
    probabilities)."""

    def forward(self, input, target):
        return F.cross_entropy(input, target, self.reduction)


class MSELoss(_Loss):
    def forward(self, input, target):
        return F.mse_loss(input, target, self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on logits (a sigmoid fused in, stable for any magnitude)."""

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, self.reduction)
