"""Activations relu, sigmoid, tanh: forward, and backward from the forward OUTPUT y; gelu,
forward, and backward from the forward INPUT x.

    relu_backward(dy, y)    = dy * (y > 0)
    sigmoid_backward(dy, y) = dy * y * (1 - y)
    tanh_backward(dy, y)    = dy * (1 - y**2)
    gelu(x, approximate="none")   x * Phi(x), Phi the standard normal CDF (exact erf);
                                  "tanh": x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x**3))) / 2
    gelu_backward(dy, x, approximate="none") = dy * gelu'(x)
gelu gives the limits at +-inf (inf and -0; gradients dy and 0), where PyTorch's float32
kernel gives NaN, and keeps relative accuracy in the lower tail (Phi from erfc).

Any shape; float32 (fast path) or float64. Kernels: csrc/cpu/activation*.cpp (AVX-512 / AVX2 /
generic, vectorized exp and tanh accurate to a few ulps; OpenMP only for large arrays).
"""

from __future__ import annotations

from ._util import check_shape, contiguous, prepare, require

__all__ = ["relu", "sigmoid", "tanh", "relu_backward", "sigmoid_backward", "tanh_backward",
           "gelu", "gelu_backward"]


def _kernel(be, op: str, name: str):
    """The extension function `name`, or a clear error when this device has no such kernel yet."""
    fn = getattr(be.ext, name, None)
    if fn is None:
        raise RuntimeError(f"{op}: no {be.device.upper()} kernel '{name}' in this build yet")
    return lambda *args, **kw: be.call(name, *args, **kw)


def _contig(be, a):
    """a as a C-contiguous array of the same shape (0-d stays 0-d, unlike ascontiguousarray)."""
    return a if a.flags.c_contiguous else contiguous(be, a).reshape(a.shape)


def _forward(op: str, x):
    be, dtype, x = prepare(op, x=x)
    x = _contig(be, x)
    out = be.empty(x.shape, dtype)
    _kernel(be, op, f"{op}_forward")(out, x)
    return out


def _backward(act: str, dy, y):
    op = f"{act}_backward"
    be, dtype, dy, y = prepare(op, dy=dy, y=y)
    check_shape(op, "dy", dy, y.shape)
    out = be.empty(y.shape, dtype)
    _kernel(be, op, op)(out, _contig(be, dy), _contig(be, y))
    return out


def relu(x):
    """max(0, x) element-wise (NaN propagates)."""
    return _forward("relu", x)


def sigmoid(x):
    """1 / (1 + exp(-x)) element-wise, without overflow for any x."""
    return _forward("sigmoid", x)


def tanh(x):
    """tanh(x) element-wise."""
    return _forward("tanh", x)


def relu_backward(dy, y):
    """dx = dy * (y > 0), from relu's output y."""
    return _backward("relu", dy, y)


def sigmoid_backward(dy, y):
    """dx = dy * y * (1 - y), from sigmoid's output y."""
    return _backward("sigmoid", dy, y)


def tanh_backward(dy, y):
    """dx = dy * (1 - y**2), from tanh's output y."""
    return _backward("tanh", dy, y)


_GELU_APPROX = {"none": 0, "tanh": 1}


def _approximate(op: str, approximate) -> int:
    if not isinstance(approximate, str) or approximate not in _GELU_APPROX:
        raise ValueError(f"{op}: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _GELU_APPROX[approximate]


def gelu(x, approximate="none"):
    """x * Phi(x) element-wise (approximate="tanh": PyTorch's tanh form)."""
    op = "gelu"
    a = _approximate(op, approximate)
    require(op, x=x)
    be, dtype, x = prepare(op, x=x)
    x = _contig(be, x)
    out = be.empty(x.shape, dtype)
    _kernel(be, op, "gelu_forward")(out, x, a)
    return out


def gelu_backward(dy, x, approximate="none"):
    """dx = dy * gelu'(x), from gelu's INPUT x."""
    op = "gelu_backward"
    a = _approximate(op, approximate)
    require(op, dy=dy, x=x)
    be, dtype, dy, x = prepare(op, dy=dy, x=x)
    check_shape(op, "dy", dy, x.shape)
    out = be.empty(x.shape, dtype)
    _kernel(be, op, "gelu_backward")(out, _contig(be, dy), _contig(be, x), a)
    return out
