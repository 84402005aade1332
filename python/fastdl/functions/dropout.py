"""Autograd Function for inverted dropout (fastdl.ops.dropout kernels, both devices).

    Dropout(x, p=p, seed=s)   y = x * mask / (1 - p); the mask (a counter-based hash of seed
                              and element index, the same for any thread count) is kept for
                              backward: dx = dy * mask / (1 - p)

fastdl.nn.functional.dropout draws the seed from fastdl's generator and handles p = 0 and 1.
"""

from __future__ import annotations

from .. import ops
from ..tensor import Function

__all__ = ["Dropout"]


class Dropout(Function):
    """Inverted dropout with an explicit seed (the mask is the kernel's, independent of threads)."""

    def forward(self, x, p, seed):
        y, self.mask = ops.dropout(x, p, seed)
        self.p = p
        return y

    def backward(self, g):
        return ops.dropout_backward(g, self.mask, self.p)
