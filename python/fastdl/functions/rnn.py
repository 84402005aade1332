"""Autograd Functions of the rnn family: the tanh RNN cell, the LSTM cell and the whole-sequence
LSTM (fastdl.ops.rnn kernels, both devices).

    x (N, I), h / c (N, H); sequences x (T, N, I), y (T, N, H); w_ih (G*H, I), w_hh (G*H, H),
    b_ih / b_hh (G*H,) optional (G = 1 for the RNN cell, 4 for the LSTM: gates i | f | g | o)

    RNNCell(x, h, w_ih, w_hh[, b_ih, b_hh])       -> h_new (N, H)
    LSTMCell(x, h, c, w_ih, w_hh[, b_ih, b_hh])   -> packed (2, N, H) = [h_new, c_new]
    LSTM(x, h0, c0, w_ih, w_hh[, b_ih, b_hh])     -> packed (T+1, N, H) = [y_1 .. y_T, c_T]
                                                     (T = 0: [h0, c0])

The engine's Functions have one output, so the multi-output ones return one packed array and
the caller takes views of it with GetItem (fastdl.nn.functional.lstm_cell and lstm do):
GetItem's backward scatters each view's gradient into zeros and the engine sums the paths, so
the packed gradient arrives whole. h_n is y_T itself, packed[T-1], so its gradient folds into dy[T-1] on its own
and lstm_backward is called with dh_n=None.

The backward passes return the kernels' gradients in argument order, trimmed to the Tensors
given; db is the gradient of b_ih and of b_hh alike. The LSTM keeps the ops.LSTMCache (x, the
states, weights, gates and cells of every step) only when a gradient will be asked for, so
inference under no_grad runs the kernel's bounded-workspace path.
"""

from __future__ import annotations

from .. import ops
from ..tensor import Function, Tensor, _xp, is_grad_enabled  # noqa: F401  (Tensor: what they make)

__all__ = ["RNNCell", "LSTMCell", "LSTM"]


class RNNCell(Function):
    """h_new = tanh(x w_ih^T + b_ih + h w_hh^T + b_hh); biases optional (both or neither)."""

    def forward(self, x, h, w_ih, w_hh, b_ih=None, b_hh=None):
        self.h_new = ops.rnn_cell(x, h, w_ih, w_hh, b_ih, b_hh)
        self.args = (x, h, w_ih, w_hh)
        return self.h_new

    def backward(self, g):
        dx, dh, dw_ih, dw_hh, db = ops.rnn_cell_backward(g, *self.args, self.h_new)
        return (dx, dh, dw_ih, dw_hh, db, db)[: len(self.parents)]


class LSTMCell(Function):
    """One LSTM step; returns packed (2, N, H) = [h_new, c_new]."""

    def forward(self, x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
        h_new, self.c_new, self.gates = ops.lstm_cell(x, h, c, w_ih, w_hh, b_ih, b_hh)
        self.args = (x, h, c, w_ih, w_hh)
        return _xp(h_new).stack((h_new, self.c_new))

    def backward(self, g):
        dx, dh, dc, dw_ih, dw_hh, db = ops.lstm_cell_backward(g[0], g[1], *self.args, self.gates,
                                                              self.c_new)
        return (dx, dh, dc, dw_ih, dw_hh, db, db)[: len(self.parents)]


class LSTM(Function):
    """The whole sequence in one ops.lstm call; returns packed (T+1, N, H) = [y, c_n]
    ([h0, c0] when T = 0)."""

    def forward(self, x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None):
        need_cache = is_grad_enabled() and any(self.needs_input_grad)
        y, h_n, c_n, self.cache = ops.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, need_cache=need_cache)
        xp = _xp(y)
        self.T = y.shape[0]
        if self.T == 0:
            return xp.stack((h_n, c_n))
        return xp.concatenate((y, c_n[None]))

    def backward(self, g):
        if self.T == 0:
            dx, dh0, dc0, dw_ih, dw_hh, db = ops.lstm_backward(None, g[0], g[1], self.cache)
        else:
            dx, dh0, dc0, dw_ih, dw_hh, db = ops.lstm_backward(g[: self.T], None, g[self.T],
                                                               self.cache)
        return (dx, dh0, dc0, dw_ih, dw_hh, db, db)[: len(self.parents)]
