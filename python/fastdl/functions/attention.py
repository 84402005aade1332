"""Autograd Functions of the attention family (fastdl.ops.attention kernels, both devices).

    q (B, H, Sq, D), k (B, H, Sk, D), v (B, H, Sk, Dv) -> out (B, H, Sq, Dv)
    out = softmax(scale * q k^T, causal mask optional) v; scale None means 1/sqrt(D)

    Attention(q, k, v, causal=, scale=)              the kernel as it is, (B, H, S, D) in and out
    HeadsAttention(q, k, v, num_heads=, batch_first=, causal=, scale=)
    HeadsAttention(qkv, num_heads=, ...)             the same on token-layout tensors, as
                                                     MultiheadAttention produces them: q (L, N, E),
                                                     k (S, N, E), v (S, N, Ev), or (N, L, E) ...
                                                     with batch_first; one packed qkv (L, N, 3E)
                                                     for self-attention -> out (L, N, Ev)

Both keep the log-sum-exp the forward kernel returns (lse, (B, H, Sq)) and its output for the
backward, which recomputes the probabilities tile by tile from them (ops.attention_backward):
nothing S x S is ever stored. The out Tensor is the only output; lse never leaves the Function.

HeadsAttention exists so that a multi-head layer costs one graph node instead of seven: it splits
the heads (E = H * Dh) with one copy per input, the three parts of a packed qkv in one copy, and
merges them back with one copy; its backward lays dq, dk, dv out straight into the packed (or
token) layout of its inputs, so the in-projection's Linear receives its gradient whole (a
GetItem per part would instead scatter three full-size zero arrays and sum them).
"""

from __future__ import annotations

from .. import ops
from ..tensor import Function, _xp

__all__ = ["Attention", "HeadsAttention"]


class Attention(Function):
    """out = softmax(scale q k^T) v over (B, H, S, D) arrays; only out is a Tensor."""

    def forward(self, q, k, v, causal=False, scale=None):
        xp = _xp(q)
        # ops.attention copies non-contiguous heads; copy them here once so the backward reuses
        # the copies instead of making them again.
        q, k, v = xp.ascontiguousarray(q), xp.ascontiguousarray(k), xp.ascontiguousarray(v)
        out, self.lse = ops.attention(q, k, v, causal=causal, scale=scale)
        self.q, self.k, self.v, self.out = q, k, v, out
        self.causal, self.scale = causal, scale
        return out

    def backward(self, g):
        return ops.attention_backward(g, self.q, self.k, self.v, self.out, self.lse,
                                      causal=self.causal, scale=self.scale)


# ---- head split and merge on arrays (token layout <-> (N, H, S, Dh)) -------------------------------

def _split_heads(x, num_heads: int, batch_first: bool):
    """(S, N, E) or (N, S, E) with batch_first -> a C-contiguous (N, H, S, E / H) copy."""
    a, b, e = x.shape
    x = x.reshape(a, b, num_heads, e // num_heads)
    return _xp(x).ascontiguousarray(x.transpose(0, 2, 1, 3) if batch_first else x.transpose(1, 2, 0, 3))


def _merge_heads(o, batch_first: bool):
    """(N, H, S, Dh) -> a C-contiguous (S, N, H * Dh) or, batch_first, (N, S, H * Dh)."""
    n, h, s, d = o.shape
    t = o.transpose(0, 2, 1, 3) if batch_first else o.transpose(2, 0, 1, 3)
    return _xp(o).ascontiguousarray(t).reshape((n, s, h * d) if batch_first else (s, n, h * d))


class HeadsAttention(Function):
    """Multi-head attention's core on token-layout arrays: split heads, attend, merge heads.

    Parents: (q, k, v) in token layout, or one packed qkv whose last axis is [q | k | v]
    (3 * E; self-attention, so all three share S and E). Options: num_heads, batch_first,
    causal, scale (None: 1/sqrt(head dim)).
    """

    def forward(self, *arrays, num_heads, batch_first=False, causal=False, scale=None):
        self.num_heads, self.batch_first, self.causal, self.scale = num_heads, batch_first, causal, scale
        if len(arrays) == 1:  # packed (S, N, 3E) -> (3, N, H, S, Dh) in one copy
            qkv = arrays[0]
            a, b, e3 = qkv.shape
            h, dh = num_heads, e3 // (3 * num_heads)
            x = qkv.reshape(a, b, 3, h, dh)
            perm = (2, 0, 3, 1, 4) if batch_first else (2, 1, 3, 0, 4)
            heads = _xp(qkv).ascontiguousarray(x.transpose(perm))
            q, k, v = heads[0], heads[1], heads[2]
            self.packed_shape = qkv.shape
        else:
            q, k, v = (_split_heads(t, num_heads, batch_first) for t in arrays)
            self.packed_shape = None
        out, self.lse = ops.attention(q, k, v, causal=causal, scale=scale)
        self.q, self.k, self.v, self.out = q, k, v, out
        return _merge_heads(out, batch_first)

    def backward(self, g):
        dout = _split_heads(g, self.num_heads, self.batch_first)
        dq, dk, dv = ops.attention_backward(dout, self.q, self.k, self.v, self.out, self.lse,
                                            causal=self.causal, scale=self.scale)
        xp = _xp(g)
        if self.packed_shape is not None:  # write dq, dk, dv straight into (S, N, [q | k | v])
            a, b, e3 = self.packed_shape
            dqkv = xp.empty(self.packed_shape, g.dtype)
            perm = (2, 0, 3, 1, 4) if self.batch_first else (2, 1, 3, 0, 4)
            view = dqkv.reshape(a, b, 3, self.num_heads, e3 // (3 * self.num_heads)).transpose(perm)
            view[0], view[1], view[2] = dq, dk, dv
            return dqkv
        return tuple(_merge_heads(d, self.batch_first) for d in (dq, dk, dv))
