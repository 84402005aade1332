"""Recurrent layers with PyTorch's constructor arguments, parameter names, shapes, initialisation
and state shapes, so a PyTorch state dict converted to NumPy arrays loads and computes the same.

    RNNCell(input_size, hidden_size, bias=True, nonlinearity='tanh')
        weight_ih (H, I), weight_hh (H, H), bias_ih / bias_hh (H,);  forward(x, hx=None) -> h'
    LSTMCell(input_size, hidden_size, bias=True)
        weight_ih (4H, I), weight_hh (4H, H), bias_ih / bias_hh (4H,);
        forward(x, (h, c)=None) -> (h', c')
    LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
         bidirectional=False)
        weight_ih_l{k}[_reverse] (4H, I or D*H), weight_hh_l{k}[_reverse] (4H, H), biases (4H,);
        forward(x, (h0, c0)=None) -> (y, (h_n, c_n)): x (T, N, I) ((N, T, I) with batch_first,
        (T, I) unbatched), y (T, N, D*H), states (num_layers * D, N, H) (D = 2 if bidirectional)

Gates are ordered i, f, g, o. Every parameter starts U(-1/sqrt(H), 1/sqrt(H)) from fastdl's
generator (manual_seed). A missing state is zeros. Each LSTM layer and direction is one
whole-sequence kernel call (fastdl.ops.lstm: no Python loop over the time steps); the reverse
direction runs it on the time-reversed sequence. Dropout (fastdl's kernel, seeded from fastdl's
generator) is applied to the output of every layer but the last, in training mode only.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from ..functions import Concat
from ..tensor import Tensor, _xp
from . import functional as F
from . import init
from .layers import _check_int
from .module import Module, Parameter

__all__ = ["RNNCell", "LSTMCell", "LSTM"]


def _new(shape, dtype):
    return Parameter(np.empty(shape, np.dtype(np.float32 if dtype is None else dtype)))


def _reset(module: Module, hidden_size: int) -> None:
    """PyTorch's init of every recurrent parameter: U(-1/sqrt(H), 1/sqrt(H)), in order."""
    bound = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0
    for p in module.parameters():
        init.uniform_(p, -bound, bound)


def _zeros(like: Tensor, shape, dtype) -> Tensor:
    return Tensor._make(_xp(like.data).zeros(shape, dtype), False, None)


def _check_state(op: str, name: str, s: Tensor, expected) -> None:
    if s.shape != tuple(expected):
        raise ValueError(f"{op}: {name} must have shape {tuple(expected)}, got {s.shape}")


