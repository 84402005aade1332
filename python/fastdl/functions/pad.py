"""Autograd Function of the pad family: 2-D padding of images (fastdl.ops.pad).

    x (N, C, H, W) -> y (N, C, H + top + bottom, W + left + right)

The backward folds the padded cells' gradient back into the cells they copied; it needs only
the input's shape and the options.
"""

from __future__ import annotations

from .. import ops
from ..tensor import Function, Tensor  # noqa: F401  (Tensor: the type these Functions make)

__all__ = ["Pad2d"]


class Pad2d(Function):
    """y = x padded by (left, right, top, bottom) cells of `mode`."""

    def forward(self, x, padding=0, mode="constant"):
        self.shape, self.opts = x.shape, (padding, mode)
        return ops.pad2d(x, padding, mode)

    def backward(self, g):
        return ops.pad2d_backward(g, self.shape, *self.opts)
