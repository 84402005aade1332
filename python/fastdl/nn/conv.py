"""Convolution layers: Conv2d and ConvTranspose2d, with PyTorch's constructor arguments,
attribute and parameter names, shapes and default initialisation (so a PyTorch state dict
converted to NumPy arrays loads and computes the same).

    Conv2d           weight (out_channels, in_channels / groups, R, S), bias (out_channels,)
    ConvTranspose2d  weight (in_channels, out_channels / groups, R, S), bias (out_channels,)

Both are initialised as PyTorch's: weight by kaiming_uniform_(a=sqrt(5)) (a bound of
1/sqrt(fan_in), fan_in = weight.shape[1] * R * S), bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
the same fan_in, drawn from fastdl's generator (manual_seed), weight first.
"""

from __future__ import annotations

import math

import numpy as np

from . import functional as F
from . import init
from .layers import _check_int
from .module import Module, Parameter

__all__ = ["Conv2d", "ConvTranspose2d"]


class _ConvNd(Module):
    def _setup(self, cls, in_channels, out_channels, kernel_size, stride, padding, dilation,
               groups, bias, padding_mode, weight_shape, device, dtype):
        self.in_channels = _check_int(cls, "in_channels", in_channels, 1)
        self.out_channels = _check_int(cls, "out_channels", out_channels, 1)
        self.groups = _check_int(cls, "groups", groups, 1)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"{cls}: in_channels ({in_channels}) and out_channels "
                             f"({out_channels}) must be divisible by groups ({groups})")
        self.kernel_size = F._pair2(cls, "kernel_size", kernel_size, 1)
        self.stride = F._pair2(cls, "stride", stride, 1)
        self.dilation = F._pair2(cls, "dilation", dilation, 1)
        self.padding = padding if isinstance(padding, str) else F._pair2(cls, "padding", padding)
        modes = ("zeros", "reflect", "replicate", "circular") if cls == "Conv2d" else ("zeros",)
        if padding_mode not in modes:
            raise ValueError(f"{cls}: padding_mode must be one of {list(modes)}, got "
                             f"padding_mode={padding_mode!r}")
        self.padding_mode = padding_mode
        dtype = np.dtype(np.float32 if dtype is None else dtype)
        self.weight = Parameter(np.empty(weight_shape(self) + self.kernel_size, dtype))
        self.bias = Parameter(np.empty((self.out_channels,), dtype)) if bias else None
        self.reset_parameters()
        if device is not None:
            self.to(device)

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = math.prod(self.weight.shape[1:])
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding!r}" if isinstance(self.padding, str) else f", padding={self.padding}"
        if self.dilation != (1, 1):  # PyTorch's order
            s += f", dilation={self.dilation}"
        if getattr(self, "output_padding", (0, 0)) != (0, 0):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class Conv2d(_ConvNd):
    """2-D convolution over (N, C, H, W) inputs; padding an int, a pair, 'valid' or 'same'
    (stride 1). groups: C and K divisible by it (depthwise: groups = in_channels).
    padding_mode 'zeros' (the conv's own padding), or 'reflect', 'replicate', 'circular': an
    explicit F.pad of the input in that mode (numpy.pad's reflect / edge / wrap), then the conv
    with padding 0, as PyTorch ('same' pads dilation * (k - 1) in all, the odd cell last)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None):
        if isinstance(padding, str) and padding not in ("same", "valid"):
            raise ValueError(f"Conv2d: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
        if padding == "same" and F._pair2("Conv2d", "stride", stride, 1) != (1, 1):
            raise ValueError(f"Conv2d: padding='same' needs stride 1, got stride={stride!r}")
        self._setup("Conv2d", in_channels, out_channels, kernel_size, stride, padding, dilation,
                    groups, bias, padding_mode,
                    lambda m: (m.out_channels, m.in_channels // m.groups), device, dtype)

    def forward(self, x):
        if self.padding_mode != "zeros":
            x = F.pad(x, self._mode_padding(), mode=self.padding_mode)
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)

    def _mode_padding(self):
        """(left, right, top, bottom) of the explicit pad (PyTorch's
        _reversed_padding_repeated_twice)."""
        if self.padding == "valid":
            return (0, 0, 0, 0)
        if self.padding == "same":
            totals = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
            (th, tw) = totals
            return (tw // 2, tw - tw // 2, th // 2, th - th // 2)
        ph, pw = self.padding
        return (pw, pw, ph, ph)


class ConvTranspose2d(_ConvNd):
    """Transposed 2-D convolution (the gradient of Conv2d with respect to its input), the usual
    learned upsampling: OH = (H - 1) * stride - 2 * padding + dilation * (R - 1) + output_padding
    + 1, output_padding smaller than stride or dilation (PyTorch's rule); groups: in_channels and
    out_channels divisible by it, group i's in_channels/groups inputs feed its
    out_channels/groups outputs."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1,
                 padding_mode: str = "zeros", device=None, dtype=None):
        if isinstance(padding, str):
            raise TypeError(f"ConvTranspose2d: padding must be an int or a pair, got {padding!r}")
        self.output_padding = F._pair2("ConvTranspose2d", "output_padding", output_padding)
        stride2 = F._pair2("ConvTranspose2d", "stride", stride, 1)
        dil2 = F._pair2("ConvTranspose2d", "dilation", dilation, 1)
        if any(op >= max(s, d) for op, s, d in zip(self.output_padding, stride2, dil2)):
            raise ValueError(f"ConvTranspose2d: output_padding {self.output_padding} must be "
                             f"smaller than stride {stride2} or dilation {dil2}")
        self._setup("ConvTranspose2d", in_channels, out_channels, kernel_size, stride, padding,
                    dilation, groups, bias, padding_mode,
                    lambda m: (m.in_channels, m.out_channels // m.groups), device, dtype)

    def forward(self, x):
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                  self.output_padding, self.groups, self.dilation)
