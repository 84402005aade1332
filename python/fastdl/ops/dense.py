"""Dense layers: matmul and linear, forward and backward.

Shapes: matmul a (M, K) @ b (K, N) -> (M, N), or batched (B, M, K) @ (B, K, N) -> (B, M, N);
a 2-D operand broadcasts against a 3-D one. linear x (*, in), w (out, in), b (out,) ->
y (*, out) = x w^T + b. Backward passes return gradients in argument order; every product is
one call to the packed GEMM with swapped strides (no transposed copies).

Plain NumPy operands (float32/float64 ndarrays whose shapes chain) take a fast path first: the
extension's matmul / linear entry points run the whole op in one call, the same kernel calls as
below, and return None for anything else (conversion, CuPy arrays, bad shapes), which then goes
through the Python path here, where every error is reported.
"""

from __future__ import annotations

import math

from .. import backends
from .._backend import CPU
from ._util import check_ndim, check_shape, contiguous, prepare, shape_str

__all__ = ["matmul", "matmul_backward", "linear", "linear_backward"]


_fast_matmul = CPU.ext.matmul
_fast_matmul_backward = CPU.ext.matmul_backward
_fast_linear = CPU.ext.linear
_fast_linear_backward = CPU.ext.linear_backward


def _mT(x):
    """The last two axes swapped: a view, read by the kernels through its strides."""
    return x.swapaxes(-1, -2)


def _matmul_shapes(op: str, a, b):
    check_ndim(op, "a", a, (2, 3))
    check_ndim(op, "b", b, (2, 3))
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(
            f"{op}: a {shape_str(a.shape)} and b {shape_str(b.shape)} do not chain: "
            f"a.shape[-1]={a.shape[-1]} but b.shape[-2]={b.shape[-2]}"
        )
    if a.ndim == 3 and b.ndim == 3 and a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{op}: batch sizes differ: a {shape_str(a.shape)}, b {shape_str(b.shape)}"
        )
    batch = (a.shape[0],) if a.ndim == 3 else (b.shape[0],) if b.ndim == 3 else ()
    return batch + (a.shape[-2], b.shape[-1])


def _rows(x, cols: int):
    """x viewed (or copied, if it must be) as a 2-D (rows, cols) matrix; safe for empty arrays."""
    if x.ndim == 2:
        return x
    return x.reshape(math.prod(x.shape[:-1]), cols)


def _gemm(be, out, a, b, **kw):
    if be.device == "cuda":
        kw["tf32"] = backends.cuda.matmul.allow_tf32
    be.call("gemm", out, a, b, **kw)
    return out


def matmul(a, b):
    """a @ b for 2-D or batched 3-D operands (a 2-D operand is shared across the batch)."""
    out = _fast_matmul(a, b)
    if out is not None:
        return out
    be, dtype, a, b = prepare("matmul", a=a, b=b)
    shape = _matmul_shapes("matmul", a, b)
    out = be.empty(shape, dtype)
    if a.ndim == 3 and b.ndim == 2:  # one tall product beats B small ones
        _gemm(be, _rows(out, shape[-1]), _rows(a, a.shape[-1]), b)
    else:
        _gemm(be, out, a, b)
    return out


def matmul_backward(dy, a, b):
    """Gradients of matmul: (da, db) = (dy @ b^T, a^T @ dy), reduced over a broadcast batch."""
    grads = _fast_matmul_backward(dy, a, b)
    if grads is not None:
        return grads
    be, dtype, dy, a, b = prepare("matmul_backward", dy=dy, a=a, b=b)
    shape = _matmul_shapes("matmul_backward", a, b)
    check_shape("matmul_backward", "dy", dy, shape)
    da = be.empty(a.shape, dtype)
    db = be.empty(b.shape, dtype)
    if a.ndim == b.ndim:
        _gemm(be, da, dy, _mT(b))
        _gemm(be, db, _mT(a), dy)
    elif a.ndim == 3:  # b shared: fold the batch into the rows of one product
        k, n = b.shape
        dy2, a2 = _rows(dy, n), _rows(a, k)
        _gemm(be, _rows(da, k), dy2, _mT(b))
        _gemm(be, db, _mT(a2), dy2)
    else:  # a shared: da = sum_i dy[i] @ b[i]^T, one product over the concatenated batch
        m, n = dy.shape[-2:]
        dy_cat = contiguous(be, dy.transpose(1, 0, 2)).reshape(m, dy.shape[0] * n)  # (M, B*N)
        b_cat = contiguous(be, b.transpose(1, 0, 2)).reshape(b.shape[1], dy.shape[0] * n)
        _gemm(be, da, dy_cat, _mT(b_cat))
        _gemm(be, db, _mT(a), dy)
    return da, db


def _linear_shapes(op: str, x, w, b=None):
    check_ndim(op, "w", w, (2,))
    if x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(
            f"{op}: x {shape_str(x.shape)} must end in in_features={w.shape[1]} "
            f"to match w {shape_str(w.shape)} (out_features, in_features)"
        )
    if b is not None:
        check_shape(op, "b", b, (w.shape[0],))
    return x.shape[:-1] + (w.shape[0],)


def linear(x, w, b=None):
    """y = x @ w^T + b with x (*, in), w (out, in), b (out,) or None; bias fused in the GEMM."""
    out = _fast_linear(x, w, b)
    if out is not None:
        return out
    be, dtype, x, w, b = prepare("linear", x=x, w=w, b=b)
    shape = _linear_shapes("linear", x, w, b)
    out = be.empty(shape, dtype)
    bias = None if b is None else contiguous(be, b)
    _gemm(be, _rows(out, w.shape[0]), _rows(x, w.shape[1]), _mT(w), bias=bias)
    return out


def linear_backward(dy, x, w):
    """Gradients of linear: (dx, dw, db) = (dy @ w, dy^T @ x, dy summed over all but the last axis)."""
    grads = _fast_linear_backward(dy, x, w)
    if grads is not None:
        return grads
    be, dtype, dy, x, w = prepare("linear_backward", dy=dy, x=x, w=w)
    shape = _linear_shapes("linear_backward", x, w)
    check_shape("linear_backward", "dy", dy, shape)
    out_f, in_f = w.shape
    dy2 = contiguous(be, _rows(dy, out_f))
    x2 = _rows(x, in_f)
    dx = be.empty(x.shape, dtype)
    dw = be.empty(w.shape, dtype)
    db = be.empty((out_f,), dtype)
    _gemm(be, _rows(dx, in_f), dy2, w)
    _gemm(be, dw, _mT(dy2), x2)
    be.call("sum_rows", db, dy2)
    return dx, dw, db
