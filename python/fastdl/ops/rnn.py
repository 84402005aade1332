"""Recurrent cells and the whole-sequence LSTM, forward and backward (DESIGN.md sections 3-4).

    rnn_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None) -> h_new
        h_new = tanh(x w_ih^T + b_ih + h w_hh^T + b_hh); x (N, I), h (N, H), w_ih (H, I),
        w_hh (H, H), biases (H,).
    rnn_cell_backward(dh_new, x, h, w_ih, w_hh, h_new) -> (dx, dh, dw_ih, dw_hh, db)
    lstm_cell(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None) -> (h_new, c_new, gates)
        gates (N, 4H): the activated i, f, g, o in column blocks; w_ih (4H, I), w_hh (4H, H),
        biases (4H,). c_new = f c + i g, h_new = o tanh(c_new).
    lstm_cell_backward(dh_new, dc_new, x, h, c, w_ih, w_hh, gates, c_new)
        -> (dx, dh, dc, dw_ih, dw_hh, db); dh_new or dc_new may be None (zero).
    lstm(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, need_cache=True) -> (y, h_n, c_n, cache)
        x (T, N, I), y (T, N, H); h0 / c0 (N, H) or None (zeros, as PyTorch). The T steps run in
        C++ in one call. cache: an LSTMCache for lstm_backward, or None when need_cache=False
        (inference: the gates and cells of the steps are not kept).
    lstm_backward(dy, dh_n, dc_n, cache) -> (dx, dh0, dc0, dw_ih, dw_hh, db)
        backpropagation through time; dy (T, N, H), dh_n / dc_n (N, H), each may be None.
db is the gradient of b_ih and of b_hh alike (they enter the sum the same way).

Dtypes: the rule of ops/_util.py (float32 unless an operand is float64; output dtype = input
dtype; CuPy arrays run on the CUDA kernels). Shapes are checked by the kernels' bindings
(bindings/args.h), which name the argument, the expected shape and the one given. Kernels:
csrc/cpu/rnn*.cpp, csrc/cuda/rnn.cu.
"""

from __future__ import annotations

from ._util import check_ndim, prepare, require, shape_str
from .activation import _contig, _kernel

__all__ = ["rnn_cell", "rnn_cell_backward", "lstm_cell", "lstm_cell_backward", "lstm",
           "lstm_backward", "LSTMCache"]


def _c(be, *arrays):
    return tuple(None if a is None else _contig(be, a) for a in arrays)


def _ndims(op, **arrays):
    """ValueError naming the first array (not None) of the wrong rank: {name: (array, ndim)}."""
    for name, (a, nd) in arrays.items():
        if a is not None:
            check_ndim(op, name, a, (nd,))


def rnn_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    """One tanh RNN step: h_new (N, H)."""
    op = "rnn_cell"
    require(op, x=x, h=h, w_ih=w_ih, w_hh=w_hh)
    be, dtype, x, h, w_ih, w_hh, b_ih, b_hh = prepare(op, x=x, h=h, w_ih=w_ih, w_hh=w_hh,
                                                      b_ih=b_ih, b_hh=b_hh)
    _ndims(op, x=(x, 2), h=(h, 2), w_ih=(w_ih, 2), w_hh=(w_hh, 2), b_ih=(b_ih, 1),
           b_hh=(b_hh, 1))
    h_new = be.empty((x.shape[0], h.shape[1]), dtype)
    _kernel(be, op, "rnn_cell_forward")(h_new, *_c(be, x, h, w_ih, w_hh, b_ih, b_hh))
    return h_new


def rnn_cell_backward(dh_new, x, h, w_ih, w_hh, h_new):
    """Gradients of rnn_cell: (dx, dh, dw_ih, dw_hh, db)."""
    op = "rnn_cell_backward"
    require(op, dh_new=dh_new, x=x, h=h, w_ih=w_ih, w_hh=w_hh, h_new=h_new)
    be, dtype, dh_new, x, h, w_ih, w_hh, h_new = prepare(
        op, dh_new=dh_new, x=x, h=h, w_ih=w_ih, w_hh=w_hh, h_new=h_new)
    _ndims(op, dh_new=(dh_new, 2), x=(x, 2), h=(h, 2), w_ih=(w_ih, 2), w_hh=(w_hh, 2),
           h_new=(h_new, 2))
    dx, dh = be.empty(x.shape, dtype), be.empty(h.shape, dtype)
    dw_ih, dw_hh = be.empty(w_ih.shape, dtype), be.empty(w_hh.shape, dtype)
    db = be.empty((w_hh.shape[0],), dtype)
    _kernel(be, op, "rnn_cell_backward")(dx, dh, dw_ih, dw_hh, db,
                                         *_c(be, dh_new, x, h, w_ih, w_hh, h_new))
    return dx, dh, dw_ih, dw_hh, db


