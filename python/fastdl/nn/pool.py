"""Pooling layers: MaxPool2d, AvgPool2d, AdaptiveAvgPool2d (PyTorch's constructor arguments;
no parameters). Inputs (N, C, H, W); stride defaults to kernel_size; floor mode (ceil_mode
False), padding at most half the kernel, padded cells -inf for max and zeros counted in the
divisor for the average (count_include_pad=True), as PyTorch's defaults.
"""

from __future__ import annotations

from . import functional as F
from .module import Module

__all__ = ["MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"]


class _Pool(Module):
    def _setup(self, cls, kernel_size, stride, padding):
        self.kernel_size = F._pair2(cls, "kernel_size", kernel_size, 1)
        self.stride = self.kernel_size if stride is None else F._pair2(cls, "stride", stride, 1)
        self.padding = F._pair2(cls, "padding", padding)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"{cls}: padding {self.padding} must be at most half of "
                             f"kernel_size {self.kernel_size}")

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool):
    """Max over each window; return_indices=True also returns the int64 argmax (flat index into
    each H x W plane, as PyTorch's indices)."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        F._only("MaxPool2d", dilation=(F._pair2("MaxPool2d", "dilation", dilation, 1), (1, 1)),
                ceil_mode=(bool(ceil_mode), False))
        self._setup("MaxPool2d", kernel_size, stride, padding)
        self.return_indices = bool(return_indices)

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding,
                            return_indices=self.return_indices)


class AvgPool2d(_Pool):
    """Mean over each window."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None):
        F._only("AvgPool2d", ceil_mode=(bool(ceil_mode), False),
                count_include_pad=(bool(count_include_pad), True),
                divisor_override=(divisor_override, None))
        self._setup("AvgPool2d", kernel_size, stride, padding)

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding)


class AdaptiveAvgPool2d(Module):
    """Mean over PyTorch's adaptive windows to an (OH, OW) output; output_size an int or a pair
    (None keeps that input size). AdaptiveAvgPool2d(1) is global average pooling."""

    def __init__(self, output_size):
        sizes = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size,) * 2
        if len(sizes) != 2:
            raise TypeError(f"AdaptiveAvgPool2d: output_size must be an int or a pair, got {output_size!r}")
        for s in sizes:
            if s is not None:
                F._pair2("AdaptiveAvgPool2d", "output_size", s, 1)
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"
