"""Reverse-mode autograd: the engine. ``Tensor``, the ``Function`` base class, grad mode.

A Tensor wraps an array (NumPy on the CPU, CuPy on the GPU). An operation on Tensors runs a
``Function``: ``forward`` computes the result from arrays and keeps, on the Function object, only
what ``backward`` will need; ``backward`` turns the gradient of the result into the gradients of
the inputs, in argument order. The result remembers the Function (``_ctx``) when some input
requires a gradient and grad mode is on, which is how the graph is recorded.

``Tensor.backward()`` sorts that graph topologically and walks it in reverse, summing gradients
of tensors used more than once, asserting every gradient's shape, accumulating into ``.grad`` of
the leaves that require grad, and freeing every Function it passes (a second backward through
the same graph raises, as in PyTorch without ``retain_graph``).

The primitives live in fastdl.functions, one module per op family: add, mul, pow (scalar
exponent), exp, log and cast in functions/elementwise.py; sum, reshape, transpose, getitem and
device moves in functions/shape.py; matmul and linear in functions/dense.py; relu, sigmoid and
tanh in functions/activation.py; softmax and log_softmax in functions/softmax.py; the losses in
functions/loss.py; dropout in functions/dropout.py. Composites (sub, div, neg, mean, rpow ...)
are written here on Tensor in terms of those and have no backward of their own. The dense,
activation, softmax, loss and dropout Functions call the fastdl.ops kernels on both devices;
plain arithmetic uses the tensor's array module (numpy or cupy).
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from . import _backend

__all__ = ["Tensor", "Function", "tensor", "no_grad", "enable_grad", "is_grad_enabled"]

# ---- grad mode ------------------------------------------------------------------------------------

_grad_enabled = True


def is_grad_enabled() -> bool:
    return _grad_enabled


class _GradMode(contextlib.ContextDecorator):
    enabled: bool

    def __enter__(self):
        global _grad_enabled
        self._prev = _grad_enabled
        _grad_enabled = self.enabled

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._prev
        return False


class no_grad(_GradMode):
    """Context manager and decorator: operations inside record no graph (results never require
    grad). Use it for evaluation and for updating parameters by hand."""

    enabled = False


class enable_grad(_GradMode):
    """Turn graph recording back on inside a ``no_grad`` block."""

    enabled = True


# ---- arrays -----------------------------------------------------------------------------------------

def _xp(a):
    return _backend.cupy() if _backend.is_cuda_array(a) else np


def _is_array(a) -> bool:
    return isinstance(a, np.ndarray) or _backend.is_cuda_array(a)


def _as_data(data):
    """DESIGN 4: an ndarray keeps its dtype; Python lists and scalars become float32 (int64 for
    integers, bool for bools)."""
    if isinstance(data, Tensor):
        return data.data
    if _is_array(data):
        return data
    if isinstance(data, np.generic):
        return np.asarray(data)
    try:
        a = np.asarray(data)
    except (TypeError, ValueError) as e:
        raise TypeError(f"tensor: cannot make a tensor from {type(data).__name__} ({e})") from None
    if a.dtype.kind == "f":
        return a.astype(np.float32)
    if a.dtype.kind in "iu":
        return a.astype(np.int64)
    if a.dtype.kind == "b":
        return a
    raise TypeError(f"tensor: data must be numbers, got dtype {a.dtype} from {type(data).__name__}")


def _norm_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        a = int(a)
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"axis {a} is out of range for a {ndim}-D tensor")
        out.append(a % ndim if ndim else 0)
    return tuple(out)


def _to_device(a, device):
    if device == "cpu":
        return _backend.cupy().asnumpy(a) if _backend.is_cuda_array(a) else a
    cp = _backend.cupy()
    if cp is None or _backend.cuda_extension() is None:
        why = ("CuPy could not be imported (pip install cupy-cuda13x)" if cp is None
               else _backend.CUDA_BUILD_HINT)
        raise RuntimeError(f"cannot move a tensor to 'cuda': {why}")
    return cp.asarray(a)


# ---- Function ---------------------------------------------------------------------------------------

class Function:
    """One primitive: ``forward(*arrays, **options) -> array`` and ``backward(grad) -> grads``.

    ``backward`` returns one gradient per Tensor argument, in order (None where that argument
    needs none: ``self.needs_input_grad[i]`` says which do). Non-Tensor options (axis, p, target
    indices ...) are keyword arguments of ``forward``.
    """

    def __init__(self, *parents):
        self.parents = parents
        self.needs_input_grad = tuple(p.requires_grad for p in parents)

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *parents, **kwargs):
        ctx = cls(*parents)
        out = ctx.forward(*[p.data for p in parents], **kwargs)
        if type(out) is not np.ndarray and not _backend.is_cuda_array(out):
            out = np.asarray(out)  # NumPy returns scalars from 0-d arithmetic
        requires_grad = _grad_enabled and any(ctx.needs_input_grad)
        return Tensor._make(out, requires_grad, ctx if requires_grad else None)

    freed = False

    def _free(self):
        self.__dict__.clear()
        self.freed = True

    def __repr__(self):
        return f"<{type(self).__name__}>"


# ---- Tensor ----------------------------------------------------------------------------------------------

class Tensor:
    """An array with an optional gradient and the Function that produced it.

    ``Tensor(data, requires_grad=False)``: data is a NumPy or CuPy array (kept as is, dtype
    included), a Tensor (its array is shared), or Python numbers/lists (float32, int64 for
    integers). Only floating-point tensors can require grad.
    """

    __slots__ = ("data", "grad", "requires_grad", "_ctx", "__weakref__")
    __array_ufunc__ = None  # `ndarray + Tensor` defers to Tensor.__radd__ (keeps the graph)

    def __init__(self, data, requires_grad: bool = False):
        self.data = _as_data(data)
        self.grad = None
        self._ctx = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _make(cls, data, requires_grad, ctx):
        t = cls.__new__(cls)
        t.data, t.grad, t.requires_grad, t._ctx = data, None, requires_grad, ctx
        return t

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, got {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        return self

    # -- array facts --
    shape = property(lambda self: tuple(self.data.shape))
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: int(self.data.size))
    device = property(lambda self: "cuda" if _backend.is_cuda_array(self.data) else "cpu")
    is_leaf = property(lambda self: self._ctx is None)
    grad_fn = property(lambda self: self._ctx)

    def __len__(self):
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __repr__(self):
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        extra = "" if self.dtype == np.float32 else f", dtype={self.dtype}"
        if self.device != "cpu":
            extra += f", device='{self.device}'"
        if self._ctx is not None:
            extra += f", grad_fn={self._ctx!r}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def __bool__(self):
        return bool(self.data)  # NumPy's rule: only for one element

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (shared on the CPU, copied from the GPU)."""
        return _to_device(self.data, "cpu")

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item(): the tensor has {self.data.size} elements, not 1")
        return self.data.item()

    def detach(self) -> "Tensor":
        """The same data, cut from the graph (never requires grad)."""
        return Tensor._make(self.data, False, None)

    def cpu(self) -> "Tensor":
        return self if self.device == "cpu" else ToDevice.apply(self, device="cpu")

    def cuda(self) -> "Tensor":
        """A copy on the GPU (CuPy); RuntimeError when CUDA or CuPy is unavailable."""
        return self if self.device == "cuda" else ToDevice.apply(self, device="cuda")

    def to(self, device) -> "Tensor":
        if device not in ("cpu", "cuda"):
            raise ValueError(f"to(): device must be 'cpu' or 'cuda', got {device!r}")
        return self.cpu() if device == "cpu" else self.cuda()

    def astype(self, dtype) -> "Tensor":
        dtype = np.dtype(dtype)
        return self if dtype == self.dtype else Cast.apply(self, dtype=dtype)

    def float(self) -> "Tensor":
        return self.astype(np.float32)

    def double(self) -> "Tensor":
        return self.astype(np.float64)

    # -- autograd --
    def backward(self, grad=None) -> None:
        """Accumulate d(self)/d(leaf) into ``.grad`` of every leaf that requires grad.

        grad: the gradient of some scalar with respect to self (defaults to 1 for a one-element
        tensor). The graph is freed as it is walked.
        """
        if not self.requires_grad:
            raise RuntimeError("backward(): this tensor does not require grad and has no grad_fn "
                               "(did an input have requires_grad=True? was it made under no_grad?)")
        xp = _xp(self.data)
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward(): grad can be implied only for a one-element "
                                   f"tensor, this one has shape {self.shape}")
            grad = xp.ones(self.data.shape, self.data.dtype)
        else:
            grad = xp.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.data.dtype)
            if grad.shape != self.data.shape:
                raise ValueError(f"backward(): grad has shape {tuple(grad.shape)}, "
                                 f"expected {self.shape}")
        if self._ctx is None:  # a leaf: d(self)/d(self)
            _accumulate(self, grad, {id(grad)})
            return
        grads = {self: grad}
        owned = {id(grad)}  # arrays a leaf's .grad must not share
        for node in reversed(_toposort(self)):
            g = grads.pop(node, None)
            ctx = node._ctx
            if g is None:  # every path to it gave None: it contributes nothing
                ctx._free()
                continue
            pgrads = ctx.backward(g)
            if not isinstance(pgrads, tuple):
                pgrads = (pgrads,)
            for p, pg, need in zip(ctx.parents, pgrads, ctx.needs_input_grad):
                if not need or pg is None:
                    continue
                if pg.shape != p.data.shape:
                    raise AssertionError(f"{type(ctx).__name__}.backward gave a gradient of shape "
                                         f"{tuple(pg.shape)} for an input of shape {p.shape}")
                if pg.dtype != p.data.dtype:
                    pg = pg.astype(p.data.dtype)
                if p._ctx is None:
                    _accumulate(p, pg, owned)
                else:
                    grads[p] = grads[p] + pg if p in grads else pg
            ctx._free()  # node keeps its (now empty) grad_fn, so a second backward is caught

    # -- operators --
    def _wrap(self, other) -> "Tensor":
        if isinstance(other, Tensor):
            return other
        if _is_array(other):
            return Tensor._make(other, False, None)
        if isinstance(other, (bool, int, float, np.number)) and self.data.dtype.kind == "f":
            return Tensor._make(_xp(self.data).asarray(other, dtype=self.data.dtype), False, None)
        return Tensor(other)

    def __add__(self, other):
        return Add.apply(self, self._wrap(other))

    def __mul__(self, other):
        return Mul.apply(self, self._wrap(other))

    def __pow__(self, exponent):
        if isinstance(exponent, (int, float, np.number)) and not isinstance(exponent, bool):
            return Pow.apply(self, exponent=exponent)
        return (self.log() * exponent).exp()  # tensor exponent: a composite, for positive bases

    def __rpow__(self, base):
        return (self * math.log(base)).exp()

    def __neg__(self):
        return self * -1

    def __sub__(self, other):
        if isinstance(other, (int, float)) and not isinstance(other, bool):
            return self + (-other)
        return self + (-self._wrap(other))

    def __rsub__(self, other):
        return -self + other

    def __truediv__(self, other):
        if isinstance(other, (int, float)) and not isinstance(other, bool):
            return self * (1.0 / other)
        return self * self._wrap(other) ** -1

    def __rtruediv__(self, other):
        return self ** -1 * other

    def __matmul__(self, other):
        other = self._wrap(other)
        a, b = self, other
        if a.ndim == 1 and b.ndim == 1:
            return (a.reshape(1, -1) @ b.reshape(-1, 1)).reshape(())
        if a.ndim == 1:
            return (a.reshape(1, -1) @ b).reshape(b.shape[:-2] + b.shape[-1:])
        if b.ndim == 1:
            return (a @ b.reshape(-1, 1)).reshape(a.shape[:-1])
        return MatMul.apply(a, b)

    def __rmatmul__(self, other):
        return self._wrap(other) @ self

    __radd__ = __add__
    __rmul__ = __mul__

    def __getitem__(self, idx):
        if isinstance(idx, Tensor):
            idx = idx.data
        elif isinstance(idx, tuple):
            idx = tuple(i.data if isinstance(i, Tensor) else i for i in idx)
        return GetItem.apply(self, idx=idx)

    # -- methods --
    def exp(self):
        return Exp.apply(self)

    def log(self):
        return Log.apply(self)

    def sum(self, axis=None, keepdims: bool = False):
        return Sum.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims: bool = False):
        axes = _norm_axes(axis, self.ndim)
        count = math.prod(self.shape[a] for a in axes)
        if count == 0:
            raise ValueError(f"mean(): no elements to average over (shape {self.shape}, axis {axis})")
        return self.sum(axis=axes, keepdims=keepdims) * (1.0 / count)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return Reshape.apply(self, shape=shape)

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1):
        if self.ndim == 0:
            return self.reshape(1)
        s, e = _norm_axes((start_dim, end_dim), self.ndim)
        if s > e:
            raise ValueError(f"flatten(): start_dim {start_dim} comes after end_dim {end_dim}")
        return self.reshape(self.shape[:s] + (math.prod(self.shape[s:e + 1]),) + self.shape[e + 1:])

    def transpose(self, *axes):
        """transpose() reverses the axes; transpose(dim0, dim1) swaps two (PyTorch);
        transpose(axes) / transpose(*axes) with one entry per axis permutes them (NumPy)."""
        n = self.ndim
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            perm = tuple(axes[0])
        elif not axes:
            perm = tuple(range(n))[::-1]
        elif len(axes) == 2:
            d0, d1 = _norm_axes(axes, n)
            perm = list(range(n))
            perm[d0], perm[d1] = perm[d1], perm[d0]
            perm = tuple(perm)
        else:
            perm = tuple(axes)
        perm = _norm_axes(perm, n)
        if sorted(perm) != list(range(n)):
            raise ValueError(f"transpose(): {axes} is not a permutation of the {n} axes")
        return Transpose.apply(self, axes=perm)

    def permute(self, *dims):
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        return self.transpose(tuple(dims))

    @property
    def T(self):
        return self.transpose()

    def relu(self):
        return ReLU.apply(self)

    def sigmoid(self):
        return Sigmoid.apply(self)

    def tanh(self):
        return Tanh.apply(self)

    def softmax(self, axis: int = -1):
        return Softmax.apply(self, axis=axis)

    def log_softmax(self, axis: int = -1):
        return LogSoftmax.apply(self, axis=axis)

    def argmax(self, axis=None) -> "Tensor":
        """Indices of the maxima (int64, never requires grad)."""
        return Tensor._make(self.data.argmax(axis=axis), False, None)


