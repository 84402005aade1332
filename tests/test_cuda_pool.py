"""CUDA max / avg / adaptive-avg pooling, forward and backward, against NumPy float64 loops.

Skipped as a whole unless CuPy imports and fastdl sees a GPU. The references below are written
from PyTorch's definitions (windows of the padded input, floor mode, count_include_pad=True,
adaptive windows [floor(i H / OH), ceil((i + 1) H / OH))), never through fastdl. Max pooling is
exact (a selection), so it is compared bit for bit, argmax included; the averages within a few
float32 ulps of the window's scale.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastdl import ops
from helpers import cupy_or_skip

cp = cupy_or_skip()

from fastdl import _cuda  # noqa: E402

pytestmark = pytest.mark.gpu

EPS32 = float(np.finfo(np.float32).eps)

# (N, C, H, W, kernel, stride, padding)
WINDOWS = [
    (1, 1, 1, 1, (1, 1), (1, 1), (0, 0)),
    (2, 3, 8, 8, (2, 2), (2, 2), (0, 0)),
    (1, 2, 7, 9, (3, 3), (2, 2), (1, 1)),
    (3, 1, 17, 5, (3, 2), (1, 2), (1, 1)),     # overlapping windows along H
    (1, 4, 6, 11, (5, 4), (3, 1), (2, 2)),     # pad = kernel / 2
    (2, 2, 13, 13, (4, 4), (3, 3), (0, 1)),    # floor mode drops a partial window
]


def host(a):
    assert isinstance(a, cp.ndarray), f"expected a CuPy array, got {type(a).__name__}"
    return cp.asnumpy(a)


def out_size(h, k, s, p):
    return (h + 2 * p - k) // s + 1


def windows(h, w, kernel, stride, padding):
    """(oh, ow, h0, h1, w0, w1) of every window, in the padded-extent clip of the divisor."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    for oh in range(out_size(h, kh, sh, ph)):
        for ow in range(out_size(w, kw, sw, pw)):
            h0, w0 = oh * sh - ph, ow * sw - pw
            yield oh, ow, h0, min(h0 + kh, h + ph), w0, min(w0 + kw, w + pw)


