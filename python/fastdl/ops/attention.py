"""Scaled dot-product attention, forward and backward, FlashAttention-2 style.

    attention(q, k, v, causal=False, scale=None) -> (out, lse)
        q (B, H, Sq, D), k (B, H, Sk, D), v (B, H, Sk, Dv); out (B, H, Sq, Dv), lse (B, H, Sq).
        s = scale * q k^T (scale None: 1 / sqrt(D)); causal masks key j for query i when j > i
        (top-left aligned, as PyTorch's is_causal, also when Sq != Sk);
        out = softmax(s) v, lse = log(sum(exp(s))) per query row (natural log, scale applied).
    attention_backward(dout, q, k, v, out, lse, causal=False, scale=None) -> (dq, dk, dv)
        the gradients from the forward's out and lse (probabilities recomputed, never stored).

Never materialises an Sq x Sk matrix: the kernels (csrc/cpu/attention.cpp, csrc/cuda/
attention.cu) stream K/V tiles with an online softmax. Inputs may have any strides (a (B, S, H,
D) array transposed to (B, H, S, D) is copied once to C order); the op computes in float64 if
any array is float64, else float32 (ops/_util.py). Sk = 0 (attention over no keys) and D = 0
are undefined -> ValueError; B, H or Sq = 0 give empty outputs.
"""

from __future__ import annotations

import math
import numbers

from ._util import check_shape, prepare, require, shape_str
from .activation import _contig, _kernel

__all__ = ["attention", "attention_backward"]


def _flag(op: str, name: str, v) -> bool:
    if not isinstance(v, (bool, numbers.Integral)) and type(v).__name__ != "bool_":
        raise TypeError(f"{op}: {name} must be a bool, got {type(v).__name__}")
    return bool(v)


def _scale(op: str, scale, d: int) -> float:
    if scale is None:
        return 1.0 / math.sqrt(d)
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise TypeError(f"{op}: scale must be a real number or None, got {type(scale).__name__}")
    scale = float(scale)
    if not math.isfinite(scale):
        raise ValueError(f"{op}: scale must be finite, got {scale}")
    return scale


def _dims(op: str, q, k, v):
    """(B, H, Sq, Sk, D, Dv) after checking the shapes of q, k and v against each other."""
    for name, a in (("q", q), ("k", k), ("v", v)):
        if a.ndim != 4:
            raise ValueError(f"{op}: {name} must be 4-D (B, H, S, D), got shape "
                             f"{shape_str(a.shape)}")
    b, h, sq, d = q.shape
    sk, dv = k.shape[2], v.shape[3]
    check_shape(op, "k", k, (b, h, sk, d))
    check_shape(op, "v", v, (b, h, sk, dv))
    if sk == 0:
        raise ValueError(f"{op}: attention over zero keys is undefined (k has shape "
                         f"{shape_str(k.shape)}, Sk = 0)")
    if d == 0:
        raise ValueError(f"{op}: q and k must have a head size D >= 1, got q of shape "
                         f"{shape_str(q.shape)}")
    return b, h, sq, sk, d, dv


def attention(q, k, v, causal=False, scale=None):
    """softmax(scale * q k^T [causal mask]) v over (B, H, S, D) heads; returns (out, lse)."""
    op = "attention"
    require(op, q=q, k=k, v=v)
    causal = _flag(op, "causal", causal)
    be, dtype, q, k, v = prepare(op, q=q, k=k, v=v)
    b, h, sq, sk, d, dv = _dims(op, q, k, v)
    scale = _scale(op, scale, d)
    out = be.empty((b, h, sq, dv), dtype)
    lse = be.empty((b, h, sq), dtype)
    if out.size or lse.size:
        _kernel(be, op, "attention_forward")(out, lse, _contig(be, q), _contig(be, k),
                                             _contig(be, v), causal, scale)
    return out, lse


def attention_backward(dout, q, k, v, out, lse, causal=False, scale=None):
    """Gradients (dq, dk, dv) of attention from dout and the forward's q, k, v, out, lse."""
    op = "attention_backward"
    require(op, dout=dout, q=q, k=k, v=v, out=out, lse=lse)
    causal = _flag(op, "causal", causal)
    be, dtype, dout, q, k, v, out, lse = prepare(op, dout=dout, q=q, k=k, v=v, out=out, lse=lse)
    b, h, sq, sk, d, dv = _dims(op, q, k, v)
    scale = _scale(op, scale, d)
    check_shape(op, "dout", dout, (b, h, sq, dv))
    check_shape(op, "out", out, (b, h, sq, dv))
    check_shape(op, "lse", lse, (b, h, sq))
    dq = be.empty((b, h, sq, d), dtype)
    dk = be.empty((b, h, sk, d), dtype)
    dvv = be.empty((b, h, sk, dv), dtype)
    if b * h == 0:
        return dq, dk, dvv
    if sq == 0:  # no queries: no gradient flows to k and v
        dk[...] = 0
        dvv[...] = 0
        return dq, dk, dvv
    _kernel(be, op, "attention_backward")(dq, dk, dvv, _contig(be, dout), _contig(be, q),
                                          _contig(be, k), _contig(be, v), _contig(be, out),
                                          _contig(be, lse), causal, scale)
    return dq, dk, dvv
