"""2-D pooling of NCHW images: max, average and adaptive average, forward and backward.

    max_pool2d(x, kernel_size=2, stride=None, padding=0, dilation=1, ceil_mode=False)
            -> (y, argmax)
        y = max over each window (padding is -inf; window cells `dilation` apart); argmax
        (int64, y's shape) = the flat index ih * W + iw into the input's H x W plane of the
        first maximum in row-major window order (a NaN counts as the maximum, as PyTorch)
    max_pool2d_backward(dy, argmax, input_shape) -> dx = 0, then dx[plane][argmax] += dy
    avg_pool2d(x, kernel_size=2, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None) -> y = window sum / divisor
    avg_pool2d_backward(dy, input_shape, kernel_size=2, stride=None, padding=0,
                        ceil_mode=False, count_include_pad=True, divisor_override=None) -> dx
    adaptive_avg_pool2d(x, output_size) -> y: output i averages the inputs
        [floor(i * H / OH), ceil((i + 1) * H / OH)) (likewise along W), as PyTorch
    adaptive_avg_pool2d_backward(dy, input_shape) -> dx

x is (N, C, H, W) or (C, H, W). kernel_size, stride, padding, dilation and output_size take an
int or an (h, w) pair; stride None means the kernel size; an output_size entry None keeps that
input size. PyTorch's rules throughout, with E = dilation * (kernel_size - 1) + 1:
    floor mode  OH = (H + 2 * pad_h - E) // stride_h + 1 (likewise OW)
    ceil_mode   OH = ceil((H + 2 * pad_h - E) / stride_h) + 1, less one if the last window would
                start at or past H + pad_h; windows may then run past the padding (clipped)
    0 <= padding <= kernel_size / 2, OH, OW >= 1; with dilation every window must hold an input
    cell (ValueError otherwise, where PyTorch returns -inf with an index outside the plane).
avg_pool2d's divisor: divisor_override (a positive int) if given; else with
count_include_pad=True the window's cells inside the padded extent H + 2 * pad (kh * kw, or fewer
where ceil_mode runs a window past it), with False its cells inside the image.
Kernels: csrc/cpu/pool*.cpp (OpenMP over planes, SIMD over output columns, the options
included), csrc/cuda/pool.cu.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._util import prepare, require, shape_str
from .activation import _contig, _kernel

__all__ = [
    "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward",
]


def _int(op: str, name: str, v, allow_none=False):
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{op}: {name} must be an int, got {type(v).__name__}")
    return int(v)


def _pair(op: str, name: str, v, allow_none=False) -> tuple:
    """An int or an (h, w) pair of ints as (h, w)."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{op}: {name} must be an int or an (h, w) pair, got {tuple(v)}")
        return (_int(op, name, v[0], allow_none), _int(op, name, v[1], allow_none))
    if v is None and allow_none:
        return (None, None)
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{op}: {name} must be an int or an (h, w) pair, got {type(v).__name__}")
    return (int(v), int(v))


def _window(op: str, hw, kernel_size, stride, padding, dilation=1, ceil_mode=False):
    """(kh, kw, sh, sw, ph, pw, dh, dw, oh, ow) after PyTorch's checks, for an input plane
    hw = (H, W). The extension checks again, and also that dilated windows hold an input cell."""
    k = _pair(op, "kernel_size", kernel_size)
    s = k if stride is None else _pair(op, "stride", stride)
    p = _pair(op, "padding", padding)
    d = _pair(op, "dilation", dilation)
    out = []
    for i, axis in enumerate("hw"):
        if k[i] < 1:
            raise ValueError(f"{op}: kernel_size must be >= 1, got {k[i]} ({axis})")
        if s[i] < 1:
            raise ValueError(f"{op}: stride must be >= 1, got {s[i]} ({axis})")
        if d[i] < 1:
            raise ValueError(f"{op}: dilation must be >= 1, got {d[i]} ({axis})")
        if p[i] < 0 or 2 * p[i] > k[i]:
            raise ValueError(
                f"{op}: padding must be between 0 and kernel_size / 2 = {k[i] // 2}, got {p[i]} ({axis})")
        extent = d[i] * (k[i] - 1) + 1
        span = hw[i] + 2 * p[i] - extent + (s[i] - 1 if ceil_mode else 0)
        o = span // s[i] + 1 if span >= 0 else 0
        if ceil_mode and o >= 1 and (o - 1) * s[i] >= hw[i] + p[i]:
            o -= 1  # the last window must start inside the image or the left padding
        if o < 1:
            what = f"kernel_size {k[i]}" + (f" dilated by {d[i]} (extent {extent})" if d[i] > 1 else "")
            raise ValueError(
                f"{op}: {what} is larger than the padded input "
                f"({hw[i]} + 2 * {p[i]} = {hw[i] + 2 * p[i]}) along {'H' if axis == 'h' else 'W'}")
        out.append(o)
    return (*k, *s, *p, *d, *out)


