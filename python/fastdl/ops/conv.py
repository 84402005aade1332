"""2-D convolution (conv2d with stride, padding, dilation and groups) and transposed convolution,
forward and backward.

Shapes (NCHW, PyTorch's layouts):
    conv2d            x (N, C, H, W), w (K, C/groups, R, S), b (K,) -> y (N, K, OH, OW),
                      OH = (H + 2*pad - dil*(R-1) - 1) // stride + 1 (likewise OW)
    conv_transpose2d  x (N, C_in, H, W), w (C_in, C_out/groups, R, S), b (C_out,)
                      -> y (N, C_out, OH, OW),
                      OH = (H - 1)*stride - 2*pad + dil*(R-1) + output_padding + 1,
                      output_padding < max(stride, dilation) (PyTorch's rule)
    An unbatched 3-D x (C, H, W) gives a 3-D y (and takes a 3-D dy), as in PyTorch.

conv_transpose2d is the adjoint of conv2d, so it needs no kernels of its own: its forward is
conv2d's backward-data pass (its weight read as a conv weight with K = C_in, C/groups =
C_out/groups: group i's C_in/groups input channels feed its C_out/groups outputs, exactly the
conv's grouping with the roles swapped), its dx is conv2d's forward on dy, its dw conv2d's
backward-weight with the roles of x and dy swapped; stride, padding, dilation and groups pass
through unchanged. One case needs care: an output_padding of a stride or more (allowed when the
dilation is larger than the stride) gives y more rows than any conv of x's size has as input, so
along such an axis the passes run unpadded on the "full" output (H-1)*stride + dil*(R-1) + 1,
of which y is the window starting at `padding` (zeros past its end).
Kernels: csrc/cpu/conv.cpp (CPU), csrc/cuda/conv.cu (GPU), one extension call per pass.
"""

from __future__ import annotations

import operator

from ._util import check_ndim, check_shape, contiguous, prepare, require, shape_str
from .activation import _kernel
from .elementwise import bias_add_backward

__all__ = ["conv2d", "conv2d_backward", "conv_transpose2d", "conv_transpose2d_backward"]


def _pair(op: str, name: str, v, minimum: int) -> tuple[int, int]:
    """An int or an (h, w) pair of ints, each >= minimum, as two ints."""
    seq = isinstance(v, (tuple, list)) or (getattr(v, "ndim", 0) == 1)  # a 1-D array too
    vals = tuple(v) if seq else (v, v)
    if len(vals) != 2:
        raise ValueError(f"{op}: {name} must be an int or an (h, w) pair, got {v!r}")
    out = []
    for e in vals:
        try:
            if isinstance(e, bool):
                raise TypeError
            out.append(operator.index(e))
        except TypeError:
            raise TypeError(f"{op}: {name} must be an int or an (h, w) pair of ints, "
                            f"got {v!r}") from None
    if min(out) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {v!r}")
    return out[0], out[1]


def _groups(op: str, groups) -> int:
    if isinstance(groups, bool) or not hasattr(groups, "__index__"):
        raise TypeError(f"{op}: groups must be an int, got {type(groups).__name__}")
    groups = operator.index(groups)
    if groups < 1:
        raise ValueError(f"{op}: groups must be >= 1, got {groups}")
    return groups


def _batch(op: str, x, dy=None):
    """PyTorch's unbatched form: a 3-D x (C, H, W) is one image, its dy (K, OH, OW) likewise.
    Returns (unbatched, x, dy) with x and dy 4-D views."""
    check_ndim(op, "x", x, (3, 4))
    unbatched = x.ndim == 3
    if dy is not None:
        check_ndim(op, "dy", dy, (x.ndim,))
        dy = dy[None] if unbatched else dy
    return unbatched, (x[None] if unbatched else x), dy


def _check_image(op: str, x) -> None:
    """DESIGN section 4: a 0-height or 0-width image has no defined result, even where padding
    would give it windows (PyTorch refuses it too); zero batches and zero channels are fine."""
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"{op}: x must have H, W >= 1, got shape {shape_str(x.shape)}")


