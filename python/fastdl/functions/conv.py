"""Autograd Functions of the conv family: conv2d and conv_transpose2d.

    Conv2d:           x (N, C, H, W), w (K, C/groups, R, S), b (K,) -> y (N, K, OH, OW)
    ConvTranspose2d:  x (N, C_in, H, W), w (C_in, C_out/groups, R, S), b (C_out,) -> y (N, C_out, OH, OW)

Both run the fastdl.ops kernels (CPU or GPU, by the arrays' device) and keep only x and w for
the backward, which returns (dx, dw, db) trimmed to the Tensors given (db only when a bias was).
Options (stride, padding, dilation, groups, output_padding) are normalised by fastdl.ops.
"""

from __future__ import annotations

from .. import ops
from ..tensor import Function, Tensor  # noqa: F401  (Tensor: the type these Functions make)

__all__ = ["Conv2d", "ConvTranspose2d"]


class Conv2d(Function):
    """y = conv(x, w) + b; b optional."""

    def forward(self, x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
        self.x, self.w = x, w
        self.opts = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
        return ops.conv2d(x, w, b, **self.opts)

    def backward(self, g):
        return ops.conv2d_backward(g, self.x, self.w, **self.opts,
                                   output_mask=_mask(self))[: len(self.parents)]


class ConvTranspose2d(Function):
    """y = conv_transpose(x, w) + b (the gradient of a conv2d with respect to its input)."""

    def forward(self, x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
        self.x, self.w = x, w
        self.opts = dict(stride=stride, padding=padding, output_padding=output_padding,
                         groups=groups, dilation=dilation)
        return ops.conv_transpose2d(x, w, b, **self.opts)

    def backward(self, g):
        return ops.conv_transpose2d_backward(g, self.x, self.w, **self.opts,
                                             output_mask=_mask(self))[: len(self.parents)]


def _mask(fn: Function):
    """Which of (dx, dw, db) the parents need: a first layer's input needs no dx."""
    need = fn.needs_input_grad
    return (need[0], need[1], len(need) > 2 and need[2])