def _flag(op: str, name: str, v) -> bool:
    """A bool option (numpy bools and 0 / 1 too); TypeError naming it otherwise."""
    if isinstance(v, (bool, np.bool_)) or (isinstance(v, numbers.Integral) and v in (0, 1)):
        return bool(v)
    raise TypeError(f"{op}: {name} must be a bool, got {v!r}")


def _divisor(op: str, v):
    """divisor_override: None or a positive int."""
    if v is None:
        return None
    v = _int(op, "divisor_override", v)
    if v < 1:
        raise ValueError(f"{op}: divisor_override must be None or a positive int, got {v}")
    return v


def _image(op: str, name: str, x):
    """x as a C-contiguous 4-D array, and whether it came as (C, H, W)."""
    if x.ndim not in (3, 4):
        raise ValueError(f"{op}: {name} must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape "
                         f"{shape_str(x.shape)}")
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"{op}: {name} must have H, W >= 1, got shape {shape_str(x.shape)}")
    return x, unbatched


def _input_shape(op: str, input_shape, dy):
    """input_shape as a 4-D tuple matching dy's batch and channels (dy made 4-D alike)."""
    try:
        shape = tuple(_int(op, "input_shape", d) for d in input_shape)
    except TypeError:
        raise TypeError(f"{op}: input_shape must be a tuple of ints, got {input_shape!r}") from None
    if len(shape) not in (3, 4) or any(d < 0 for d in shape):
        raise ValueError(f"{op}: input_shape must be (N, C, H, W) or (C, H, W), got {shape}")
    if dy.ndim != len(shape):
        raise ValueError(f"{op}: dy must have {len(shape)} dimensions like input_shape {shape}, "
                         f"got shape {shape_str(dy.shape)}")
    unbatched = len(shape) == 3
    if unbatched:
        shape, dy = (1, *shape), dy[None]
    if shape[2] < 1 or shape[3] < 1:
        raise ValueError(f"{op}: input_shape must have H, W >= 1, got {shape[-2:]}")
    if dy.shape[:2] != shape[:2]:
        raise ValueError(f"{op}: dy must have the batch and channels {shape[:2]} of input_shape, "
                         f"got shape {shape_str(dy.shape)}")
    return shape, dy, unbatched


def _out(a, unbatched):
    return a[0] if unbatched else a