def _out_extent(op: str, axis: str, size: int, kernel: int, stride: int, pad: int, dil: int) -> int:
    span = size + 2 * pad - dil * (kernel - 1) - 1
    if span < 0:
        raise ValueError(
            f"{op}: the kernel (dilated extent {dil * (kernel - 1) + 1}) is larger than the padded "
            f"input along {axis} ({size} + 2*{pad} = {size + 2 * pad})"
        )
    return span // stride + 1


def _conv_geometry(op: str, x, w, b, stride, padding, dilation, groups):
    """Checked sizes of a conv2d: (stride, padding, dilation, groups, output shape)."""
    check_ndim(op, "x", x, (4,))
    check_ndim(op, "w", w, (4,))
    _check_image(op, x)
    stride = _pair(op, "stride", stride, 1)
    padding = _pair(op, "padding", padding, 0)
    dilation = _pair(op, "dilation", dilation, 1)
    groups = _groups(op, groups)
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    if c % groups:
        raise ValueError(f"{op}: groups={groups} must divide the input channels C={c} of x "
                         f"{shape_str(x.shape)}")
    if k % groups:
        raise ValueError(f"{op}: groups={groups} must divide the output channels K={k} of w "
                         f"{shape_str(w.shape)}")
    if cg * groups != c:
        raise ValueError(
            f"{op}: w {shape_str(w.shape)} must have C/groups={c // groups} input channels along "
            f"axis 1 to match x {shape_str(x.shape)} with groups={groups}, got {cg}"
        )
    if r < 1 or s < 1:
        raise ValueError(f"{op}: w {shape_str(w.shape)} must have a kernel of at least 1 x 1")
    if b is not None:
        check_shape(op, "b", b, (k,))
    oh = _out_extent(op, "H", h, r, stride[0], padding[0], dilation[0])
    ow = _out_extent(op, "W", wd, s, stride[1], padding[1], dilation[1])
    return stride, padding, dilation, groups, (n, k, oh, ow)


def _sizes(stride, padding, dilation, groups):
    return (*stride, *padding, *dilation, groups)


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """y = conv2d(x, w) + b: x (N, C, H, W) or unbatched (C, H, W), w (K, C/groups, R, S), b (K,)
    or None."""
    op = "conv2d"
    require(op, x=x, w=w)
    be, dtype, x, w, b = prepare(op, x=x, w=w, b=b)
    unbatched, x, _ = _batch(op, x)
    stride, padding, dilation, groups, yshape = _conv_geometry(
        op, x, w, b, stride, padding, dilation, groups)
    y = be.empty(yshape, dtype)
    _kernel(be, op, "conv2d_forward")(
        y, contiguous(be, x), contiguous(be, w), None if b is None else contiguous(be, b),
        *_sizes(stride, padding, dilation, groups))
    return y[0] if unbatched else y


def conv2d_backward(dy, x, w, stride=1, padding=0, dilation=1, groups=1, *,
                    output_mask=(True, True, True)):
    """Gradients of conv2d: (dx, dw, db), db = dy summed over N, OH, OW (returned even without a bias).

    output_mask (PyTorch's name in aten.convolution_backward): which of (dx, dw, db) to compute;
    a False entry returns None in its place and skips its kernel (autograd passes False for an
    input that needs no gradient, e.g. a network's first layer, whose dx is often the costliest
    of the three passes).
    """
    op = "conv2d_backward"
    require(op, dy=dy, x=x, w=w)
    be, dtype, dy, x, w = prepare(op, dy=dy, x=x, w=w)
    unbatched, x, dy = _batch(op, x, dy)
    stride, padding, dilation, groups, yshape = _conv_geometry(
        op, x, w, None, stride, padding, dilation, groups)
    check_shape(op, "dy", dy, yshape)
    dy, x, w = contiguous(be, dy), contiguous(be, x), contiguous(be, w)
    sizes = _sizes(stride, padding, dilation, groups)
    want_dx, want_dw, want_db = _mask(op, output_mask)
    dx = dw = db = None
    if want_dx:
        dx = be.empty(x.shape, dtype)
        _kernel(be, op, "conv2d_backward_data")(dx, dy, w, *sizes)
    if want_dw or want_db:  # one kernel computes both (db alone is a cheap extra reduction)
        dw = be.empty(w.shape, dtype)
        db = be.empty((w.shape[0],), dtype) if want_db else None
        _kernel(be, op, "conv2d_backward_weight")(dw, db, dy, x, *sizes)
        dw = dw if want_dw else None
    return (dx[0] if unbatched and dx is not None else dx), dw, db


