"""Functional forms of the layers and losses (``fastdl.nn.functional as F``), PyTorch's names.

Inputs may be Tensors or arrays (arrays are wrapped as constants). Every function runs one
autograd Function whose forward and backward call the fastdl.ops kernels.
"""

from __future__ import annotations

import numpy as np

from .. import _random
from ..functions import (BCEWithLogits, CrossEntropy, Dropout, Linear, LogSoftmax, MSELoss, ReLU,
                         Sigmoid, Softmax, Tanh)
from ..functions import GELU as _GELU, LayerNorm as _LayerNorm
from ..functions import (AdaptiveAvgPool2d as _AdaptiveAvgPool2d, AvgPool2d as _AvgPool2d,
                         BatchNorm as _BatchNorm, Conv2d as _Conv2d,
                         ConvTranspose2d as _ConvTranspose2d, MaxPool2d as _MaxPool2d,
                         Pad2d as _Pad2d)
from ..functions import (Embedding as _Embedding, LSTM as _LSTM, LSTMCell as _LSTMCell,
                         RNNCell as _RNNCell)
from ..tensor import Tensor, _xp

__all__ = ["linear", "relu", "sigmoid", "tanh", "softmax", "log_softmax", "dropout",
           "cross_entropy", "mse_loss", "binary_cross_entropy_with_logits",
           "conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
           "batch_norm", "gelu", "layer_norm", "pad",
           "embedding", "rnn_cell", "lstm_cell", "lstm"]

_REDUCTIONS = ("mean", "sum")


def _t(x, name: str = "input") -> Tensor:
    if isinstance(x, Tensor):
        return x
    try:
        return Tensor(x)
    except TypeError as e:
        raise TypeError(f"{name} must be a Tensor or an array: {e}") from None


def _reduce(op: str, loss: Tensor, count: int, reduction: str) -> Tensor:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be 'mean' or 'sum', got {reduction!r} "
                         f"('none' is not supported)")
    return loss if reduction == "mean" else loss * float(count)


def linear(input, weight, bias=None) -> Tensor:
    """input (*, in) @ weight (out, in)^T + bias (out,)."""
    args = (_t(input), _t(weight, "weight")) + (() if bias is None else (_t(bias, "bias"),))
    return Linear.apply(*args)


def relu(input) -> Tensor:
    return ReLU.apply(_t(input))


def sigmoid(input) -> Tensor:
    return Sigmoid.apply(_t(input))


def tanh(input) -> Tensor:
    return Tanh.apply(_t(input))


def softmax(input, dim: int = -1) -> Tensor:
    return Softmax.apply(_t(input), axis=dim)


def log_softmax(input, dim: int = -1) -> Tensor:
    return LogSoftmax.apply(_t(input), axis=dim)


def dropout(input, p: float = 0.5, training: bool = True) -> Tensor:
    """Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p).
    The kernel's seed is drawn from fastdl's generator, so ``manual_seed`` makes it repeatable."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be a probability in [0, 1], got {p!r}")
    x = _t(input)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    return Dropout.apply(x, p=float(p), seed=_random.next_seed())


def _target_array(target, name="target"):
    return target.data if isinstance(target, Tensor) else target


def cross_entropy(input, target, reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy of logits (N, C) with class indices (N,) int64, fused in one kernel;
    or with class probabilities of input's shape (a float target, computed as a composite).
    Logits (N, C, d1, ...) with indices (N, d1, ...) (per-pixel classification) are scored as
    the (N*d1*..., C) rows of their classes moved last, the mean taken over every position."""
    x = _t(input)
    if x.ndim > 2 and not _is_float_target(target):
        return _cross_entropy_nd(x, target, reduction)
    if x.ndim != 2:
        raise ValueError(f"cross_entropy: input must be (N, C) or (N, C, d1, ...) logits, got "
                         f"shape {x.shape}")
    tgt = _target_array(target)
    if not hasattr(tgt, "dtype"):
        tgt = np.asarray(tgt)
    kind = tgt.dtype.kind
    if kind == "f":  # probabilities
        t = _t(target, "target")
        if t.shape != x.shape:
            raise ValueError(f"cross_entropy: probability targets must have input's shape "
                             f"{x.shape}, got {t.shape}")
        loss = -(t * x.log_softmax(1)).sum(axis=1).mean()
        return _reduce("cross_entropy", loss, x.shape[0], reduction)
    if kind not in "iu":
        raise TypeError(f"cross_entropy: target must hold int64 class indices (or float "
                        f"probabilities), got dtype {getattr(tgt, 'dtype', type(tgt).__name__)}")
    xp = _xp(x.data)
    tgt = xp.asarray(tgt, dtype=np.int64)
    if tgt.shape != x.shape[:1]:
        raise ValueError(f"cross_entropy: target must have shape ({x.shape[0]},) for input "
                         f"{x.shape}, got {tuple(tgt.shape)}")
    if x.shape[0] == 0:
        raise ValueError("cross_entropy: the mean over an empty batch is undefined")
    loss = CrossEntropy.apply(x, target=tgt)
    return _reduce("cross_entropy", loss, x.shape[0], reduction)


