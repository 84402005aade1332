"""Functional forms of the layers and losses (``fastdl.nn.functional as F``), PyTorch's names.

Inputs may be Tensors or arrays (arrays are wrapped as constants). Every function runs one
autograd Function whose forward and backward call the fastdl.ops kernels.
"""

from __future__ import annotations

import numpy as np

from .. import _random
from ..functions import (BCEWithLogits, CrossEntropy, Dropout, Linear, LogSoftmax, MSELoss, ReLU,
                         Sigmoid, Softmax, Tanh)
from ..tensor import Tensor, _xp

__all__ = ["linear", "relu", "sigmoid", "tanh", "softmax", "log_softmax", "dropout",
           "cross_entropy", "mse_loss", "binary_cross_entropy_with_logits"]

_REDUCTIONS = ("mean", "sum")


def _t(x, name: str = "input") -> Tensor:
    if isinstance(x, Tensor):
        return x
    try:
        return Tensor(x)
    except TypeError as e:
        raise TypeError(f"{name} must be a Tensor or an array: {e}") from None


def _reduce(op: str, loss: Tensor, count: int, reduction: str) -> Tensor:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be 'mean' or 'sum', got {reduction!r} "
                         f"('none' is not supported)")
    return loss if reduction == "mean" else loss * float(count)


def linear(input, weight, bias=None) -> Tensor:
    """input (*, in) @ weight (out, in)^T + bias (out,)."""
    args = (_t(input), _t(weight, "weight")) + (() if bias is None else (_t(bias, "bias"),))
    return Linear.apply(*args)


def relu(input) -> Tensor:
    return ReLU.apply(_t(input))


def sigmoid(input) -> Tensor:
    return Sigmoid.apply(_t(input))


def tanh(input) -> Tensor:
    return Tanh.apply(_t(input))


def softmax(input, dim: int = -1) -> Tensor:
    return Softmax.apply(_t(input), axis=dim)


def log_softmax(input, dim: int = -1) -> Tensor:
    return LogSoftmax.apply(_t(input), axis=dim)


def dropout(input, p: float = 0.5, training: bool = True) -> Tensor:
    """Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p).
    The kernel's seed is drawn from fastdl's generator, so ``manual_seed`` makes it repeatable."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be a probability in [0, 1], got {p!r}")
    x = _t(input)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    return Dropout.apply(x, p=float(p), seed=_random.next_seed())


def _target_array(target, name="target"):
    return target.data if isinstance(target, Tensor) else target


def cross_entropy(input, target, reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy of logits (N, C) with class indices (N,) int64, fused in one kernel;
    or with class probabilities of input's shape (a float target, computed as a composite)."""
    x = _t(input)
    if x.ndim != 2:
        raise ValueError(f"cross_entropy: input must be (N, C) logits, got shape {x.shape}")
    tgt = _target_array(target)
    if not hasattr(tgt, "dtype"):
        tgt = np.asarray(tgt)
    kind = tgt.dtype.kind
    if kind == "f":  # probabilities
        t = _t(target, "target")
        if t.shape != x.shape:
            raise ValueError(f"cross_entropy: probability targets must have input's shape "
                             f"{x.shape}, got {t.shape}")
        loss = -(t * x.log_softmax(1)).sum(axis=1).mean()
        return _reduce("cross_entropy", loss, x.shape[0], reduction)
    if kind not in "iu":
        raise TypeError(f"cross_entropy: target must hold int64 class indices (or float "
                        f"probabilities), got dtype {getattr(tgt, 'dtype', type(tgt).__name__)}")
    xp = _xp(x.data)
    tgt = xp.asarray(tgt, dtype=np.int64)
    if tgt.shape != x.shape[:1]:
        raise ValueError(f"cross_entropy: target must have shape ({x.shape[0]},) for input "
                         f"{x.shape}, got {tuple(tgt.shape)}")
    if x.shape[0] == 0:
        raise ValueError("cross_entropy: the mean over an empty batch is undefined")
    loss = CrossEntropy.apply(x, target=tgt)
    return _reduce("cross_entropy", loss, x.shape[0], reduction)


def _pair(op, input, target):
    x, t = _t(input), _t(target, "target")
    if t.shape != x.shape:
        raise ValueError(f"{op}: target shape {t.shape} must equal input shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{op}: the mean over zero elements is undefined")
    if not t.requires_grad and (t.dtype != x.dtype or t.device != x.device):
        t = Tensor._make(t.data, False, None).to(x.device).astype(x.dtype)
    return x, t


def mse_loss(input, target, reduction: str = "mean") -> Tensor:
    x, t = _pair("mse_loss", input, target)
    return _reduce("mse_loss", MSELoss.apply(x, t), x.size, reduction)


def binary_cross_entropy_with_logits(input, target, reduction: str = "mean") -> Tensor:
    x, t = _pair("binary_cross_entropy_with_logits", input, target)
    return _reduce("binary_cross_entropy_with_logits", BCEWithLogits.apply(x, t), x.size, reduction)