def _mask(op: str, output_mask):
    """output_mask as three bools, or TypeError/ValueError naming it."""
    try:
        mask = tuple(output_mask)
    except TypeError:
        raise TypeError(f"{op}: output_mask must be a sequence of 3 bools, got "
                        f"{type(output_mask).__name__}") from None
    if len(mask) != 3:
        raise ValueError(f"{op}: output_mask must have 3 entries (dx, dw, db), got {len(mask)}")
    return tuple(bool(m) for m in mask)


def _transpose_geometry(op: str, x, w, b, stride, padding, output_padding, groups, dilation):
    """Checked sizes of a conv_transpose2d: (stride, padding, dilation, groups, output shape)."""
    check_ndim(op, "x", x, (4,))
    check_ndim(op, "w", w, (4,))
    _check_image(op, x)
    stride = _pair(op, "stride", stride, 1)
    padding = _pair(op, "padding", padding, 0)
    output_padding = _pair(op, "output_padding", output_padding, 0)
    dilation = _pair(op, "dilation", dilation, 1)
    groups = _groups(op, groups)
    n, c_in, h, wd = x.shape
    if c_in % groups:
        raise ValueError(f"{op}: groups={groups} must divide the input channels C_in={c_in} of x "
                         f"{shape_str(x.shape)}")
    if w.shape[0] != c_in:
        raise ValueError(f"{op}: w {shape_str(w.shape)} (C_in, C_out/groups, R, S) must have "
                         f"C_in={c_in} along axis 0 to match x {shape_str(x.shape)}, got {w.shape[0]}")
    c_out, r, s = w.shape[1] * groups, w.shape[2], w.shape[3]
    if r < 1 or s < 1:
        raise ValueError(f"{op}: w {shape_str(w.shape)} must have a kernel of at least 1 x 1")
    for i, axis in enumerate("HW"):
        if output_padding[i] >= max(stride[i], dilation[i]):  # PyTorch's rule
            raise ValueError(f"{op}: output_padding must be smaller than stride or dilation along "
                             f"{axis}, got output_padding={output_padding[i]}, stride={stride[i]}, "
                             f"dilation={dilation[i]}")
    if b is not None:
        check_shape(op, "b", b, (c_out,))
    out = []
    for i, (size, kernel) in enumerate(((h, r), (wd, s))):
        e = (size - 1) * stride[i] - 2 * padding[i] + dilation[i] * (kernel - 1) + output_padding[i] + 1
        if e < 1:
            raise ValueError(f"{op}: the output would be empty along {'HW'[i]} ({e}): padding "
                             f"{padding[i]} is too large for input size {size}, kernel {kernel}, "
                             f"dilation {dilation[i]}, stride {stride[i]}")
        out.append(e)
    full = tuple(output_padding[i] >= stride[i] for i in range(2))
    return stride, padding, dilation, groups, (n, c_out, out[0], out[1]), full


def _full_extent(size, kernel, stride, dil):
    """The unpadded transposed-conv output length: every row some input row reaches."""
    return (size - 1) * stride + dil * (kernel - 1) + 1


