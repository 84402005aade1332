"""Autograd Functions for the losses (fastdl.ops.loss kernels, both devices). Each returns the
mean over all elements (the batch, for cross-entropy) as a 0-d array of the input's dtype;
fastdl.nn.functional turns that into reduction='sum' by a scale.

    CrossEntropy(logits, target=t)   fused log-softmax + NLL; logits (N, C), t int64 (N,) is an
                                     option, not an input, so it gets no gradient
    MSELoss(pred, target)            gradients for both (the target's is minus the pred's)
    BCEWithLogits(logits, target)    sigmoid + binary cross-entropy, fused; gradients for both
"""

from __future__ import annotations

from .. import ops
from ..tensor import Function, _xp

__all__ = ["CrossEntropy", "MSELoss", "BCEWithLogits"]


def _scalar(loss, like):
    return _xp(like).asarray(loss, dtype=like.dtype).reshape(())


class CrossEntropy(Function):
    """Fused log-softmax + negative log-likelihood; logits (N, C), target int64 (N,) option."""

    def forward(self, logits, target):
        loss, self.probs = ops.cross_entropy(logits, target)
        self.target = target
        return _scalar(loss, logits)

    def backward(self, g):
        return ops.cross_entropy_backward(self.probs, self.target) * g


class MSELoss(Function):
    def forward(self, pred, target):
        self.pred, self.target = pred, target
        return _scalar(ops.mse_loss(pred, target), pred)

    def backward(self, g):
        d = ops.mse_loss_backward(self.pred, self.target) * g
        return d, (-d if self.needs_input_grad[1] else None)


class BCEWithLogits(Function):
    def forward(self, logits, target):
        self.logits, self.target = logits, target
        return _scalar(ops.binary_cross_entropy_with_logits(logits, target), logits)

    def backward(self, g):
        d = ops.binary_cross_entropy_with_logits_backward(self.logits, self.target) * g
        # d/dtarget of mean(max(x, 0) - x t + log(1 + exp(-|x|))) = -x / numel
        dt = -self.logits * (g / max(self.logits.size, 1)) if self.needs_input_grad[1] else None
        return d, dt
