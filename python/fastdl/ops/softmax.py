"""softmax and log_softmax along any axis, forward and backward (from the forward output y).

    softmax:      y = exp(x - max) / sum(exp(x - max))    dx = y * (dy - sum(dy * y))
    log_softmax:  y = (x - max) - log(sum(exp(x - max)))  dx = dy - exp(y) * sum(dy)

Sums run along `axis`. A slice that is entirely -inf (fully masked) gives zeros for softmax and
-inf for log_softmax (the log of those zeros), never NaN; NaN or +inf in a slice makes the slice
NaN, as in PyTorch. The kernels work on the last axis of a C-contiguous array; another axis is
moved last (a copy) and back, and the result is returned C-contiguous.
"""

from __future__ import annotations

from ._util import check_shape, prepare
from .activation import _contig, _kernel

__all__ = ["softmax", "log_softmax", "softmax_backward", "log_softmax_backward"]


def _axis(op: str, ndim: int, axis) -> int:
    if isinstance(axis, bool) or not hasattr(axis, "__index__"):
        raise TypeError(f"{op}: axis must be an int, got {type(axis).__name__}")
    axis = axis.__index__()
    if ndim == 0:
        raise ValueError(f"{op}: x must have at least 1 dimension, got a 0-D array")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{op}: axis {axis} is out of range for an array of {ndim} dimensions")
    return axis % ndim


def _last(be, a, axis: int):
    """a with `axis` moved last, C-contiguous (copied only when it must be)."""
    return _contig(be, be.xp.moveaxis(a, axis, -1)) if axis != a.ndim - 1 else _contig(be, a)


def _back(be, out, axis: int):
    return out if axis == out.ndim - 1 else _contig(be, be.xp.moveaxis(out, -1, axis))


def _forward(op: str, x, axis, log: bool):
    be, dtype, x = prepare(op, x=x)
    axis = _axis(op, x.ndim, axis)
    xl = _last(be, x, axis)
    out = be.empty(xl.shape, dtype)
    _kernel(be, op, "softmax_forward")(out, xl, log=log)
    return _back(be, out, axis)


def _backward(op: str, dy, y, axis, log: bool):
    be, dtype, dy, y = prepare(op, dy=dy, y=y)
    axis = _axis(op, y.ndim, axis)
    check_shape(op, "dy", dy, y.shape)
    dyl, yl = _last(be, dy, axis), _last(be, y, axis)
    out = be.empty(yl.shape, dtype)
    _kernel(be, op, "softmax_backward")(out, dyl, yl, log=log)
    return _back(be, out, axis)


def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along `axis`, computed stably (the max is subtracted first)."""
    return _forward("softmax", x, axis, False)


def log_softmax(x, axis=-1):
    """x - logsumexp(x) along `axis`, computed stably."""
    return _forward("log_softmax", x, axis, True)


def softmax_backward(dy, y, axis=-1):
    """Gradient of softmax from its output y: dx = y * (dy - sum(dy * y, axis))."""
    return _backward("softmax_backward", dy, y, axis, False)


def log_softmax_backward(dy, y, axis=-1):
    """Gradient of log_softmax from its output y: dx = dy - exp(y) * sum(dy, axis)."""
    return _backward("log_softmax_backward", dy, y, axis, True)
