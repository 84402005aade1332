"""max_pool2d / avg_pool2d forward and backward, 2x2 stride 2 (the CNN downsampling step), and
adaptive_avg_pool2d to 1x1 (global average pooling): fastdl against NumPy and PyTorch.

Napkin math (float32, n input elements, 2x2 windows: n / 4 outputs): max forward reads x and
writes y and the int64 argmax (4n + n + 2n = 7n bytes); its backward reads dy and argmax and
writes dx (7n); avg forward reads x and writes y (5n), its backward reads dy and writes dx (5n).
Memory-bound: GB/s, the copy roof for as many bytes (np.copyto) and the share of it reached are
in extra_info. Results are checked after timing.
"""

import functools

import numpy as np
import pytest

from fastdl import _core, ops

from benchutil import record_roof

SHAPES = [(8, 32, 56, 56), (32, 64, 112, 112)]


def _np_max(x):
    n, c, h, w = x.shape
    win = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    k = win.argmax(axis=-1)
    rows = np.arange(h // 2)[:, None] * 2 + k // 2
    cols = np.arange(w // 2)[None, :] * 2 + k % 2
    return np.take_along_axis(win, k[..., None], -1)[..., 0], rows * w + cols


def _np_max_bwd(dy, am, shape):
    n, c, h, w = shape
    dx = np.zeros((n * c, h * w), dy.dtype)
    np.put_along_axis(dx, am.reshape(n * c, -1), dy.reshape(n * c, -1), axis=1)  # 2x2 windows never collide
    return dx.reshape(shape)


def _np_avg(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))


def _np_avg_bwd(dy, shape):
    return np.repeat(np.repeat(dy * np.float32(0.25), 2, axis=2), 2, axis=3)


def _impl(lib):
    """max fwd, max bwd, avg fwd, avg bwd, global avg fwd, global avg bwd."""
    if lib == "fastdl":
        return (lambda x: ops.max_pool2d(x, 2), ops.max_pool2d_backward,
                lambda x: ops.avg_pool2d(x, 2), lambda dy, s: ops.avg_pool2d_backward(dy, s, 2),
                lambda x: ops.adaptive_avg_pool2d(x, 1), ops.adaptive_avg_pool2d_backward)
    if lib == "numpy":
        return (_np_max, _np_max_bwd, _np_avg, _np_avg_bwd,
                lambda x: x.mean(axis=(2, 3), keepdims=True),
                lambda dy, s: np.broadcast_to(dy / np.float32(s[2] * s[3]), s).copy())
    import torch

    t, aten, F = torch.from_numpy, torch.ops.aten, torch.nn.functional

    def max_fwd(x):
        y, am = F.max_pool2d(t(x), 2, return_indices=True)
        return y.numpy(), am.numpy()

    def max_bwd(dy, am, shape):
        x = torch.empty(shape)  # read for its shape only
        return aten.max_pool2d_with_indices_backward(t(dy), x, [2, 2], [2, 2], [0, 0], [1, 1], False, t(am)).numpy()

    def avg_bwd(dy, shape):
        return aten.avg_pool2d_backward(t(dy), torch.empty(shape), [2, 2], [2, 2], [0, 0], False, True, None).numpy()

    def gap_bwd(dy, shape):
        return aten._adaptive_avg_pool2d_backward(t(dy), torch.empty(shape)).numpy()

    return (max_fwd, max_bwd, lambda x: F.avg_pool2d(t(x), 2).numpy(), avg_bwd,
            lambda x: F.adaptive_avg_pool2d(t(x), 1).numpy(), gap_bwd)


@functools.lru_cache(maxsize=2)
def _data(shape):
    """x, dy (2x2-pooled shape) and the NumPy results every case checks against, made once per
    shape (the large case is 100 MB: CI's smoke run must not rebuild it for every test)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    y, am = _np_max(x)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    return x, dy, y, am, _np_max_bwd(dy, am, shape), _np_avg(x), _np_avg_bwd(dy, shape)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("what", ["max forward", "max backward", "avg forward", "avg backward",
                                  "global avg forward", "global avg backward"])
def test_pool(benchmark, lib, shape, what):
    benchmark.group = f"pool {what} {'x'.join(map(str, shape))}"
    x, dy, y, am, dx_max, y_avg, dx_avg = _data(shape)
    n = x.size
    impl = _impl(lib)
    if what == "max forward":
        got_y, got_am = benchmark(impl[0], x)
        record_roof(benchmark, 7 * n)
        np.testing.assert_array_equal(got_y, y)
        np.testing.assert_array_equal(got_am, am)
    elif what == "max backward":
        got = benchmark(impl[1], dy, am, shape)
        record_roof(benchmark, 7 * n)
        np.testing.assert_array_equal(got, dx_max)
    elif what == "avg forward":
        got = benchmark(impl[2], x)
        record_roof(benchmark, 5 * n)
        np.testing.assert_allclose(got, y_avg, rtol=1e-5, atol=1e-6)
    elif what == "avg backward":
        got = benchmark(impl[3], dy, shape)
        record_roof(benchmark, 5 * n)
        np.testing.assert_allclose(got, dx_avg, rtol=1e-6, atol=1e-7)
    elif what == "global avg forward":
        got = benchmark(impl[4], x)
        record_roof(benchmark, 4 * n)
        np.testing.assert_allclose(got, x.mean(axis=(2, 3), keepdims=True, dtype=np.float64), rtol=1e-4, atol=1e-6)
    else:
        g = dy[:, :, :1, :1].copy()
        got = benchmark(impl[5], g, shape)
        record_roof(benchmark, 4 * n)
        np.testing.assert_allclose(got, np.broadcast_to(g / (shape[2] * shape[3]), shape), rtol=1e-6, atol=1e-9)


# ---- PyTorch's options (issue 9): ceil_mode, count_include_pad=False, divisor_override, dilation --
# The same kernels run them (pool.cpp), so each should cost about its default's time; fastdl
# against PyTorch (NumPy has no such pool), checked after timing against the extension's
# plain-loop oracle (a double-sum loop over every window cell).
# An odd 57 x 57 plane, where ceil mode adds a last row and column of clipped windows.

OPTION_SHAPE = (8, 32, 57, 57)
OPTION_CASES = {  # name: (max?, kernel, stride, padding, options)
    "max 2x2/2 ceil": (True, 2, 2, 0, dict(ceil_mode=True)),
    "max 3x3/2 p1 dilation 2": (True, 3, 2, 1, dict(dilation=2)),
    "avg 3x3/2 p1 ceil count_include_pad=False": (False, 3, 2, 1, dict(ceil_mode=True, count_include_pad=False)),
    "avg 3x3/2 p1 divisor_override 4": (False, 3, 2, 1, dict(divisor_override=4)),
}


@pytest.mark.parametrize("case", list(OPTION_CASES))
def test_pool_options(benchmark, lib, case):
    if lib == "numpy":
        pytest.skip("NumPy has no pooling with these options")
    is_max, k, s, p, opts = OPTION_CASES[case]
    benchmark.group = f"pool options {case} {'x'.join(map(str, OPTION_SHAPE))}"
    x = np.random.default_rng(0).standard_normal(OPTION_SHAPE, dtype=np.float32)
    if lib == "fastdl":
        fn = (lambda: ops.max_pool2d(x, k, s, p, **opts)[0]) if is_max else (lambda: ops.avg_pool2d(x, k, s, p, **opts))
    else:
        import torch
        F, xt = torch.nn.functional, torch.from_numpy(x)
        fn = (lambda: F.max_pool2d(xt, k, s, p, **opts).numpy()) if is_max else (lambda: F.avg_pool2d(xt, k, s, p, **opts).numpy())
    got = benchmark(fn)
    record_roof(benchmark, 4 * x.size + 4 * got.size * (3 if is_max else 1))
    want = np.empty_like(got)
    if is_max:
        d = opts.get("dilation", 1)
        _core.max_pool2d_forward_reference(want, np.empty(got.shape, np.int64), x, k, k, s, s, p, p,
                                           d, d, opts.get("ceil_mode", False))
    else:
        _core.avg_pool2d_forward_reference(want, x, k, k, s, s, p, p, opts.get("ceil_mode", False),
                                           opts.get("count_include_pad", True),
                                           opts.get("divisor_override"))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
