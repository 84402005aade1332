"""Inverted dropout with an explicit seed.

    dropout(x, p, seed) -> (y, mask): mask uint8 of x's shape (1 = kept, probability 1 - p),
        y = x * mask / (1 - p)
    dropout_backward(dy, mask, p) = dy * mask / (1 - p)

p in [0, 1]: p = 0 keeps everything, p = 1 gives zeros (mask 0) without dividing by zero. The mask
is a counter-based hash of (seed, element index): the same for every thread count and CPU ISA.
seed is any Python int (taken modulo 2**64).
"""

from __future__ import annotations

import numbers

import numpy as np

from ._util import check_shape, prepare
from .activation import _contig, _kernel

__all__ = ["dropout", "dropout_backward"]


def _p(op: str, p) -> float:
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"{op}: p must be a real number, got {type(p).__name__}")
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: p must be a probability in [0, 1], got {p}")
    return p


def dropout(x, p, seed):
    """Zero each element with probability p and scale the rest by 1 / (1 - p); returns (y, mask)."""
    op = "dropout"
    p = _p(op, p)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{op}: seed must be an int, got {type(seed).__name__}")
    be, dtype, x = prepare(op, x=x)
    x = _contig(be, x)
    y = be.empty(x.shape, dtype)
    mask = be.empty(x.shape, np.uint8)
    _kernel(be, op, "dropout_forward")(y, mask, x, p, int(seed) % 2**64)
    return y, mask


def dropout_backward(dy, mask, p):
    """dx = dy * mask / (1 - p), with the mask dropout returned."""
    op = "dropout_backward"
    p = _p(op, p)
    be, dtype, dy = prepare(op, dy=dy)
    mask = be.xp.asarray(mask)
    if mask.dtype == np.bool_:
        mask = mask.view(np.uint8)
    if mask.dtype != np.uint8:
        raise TypeError(f"{op}: mask must be the uint8 mask dropout returned, got dtype {mask.dtype}")
    check_shape(op, "mask", mask, dy.shape)
    out = be.empty(dy.shape, dtype)
    _kernel(be, op, "dropout_backward")(out, _contig(be, dy), _contig(be, mask), p)
    return out