def _is_float_target(target) -> bool:
    return getattr(_target_array(target), "dtype", np.dtype(np.int64)).kind == "f"


def _cross_entropy_nd(x: Tensor, target, reduction: str) -> Tensor:
    tgt = _target_array(target)
    tgt = tgt if hasattr(tgt, "shape") else np.asarray(tgt)
    want = x.shape[:1] + x.shape[2:]
    if tuple(tgt.shape) != want:
        raise ValueError(f"cross_entropy: target must have shape {want} for input {x.shape} "
                         f"(classes on axis 1), got {tuple(tgt.shape)}")
    rows = x.permute((0,) + tuple(range(2, x.ndim)) + (1,)).reshape(-1, x.shape[1])
    return cross_entropy(rows, tgt.reshape(-1), reduction)


def _pair(op, input, target):
    x, t = _t(input), _t(target, "target")
    if t.shape != x.shape:
        raise ValueError(f"{op}: target shape {t.shape} must equal input shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{op}: the mean over zero elements is undefined")
    if not t.requires_grad and (t.dtype != x.dtype or t.device != x.device):
        t = Tensor._make(t.data, False, None).to(x.device).astype(x.dtype)
    return x, t


def mse_loss(input, target, reduction: str = "mean") -> Tensor:
    x, t = _pair("mse_loss", input, target)
    return _reduce("mse_loss", MSELoss.apply(x, t), x.size, reduction)


def binary_cross_entropy_with_logits(input, target, reduction: str = "mean") -> Tensor:
    x, t = _pair("binary_cross_entropy_with_logits", input, target)
    return _reduce("binary_cross_entropy_with_logits", BCEWithLogits.apply(x, t), x.size, reduction)


# ---- convolution, pooling, batch norm (the conv, pool and norm families) ---------------------------------

