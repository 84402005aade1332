"""Autograd Functions that reduce, rearrange or move elements without other arithmetic.

    Sum(x, axis=None, keepdims=False)   backward broadcasts g back to x's shape
    Reshape(x, shape=s)                 backward reshapes g back
    Transpose(x, axes=perm)             backward applies the inverse permutation
    GetItem(x, idx=i)                   x[i]; backward scatters g into zeros (adding, for
                                        repeated advanced indices)
    ToDevice(x, device='cpu'|'cuda')    a copy on the other device; backward copies g back
    Concat(*xs, axis=0)                 concatenate; backward slices g back into the pieces

They run on the tensor's array module (NumPy or CuPy). Mean, flatten, permute and .T are
composites of these, written on Tensor.
"""

from __future__ import annotations

import numpy as np

from .. import _backend
from ..tensor import Function, _norm_axes, _to_device, _xp

__all__ = ["Sum", "Reshape", "Transpose", "GetItem", "ToDevice", "Concat"]


class Sum(Function):
    def forward(self, x, axis=None, keepdims=False):
        self.shape, self.axes, self.keepdims = x.shape, _norm_axes(axis, x.ndim), keepdims
        return x.sum(axis=self.axes, keepdims=keepdims)

    def backward(self, g):
        xp = _xp(g)
        if not self.keepdims:
            g = g.reshape([1 if i in self.axes else s for i, s in enumerate(self.shape)])
        return xp.broadcast_to(g, self.shape)


class Reshape(Function):
    def forward(self, x, shape):
        self.shape = x.shape
        return x.reshape(shape)

    def backward(self, g):
        return g.reshape(self.shape)


class Transpose(Function):
    def forward(self, x, axes):
        self.axes = axes
        return x.transpose(axes)

    def backward(self, g):
        return g.transpose(np.argsort(self.axes))


def _is_basic_index(idx) -> bool:
    items = idx if isinstance(idx, tuple) else (idx,)
    return all(i is None or i is Ellipsis or isinstance(i, (int, np.integer, slice)) for i in items)


class GetItem(Function):
    """x[idx]; the backward scatters (adds, for repeated advanced indices) into zeros."""

    def forward(self, x, idx):
        self.idx, self.shape, self.dtype = idx, x.shape, x.dtype
        return x[idx]

    def backward(self, g):
        xp = _xp(g)
        dx = xp.zeros(self.shape, self.dtype)
        if _is_basic_index(self.idx):
            dx[self.idx] = g
        elif xp is np:
            np.add.at(dx, self.idx, g)
        else:
            import cupyx

            cupyx.scatter_add(dx, self.idx, g)
        return dx


class ToDevice(Function):
    def forward(self, x, device):
        self.device = "cuda" if _backend.is_cuda_array(x) else "cpu"
        return _to_device(x, device)

    def backward(self, g):
        return _to_device(g, self.device)


# ---- Concat (issue 10: nn.LSTM stacks its layers' states and joins the two directions) ----------

class Concat(Function):
    """Concatenate the inputs along axis; the backward hands each its slice of g (views)."""

    def forward(self, *xs, axis=0):
        self.axis = axis % xs[0].ndim
        self.sizes = [x.shape[self.axis] for x in xs]
        return _xp(xs[0]).concatenate(xs, axis=self.axis)

    def backward(self, g):
        out, start = [], 0
        for n in self.sizes:
            idx = (slice(None),) * self.axis + (slice(start, start + n),)
            out.append(g[idx])
            start += n
        return tuple(out)
