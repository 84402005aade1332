"""Argument handling shared by every functional op: dtype policy, conversion, shape messages.

Policy (DESIGN.md section 2): float32 is the fast path; float64 is accepted on the CPU; other
real dtypes (ints, bools, float16) are converted to float32, or to float64 when another operand
is float64. Inputs may be any strided view: kernels read through strides, so a transpose is
never copied. Only a stride that is not a whole number of elements forces a copy.
"""

from __future__ import annotations

import numpy as np

from .._backend import CPU, Backend, backend_for

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def shape_str(shape) -> str:
    shape = tuple(int(s) for s in shape)
    return str(shape)


def _as_array(x, xp, op: str, name: str):
    try:
        return xp.asarray(x)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{op}: {name} must be an array, got {type(x).__name__} ({e})") from None


def require(op: str, **arrays) -> None:
    """TypeError naming the first of these required arrays that is None (prepare lets None
    through for optional operands such as a bias)."""
    for name, a in arrays.items():
        if a is None:
            raise TypeError(f"{op}: {name} must be an array, got None")


def result_dtype(op: str, **arrays) -> np.dtype:
    """float64 if any operand is float64, else float32; TypeError for non-real dtypes."""
    wide = False
    for name, a in arrays.items():
        if a is None:
            continue
        kind = a.dtype.kind
        if kind not in "biuf":
            raise TypeError(f"{op}: {name} must have a real numeric dtype, got {a.dtype}")
        wide |= a.dtype == np.float64
    return np.dtype(np.float64 if wide else np.float32)


def prepare(op: str, **arrays):
    """Convert the named inputs to arrays of one float dtype on one device.

    Returns (backend, dtype, arrays...) in the order given; None stays None.
    """
    fast = _prepare_fast(arrays.values())
    if fast is not None:
        return fast
    be: Backend = backend_for(op, *arrays.values())
    xs = {k: (None if v is None else _as_array(v, be.xp, op, k)) for k, v in arrays.items()}
    dtype = result_dtype(op, **xs)
    if be.device == "cuda" and dtype != np.float32:
        raise TypeError(f"{op}: GPU kernels take float32; got {dtype} (cast with .astype('float32'))")
    out = []
    for a in xs.values():
        if a is not None:
            if a.dtype != dtype:
                a = a.astype(dtype)
            if any(s % a.itemsize for s in a.strides):
                a = be.xp.ascontiguousarray(a)
        out.append(a)
    return (be, dtype, *out)


def _prepare_fast(values):
    """The common case in a few attribute reads: NumPy arrays (or None) of one float dtype whose
    strides the kernels can take as they are (aligned implies whole-element strides)."""
    dtype = None
    for a in values:
        if a is None:
            continue
        if type(a) is not np.ndarray or not a.flags.aligned:
            return None
        if dtype is None:
            dtype = a.dtype
            if dtype not in _FLOATS:
                return None
        elif a.dtype != dtype:
            return None
    if dtype is None:
        return None
    return (CPU, dtype, *values)


def check_ndim(op: str, name: str, a, allowed) -> None:
    if a.ndim not in allowed:
        want = " or ".join(f"{d}-D" for d in allowed)
        raise ValueError(f"{op}: {name} must be {want}, got shape {shape_str(a.shape)}")


def check_shape(op: str, name: str, a, expected) -> None:
    if tuple(a.shape) != tuple(expected):
        raise ValueError(
            f"{op}: {name} must have shape {shape_str(expected)}, got {shape_str(a.shape)}"
        )


def contiguous(be: Backend, a):
    return be.xp.ascontiguousarray(a)