def _full_geometry(x, w, yshape, stride, padding, dilation, full):
    """For axes in `full` (output_padding >= stride): the unpadded output shape and the kernels'
    padding (0 there). Returns (full shape, kernel padding, (rows, cols) of y inside it)."""
    shape, pad, windows = list(yshape), list(padding), []
    for i in range(2):
        if full[i]:
            shape[2 + i] = _full_extent(x.shape[2 + i], w.shape[2 + i], stride[i], dilation[i])
            pad[i] = 0
            m = max(0, min(yshape[2 + i], shape[2 + i] - padding[i]))
            windows.append((slice(padding[i], padding[i] + m), slice(0, m)))
        else:
            windows.append((slice(None), slice(None)))
    return tuple(shape), tuple(pad), windows


def conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """y = conv_transpose2d(x, w) + b: x (N, C_in, H, W) or unbatched (C_in, H, W),
    w (C_in, C_out/groups, R, S), b (C_out,) or None (PyTorch's F.conv_transpose2d order)."""
    op = "conv_transpose2d"
    require(op, x=x, w=w)
    be, dtype, x, w, b = prepare(op, x=x, w=w, b=b)
    unbatched, x, _ = _batch(op, x)
    stride, padding, dilation, groups, yshape, full = _transpose_geometry(
        op, x, w, b, stride, padding, output_padding, groups, dilation)
    x, w = contiguous(be, x), contiguous(be, w)
    # y is the "dx" of a conv2d whose input is y and output is x.
    if not any(full):
        y = be.empty(yshape, dtype)
        _kernel(be, op, "conv2d_backward_data")(y, x, w, *_sizes(stride, padding, dilation, groups))
    else:
        fshape, fpad, (rows, cols) = _full_geometry(x, w, yshape, stride, padding, dilation, full)
        yf = be.empty(fshape, dtype)
        _kernel(be, op, "conv2d_backward_data")(yf, x, w, *_sizes(stride, fpad, dilation, groups))
        y = be.xp.zeros(yshape, dtype)
        y[:, :, rows[1], cols[1]] = yf[:, :, rows[0], cols[0]]
    if b is not None:
        _kernel(be, op, "bias_add")(y, y, contiguous(be, b), 1)
    return y[0] if unbatched else y


def conv_transpose2d_backward(dy, x, w, stride=1, padding=0, output_padding=0, groups=1,
                              dilation=1, *, output_mask=(True, True, True)):
    """Gradients of conv_transpose2d: (dx, dw, db), db = dy summed over N, H, W.

    output_mask: which of (dx, dw, db) to compute, as conv2d_backward's (False -> None).
    """
    op = "conv_transpose2d_backward"
    require(op, dy=dy, x=x, w=w)
    be, dtype, dy, x, w = prepare(op, dy=dy, x=x, w=w)
    unbatched, x, dy = _batch(op, x, dy)
    stride, padding, dilation, groups, yshape, full = _transpose_geometry(
        op, x, w, None, stride, padding, output_padding, groups, dilation)
    check_shape(op, "dy", dy, yshape)
    want_dx, want_dw, want_db = _mask(op, output_mask)
    x, w = contiguous(be, x), contiguous(be, w)
    dyk, pad = dy, padding  # what the conv kernels see: dy, or dy placed in the full output
    if any(full) and (want_dx or want_dw):
        fshape, pad, (rows, cols) = _full_geometry(x, w, yshape, stride, padding, dilation, full)
        dyk = be.xp.zeros(fshape, dtype)
        dyk[:, :, rows[0], cols[0]] = dy[:, :, rows[1], cols[1]]
    dyk = contiguous(be, dyk)
    sizes = _sizes(stride, pad, dilation, groups)
    dx = dw = db = None
    if want_dx:
        dx = be.empty(x.shape, dtype)
        _kernel(be, op, "conv2d_forward")(dx, dyk, w, None, *sizes)
    if want_dw:
        dw = be.empty(w.shape, dtype)
        # The conv whose output is x: its "dy" is x, its "x" is dy.
        _kernel(be, op, "conv2d_backward_weight")(dw, None, x, dyk, *sizes)
    if want_db:
        db = bias_add_backward(dy, axis=1)
    return (dx[0] if unbatched and dx is not None else dx), dw, db
