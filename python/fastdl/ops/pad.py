"""2-D padding of NCHW images over their last two axes (PyTorch's F.pad for images), forward
and backward: the explicit pad that Conv2d's padding_mode runs before a conv with padding 0.

    pad2d(x, padding, mode="constant") -> y (N, C, H + top + bottom, W + left + right)
    pad2d_backward(dy, input_shape, padding, mode="constant") -> dx (input_shape)

x is (N, C, H, W) or (C, H, W); padding is an int or PyTorch's (left, right, top, bottom)
(the last axis first), each >= 0. Modes, with numpy.pad's semantics (its name in brackets):
    constant   zeros                                                   ('constant')
    reflect    mirrored about the edge cell, the edge not repeated:
               row -i is row i; padding < the axis size (PyTorch's rule) ('reflect')
    replicate  the edge cell repeated                                  ('edge')
    circular   the opposite side's cells: row -i is row H - i; padding <= the axis size
               (PyTorch: it must not wrap more than once)              ('wrap')
The backward is the adjoint of that index map: dx = dy's interior, plus each padded cell's
gradient added into the cell it copied (mirrored rows for reflect, the edge row for replicate,
the far side for circular), one axis at a time.

Memory-bound array indexing with no arithmetic to speak of, so it runs as NumPy / CuPy slicing
(numpy.pad / cupy.pad forward, slice adds backward) on either device; no extension kernel.
"""

from __future__ import annotations

import numbers

from ._util import prepare, require, shape_str

__all__ = ["pad2d", "pad2d_backward"]

_NUMPY_MODE = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _padding(op: str, padding) -> tuple:
    """(left, right, top, bottom) from an int or a 4-sequence of ints >= 0."""
    vals = tuple(padding) if isinstance(padding, (tuple, list)) else (padding,) * 4
    if len(vals) != 4:
        raise ValueError(f"{op}: padding must be an int or (left, right, top, bottom), got {padding!r}")
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{op}: padding must hold ints, got {padding!r}")
    if min(vals) < 0:
        raise ValueError(f"{op}: padding must be >= 0, got {tuple(int(v) for v in vals)}")
    return tuple(int(v) for v in vals)


def _check(op: str, shape, pad, mode: str) -> None:
    """PyTorch's limits on the padding for an input of `shape` (4-D)."""
    if mode not in _NUMPY_MODE:
        raise ValueError(f"{op}: mode must be one of {sorted(_NUMPY_MODE)}, got {mode!r}")
    h, w = shape[2:]
    if h < 1 or w < 1:
        raise ValueError(f"{op}: the input must have H, W >= 1, got shape {shape_str(shape)}")
    for size, (lo, hi), axis in ((w, pad[:2], "W"), (h, pad[2:], "H")):
        if mode == "reflect" and max(lo, hi) >= size:
            raise ValueError(f"{op}: reflect padding must be smaller than the input size along "
                             f"{axis} ({size}), got {(lo, hi)}")
        if mode == "circular" and max(lo, hi) > size:
            raise ValueError(f"{op}: circular padding must be at most the input size along "
                             f"{axis} ({size}) (it wraps around once), got {(lo, hi)}")


def pad2d(x, padding, mode="constant"):
    """x padded by (left, right, top, bottom) cells of `mode` (see the module docstring)."""
    op = "pad2d"
    require(op, x=x)
    be, dtype, x = prepare(op, x=x)
    if x.ndim not in (3, 4):
        raise ValueError(f"{op}: x must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape "
                         f"{shape_str(x.shape)}")
    pad = _padding(op, padding)
    x4 = x[None] if x.ndim == 3 else x
    _check(op, x4.shape, pad, mode)
    left, right, top, bottom = pad
    widths = ((0, 0),) * (x.ndim - 2) + ((top, bottom), (left, right))
    return be.xp.ascontiguousarray(be.xp.pad(x, widths, mode=_NUMPY_MODE[mode]))


def _fold(g, axis: int, lo: int, hi: int, mode: str, xp):
    """The adjoint of padding one axis by (lo, hi) in `mode`: g's interior plus each padded
    slice's gradient added where its values came from."""
    n = g.shape[axis] - lo - hi

    def sl(a, b):
        idx = [slice(None)] * g.ndim
        idx[axis] = slice(a, b)
        return tuple(idx)

    def rev(a):
        return xp.flip(a, axis=axis)

    dx = g[sl(lo, lo + n)].copy()
    head, tail = g[sl(0, lo)], g[sl(lo + n, lo + n + hi)]
    if mode == "reflect":  # padded row -i copied row i, row n-1+i copied row n-1-i
        dx[sl(1, lo + 1)] += rev(head)
        dx[sl(n - 1 - hi, n - 1)] += rev(tail)
    elif mode == "replicate":
        dx[sl(0, 1)] += head.sum(axis=axis, keepdims=True)
        dx[sl(n - 1, n)] += tail.sum(axis=axis, keepdims=True)
    elif mode == "circular":  # padded row -i copied row n-i, row n-1+i copied row i-1
        dx[sl(n - lo, n)] += head
        dx[sl(0, hi)] += tail
    return dx


def pad2d_backward(dy, input_shape, padding, mode="constant"):
    """dx of input_shape: dy folded back through pad2d's index map (see the module docstring)."""
    op = "pad2d_backward"
    require(op, dy=dy)
    be, dtype, dy = prepare(op, dy=dy)
    if not isinstance(input_shape, (tuple, list)) or any(
            isinstance(d, bool) or not isinstance(d, numbers.Integral) for d in input_shape):
        raise TypeError(f"{op}: input_shape must be a tuple of ints, got {input_shape!r}")
    shape = tuple(int(d) for d in input_shape)
    if len(shape) not in (3, 4):
        raise ValueError(f"{op}: input_shape must be (N, C, H, W) or (C, H, W), got {shape}")
    pad = _padding(op, padding)
    _check(op, shape if len(shape) == 4 else (1, *shape), pad, mode)
    left, right, top, bottom = pad
    want = (*shape[:-2], shape[-2] + top + bottom, shape[-1] + left + right)
    if tuple(dy.shape) != want:
        raise ValueError(f"{op}: dy must have shape {shape_str(want)} for input_shape {shape} and "
                         f"padding {pad}, got {shape_str(dy.shape)}")
    dx = _fold(dy, dy.ndim - 1, left, right, mode, be.xp)
    dx = _fold(dx, dx.ndim - 2, top, bottom, mode, be.xp)
    return be.xp.ascontiguousarray(dx)
