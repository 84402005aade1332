"""Argument handling shared by every functional op: dtype policy, conversion, shape messages.

Dtype rule (DESIGN.md sections 2 and 4; one rule for every family, applied by prepare()):
  1. An op computes in, and returns, one float dtype: float64 if any operand that decides the
     dtype is float64, else float32. Integer, bool and float16 operands count as float32: they
     are converted (copied), never rejected, and never widen the op to float64 on their own.
     So int64 x alone -> float32; int64 x with a float64 w -> float64; float32 x with a
     float64 w -> float64 (matmul, linear, conv2d: every array operand decides).
  2. Where the contract fixes the dtype by one operand, only that operand decides and the
     others follow it (dtype_from=): batch_norm's dtype is x's (its running statistics are
     updated in place in x's dtype, DESIGN section 4), so a float64 weight or bias with a
     float32 x is converted to float32; batch_norm_backward's is that of dy and x.
  3. Any other dtype (complex, object, strings) -> TypeError naming the argument; a required
     array given as None -> TypeError naming it (require()); arrays updated in place are never
     converted: they must already have the op's dtype (TypeError otherwise).
  4. GPU kernels take float32 only (TypeError for anything that rule 1 makes float64).
Inputs may be any strided view: kernels read through strides, so a transpose is never copied.
Only a stride that is not a whole number of elements forces a copy.
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


def result_dtype(op: str, dtype_from=None, **arrays) -> np.dtype:
    """The op's dtype under the module's rule: float64 if any operand named in dtype_from (all
    when None) is float64, else float32; TypeError for a non-real dtype of any operand."""
    wide = False
    for name, a in arrays.items():
        if a is None:
            continue
        kind = a.dtype.kind
        if kind not in "biuf":
            raise TypeError(f"{op}: {name} must have a real numeric dtype, got {a.dtype}")
        if dtype_from is None or name in dtype_from:
            wide |= a.dtype == np.float64
    return np.dtype(np.float64 if wide else np.float32)


def prepare(op: str, *, dtype_from=None, **arrays):
    """Convert the named inputs to arrays of the op's float dtype on one device.

    dtype_from: the names of the operands that decide the dtype (rule 2 above); None: all.
    Returns (backend, dtype, arrays...) in the order given; None stays None.
    """
    fast = _prepare_fast(arrays.values())
    if fast is not None:
        return fast
    be: Backend = backend_for(op, *arrays.values())
    xs = {k: (None if v is None else _as_array(v, be.xp, op, k)) for k, v in arrays.items()}
    dtype = result_dtype(op, dtype_from, **xs)
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
