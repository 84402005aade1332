"""NumPy reference implementations: forward and analytic backward of every op, in float64.

These are the oracles the kernels are tested against. They are written for clarity, not speed,
and never call fastdl. Each ``*_backward`` returns gradients in the op's argument order, like
fastdl.ops.
"""

from __future__ import annotations

import numpy as np


def f64(*xs):
    out = tuple(None if x is None else np.asarray(x, dtype=np.float64) for x in xs)
    return out if len(out) > 1 else out[0]


# ---- dense ------------------------------------------------------------------------------------

def matmul(a, b):
    a, b = f64(a, b)
    return a @ b


def matmul_backward(dy, a, b):
    dy, a, b = f64(dy, a, b)
    da = dy @ np.swapaxes(b, -1, -2)
    db = np.swapaxes(a, -1, -2) @ dy
    # A 2-D operand broadcast over the batch gets the sum of its per-batch gradients.
    if a.ndim == 2 and da.ndim == 3:
        da = da.sum(axis=0)
    if b.ndim == 2 and db.ndim == 3:
        db = db.sum(axis=0)
    return da, db


def linear(x, w, b=None):
    x, w, b = f64(x, w, b)
    y = x @ w.T
    return y if b is None else y + b


def linear_backward(dy, x, w):
    dy, x, w = f64(dy, x, w)
    dy2 = dy.reshape(-1, w.shape[0])
    x2 = x.reshape(-1, w.shape[1])
    return (dy @ w, dy2.T @ x2, dy2.sum(axis=0))


# ---- activations, softmax, losses, dropout, element-wise ---------------------------------------

def relu(x):
    x = f64(x)
    return np.where(x > 0, x, np.where(np.isnan(x), x, 0.0))


def relu_backward(dy, y):
    dy, y = f64(dy, y)
    return np.where(y > 0, dy, 0.0)


def sigmoid(x):
    x = f64(x)
    e = np.exp(-np.abs(x))  # never overflows
    return np.where(x >= 0, 1.0, e) / (1.0 + e)


def sigmoid_backward(dy, y):
    dy, y = f64(dy, y)
    return dy * y * (1.0 - y)


def tanh(x):
    return np.tanh(f64(x))


def tanh_backward(dy, y):
    dy, y = f64(dy, y)
    return dy * (1.0 - y * y)


def softmax(x, axis=-1):
    x = f64(x)
    m = np.max(x, axis=axis, keepdims=True)
    masked = np.isneginf(m)  # a slice of only -inf gives zeros
    with np.errstate(invalid="ignore"):
        e = np.exp(x - np.where(masked, 0.0, m))
    return e / np.where(masked, 1.0, e.sum(axis=axis, keepdims=True))


def log_softmax(x, axis=-1):
    x = f64(x)
    m = np.max(x, axis=axis, keepdims=True)
    masked = np.isneginf(m)  # a slice of only -inf gives -inf
    m = np.where(masked, 0.0, m)
    with np.errstate(divide="ignore"):
        return (x - m) - np.log(np.where(masked, 1.0, np.exp(x - m).sum(axis=axis, keepdims=True)))


def softmax_backward(dy, y, axis=-1):
    dy, y = f64(dy, y)
    return y * (dy - np.sum(dy * y, axis=axis, keepdims=True))


def log_softmax_backward(dy, y, axis=-1):
    dy, y = f64(dy, y)
    return dy - np.exp(y) * np.sum(dy, axis=axis, keepdims=True)


def cross_entropy(logits, target):
    """(mean loss, probs): loss = mean(logsumexp(x_i) - x_i,t_i)."""
    x = f64(logits)
    t = np.asarray(target, dtype=np.int64)
    logp = log_softmax(x, axis=1)
    return -np.mean(logp[np.arange(len(t)), t]), np.exp(logp)


def cross_entropy_backward(probs, target):
    p = f64(probs)
    t = np.asarray(target, dtype=np.int64)
    d = p.copy()
    d[np.arange(len(t)), t] -= 1.0
    return d / len(t)


def mse_loss(pred, target):
    p, t = f64(pred, target)
    return np.mean((p - t) ** 2)


def mse_loss_backward(pred, target):
    p, t = f64(pred, target)
    return 2.0 * (p - t) / p.size


def binary_cross_entropy_with_logits(logits, target):
    x, t = f64(logits, target)
    return np.mean(np.maximum(x, 0.0) - x * t + np.log1p(np.exp(-np.abs(x))))


def binary_cross_entropy_with_logits_backward(logits, target):
    x, t = f64(logits, target)
    return (sigmoid(x) - t) / x.size


def dropout_apply(x, mask, p):
    """y = x * mask / (1 - p) for a given mask (the mask itself is random)."""
    x = f64(x)
    return np.where(mask != 0, x / (1.0 - p), 0.0) if p < 1 else np.zeros_like(x)


def bias_add(x, b, axis=1):
    x, b = f64(x, b)
    shape = [1] * x.ndim
    shape[axis] = -1
    return x + b.reshape(shape)


def bias_add_backward(dy, axis=1):
    dy = f64(dy)
    axis = axis % dy.ndim
    return dy.sum(axis=tuple(i for i in range(dy.ndim) if i != axis))



# ---- optimizers and gradient clipping -----------------------------------------------------------