def max_pool2d(x, kernel_size=2, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Max over kernel_size windows (cells `dilation` apart); returns (y, argmax), argmax the flat
    H x W index (int64). ceil_mode: PyTorch's rounded-up output size."""
    op = "max_pool2d"
    require(op, x=x)
    be, dtype, x = prepare(op, x=x)
    x, unbatched = _image(op, "x", x)
    ceil_mode = _flag(op, "ceil_mode", ceil_mode)
    kh, kw, sh, sw, ph, pw, dh, dw, oh, ow = _window(op, x.shape[2:], kernel_size, stride, padding,
                                                     dilation, ceil_mode)
    x = _contig(be, x)
    shape = (x.shape[0], x.shape[1], oh, ow)
    y = be.empty(shape, dtype)
    argmax = be.empty(shape, np.int64)
    _kernel(be, op, "max_pool2d_forward")(y, argmax, x, kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode)
    return _out(y, unbatched), _out(argmax, unbatched)


def max_pool2d_backward(dy, argmax, input_shape):
    """dx of input_shape: zeros, plus each dy at its window's argmax (overlaps accumulate)."""
    op = "max_pool2d_backward"
    require(op, dy=dy, argmax=argmax)
    be, dtype, dy = prepare(op, dy=dy)
    shape, dy, unbatched = _input_shape(op, input_shape, dy)
    argmax = be.xp.asarray(argmax)
    if argmax.dtype != np.int64:
        raise TypeError(f"{op}: argmax must be the int64 array max_pool2d returned, got dtype {argmax.dtype}")
    if unbatched:
        argmax = argmax[None]
    if argmax.shape != dy.shape:
        raise ValueError(f"{op}: argmax must have dy's shape {shape_str(dy.shape)}, "
                         f"got {shape_str(argmax.shape)}")
    dx = be.empty(shape, dtype)
    _kernel(be, op, "max_pool2d_backward")(dx, _contig(be, dy), _contig(be, argmax))
    return _out(dx, unbatched)


def _avg_options(op, ceil_mode, count_include_pad, divisor_override):
    return (_flag(op, "ceil_mode", ceil_mode), _flag(op, "count_include_pad", count_include_pad),
            _divisor(op, divisor_override))


def avg_pool2d(x, kernel_size=2, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Sum over kernel_size windows / the divisor (PyTorch's: divisor_override, else the window's
    padded cells with count_include_pad=True, its image cells with False)."""
    op = "avg_pool2d"
    require(op, x=x)
    be, dtype, x = prepare(op, x=x)
    x, unbatched = _image(op, "x", x)
    opts = _avg_options(op, ceil_mode, count_include_pad, divisor_override)
    kh, kw, sh, sw, ph, pw, _, _, oh, ow = _window(op, x.shape[2:], kernel_size, stride, padding,
                                                   1, opts[0])
    x = _contig(be, x)
    y = be.empty((x.shape[0], x.shape[1], oh, ow), dtype)
    _kernel(be, op, "avg_pool2d_forward")(y, x, kh, kw, sh, sw, ph, pw, *opts)
    return _out(y, unbatched)


def avg_pool2d_backward(dy, input_shape, kernel_size=2, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    """dx of input_shape: each cell gets dy / divisor of every window holding it (the divisor
    avg_pool2d used with the same options)."""
    op = "avg_pool2d_backward"
    require(op, dy=dy)
    be, dtype, dy = prepare(op, dy=dy)
    shape, dy, unbatched = _input_shape(op, input_shape, dy)
    opts = _avg_options(op, ceil_mode, count_include_pad, divisor_override)
    kh, kw, sh, sw, ph, pw, _, _, oh, ow = _window(op, shape[2:], kernel_size, stride, padding,
                                                   1, opts[0])
    if dy.shape[2:] != (oh, ow):
        raise ValueError(f"{op}: dy must have shape {shape_str((*shape[:2], oh, ow))} for "
                         f"input_shape {shape} and this window, got {shape_str(dy.shape)}")
    dx = be.empty(shape, dtype)
    _kernel(be, op, "avg_pool2d_backward")(dx, _contig(be, dy), kh, kw, sh, sw, ph, pw, *opts)
    return _out(dx, unbatched)


def adaptive_avg_pool2d(x, output_size):
    """Mean over PyTorch's adaptive windows giving an output_size (OH, OW) image."""
    op = "adaptive_avg_pool2d"
    require(op, x=x)
    be, dtype, x = prepare(op, x=x)
    x, unbatched = _image(op, "x", x)
    size = _pair(op, "output_size", output_size, allow_none=True)
    size = tuple(x.shape[2 + i] if s is None else s for i, s in enumerate(size))
    if any(s < 0 for s in size):
        raise ValueError(f"{op}: output_size must be >= 0, got {size}")
    x = _contig(be, x)
    y = be.empty((x.shape[0], x.shape[1], *size), dtype)
    _kernel(be, op, "adaptive_avg_pool2d_forward")(y, x)
    return _out(y, unbatched)


def adaptive_avg_pool2d_backward(dy, input_shape):
    """dx of input_shape: each cell gets dy / window size of every adaptive window holding it."""
    op = "adaptive_avg_pool2d_backward"
    require(op, dy=dy)
    be, dtype, dy = prepare(op, dy=dy)
    shape, dy, unbatched = _input_shape(op, input_shape, dy)
    dx = be.empty(shape, dtype)
    _kernel(be, op, "adaptive_avg_pool2d_backward")(dx, _contig(be, dy))
    return _out(dx, unbatched)
