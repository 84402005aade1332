"""Autograd Functions for softmax and log-softmax along one axis (fastdl.ops.softmax kernels,
both devices).

    Softmax(x, axis=-1), LogSoftmax(x, axis=-1)   each keeps only its output y, since the
                                                   backward kernels compute dx from dy and y
"""

from __future__ import annotations

from .. import ops
from ..tensor import Function

__all__ = ["Softmax", "LogSoftmax"]


class Softmax(Function):
    def forward(self, x, axis=-1):
        self.axis = axis
        self.y = ops.softmax(x, axis=axis)
        return self.y

    def backward(self, g):
        return ops.softmax_backward(g, self.y, axis=self.axis)


class LogSoftmax(Function):
    def forward(self, x, axis=-1):
        self.axis = axis
        self.y = ops.log_softmax(x, axis=axis)
        return self.y

    def backward(self, g):
        return ops.log_softmax_backward(g, self.y, axis=self.axis)
