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


# ---- optimizers and gradient clipping -----------------------------------------------------------
