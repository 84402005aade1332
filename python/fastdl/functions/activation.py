"""Autograd Functions for the activations (fastdl.ops.activation kernels, both devices).

    ReLU(x), Sigmoid(x), Tanh(x)   element-wise; each keeps only its output y, since the
                                   backward kernels compute dx from dy and y
    GELU(x, approximate)           keeps its input x (gelu's backward needs x, not y)
"""

from __future__ import annotations

from .. import ops
from ..tensor import Function

__all__ = ["ReLU", "Sigmoid", "Tanh", "GELU"]


class ReLU(Function):
    def forward(self, x):
        self.y = ops.relu(x)
        return self.y

    def backward(self, g):
        return ops.relu_backward(g, self.y)


class Sigmoid(Function):
    def forward(self, x):
        self.y = ops.sigmoid(x)
        return self.y

    def backward(self, g):
        return ops.sigmoid_backward(g, self.y)


class Tanh(Function):
    def forward(self, x):
        self.y = ops.tanh(x)
        return self.y

    def backward(self, g):
        return ops.tanh_backward(g, self.y)


class GELU(Function):
    def forward(self, x, approximate="none"):
        self.x, self.approximate = x, approximate
        return ops.gelu(x, approximate)

    def backward(self, g):
        return ops.gelu_backward(g, self.x, self.approximate)
