"""Element-wise support for the autograd layer: a bias add broadcast along one axis, and its
gradient.

    bias_add(x, b, axis=1)       y = x + b, b of shape (x.shape[axis],) broadcast along `axis`
                                 (the channel axis of NCHW or the feature axis of (N, C))
    bias_add_backward(dy, axis=1) -> db = dy summed over every axis but `axis`

Plain +, -, * and / between arrays stay NumPy's: its broadcasting loops already run at memory
bandwidth here (measured in benchmarks/RESULTS.md).
"""

from __future__ import annotations

import math

from ._util import prepare, shape_str
from .activation import _contig, _kernel
from .softmax import _axis

__all__ = ["bias_add", "bias_add_backward"]


def bias_add(x, b, axis=1):
    """x + b with b (x.shape[axis],) broadcast along `axis` of x."""
    op = "bias_add"
    be, dtype, x, b = prepare(op, x=x, b=b)
    axis = _axis(op, x.ndim, axis)
    if b.shape != (x.shape[axis],):
        raise ValueError(f"{op}: b must have shape {shape_str((x.shape[axis],))} to match axis "
                         f"{axis} of x {shape_str(x.shape)}, got {shape_str(b.shape)}")
    out = be.empty(x.shape, dtype)
    _kernel(be, op, "bias_add")(out, _contig(be, x), _contig(be, b), axis)
    return out


def bias_add_backward(dy, axis=1):
    """db: dy summed over every axis except `axis` (sum_rows, then a short sum over the rest)."""
    op = "bias_add_backward"
    be, dtype, dy = prepare(op, dy=dy)
    axis = _axis(op, dy.ndim, axis)
    c = dy.shape[axis]
    outer, inner = math.prod(dy.shape[:axis]), math.prod(dy.shape[axis + 1:])
    rows = be.empty((c * inner,), dtype)
    _kernel(be, op, "sum_rows")(rows, _contig(be, dy).reshape(outer, c * inner))
    return rows if inner == 1 else rows.reshape(c, inner).sum(axis=1)
