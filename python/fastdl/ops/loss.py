"""Losses with mean reduction: cross_entropy (fused with softmax), mse_loss and
binary_cross_entropy_with_logits, each with the gradient of the mean loss.

    cross_entropy(logits (N, C), target int64 (N,)) -> (loss, probs)
        loss = mean_i [logsumexp(logits_i) - logits_i,target_i]; probs = softmax(logits)
        cross_entropy_backward(probs, target) = (probs - onehot(target)) / N
    mse_loss(pred, target) = mean((pred - target)**2)
        mse_loss_backward(pred, target) = 2 (pred - target) / numel
    binary_cross_entropy_with_logits(logits, target) = mean(max(x, 0) - x t + log1p(exp(-|x|)))
        binary_cross_entropy_with_logits_backward(logits, target) = (sigmoid(x) - t) / numel

Losses are 0-d arrays of the input dtype, accumulated in double. Targets of cross_entropy are
class indices: any integer dtype (converted to int64), each in [0, C); float targets are a
TypeError. A mean over nothing (N = 0 or numel = 0) is undefined: ValueError. On the GPU (CuPy
arrays, float32) the same kernels run in fastdl._cuda; the forward losses come back through one
device-to-host copy (a synchronisation), as a 0-d CuPy array.
"""

from __future__ import annotations

import numpy as np

from ._util import check_ndim, check_shape, prepare, shape_str
from .activation import _contig, _kernel

__all__ = ["cross_entropy", "cross_entropy_backward", "mse_loss", "mse_loss_backward",
           "binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_backward"]


def _targets(op: str, be, target, n: int, c: int):
    """target as a C-contiguous int64 (N,) array with every value in [0, C)."""
    try:
        t = be.xp.asarray(target)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{op}: target must be an integer array, got {type(target).__name__} ({e})") from None
    if t.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold integer class indices (int64), got dtype {t.dtype}")
    if t.shape != (n,):
        raise ValueError(f"{op}: target must have shape {shape_str((n,))} to match logits' "
                         f"N = {n}, got {shape_str(t.shape)}")
    if n == 0:
        raise ValueError(f"{op}: the mean loss over an empty batch (N = 0) is undefined")
    if be.device == "cpu":
        bad = np.flatnonzero((t < 0) | (t >= c))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"{op}: target[{i}] = {int(t[i])} is out of range [0, C) with C = {c}")
    # On the GPU the kernels check each target as they read it and raise this same ValueError
    # (one device-to-host copy, which the loss needs anyway, instead of a CuPy search).
    return _contig(be, t.astype(np.int64, copy=False))


def cross_entropy(logits, target):
    """Mean cross-entropy of softmax(logits) against class indices; returns (loss, probs)."""
    op = "cross_entropy"
    be, dtype, logits = prepare(op, logits=logits)
    check_ndim(op, "logits", logits, (2,))
    n, c = logits.shape
    t = _targets(op, be, target, n, c)
    probs = be.empty((n, c), dtype)
    loss = _kernel(be, op, "cross_entropy_forward")(probs, _contig(be, logits), t)
    return be.xp.asarray(loss, dtype=dtype), probs


def cross_entropy_backward(probs, target):
    """Gradient of the mean cross-entropy w.r.t. the logits: (probs - onehot(target)) / N."""
    op = "cross_entropy_backward"
    be, dtype, probs = prepare(op, probs=probs)
    check_ndim(op, "probs", probs, (2,))
    n, c = probs.shape
    t = _targets(op, be, target, n, c)
    out = be.empty((n, c), dtype)
    _kernel(be, op, "cross_entropy_backward")(out, _contig(be, probs), t)
    return out


def _pair(op: str, first: str, a, target):
    be, dtype, a, target = prepare(op, **{first: a, "target": target})
    check_shape(op, "target", target, a.shape)
    if a.size == 0:
        raise ValueError(f"{op}: the mean over zero elements is undefined ({first} has shape "
                         f"{shape_str(a.shape)})")
    return be, dtype, _contig(be, a), _contig(be, target)


def mse_loss(pred, target):
    """mean((pred - target)**2) as a 0-d array; pred and target of the same shape."""
    be, dtype, pred, target = _pair("mse_loss", "pred", pred, target)
    return be.xp.asarray(_kernel(be, "mse_loss", "mse_forward")(pred, target), dtype=dtype)


def mse_loss_backward(pred, target):
    """Gradient of the mean squared error w.r.t. pred: 2 (pred - target) / numel."""
    op = "mse_loss_backward"
    be, dtype, pred, target = _pair(op, "pred", pred, target)
    out = be.empty(pred.shape, dtype)
    _kernel(be, op, "mse_backward")(out, pred, target)
    return out


def binary_cross_entropy_with_logits(logits, target):
    """mean(max(x, 0) - x t + log1p(exp(-|x|))): BCE of sigmoid(logits), stable for any x."""
    op = "binary_cross_entropy_with_logits"
    be, dtype, logits, target = _pair(op, "logits", logits, target)
    return be.xp.asarray(_kernel(be, op, "bce_with_logits_forward")(logits, target), dtype=dtype)


def binary_cross_entropy_with_logits_backward(logits, target):
    """Gradient of the mean BCE-with-logits w.r.t. the logits: (sigmoid(x) - t) / numel."""
    op = "binary_cross_entropy_with_logits_backward"
    be, dtype, logits, target = _pair(op, "logits", logits, target)
    out = be.empty(logits.shape, dtype)
    _kernel(be, op, "bce_with_logits_backward")(out, logits, target)
    return out