def max_pool_ref(x, kernel, stride, padding):
    n, c, h, w = x.shape
    oh, ow = (out_size(d, k, s, p) for d, k, s, p in zip((h, w), kernel, stride, padding))
    y = np.empty((n, c, oh, ow), np.float64)
    arg = np.empty((n, c, oh, ow), np.int64)
    for i, j, h0, _, w0, _ in windows(h, w, kernel, stride, padding):
        hs, he = max(h0, 0), min(h0 + kernel[0], h)
        ws, we = max(w0, 0), min(w0 + kernel[1], w)
        win = x[:, :, hs:he, ws:we].reshape(n, c, -1)
        a = np.argmax(win, axis=2)  # the first maximum in row-major order (no NaN here)
        y[:, :, i, j] = np.take_along_axis(win, a[..., None], 2)[..., 0]
        arg[:, :, i, j] = (hs + a // (we - ws)) * w + ws + a % (we - ws)
    return y, arg


def avg_pool_ref(x, kernel, stride, padding):
    n, c, h, w = x.shape
    oh, ow = (out_size(d, k, s, p) for d, k, s, p in zip((h, w), kernel, stride, padding))
    y = np.empty((n, c, oh, ow), np.float64)
    for i, j, h0, h1, w0, w1 in windows(h, w, kernel, stride, padding):
        win = x[:, :, max(h0, 0):min(h1, h), max(w0, 0):min(w1, w)].astype(np.float64)
        y[:, :, i, j] = win.sum(axis=(2, 3)) / ((h1 - h0) * (w1 - w0))
    return y


def avg_pool_backward_ref(dy, shape, kernel, stride, padding):
    dx = np.zeros(shape, np.float64)
    h, w = shape[2:]
    for i, j, h0, h1, w0, w1 in windows(h, w, kernel, stride, padding):
        dx[:, :, max(h0, 0):min(h1, h), max(w0, 0):min(w1, w)] += \
            dy[:, :, i, j, None, None] / ((h1 - h0) * (w1 - w0))
    return dx


def adaptive_windows(h, w, oh, ow):
    for i in range(oh):
        for j in range(ow):
            yield i, j, i * h // oh, -(-(i + 1) * h // oh), j * w // ow, -(-(j + 1) * w // ow)


def adaptive_ref(x, oh, ow):
    n, c, h, w = x.shape
    y = np.empty((n, c, oh, ow), np.float64)
    for i, j, h0, h1, w0, w1 in adaptive_windows(h, w, oh, ow):
        y[:, :, i, j] = x[:, :, h0:h1, w0:w1].astype(np.float64).mean(axis=(2, 3))
    return y


def adaptive_backward_ref(dy, shape):
    dx = np.zeros(shape, np.float64)
    for i, j, h0, h1, w0, w1 in adaptive_windows(*shape[2:], *dy.shape[2:]):
        dx[:, :, h0:h1, w0:w1] += dy[:, :, i, j, None, None] / ((h1 - h0) * (w1 - w0))
    return dx


def assert_avg(got, want, terms, name):
    got = host(got)
    assert got.shape == want.shape and got.dtype == np.float32, name
    tol = (terms + 2) * EPS32 * max(1.0, float(np.abs(want).max(initial=0)))
    np.testing.assert_allclose(got, want, rtol=0, atol=tol, err_msg=name)


@pytest.mark.parametrize("case", WINDOWS, ids=str)
def test_max_pool(case, rng):
    n, c, h, w, kernel, stride, padding = case
    # small integers: many ties, so "the first maximum" is exercised
    x = rng.integers(-4, 5, (n, c, h, w)).astype(np.float32)
    want, arg_want = max_pool_ref(x, kernel, stride, padding)
    y = cp.full(want.shape, np.nan, np.float32)
    arg = cp.full(want.shape, -7, np.int64)
    _cuda.max_pool2d_forward(y, arg, cp.asarray(x), *kernel, *stride, *padding)
    np.testing.assert_array_equal(host(y), want)
    np.testing.assert_array_equal(host(arg), arg_want)
    dy = rng.standard_normal(want.shape).astype(np.float32)
    dx_want = np.zeros((n * c, h * w))
    np.add.at(dx_want, (np.arange(n * c)[:, None], arg_want.reshape(n * c, -1)),
              dy.reshape(n * c, -1).astype(np.float64))
    dx = cp.full(x.shape, np.nan, np.float32)
    _cuda.max_pool2d_backward(dx, cp.asarray(dy), arg)
    assert_avg(dx, dx_want.reshape(x.shape), kernel[0] * kernel[1], "dx")


def test_max_pool_nan_and_inf():
    # a NaN is the max and the last NaN of the window wins (PyTorch: val > max || isnan(val));
    # -inf everywhere gives -inf at the window's first cell
    x = np.array([[[[np.nan, 1.0, np.nan, 5.0, -np.inf, -np.inf]]]], np.float32)
    y = cp.empty((1, 1, 1, 2), np.float32)
    arg = cp.empty((1, 1, 1, 2), np.int64)
    _cuda.max_pool2d_forward(y, arg, cp.asarray(x), 1, 3, 1, 3, 0, 0)
    assert np.isnan(host(y)[0, 0, 0, 0]) and host(arg)[0, 0, 0, 0] == 2
    assert host(y)[0, 0, 0, 1] == 5.0 and host(arg)[0, 0, 0, 1] == 3
    x2 = np.full((1, 1, 2, 2), -np.inf, np.float32)
    y2, a2 = cp.empty((1, 1, 2, 2), np.float32), cp.empty((1, 1, 2, 2), np.int64)
    _cuda.max_pool2d_forward(y2, a2, cp.asarray(x2), 2, 2, 2, 2, 1, 1)
    assert host(y2)[0, 0, 0, 0] == -np.inf and host(a2)[0, 0, 0, 0] == 0


@pytest.mark.parametrize("case", WINDOWS, ids=str)
def test_avg_pool(case, rng):
    n, c, h, w, kernel, stride, padding = case
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    want = avg_pool_ref(x, kernel, stride, padding)
    y = cp.full(want.shape, np.nan, np.float32)
    _cuda.avg_pool2d_forward(y, cp.asarray(x), *kernel, *stride, *padding)
    terms = kernel[0] * kernel[1]
    assert_avg(y, want, terms, "y")
    dy = rng.standard_normal(want.shape).astype(np.float32)
    dx = cp.full(x.shape, np.nan, np.float32)
    _cuda.avg_pool2d_backward(dx, cp.asarray(dy), *kernel, *stride, *padding)
    assert_avg(dx, avg_pool_backward_ref(dy, x.shape, kernel, stride, padding), terms, "dx")


@pytest.mark.parametrize("shape,out", [((1, 1, 1, 1), (1, 1)), ((2, 3, 7, 9), (3, 4)),
                                       ((1, 2, 5, 5), (5, 5)), ((1, 1, 4, 6), (7, 9)),
                                       ((3, 2, 13, 10), (1, 1)), ((2, 1, 10, 3), (4, 2))])
def test_adaptive_avg_pool(shape, out, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    want = adaptive_ref(x, *out)
    y = cp.full(want.shape, np.nan, np.float32)
    _cuda.adaptive_avg_pool2d_forward(y, cp.asarray(x))
    terms = -(-shape[2] // out[0] + 1) * -(-shape[3] // out[1] + 1)
    assert_avg(y, want, terms, "y")
    dy = rng.standard_normal(want.shape).astype(np.float32)
    dx = cp.full(shape, np.nan, np.float32)
    _cuda.adaptive_avg_pool2d_backward(dx, cp.asarray(dy))
    assert_avg(dx, adaptive_backward_ref(dy, shape), terms, "dx")


def test_through_ops(rng):
    if not hasattr(ops, "max_pool2d") or not hasattr(ops, "adaptive_avg_pool2d"):
        pytest.skip("fastdl.ops.pool is not in this tree yet")
    x = rng.standard_normal((2, 3, 9, 10)).astype(np.float32)
    xg = cp.asarray(x)
    for xin in (xg, cp.asarray(x.transpose(0, 1, 3, 2).copy()).transpose(0, 1, 3, 2)):
        y, arg = ops.max_pool2d(xin, 3, 2, 1)
        want, arg_want = max_pool_ref(x, (3, 3), (2, 2), (1, 1))
        np.testing.assert_array_equal(host(y), want)
        np.testing.assert_array_equal(host(arg), arg_want)
    dx = ops.max_pool2d_backward(cp.ones(y.shape, np.float32), arg, x.shape)
    assert host(dx).sum() == y.size
    ya = ops.avg_pool2d(xg, (3, 2), (2, 1), (1, 1))
    assert_avg(ya, avg_pool_ref(x, (3, 2), (2, 1), (1, 1)), 6, "avg y")
    dy = rng.standard_normal(ya.shape).astype(np.float32)
    dxa = ops.avg_pool2d_backward(cp.asarray(dy), x.shape, (3, 2), (2, 1), (1, 1))
    assert_avg(dxa, avg_pool_backward_ref(dy, x.shape, (3, 2), (2, 1), (1, 1)), 6, "avg dx")
    yd = ops.adaptive_avg_pool2d(xg, (4, 3))
    assert_avg(yd, adaptive_ref(x, 4, 3), 20, "adaptive y")
    dy = rng.standard_normal((2, 3, 4, 3)).astype(np.float32)
    dxd = ops.adaptive_avg_pool2d_backward(cp.asarray(dy), x.shape)
    assert_avg(dxd, adaptive_backward_ref(dy, x.shape), 20, "adaptive dx")


def test_bad_arguments():
    x = cp.ones((1, 2, 6, 6), np.float32)
    y = cp.empty((1, 2, 3, 3), np.float32)
    arg = cp.empty((1, 2, 3, 3), np.int64)
    _cuda.max_pool2d_forward(y, arg, x, 2, 2, 2, 2, 0, 0)  # the good call
    with pytest.raises(TypeError, match="argmax: expected dtype int64, got float32"):
        _cuda.max_pool2d_forward(y, y, x, 2, 2, 2, 2, 0, 0)
    with pytest.raises(TypeError, match="x: expected a CUDA array"):
        _cuda.max_pool2d_forward(y, arg, np.ones((1, 2, 6, 6), np.float32), 2, 2, 2, 2, 0, 0)
    with pytest.raises(ValueError, match=r"y: expected shape \(1, 2, 2, 2\), got shape \(1, 2, 3, 3\)"):
        _cuda.max_pool2d_forward(y, arg, x, 3, 3, 3, 3, 0, 0)
    with pytest.raises(ValueError, match=r"pad_h: expected 0 <= pad <= kernel / 2 = 1, got 2"):
        _cuda.avg_pool2d_forward(y, x, 2, 2, 2, 2, 2, 0)
    with pytest.raises(ValueError, match="kernel_h: expected a kernel size >= 1, got 0"):
        _cuda.avg_pool2d_forward(y, x, 0, 2, 2, 2, 0, 0)
    with pytest.raises(ValueError, match=r"kernel_h: kernel size 7 is larger than the padded input \(6 \+ 2 \* 0 = 6\)"):
        _cuda.avg_pool2d_forward(y, x, 7, 7, 1, 1, 0, 0)
    with pytest.raises(ValueError, match=r"dy: expected shape \(1, 2, 3, 3\)"):
        _cuda.avg_pool2d_backward(cp.empty_like(x), cp.empty((1, 2, 2, 3), np.float32), 2, 2, 2, 2, 0, 0)
    with pytest.raises(ValueError, match=r"y: expected 4-D array, got shape \(2, 3, 3\)"):
        _cuda.adaptive_avg_pool2d_forward(cp.empty((2, 3, 3), np.float32), x)
    with pytest.raises(ValueError, match=r"y: expected shape \(1, 2, 3, 3\), got shape \(1, 3, 3, 3\)"):
        _cuda.adaptive_avg_pool2d_forward(cp.empty((1, 3, 3, 3), np.float32), x)
    with pytest.raises(ValueError, match=r"x: expected an image of at least 1 x 1 \(N, C, H, W\), got shape \(1, 2, 0, 6\)"):
        _cuda.adaptive_avg_pool2d_forward(y, cp.ones((1, 2, 0, 6), np.float32))
    with pytest.raises(TypeError, match="dx: (output )?must be C-contiguous"):
        _cuda.avg_pool2d_backward(cp.empty((1, 2, 6, 12), np.float32)[..., ::2], y, 2, 2, 2, 2, 0, 0)
    # argmax values are checked on the device; the message names the first bad one
    bad = cp.zeros((1, 2, 3, 3), np.int64)
    bad[0, 1, 2, 0] = 36
    bad[0, 1, 2, 2] = -1
    with pytest.raises(ValueError, match=r"argmax: expected flat indices into the 6 x 6 input plane "
                                         r"\(0 <= index < 36\), got 36 at flat position 15"):
        _cuda.max_pool2d_backward(cp.empty_like(x), y, bad)


# ---- PyTorch's options: ceil_mode, count_include_pad, divisor_override, max-pool dilation -----------
# Against tests/reference.py's float64 pool references (PyTorch's documented formulas).

def _ref():
    import reference
    return reference


OPTION_CASES = [  # (shape, kernel, stride, padding)
    ((1, 2, 7, 9), 2, 2, 0), ((2, 1, 9, 13), 3, 2, 1), ((1, 2, 13, 5), 3, 1, 1),
    ((1, 1, 5, 7), (2, 3), (3, 2), (1, 1)), ((1, 1, 1, 1), 2, 2, 0),
]


@pytest.mark.parametrize("case", OPTION_CASES, ids=str)
def test_max_pool_options(case, rng):
    ref = _ref()
    shape, k, s, p = case
    x = rng.integers(-4, 5, shape).astype(np.float32)
    for ceil_mode in (False, True):
        for d in (1, 2, 3):
            if min(ref._geometry(shape[2:], k, s, p, d, ceil_mode)[3]) < 1:
                continue
            name = f"{case} d{d} ceil={ceil_mode}"
            y, arg = ops.max_pool2d(cp.asarray(x), k, s, p, d, ceil_mode)
            want, arg_want = ref.max_pool2d(x, k, s, p, d, ceil_mode)
            np.testing.assert_array_equal(host(y), want, err_msg=name)
            np.testing.assert_array_equal(host(arg), arg_want, err_msg=name)


@pytest.mark.parametrize("case", OPTION_CASES, ids=str)
def test_avg_pool_options(case, rng):
    ref = _ref()
    shape, k, s, p = case
    x = rng.standard_normal(shape).astype(np.float32)
    kh, kw = ref._pair(k)
    for ceil_mode in (False, True):
        for cip, div in ((True, None), (False, None), (True, 5), (False, 3)):
            opts = (k, s, p, ceil_mode, cip, div)
            name = f"{case} ceil={ceil_mode} cip={cip} div={div}"
            y = ops.avg_pool2d(cp.asarray(x), *opts)
            assert_avg(y, ref.avg_pool2d(x, *opts), kh * kw, name)
            dy = rng.standard_normal(y.shape).astype(np.float32)
            dx = ops.avg_pool2d_backward(cp.asarray(dy), x.shape, *opts)
            assert_avg(dx, ref.avg_pool2d_backward(dy, x.shape, *opts), kh * kw, "dx " + name)


def test_options_bad_arguments():
    x = cp.ones((1, 2, 6, 6), np.float32)
    y = cp.empty((1, 2, 3, 3), np.float32)
    arg = cp.empty((1, 2, 3, 3), np.int64)
    with pytest.raises(ValueError, match="divisor_override: expected None or a positive int, got 0"):
        _cuda.avg_pool2d_forward(y, x, 2, 2, 2, 2, 0, 0, False, True, 0)
    with pytest.raises(ValueError, match="dilation_w: expected a dilation >= 1, got 0"):
        _cuda.max_pool2d_forward(y, arg, x, 2, 2, 2, 2, 0, 0, 1, 0)
    with pytest.raises(ValueError, match=r"y: expected shape \(1, 2, 4, 4\)"):
        _cuda.max_pool2d_forward(y, arg, cp.ones((1, 2, 7, 7), np.float32), 2, 2, 2, 2, 0, 0, 1, 1, True)
    with pytest.raises(ValueError, match="holds no cell of the input"):
        ops.max_pool2d(cp.ones((1, 1, 3, 3), np.float32), 2, 1, 1, dilation=4)
