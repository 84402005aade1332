"""Pooling layers: MaxPool2d, AvgPool2d, AdaptiveAvgPool2d (PyTorch's constructor arguments,
options and defaults; no parameters). Inputs (N, C, H, W) or (C, H, W); stride defaults to
kernel_size; padding at most half the kernel; padded cells are -inf for max.

    MaxPool2d(kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
              ceil_mode=False)
    AvgPool2d(kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
              divisor_override=None)

ceil_mode rounds the output size up as PyTorch (the last window starts inside the image or the
left padding, and may run past the padding); dilation spaces the max window's cells; the
average divides by divisor_override if given, else by the window's cells inside the padded
extent (count_include_pad=True) or inside the image (False). fastdl.ops.pool has the formulas.
"""

from __future__ import annotations

import numpy as np

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

    def extra_repr(self):  # PyTorch's AvgPool2d shows these three only
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


def _bool(cls, name, v):
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{cls}: {name} must be a bool, got {v!r}")
    return bool(v)


class MaxPool2d(_Pool):
    """Max over each window (cells `dilation` apart); return_indices=True also returns the int64
    argmax (flat index into each H x W plane, as PyTorch's indices)."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        self._setup("MaxPool2d", kernel_size, stride, padding)
        self.dilation = F._pair2("MaxPool2d", "dilation", dilation, 1)
        self.return_indices = bool(return_indices)
        self.ceil_mode = _bool("MaxPool2d", "ceil_mode", ceil_mode)

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                            self.ceil_mode, return_indices=self.return_indices)

    def extra_repr(self):  # as PyTorch's MaxPool2d
        return f"{super().extra_repr()}, dilation={self.dilation}, ceil_mode={self.ceil_mode}"


class AvgPool2d(_Pool):
    """Mean over each window, PyTorch's divisor (count_include_pad, divisor_override)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None):
        self._setup("AvgPool2d", kernel_size, stride, padding)
        self.ceil_mode = _bool("AvgPool2d", "ceil_mode", ceil_mode)
        self.count_include_pad = _bool("AvgPool2d", "count_include_pad", count_include_pad)
        if divisor_override is not None:
            if isinstance(divisor_override, bool) or not isinstance(divisor_override, (int, np.integer)):
                raise TypeError(f"AvgPool2d: divisor_override must be None or an int, got "
                                f"{divisor_override!r}")
            if divisor_override < 1:
                raise ValueError(f"AvgPool2d: divisor_override must be None or a positive int, "
                                 f"got {divisor_override}")
            divisor_override = int(divisor_override)
        self.divisor_override = divisor_override

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)


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
