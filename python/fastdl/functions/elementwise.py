"""Autograd Functions for element-wise arithmetic: each output element depends only on the
matching (broadcast) input elements.

    Add(a, b)             a + b, NumPy broadcasting; backward sums g back to each input's shape
    Mul(a, b)             a * b, likewise
    Pow(x, exponent=e)    x ** e for a Python-number e (a Tensor exponent is a composite)
    Exp(x), Log(x)        backward from the output (exp) and from the input (log)
    Cast(x, dtype=d)      x.astype(d); the gradient is cast back to x's dtype

These run on the tensor's array module (NumPy or CuPy): its broadcasting loops already run at
memory bandwidth (benchmarks/RESULTS.md), so no fastdl.ops kernel is called. Sub, div, neg and
rpow are composites of these, written on Tensor, with no backward of their own.
"""

from __future__ import annotations

from ..tensor import Function, _xp

__all__ = ["Add", "Mul", "Pow", "Exp", "Log", "Cast"]


def _unbroadcast(g, shape):
    """Sum g over the axes NumPy broadcasting added or stretched, giving an array of `shape`."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(shape) if s == 1 and g.shape[lead + i] != 1)
    return g.sum(axis=axes, keepdims=True).reshape(shape)


class Add(Function):
    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, g):
        sa, sb = self.shapes
        return (_unbroadcast(g, sa) if self.needs_input_grad[0] else None,
                _unbroadcast(g, sb) if self.needs_input_grad[1] else None)


class Mul(Function):
    def forward(self, a, b):
        self.a = a if self.needs_input_grad[1] else None
        self.b = b if self.needs_input_grad[0] else None
        self.shapes = a.shape, b.shape
        return a * b

    def backward(self, g):
        sa, sb = self.shapes
        return (_unbroadcast(g * self.b, sa) if self.needs_input_grad[0] else None,
                _unbroadcast(g * self.a, sb) if self.needs_input_grad[1] else None)


class Pow(Function):
    """x ** exponent for a Python-number exponent."""

    def forward(self, x, exponent):
        self.x, self.exponent = x, exponent
        return x ** exponent

    def backward(self, g):
        e = self.exponent
        return g * (e * self.x ** (e - 1))


class Exp(Function):
    def forward(self, x):
        self.y = _xp(x).exp(x)
        return self.y

    def backward(self, g):
        return g * self.y


class Log(Function):
    def forward(self, x):
        self.x = x
        return _xp(x).log(x)

    def backward(self, g):
        return g / self.x


class Cast(Function):
    def forward(self, x, dtype):
        self.dtype = x.dtype
        return x.astype(dtype)

    def backward(self, g):
        return g.astype(self.dtype)