def _toposort(root):
    """Non-leaf tensors reachable from root, every one after all of its inputs (iterative DFS)."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if node in visited:
            continue
        ctx = node._ctx
        if ctx.freed:
            raise RuntimeError(
                "backward(): trying to backward through the graph a second time: its Functions "
                "were freed by the first backward(). Recompute the forward pass, or call "
                ".detach() on values reused across steps.")
        visited.add(node)
        stack.append((node, True))
        for p in ctx.parents:
            if p._ctx is not None and p.requires_grad and p not in visited:
                stack.append((p, False))
    return order


def _accumulate(leaf, g, owned):
    """leaf.grad += g, with leaf.grad always a C-contiguous array the leaf owns alone (optimizers
    and clip_grad_norm_ update it in place)."""
    if not leaf.requires_grad:
        return
    if leaf.grad is None:
        if id(g) in owned or g.base is not None or not g.flags.c_contiguous:
            g = g.copy()
        owned.add(id(g))
        leaf.grad = g
    else:
        leaf.grad = leaf.grad + g


def tensor(data, requires_grad: bool = False, dtype=None) -> Tensor:
    """A new leaf Tensor. An ndarray keeps its dtype (and is shared, not copied); Python lists
    and scalars become float32, int64 for integers; ``dtype`` casts (a copy)."""
    if isinstance(data, Tensor):
        data = data.data.copy()
    data = _as_data(data)
    if dtype is not None and np.dtype(dtype) != data.dtype:
        data = data.astype(dtype)
    return Tensor(data, requires_grad=requires_grad)


# The Functions that Tensor's operators and methods run. They subclass Function, defined above,
# so they are imported last: fastdl.functions' modules import Function from this half-run
# module, and Tensor's methods find them as globals at call time (no per-call import).
from .functions import (Add, Cast, Exp, GetItem, Log, LogSoftmax, MatMul, Mul, Pow,  # noqa: E402
                        ReLU, Reshape, Sigmoid, Softmax, Sum, Tanh, ToDevice, Transpose)
