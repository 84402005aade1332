"""Autograd Functions of the pool family: max, average and adaptive average 2-D pooling.

    x (N, C, H, W) -> y (N, C, OH, OW)

MaxPool2d keeps the argmax the forward returns (int64, y's shape, flat index into each H x W
plane) and scatters the gradient through it; the average pools need only the input's shape.
Options (kernel_size, stride, padding, dilation, ceil_mode, count_include_pad, divisor_override,
output_size) are normalised by fastdl.ops.
"""

from __future__ import annotations

from .. import ops
from ..tensor import Function, Tensor, is_grad_enabled

__all__ = ["MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"]


class MaxPool2d(Function):
    """The max of each window; ``self.argmax`` holds where it came from (return_indices)."""

    def forward(self, x, kernel_size=2, stride=None, padding=0, dilation=1, ceil_mode=False):
        y, self.argmax = ops.max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode)
        self.shape = x.shape
        return y

    def backward(self, g):
        return ops.max_pool2d_backward(g, self.argmax, self.shape)

    @classmethod
    def apply_with_indices(cls, x, **options):
        """(y, indices): apply(), also handing out the argmax (a constant int64 Tensor)."""
        ctx = cls(x)
        y = ctx.forward(x.data, **options)
        argmax = ctx.argmax
        record = is_grad_enabled() and x.requires_grad
        return Tensor._make(y, record, ctx if record else None), Tensor._make(argmax, False, None)


class AvgPool2d(Function):
    """The sum of each window over PyTorch's divisor (count_include_pad, divisor_override)."""

    def forward(self, x, kernel_size=2, stride=None, padding=0, ceil_mode=False,
                count_include_pad=True, divisor_override=None):
        self.shape = x.shape
        self.opts = (kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
        return ops.avg_pool2d(x, *self.opts)

    def backward(self, g):
        return ops.avg_pool2d_backward(g, self.shape, *self.opts)


class AdaptiveAvgPool2d(Function):
    """The mean over PyTorch's adaptive windows, [floor(i*H/OH), ceil((i+1)*H/OH))."""

    def forward(self, x, output_size):
        self.shape = x.shape
        return ops.adaptive_avg_pool2d(x, output_size)

    def backward(self, g):
        return ops.adaptive_avg_pool2d_backward(g, self.shape)
