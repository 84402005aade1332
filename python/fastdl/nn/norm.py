"""Normalisation layers, PyTorch's arguments, names and semantics: LayerNorm(normalized_shape,
eps=1e-5, elementwise_affine=True, bias=True) over the trailing axes (weight = 1, bias = 0 of
normalized_shape), and
BatchNorm2d(num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True) for
(N, C, H, W) inputs (BatchNorm1d for (N, C) and (N, C, L)).

    parameters  weight (C,) = 1, bias (C,) = 0                      (affine=True)
    buffers     running_mean (C,) = 0, running_var (C,) = 1,
                num_batches_tracked () int64 = 0                    (track_running_stats=True)

Training normalises with the batch's statistics and blends them into the running ones
(momentum, or momentum=None: their cumulative average, 1/num_batches_tracked); eval normalises
with the running statistics (with the batch's when track_running_stats=False).
"""

from __future__ import annotations

import numbers

import numpy as np

from . import functional as F
from .layers import _check_int
from .module import Module, Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm"]


class _BatchNorm(Module):
    _ndims: tuple = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum=0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None):
        cls = type(self).__name__
        self.num_features = _check_int(cls, "num_features", num_features, 1)
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps > 0:
            raise ValueError(f"{cls}: eps must be a positive number, got {eps!r}")
        if momentum is not None and (isinstance(momentum, bool) or not isinstance(momentum, numbers.Real)
                                     or not 0.0 <= momentum <= 1.0):
            raise ValueError(f"{cls}: momentum must be in [0, 1] or None, got {momentum!r}")
        self.eps = float(eps)
        self.momentum = None if momentum is None else float(momentum)
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        dtype = np.dtype(np.float32 if dtype is None else dtype)
        c = self.num_features
        self.weight = Parameter(np.ones(c, dtype)) if self.affine else None
        self.bias = Parameter(np.zeros(c, dtype)) if self.affine else None
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(c, dtype))
            self.register_buffer("running_var", np.ones(c, dtype))
            self.register_buffer("num_batches_tracked", np.zeros((), np.int64))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None
        if device is not None:
            self.to(device)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            self.weight.data[...] = 1
            self.bias.data[...] = 0

    def forward(self, x):
        x = F._t(x)
        cls = type(self).__name__
        if x.ndim not in self._ndims:
            want = " or ".join(f"{d}D" for d in self._ndims)
            raise ValueError(f"{cls}: expected {want} input, got {x.ndim}D input of shape {x.shape}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{cls}: input has {x.shape[1]} channels (shape {x.shape}), "
                             f"expected num_features={self.num_features}")
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1
            if self.momentum is None:  # cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked)
        use_batch_stats = self.training or self.running_mean is None
        keep = not self.training or self.track_running_stats
        return F.batch_norm(x, self.running_mean if keep else None,
                            self.running_var if keep else None, self.weight, self.bias,
                            use_batch_stats, momentum, self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) inputs over every axis but C."""

    _ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) inputs over N, H and W, per channel."""

    _ndims = (4,)


class LayerNorm(Module):
    """Layer normalisation over the trailing normalized_shape axes of the input.

    parameters  weight = 1, bias = 0, both of normalized_shape (elementwise_affine=True; bias
                only when bias=True)
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device=None, dtype=None):
        ns = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else normalized_shape
        try:
            ns = tuple(_check_int("LayerNorm", "normalized_shape", n, 1) for n in ns)
        except TypeError:
            raise TypeError(f"LayerNorm: normalized_shape must be an int or a tuple of ints, got "
                            f"{normalized_shape!r}") from None
        if not ns:
            raise ValueError("LayerNorm: normalized_shape must not be empty")
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps >= 0:
            raise ValueError(f"LayerNorm: eps must be a number >= 0, got {eps!r}")
        self.normalized_shape, self.eps = ns, float(eps)
        self.elementwise_affine = bool(elementwise_affine)
        dtype = np.dtype(np.float32 if dtype is None else dtype)
        self.weight = Parameter(np.ones(ns, dtype)) if self.elementwise_affine else None
        self.bias = Parameter(np.zeros(ns, dtype)) if self.elementwise_affine and bias else None
        if device is not None:
            self.to(device)

    def reset_parameters(self) -> None:
        if self.weight is not None:
            self.weight.data[...] = 1
        if self.bias is not None:
            self.bias.data[...] = 0

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")
