"""batch_norm in training mode, forward and forward + backward: fastdl against NumPy and PyTorch
(aten's native_batch_norm / native_batch_norm_backward, no autograd overhead).

Napkin math (float32, n elements): the forward must read x once for the statistics and write
y (8n bytes at best: fastdl's second read of a channel comes from cache); the backward reads dy
and x and writes dx (12n); forward + backward 20n. A two-pass implementation (statistics, then
the map, each from memory) moves 12n + 20n. GB/s against the 8n / 20n minimum, the copy roof for
as many bytes and the share of it reached are in extra_info. Results are checked after timing.
"""

import numpy as np
import pytest

from fastdl import ops

from benchutil import record_roof

SHAPES = [(256, 512), (8, 64, 28, 28), (32, 64, 56, 56)]


def _np_fwd(x, w, b, rm, rv, momentum=0.1, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    m = x.size // x.shape[1]
    rm *= 1 - momentum
    rm += momentum * mean
    rv *= 1 - momentum
    rv += momentum * var * (m / (m - 1))
    invstd = 1 / np.sqrt(var + np.float32(eps))
    return (x - mean.reshape(shape)) * (invstd * w).reshape(shape) + b.reshape(shape), mean, invstd


def _np_bwd(dy, x, w, mean, invstd):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    xhat = (x - mean.reshape(shape)) * invstd.reshape(shape)
    db, dw = dy.sum(axis=axes), (dy * xhat).sum(axis=axes)
    m = x.size // x.shape[1]
    dx = (w * invstd).reshape(shape) * (dy - (db / m).reshape(shape) - xhat * (dw / m).reshape(shape))
    return dx, dw, db


def _impl(lib):
    """forward -> (y, save_mean, save_invstd); backward(dy, x, w, save_mean, save_invstd)."""
    if lib == "fastdl":
        return ops.batch_norm, lambda dy, x, w, sm, si: ops.batch_norm_backward(dy, x, w, sm, si)
    if lib == "numpy":
        return _np_fwd, _np_bwd
    import torch

    t, aten = torch.from_numpy, torch.ops.aten

    def fwd(x, w, b, rm, rv):
        y, sm, si = aten.native_batch_norm(t(x), t(w), t(b), t(rm), t(rv), True, 0.1, 1e-5)
        return y.numpy(), sm.numpy(), si.numpy()

    def bwd(dy, x, w, sm, si):
        out = aten.native_batch_norm_backward(t(dy), t(x), t(w), None, None, t(sm), t(si), True,
                                              1e-5, [True, True, True])
        return tuple(o.numpy() for o in out)

    return fwd, bwd


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("what", ["forward", "forward+backward"])
def test_batch_norm(benchmark, lib, rng, shape, what):
    benchmark.group = f"batch_norm {what} {'x'.join(map(str, shape))}"
    c = shape[1]
    x = rng.standard_normal(shape, dtype=np.float32) * 2 + 1
    dy = rng.standard_normal(shape, dtype=np.float32)
    w, b = rng.standard_normal(c, dtype=np.float32), rng.standard_normal(c, dtype=np.float32)
    rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
    fwd, bwd = _impl(lib)
    if what == "forward":
        got = benchmark(fwd, x, w, b, rm, rv)
        record_roof(benchmark, 8 * x.size)
        want = _np_fwd(x.astype(np.float64), w, b, np.zeros(c), np.ones(c))
        for g, e in zip(got, want):
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)
    else:
        def step():
            y, sm, si = fwd(x, w, b, rm, rv)
            return bwd(dy, x, w, sm, si)

        got = benchmark(step)
        record_roof(benchmark, 20 * x.size)
        _, mean, invstd = _np_fwd(x.astype(np.float64), w, b, np.zeros(c), np.ones(c))
        for g, e in zip(got, _np_bwd(dy.astype(np.float64), x.astype(np.float64), w, mean, invstd)):
            np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-3 * max(1.0, float(np.abs(e).max())))


# ---- layer_norm --------------------------------------------------------------------------------
# Napkin math (float32, M x D): the forward reads x once from memory (the row's re-reads come
# from L1) and writes y: 8 M D bytes; the backward reads dy and x and writes dx: 12 M D (the
# row's second read from L1/L2; dweight / dbias partials stay in cache). forward + backward 20 M D.
# PyTorch through aten's native_layer_norm / native_layer_norm_backward (no autograd overhead).
LN_SHAPES = [(4096, 1024), (2048, 128), (64 * 32, 768)]


def _ln_np_fwd(x, w, b, eps=1e-5):
    mean = x.mean(axis=-1, keepdims=True)
    rstd = 1 / np.sqrt(x.var(axis=-1, keepdims=True) + np.float32(eps))
    return (x - mean) * rstd * w + b, mean[..., 0], rstd[..., 0]


def _ln_np_bwd(dy, x, w, mean, rstd):
    xhat = (x - mean[:, None]) * rstd[:, None]
    g = dy * w
    dx = rstd[:, None] * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    return dx, (dy * xhat).sum(0), dy.sum(0)


def _ln_impl(lib, d):
    if lib == "fastdl":
        return (lambda x, w, b: ops.layer_norm(x, d, w, b),
                lambda dy, x, w, m, r: ops.layer_norm_backward(dy, x, d, w, m, r))
    if lib == "numpy":
        return _ln_np_fwd, _ln_np_bwd
    import torch

    t, aten = torch.from_numpy, torch.ops.aten

    def fwd(x, w, b):
        y, m, r = aten.native_layer_norm(t(x), [d], t(w), t(b), 1e-5)
        return y.numpy(), m, r  # torch's (M, 1) statistics go straight back to its backward

    def bwd(dy, x, w, m, r):
        out = aten.native_layer_norm_backward(t(dy), t(x), [d], m, r, t(w), t(w), [True, True, True])
        return tuple(o.numpy() for o in out)

    return fwd, bwd


@pytest.mark.parametrize("shape", LN_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("what", ["forward", "forward+backward"])
def test_layer_norm(benchmark, lib, rng, shape, what):
    benchmark.group = f"layer_norm {what} {'x'.join(map(str, shape))}"
    m, d = shape
    x = rng.standard_normal(shape, dtype=np.float32) * 2 + 1
    dy = rng.standard_normal(shape, dtype=np.float32)
    w, b = rng.standard_normal(d, dtype=np.float32), rng.standard_normal(d, dtype=np.float32)
    fwd, bwd = _ln_impl(lib, d)
    x64 = x.astype(np.float64)
    if what == "forward":
        got = benchmark(fwd, x, w, b)
        record_roof(benchmark, 8 * x.size)
        np.testing.assert_allclose(got[0], _ln_np_fwd(x64, w, b)[0], rtol=1e-4, atol=1e-4)
    else:
        def step():
            y, mean, rstd = fwd(x, w, b)
            return bwd(dy, x, w, mean, rstd)

        got = benchmark(step)
        record_roof(benchmark, 20 * x.size)
        _, mean, rstd = _ln_np_fwd(x64, w, b)
        for g, e in zip(got, _ln_np_bwd(dy.astype(np.float64), x64, w, mean, rstd)):
            np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-3 * max(1.0, float(np.abs(e).max())))
