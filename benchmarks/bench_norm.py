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