class _CellBase(Module):
    _gates = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None):
        name = type(self).__name__
        self.input_size = _check_int(name, "input_size", input_size)
        self.hidden_size = _check_int(name, "hidden_size", hidden_size, 1)
        self.bias = bool(bias)
        gh = self._gates * self.hidden_size
        self.weight_ih = _new((gh, self.input_size), dtype)
        self.weight_hh = _new((gh, self.hidden_size), dtype)
        self.bias_ih = _new((gh,), dtype) if bias else None
        self.bias_hh = _new((gh,), dtype) if bias else None
        self.reset_parameters()
        if device is not None:
            self.to(device)

    def reset_parameters(self) -> None:
        _reset(self, self.hidden_size)

    def _input(self, x):
        """x as a batched (N, I) Tensor, and whether it came unbatched (I,)."""
        name = type(self).__name__
        x = F._t(x)
        if x.ndim not in (1, 2):
            raise ValueError(f"{name}: input must be 1-D (input_size,) or 2-D (batch, "
                             f"input_size), got shape {x.shape}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"{name}: input must have input_size={self.input_size} features "
                             f"(last axis), got shape {x.shape}")
        return (x.reshape(1, -1), True) if x.ndim == 1 else (x, False)

    def _state(self, s, name: str, x: Tensor, unbatched: bool) -> Tensor:
        """A given state (N, H) ((H,) for an unbatched input) as (N, H), or zeros."""
        n, h = x.shape[0], self.hidden_size
        if s is None:
            return _zeros(x, (n, h), self.weight_hh.dtype)
        s = F._t(s, name)
        _check_state(type(self).__name__, name, s, (h,) if unbatched else (n, h))
        return s.reshape(1, -1) if unbatched else s

    def _params(self):
        return (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        return s if self.bias else s + ", bias=False"


class RNNCell(_CellBase):
    """h' = tanh(x weight_ih^T + bias_ih + h weight_hh^T + bias_hh) (one fused kernel);
    nonlinearity='relu' is composed of the linear and relu kernels."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', got "
                             f"{nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def forward(self, input, hx=None):
        x, unbatched = self._input(input)
        h = self._state(hx, "hx", x, unbatched)
        if self.nonlinearity == "tanh":
            out = F.rnn_cell(x, h, *self._params())
        else:
            out = F.relu(F.linear(x, self.weight_ih, self.bias_ih)
                         + F.linear(h, self.weight_hh, self.bias_hh))
        return out.reshape(-1) if unbatched else out

    def extra_repr(self):
        s = super().extra_repr()
        return s if self.nonlinearity == "tanh" else s + f", nonlinearity={self.nonlinearity!r}"


class LSTMCell(_CellBase):
    """One LSTM step: the gate GEMMs with the activations and cell update fused into one kernel."""

    _gates = 4

    def forward(self, input, hx=None):
        x, unbatched = self._input(input)
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise ValueError(f"LSTMCell: hx must be a pair (h, c), got {type(hx).__name__}")
        h, c = (None, None) if hx is None else hx
        h = self._state(h, "hx[0]", x, unbatched)
        c = self._state(c, "hx[1]", x, unbatched)
        h_new, c_new = F.lstm_cell(x, h, c, *self._params())
        if unbatched:
            return h_new.reshape(-1), c_new.reshape(-1)
        return h_new, c_new


class LSTM(Module):
    """A stack of LSTM layers over whole sequences (see the module docstring)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None):
        self.input_size = _check_int("LSTM", "input_size", input_size)
        self.hidden_size = _check_int("LSTM", "hidden_size", hidden_size, 1)
        self.num_layers = _check_int("LSTM", "num_layers", num_layers, 1)
        if (isinstance(dropout, bool) or not isinstance(dropout, numbers.Real)
                or not 0.0 <= dropout <= 1.0):
            raise ValueError(f"LSTM: dropout must be a probability in [0, 1], got {dropout!r}")
        if proj_size != 0:
            raise ValueError(f"LSTM: proj_size={proj_size!r} is not supported (only 0)")
        if dropout > 0 and self.num_layers == 1:  # PyTorch's warning, word for word
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so "
                          "non-zero dropout expects num_layers greater than 1, but got "
                          f"dropout={dropout} and num_layers={num_layers}", UserWarning,
                          stacklevel=2)
        self.bias, self.batch_first = bool(bias), bool(batch_first)
        self.dropout, self.bidirectional = float(dropout), bool(bidirectional)
        self.proj_size = 0
        h, dirs = self.hidden_size, self.num_directions
        for layer in range(self.num_layers):
            width = self.input_size if layer == 0 else h * dirs
            for suffix in ("", "_reverse")[:dirs]:  # PyTorch's parameter order
                setattr(self, f"weight_ih_l{layer}{suffix}", _new((4 * h, width), dtype))
                setattr(self, f"weight_hh_l{layer}{suffix}", _new((4 * h, h), dtype))
                if self.bias:
                    setattr(self, f"bias_ih_l{layer}{suffix}", _new((4 * h,), dtype))
                    setattr(self, f"bias_hh_l{layer}{suffix}", _new((4 * h,), dtype))
        self.reset_parameters()
        if device is not None:
            self.to(device)

    num_directions = property(lambda self: 2 if self.bidirectional else 1)

    def reset_parameters(self) -> None:
        _reset(self, self.hidden_size)

    def flatten_parameters(self) -> None:
        """A no-op kept for PyTorch code that calls it (fastdl's weights are already one array
        per parameter, read in place by the kernel)."""

    def _layer_params(self, layer: int, suffix: str):
        get = lambda n: getattr(self, f"{n}_l{layer}{suffix}", None)  # noqa: E731
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")

    def _states(self, hx, x: Tensor, unbatched: bool):
        """(h0, c0) as (L*D, N, H) Tensors, or (None, None) for zeros."""
        if hx is None:
            return None, None
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise ValueError(f"LSTM: hx must be a pair (h_0, c_0), got {type(hx).__name__}")
        n, rows = x.shape[1], self.num_layers * self.num_directions
        want = (rows, self.hidden_size) if unbatched else (rows, n, self.hidden_size)
        out = []
        for s, name in zip(hx, ("h_0", "c_0")):
            s = F._t(s, name)
            _check_state("LSTM", name, s, want)
            out.append(s.reshape(rows, 1, self.hidden_size) if unbatched else s)
        return tuple(out)

    def forward(self, input, hx=None):
        x = F._t(input)
        if x.ndim not in (2, 3):
            raise ValueError(f"LSTM: input must be 2-D (T, input_size) or 3-D "
                             f"({'N, T' if self.batch_first else 'T, N'}, input_size), got shape "
                             f"{x.shape}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"LSTM: input must have input_size={self.input_size} features (last "
                             f"axis), got shape {x.shape}")
        unbatched = x.ndim == 2
        if unbatched:
            x = x.reshape(x.shape[0], 1, x.shape[1])
        elif self.batch_first:
            x = x.transpose(0, 1)
        if x.shape[0] == 0:
            raise ValueError(f"LSTM: the sequence length must be larger than 0, got input shape "
                             f"{F._t(input).shape}")
        h0, c0 = self._states(hx, x, unbatched)
        n, h = x.shape[1], self.hidden_size
        hs, cs = [], []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0 and self.training:
                x = F.dropout(x, self.dropout, True)
            outs = []
            for d, suffix in enumerate(("", "_reverse")[: self.num_directions]):
                row = layer * self.num_directions + d
                s0 = ((h0[row], c0[row]) if h0 is not None else
                      (_zeros(x, (n, h), self.weight_hh_l0.dtype),) * 2)
                seq = x if d == 0 else x[::-1]
                y, h_n, c_n = F._lstm_layer(seq, *s0, *self._layer_params(layer, suffix))
                outs.append(y if d == 0 else y[::-1])
                hs.append(h_n)
                cs.append(c_n)
            x = outs[0] if len(outs) == 1 else Concat.apply(*outs, axis=2)
        h_n = hs[0] if len(hs) == 1 else Concat.apply(*hs, axis=0)
        c_n = cs[0] if len(cs) == 1 else Concat.apply(*cs, axis=0)
        if unbatched:
            return x.reshape(x.shape[0], x.shape[2]), (h_n.reshape(-1, h), c_n.reshape(-1, h))
        return (x.transpose(0, 1) if self.batch_first else x), (h_n, c_n)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False)):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return s
