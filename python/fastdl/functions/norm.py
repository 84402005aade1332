"""Autograd Functions of the norm family: batch and layer normalisation.

    BatchNorm  x (N, C) or (N, C, *), weight and bias (C,) (optional: parents only when given)
    LayerNorm  x (*, *normalized_shape), weight and bias of normalized_shape (likewise)

Training mode normalises with the batch statistics over every axis but 1 and updates
running_mean / running_var in place when they are given; eval mode normalises with them. The
forward keeps x and the statistics it used (save_mean, save_invstd); the backward returns
(dx, dweight, dbias) trimmed to the Tensors given. LayerNorm keeps x, weight and the per-row
mean and rstd its forward returned.
"""

from __future__ import annotations

from .. import ops
from ..tensor import Function, Tensor  # noqa: F401  (Tensor: the type this Function makes)

__all__ = ["BatchNorm", "LayerNorm"]


class BatchNorm(Function):
    def forward(self, x, weight=None, bias=None, running_mean=None, running_var=None,
                training=True, momentum=0.1, eps=1e-5):
        y, self.mean, self.invstd = ops.batch_norm(x, weight, bias, running_mean, running_var,
                                                   training=training, momentum=momentum, eps=eps)
        self.x, self.weight, self.training = x, weight, training
        return y

    def backward(self, g):
        dx, dw, db = ops.batch_norm_backward(g, self.x, self.weight, self.mean, self.invstd,
                                             training=self.training)
        return (dx, dw, db)[: len(self.parents)]


class LayerNorm(Function):
    def forward(self, x, weight=None, bias=None, normalized_shape=(), eps=1e-5):
        y, self.mean, self.rstd = ops.layer_norm(x, normalized_shape, weight, bias, eps=eps)
        self.x, self.weight, self.normalized_shape = x, weight, normalized_shape
        return y

    def backward(self, g):
        dx, dw, db = ops.layer_norm_backward(g, self.x, self.normalized_shape, self.weight,
                                             self.mean, self.rstd)
        return (dx, dw, db)[: len(self.parents)]