def _pair2(op: str, name: str, v, low: int = 0):
    """An int or an (h, w) pair of ints -> (h, w); TypeError/ValueError naming the argument."""
    vs = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(vs) != 2 or any(isinstance(e, bool) or not isinstance(e, (int, np.integer)) for e in vs):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {v!r}")
    if any(e < low for e in vs):
        raise ValueError(f"{op}: {name} must be >= {low}, got {v!r}")
    return int(vs[0]), int(vs[1])


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """2-D convolution (cross-correlation, as PyTorch): input (N, C, H, W), weight
    (K, C/groups, R, S), bias (K,) -> (N, K, OH, OW). padding: an int, an (h, w) pair, 'valid'
    (no padding) or 'same' (output size = input size; stride 1 only; an odd total padding puts
    the extra row/column at the bottom/right, as PyTorch)."""
    x, w = _t(input), _t(weight, "weight")
    args = (x, w) + (() if bias is None else (_t(bias, "bias"),))
    if isinstance(padding, str):
        if padding == "valid":
            padding = 0
        elif padding == "same":
            return _conv2d_same(args, stride, dilation, groups)
        else:
            raise ValueError(f"conv2d: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    return _Conv2d.apply(*args, stride=stride, padding=padding, dilation=dilation, groups=groups)


def _conv2d_same(args, stride, dilation, groups) -> Tensor:
    if _pair2("conv2d", "stride", stride, 1) != (1, 1):
        raise ValueError(f"conv2d: padding='same' needs stride 1, got stride={stride!r}")
    w = args[1]
    if w.ndim != 4:
        raise ValueError(f"conv2d: weight must be 4-D (K, C/groups, R, S), got shape {w.shape}")
    dil = _pair2("conv2d", "dilation", dilation, 1)
    totals = [d * (k - 1) for d, k in zip(dil, w.shape[2:])]
    # An odd total needs one more cell after than before: pad (total + 1) / 2 on both sides and
    # drop the first output row/column, which is the only one that sees the extra leading cell.
    pad = tuple((t + 1) // 2 for t in totals)
    y = _Conv2d.apply(*args, stride=1, padding=pad, dilation=dil, groups=groups)
    if totals[0] % 2 or totals[1] % 2:
        y = y[:, :, totals[0] % 2:, totals[1] % 2:]
    return y


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1) -> Tensor:
    """Transposed 2-D convolution (the gradient of conv2d with respect to its input): input
    (N, C_in, H, W), weight (C_in, C_out/groups, R, S), bias (C_out,) -> (N, C_out, OH, OW) with
    OH = (H - 1) * stride - 2 * padding + dilation * (R - 1) + output_padding + 1."""
    args = (_t(input), _t(weight, "weight")) + (() if bias is None else (_t(bias, "bias"),))
    return _ConvTranspose2d.apply(*args, stride=stride, padding=padding,
                                  output_padding=output_padding, groups=groups, dilation=dilation)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max over kernel_size windows (stride defaults to kernel_size; padded cells are -inf; window
    cells `dilation` apart; ceil_mode rounds the output size up, as PyTorch). With
    return_indices, also the int64 indices (y's shape) of each max, flat in its H x W plane."""
    x = _t(input)
    opts = dict(kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation,
                ceil_mode=ceil_mode)
    if not return_indices:
        return _MaxPool2d.apply(x, **opts)
    return _MaxPool2d.apply_with_indices(x, **opts)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None) -> Tensor:
    """Mean over kernel_size windows (stride defaults to kernel_size), PyTorch's divisor: padded
    cells count with count_include_pad=True, not with False; divisor_override replaces it."""
    return _AvgPool2d.apply(_t(input), kernel_size=kernel_size, stride=stride, padding=padding,
                            ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                            divisor_override=divisor_override)


def adaptive_avg_pool2d(input, output_size) -> Tensor:
    """Mean over PyTorch's adaptive windows giving an (OH, OW) output; output_size an int or a
    pair whose None entries keep the input's size."""
    x = _t(input)
    sizes = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size,) * 2
    if len(sizes) != 2:
        raise TypeError(f"adaptive_avg_pool2d: output_size must be an int or a pair, got {output_size!r}")
    if x.ndim >= 2:  # None keeps that input size
        sizes = tuple(x.shape[x.ndim - 2 + i] if s is None else s for i, s in enumerate(sizes))
    return _AdaptiveAvgPool2d.apply(x, output_size=_pair2("adaptive_avg_pool2d", "output_size", sizes, 1))


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5) -> Tensor:
    """Batch normalisation of input (N, C) or (N, C, *) over every axis but 1.

    training: normalise with the batch's mean and biased variance and, when running_mean /
    running_var are given (arrays of x's dtype, updated in place), blend the batch statistics
    into them with `momentum` (the variance unbiased). Otherwise normalise with the running
    statistics. weight / bias (C,) are optional (then 1 and 0)."""
    x = _t(input)
    if weight is None and bias is not None:  # keep the parents' order (x, weight, bias)
        weight = Tensor._make(_xp(x.data).ones(x.shape[1:2], x.dtype), False, None)
    args = (x,) + tuple(_t(a, n) for a, n in ((weight, "weight"), (bias, "bias")) if a is not None)
    stats = [None if a is None else (a.data if isinstance(a, Tensor) else a)
             for a in (running_mean, running_var)]
    return _BatchNorm.apply(*args, running_mean=stats[0], running_var=stats[1],
                            training=bool(training), momentum=momentum, eps=eps)


# ---- layer_norm and gelu (the norm and activation families) -----------------------------------

def gelu(input, approximate: str = "none") -> Tensor:
    """x * Phi(x) (approximate='tanh': PyTorch's tanh form)."""
    if not isinstance(approximate, str) or approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _GELU.apply(_t(input), approximate=approximate)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """Layer normalisation over the trailing normalized_shape axes (an int or a tuple);
    weight / bias of normalized_shape, optional (then 1 and 0)."""
    x = _t(input)
    ns = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
    if weight is None and bias is not None:  # keep the parents' order (x, weight, bias)
        weight = Tensor._make(_xp(x.data).ones(ns, x.dtype), False, None)
    args = (x,) + tuple(_t(a, n) for a, n in ((weight, "weight"), (bias, "bias")) if a is not None)
    return _LayerNorm.apply(*args, normalized_shape=ns, eps=eps)


def pad(input, pad, mode: str = "constant", value=None) -> Tensor:
    """PyTorch's F.pad for images: input (N, C, H, W) or (C, H, W), pad (left, right) or
    (left, right, top, bottom), each >= 0; mode 'constant' (zeros: value None or 0 only),
    'reflect', 'replicate' or 'circular' (fastdl.ops.pad has the rules)."""
    if value not in (None, 0):
        raise ValueError(f"pad: value={value!r} is not supported (only 0)")
    seq = tuple(pad) if isinstance(pad, (tuple, list)) else None
    if seq is None or len(seq) not in (2, 4):
        raise ValueError(f"pad: pad must be (left, right) or (left, right, top, bottom), got {pad!r}")
    return _Pad2d.apply(_t(input), padding=seq + (0, 0) if len(seq) == 2 else seq, mode=mode)