def lstm_cell(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
    """One LSTM step: (h_new, c_new, gates), gates (N, 4H) the activated i | f | g | o."""
    op = "lstm_cell"
    require(op, x=x, h=h, c=c, w_ih=w_ih, w_hh=w_hh)
    be, dtype, x, h, c, w_ih, w_hh, b_ih, b_hh = prepare(
        op, x=x, h=h, c=c, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh)
    _ndims(op, x=(x, 2), h=(h, 2), c=(c, 2), w_ih=(w_ih, 2), w_hh=(w_hh, 2), b_ih=(b_ih, 1),
           b_hh=(b_hh, 1))
    n, hid = x.shape[0], h.shape[1]
    h_new, c_new = be.empty((n, hid), dtype), be.empty((n, hid), dtype)
    gates = be.empty((n, 4 * hid), dtype)
    _kernel(be, op, "lstm_cell_forward")(h_new, c_new, gates,
                                         *_c(be, x, h, c, w_ih, w_hh, b_ih, b_hh))
    return h_new, c_new, gates


def lstm_cell_backward(dh_new, dc_new, x, h, c, w_ih, w_hh, gates, c_new):
    """Gradients of lstm_cell: (dx, dh, dc, dw_ih, dw_hh, db); dh_new / dc_new may be None."""
    op = "lstm_cell_backward"
    require(op, x=x, h=h, c=c, w_ih=w_ih, w_hh=w_hh, gates=gates, c_new=c_new)
    be, dtype, dh_new, dc_new, x, h, c, w_ih, w_hh, gates, c_new = prepare(
        op, dh_new=dh_new, dc_new=dc_new, x=x, h=h, c=c, w_ih=w_ih, w_hh=w_hh, gates=gates,
        c_new=c_new)
    _ndims(op, dh_new=(dh_new, 2), dc_new=(dc_new, 2), x=(x, 2), h=(h, 2), c=(c, 2),
           w_ih=(w_ih, 2), w_hh=(w_hh, 2), gates=(gates, 2), c_new=(c_new, 2))
    dx, dh, dc = be.empty(x.shape, dtype), be.empty(h.shape, dtype), be.empty(h.shape, dtype)
    dw_ih, dw_hh = be.empty(w_ih.shape, dtype), be.empty(w_hh.shape, dtype)
    db = be.empty((w_hh.shape[0],), dtype)
    _kernel(be, op, "lstm_cell_backward")(
        dx, dh, dc, dw_ih, dw_hh, db, *_c(be, dh_new, dc_new, x, h, c, w_ih, w_hh, gates, c_new))
    return dx, dh, dc, dw_ih, dw_hh, db


class LSTMCache:
    """What lstm_backward needs from lstm's forward pass (C-contiguous arrays of one dtype):
    x (T, N, I), h0 / c0 (N, H), w_ih (4H, I), w_hh (4H, H), y (T, N, H), gates (T, N, 4H) (the
    activated gates of every step) and cells (T, N, H) (c_1..c_T)."""

    __slots__ = ("x", "h0", "c0", "w_ih", "w_hh", "y", "gates", "cells")

    def __init__(self, x, h0, c0, w_ih, w_hh, y, gates, cells):
        self.x, self.h0, self.c0, self.w_ih, self.w_hh = x, h0, c0, w_ih, w_hh
        self.y, self.gates, self.cells = y, gates, cells

    def __repr__(self):
        t, n, i = self.x.shape
        return f"LSTMCache(T={t}, N={n}, I={i}, H={self.h0.shape[1]}, dtype={self.x.dtype})"


def _hidden(op, w_hh):
    """H from w_hh (4H, H), for zero initial states."""
    if w_hh.shape[0] != 4 * w_hh.shape[1]:
        raise ValueError(f"{op}: w_hh must have shape (4H, H), got {shape_str(w_hh.shape)}")
    return w_hh.shape[1]


def lstm(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, need_cache=True):
    """The LSTM over a whole sequence x (T, N, I): (y, h_n, c_n, cache)."""
    op = "lstm"
    require(op, x=x, w_ih=w_ih, w_hh=w_hh)
    be, dtype, x, h0, c0, w_ih, w_hh, b_ih, b_hh = prepare(
        op, x=x, h0=h0, c0=c0, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh)
    _ndims(op, x=(x, 3), h0=(h0, 2), c0=(c0, 2), w_ih=(w_ih, 2), w_hh=(w_hh, 2),
           b_ih=(b_ih, 1), b_hh=(b_hh, 1))
    t, n, _ = x.shape
    hid = _hidden(op, w_hh)
    if h0 is None:
        h0 = be.xp.zeros((n, hid), dtype)
    if c0 is None:
        c0 = be.xp.zeros((n, hid), dtype)
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = _c(be, x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    y = be.empty((t, n, hid), dtype)
    h_n, c_n = be.empty((n, hid), dtype), be.empty((n, hid), dtype)
    gates = be.empty((t, n, 4 * hid), dtype) if need_cache else None
    cells = be.empty((t, n, hid), dtype) if need_cache else None
    _kernel(be, op, "lstm_forward")(y, h_n, c_n, gates, cells, x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    cache = LSTMCache(x, h0, c0, w_ih, w_hh, y, gates, cells) if need_cache else None
    return y, h_n, c_n, cache


def lstm_backward(dy, dh_n, dc_n, cache):
    """Backpropagation through time of lstm: (dx, dh0, dc0, dw_ih, dw_hh, db)."""
    op = "lstm_backward"
    if not isinstance(cache, LSTMCache):
        raise TypeError(f"{op}: cache must be the LSTMCache that lstm(..., need_cache=True) "
                        f"returned, got {type(cache).__name__}")
    be, dtype, dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, y, gates, cells = prepare(
        op, dy=dy, dh_n=dh_n, dc_n=dc_n, x=cache.x, h0=cache.h0, c0=cache.c0, w_ih=cache.w_ih,
        w_hh=cache.w_hh, y=cache.y, gates=cache.gates, cells=cache.cells)
    _ndims(op, dy=(dy, 3), dh_n=(dh_n, 2), dc_n=(dc_n, 2))
    dx = be.empty(x.shape, dtype)
    dh0, dc0 = be.empty(h0.shape, dtype), be.empty(c0.shape, dtype)
    dw_ih, dw_hh = be.empty(w_ih.shape, dtype), be.empty(w_hh.shape, dtype)
    db = be.empty((w_hh.shape[0],), dtype)
    _kernel(be, op, "lstm_backward")(
        dx, dh0, dc0, dw_ih, dw_hh, db,
        *_c(be, dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, y, gates, cells))
    return dx, dh0, dc0, dw_ih, dw_hh, db