# ---- embedding and the recurrent cells (the embedding and rnn families, issue 10) ---------------

def _only(op: str, **given_and_supported):
    """ValueError for a PyTorch option this build does not implement (given != supported)."""
    for name, (given, supported) in given_and_supported.items():
        if given != supported:
            raise ValueError(f"{op}: {name}={given!r} is not supported (only {supported!r})")


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0,
              scale_grad_by_freq=False, sparse=False) -> Tensor:
    """weight[input]: input any integer array/Tensor (any shape), weight (V, D) -> input.shape +
    (D,). padding_idx (negative counts from the end): that row gets no gradient. max_norm,
    scale_grad_by_freq and sparse are not supported (ValueError when set)."""
    _only("embedding", max_norm=(max_norm, None),
          scale_grad_by_freq=(bool(scale_grad_by_freq), False), sparse=(bool(sparse), False))
    w = _t(weight, "weight")
    if w.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got "
                         f"shape {w.shape}")
    idx = input.data if isinstance(input, Tensor) else input
    if not hasattr(idx, "dtype"):
        idx = np.asarray(idx)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: input must hold integer indices, got dtype {idx.dtype}")
    return _Embedding.apply(w, indices=idx, padding_idx=_padding_idx("embedding", padding_idx,
                                                                     w.shape[0]))


def _padding_idx(op: str, padding_idx, num_embeddings: int):
    """PyTorch's rule: None, or an int in [-V, V) (negative counts from the end) -> None or >= 0."""
    if padding_idx is None:
        return None
    if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)):
        raise TypeError(f"{op}: padding_idx must be an int or None, got "
                        f"{type(padding_idx).__name__}")
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise ValueError(f"{op}: padding_idx must be within num_embeddings ({num_embeddings}), "
                         f"got {padding_idx}")
    return int(padding_idx) % num_embeddings


def _rnn_args(x, states, w_ih, w_hh, b_ih, b_hh, op):
    if (b_ih is None) != (b_hh is None):
        raise ValueError(f"{op}: give both b_ih and b_hh or neither")
    args = [_t(x)] + [_t(s, n) for n, s in states] + [_t(w_ih, "w_ih"), _t(w_hh, "w_hh")]
    if b_ih is not None:
        args += [_t(b_ih, "b_ih"), _t(b_hh, "b_hh")]
    return args


def rnn_cell(input, h, w_ih, w_hh, b_ih=None, b_hh=None) -> Tensor:
    """One tanh RNN step: tanh(input w_ih^T + b_ih + h w_hh^T + b_hh); input (N, I), h (N, H),
    w_ih (H, I), w_hh (H, H), biases (H,) both or neither."""
    return _RNNCell.apply(*_rnn_args(input, [("h", h)], w_ih, w_hh, b_ih, b_hh, "rnn_cell"))


def lstm_cell(input, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
    """One LSTM step -> (h_new, c_new), each (N, H): input (N, I), h and c (N, H), w_ih (4H, I),
    w_hh (4H, H), biases (4H,) both or neither; gates ordered i, f, g, o."""
    packed = _LSTMCell.apply(*_rnn_args(input, [("h", h), ("c", c)], w_ih, w_hh, b_ih, b_hh,
                                        "lstm_cell"))
    return packed[0], packed[1]


def lstm(input, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None):
    """One LSTM layer over a whole sequence in one kernel call -> (y, h_n, c_n): input (T, N, I),
    h0 and c0 (N, H), y (T, N, H), h_n = y[T-1] and c_n (N, H)."""
    y, h_n, c_n = _lstm_layer(input, h0, c0, w_ih, w_hh, b_ih, b_hh)
    return y, h_n[0], c_n[0]


def _lstm_layer(input, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None):
    """lstm with h_n and c_n as (1, N, H) views of the one packed result (nn.LSTM concatenates
    its layers' states along that axis)."""
    args = _rnn_args(input, [("h0", h0), ("c0", c0)], w_ih, w_hh, b_ih, b_hh, "lstm")
    packed = _LSTM.apply(*args)
    t = args[0].shape[0] if args[0].ndim else 0  # (T = 0 and T = 1 both pack 2 rows)
    if t == 0:  # packed is [h0, c0]
        return packed[:0], packed[0:1], packed[1:2]
    return packed[:t], packed[t - 1:t], packed[t:]
