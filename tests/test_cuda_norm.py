"""CUDA batch_norm (training and eval forward, backward) against NumPy float64.

Skipped as a whole unless CuPy imports and fastdl sees a GPU. x is the extension's (N, C, L)
layout; sizes cover L = 1 (BatchNorm1d), one channel, several statistics chunks per channel
(N*L > 16K) and data far from 0 (the one-pass variance must not cancel). Tolerances: outputs
within a few float32 ulps of their scale; the per-channel sums within (terms) ulps of the sum of
absolute values, the bound any summation order meets.
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
SHAPES = [(2, 3, 1), (1, 4, 7), (5, 1, 33), (16, 8, 1), (3, 17, 100), (40, 2, 1000),
          (20000, 3, 1), (2, 2, 20000)]


def host(a):
    assert isinstance(a, cp.ndarray), f"expected a CuPy array, got {type(a).__name__}"
    return cp.asnumpy(a)


def close(got, want, ulps, name, scale=None):
    got = host(got)
    assert got.dtype == np.float32 and got.shape == want.shape, name
    scale = max(1.0, float(np.abs(want).max(initial=0))) if scale is None else scale
    np.testing.assert_allclose(got, want, rtol=0, atol=ulps * EPS32 * scale, err_msg=name)


def reference(x, w, b, rm, rv, training, momentum, eps, dy):
    """float64: (y, mean, invstd, new running mean, new running var, dx, dweight, dbias) and the
    sums of absolute values that bound dweight / dbias."""
    x, dy = x.astype(np.float64), dy.astype(np.float64)
    c = x.shape[1]
    w = np.ones(c) if w is None else w.astype(np.float64)
    b = np.zeros(c) if b is None else b.astype(np.float64)
    m = x.shape[0] * x.shape[2]
    if training:
        mean, var = x.mean(axis=(0, 2)), x.var(axis=(0, 2))
        rm = None if rm is None else (1 - momentum) * rm + momentum * mean
        rv = None if rv is None else (1 - momentum) * rv + momentum * var * m / (m - 1)
    else:
        mean, var = rm.astype(np.float64), rv.astype(np.float64)
    invstd = 1 / np.sqrt(var + eps)
    xhat = (x - mean[:, None]) * invstd[:, None]
    y = xhat * w[:, None] + b[:, None]
    db, dw = dy.sum(axis=(0, 2)), (dy * xhat).sum(axis=(0, 2))
    g = w[:, None] * invstd[:, None]
    dx = g * (dy - db[:, None] / m - xhat * dw[:, None] / m) if training else g * dy
    return (y, mean, invstd, rm, rv, dx, dw, db,
            np.abs(dy * xhat).sum(axis=(0, 2)), np.abs(dy).sum(axis=(0, 2)))


def run(x, w, b, rm, rv, training, momentum=0.1, eps=1e-5):
    g = lambda a: None if a is None else cp.asarray(a)  # noqa: E731
    y = cp.full(x.shape, np.nan, np.float32)
    mean, invstd = (cp.full(x.shape[1], np.nan, np.float32) for _ in range(2))
    rmg, rvg = g(rm), g(rv)
    _cuda.batch_norm_forward(y, mean, invstd, g(x), g(w), g(b), rmg, rvg, training, momentum, eps)
    return y, mean, invstd, rmg, rvg


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm(shape, training, affine, rng):
    n, c, l = shape
    x = (rng.standard_normal(shape) * 2 + rng.standard_normal((1, c, 1)) * 3).astype(np.float32)
    w = rng.standard_normal(c).astype(np.float32) if affine else None
    b = rng.standard_normal(c).astype(np.float32) if affine else None
    rm = rng.standard_normal(c).astype(np.float32)
    rv = (rng.random(c) + 0.5).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    (y_w, mean_w, inv_w, rm_w, rv_w, dx_w, dw_w, db_w, dw_abs, db_abs) = reference(
        x, w, b, rm, rv, training, 0.1, 1e-5, dy)
    y, mean, invstd, rmg, rvg = run(x, w, b, rm, rv, training)
    close(y, y_w, 16, "y")
    close(mean, mean_w, 4, "save_mean")
    close(invstd, inv_w, 4, "save_invstd")
    close(rmg, rm_w.astype(np.float64), 4, "running_mean")
    close(rvg, rv_w.astype(np.float64), 4, "running_var")
    dx = cp.full(shape, np.nan, np.float32)
    dweight, dbias = (cp.full(c, np.nan, np.float32) for _ in range(2))
    _cuda.batch_norm_backward(dx, dweight, dbias, cp.asarray(dy), cp.asarray(x),
                              None if w is None else cp.asarray(w), mean, invstd, training)
    close(dbias, db_w, 4, "dbias", scale=float(db_abs.max()))
    close(dweight, dw_w, 8, "dweight", scale=float(dw_abs.max()))
    close(dx, dx_w, 64, "dx")


def test_far_from_zero_and_constant_channel(rng):
    """Data at 1e4 +- 1: a naive E[x^2] - E[x]^2 in float would lose every digit of the
    variance; a constant channel has variance 0 (invstd = 1/sqrt(eps), y = bias)."""
    x = (1e4 + rng.standard_normal((64, 2, 50))).astype(np.float32)
    x[:, 1] = 7.0
    y, mean, invstd, _, rv = run(x, None, None, np.zeros(2, np.float32), np.ones(2, np.float32), True)
    want_var = x.astype(np.float64).var(axis=(0, 2))
    close(invstd, 1 / np.sqrt(want_var + 1e-5), 8, "save_invstd")
    close(mean, x.astype(np.float64).mean(axis=(0, 2)), 2, "save_mean", scale=1e4)
    np.testing.assert_array_equal(host(y)[:, 1], 0.0)
    m = x.shape[0] * x.shape[2]
    close(rv, 0.9 + 0.1 * want_var * m / (m - 1), 4, "running_var")


def test_through_ops(rng):
    if not hasattr(ops, "batch_norm"):
        pytest.skip("fastdl.ops.norm is not in this tree yet")
    x = rng.standard_normal((6, 4, 5, 3)).astype(np.float32)
    w, b = rng.standard_normal(4).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    rm, rv = np.zeros(4, np.float32), np.ones(4, np.float32)
    rmg, rvg = cp.asarray(rm), cp.asarray(rv)
    y, mean, invstd = ops.batch_norm(cp.asarray(x), cp.asarray(w), cp.asarray(b), rmg, rvg)
    x3 = x.reshape(6, 4, 15)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    want = reference(x3, w, b, rm, rv, True, 0.1, 1e-5, dy.reshape(6, 4, 15))
    close(y, want[0].reshape(x.shape), 16, "y")
    close(rmg, want[3], 4, "running_mean")
    dx, dweight, dbias = ops.batch_norm_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(w),
                                                 mean, invstd)
    close(dx, want[5].reshape(x.shape), 64, "dx")
    close(dweight, want[6], 8, "dweight", scale=float(want[8].max()))
    # (N, C) input: L = 1
    x2 = rng.standard_normal((9, 4)).astype(np.float32)
    y2, _, _ = ops.batch_norm(cp.asarray(x2), None, None, None, None)
    close(y2, reference(x2[:, :, None], None, None, None, None, True, 0.1, 1e-5,
                        x2[:, :, None])[0][:, :, 0], 16, "y (N, C)")


def test_bad_arguments():
    x = cp.ones((2, 3, 4), np.float32)
    y, v = cp.empty_like(x), cp.empty(3, np.float32)
    _cuda.batch_norm_forward(y, v, cp.empty_like(v), x, None, None, None, None, True, 0.1, 1e-5)
    with pytest.raises(ValueError, match=r"x: expected shape \(2, 3, 4\), got shape \(2, 3\)"):
        _cuda.batch_norm_forward(y, v, v, cp.ones((2, 3), np.float32), None, None, None, None,
                                 True, 0.1, 1e-5)
    with pytest.raises(ValueError, match=r"y: expected 3-D array, got shape \(2, 12\)"):
        _cuda.batch_norm_forward(y.reshape(2, 12), v, v, x, None, None, None, None, True, 0.1, 1e-5)
    with pytest.raises(ValueError, match=r"weight: expected shape \(3,\), got shape \(4,\)"):
        _cuda.batch_norm_forward(y, v, v, x, cp.ones(4, np.float32), None, None, None, True, 0.1,
                                 1e-5)
    with pytest.raises(TypeError, match="x: expected dtype float32, got float64"):
        _cuda.batch_norm_forward(y, v, v, x.astype(np.float64), None, None, None, None, True, 0.1,
                                 1e-5)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        _cuda.batch_norm_forward(cp.empty((1, 3, 1), np.float32), v, v, cp.ones((1, 3, 1), np.float32),
                                 None, None, None, None, True, 0.1, 1e-5)
    with pytest.raises(ValueError, match=r"running_mean, running_var: required in eval mode "
                                         r"\(training=False\), got None"):
        _cuda.batch_norm_forward(y, v, v, x, None, None, v, None, False, 0.1, 1e-5)
    with pytest.raises(TypeError, match="running_mean: must be C-contiguous"):
        _cuda.batch_norm_forward(y, v, v, x, None, None, cp.ones(6, np.float32)[::2], None, True,
                                 0.1, 1e-5)
    with pytest.raises(ValueError, match="eps: expected a finite value >= 0"):
        _cuda.batch_norm_forward(y, v, v, x, None, None, None, None, True, 0.1, -1.0)
    with pytest.raises(ValueError, match=r"dy: expected shape \(2, 3, 4\), got shape \(2, 3, 5\)"):
        _cuda.batch_norm_backward(y, v, v, cp.ones((2, 3, 5), np.float32), x, None, v, v, True)


# ---- layer_norm --------------------------------------------------------------------------------

@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape,ns", [((3, 1), 1), ((5, 17), 17), ((4, 1025), 1025), ((300, 33), 33),
                                      ((2, 3, 4, 8), (4, 8)), ((2, 5000), 5000)], ids=str)
def test_layer_norm_against_cpu(rng, shape, ns, affine):
    import reference as ref
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    nst = (ns,) if isinstance(ns, int) else ns
    w = rng.standard_normal(nst).astype(np.float32) if affine else None
    b = rng.standard_normal(nst).astype(np.float32) if affine else None
    dev = lambda a: None if a is None else cp.asarray(a)  # noqa: E731
    y, mean, rstd = ops.layer_norm(dev(x), ns, dev(w), dev(b))
    want_y, want_m, want_r = ref.layer_norm(x, ns, w, b)
    close(y, want_y, 32, "y")
    close(mean, want_m, 8, "mean")
    close(rstd, want_r, 16, "rstd")
    dy = rng.standard_normal(shape).astype(np.float32)
    dx, dw, db = ops.layer_norm_backward(dev(dy), dev(x), ns, dev(w), mean, rstd)
    want = ref.layer_norm_backward(dy, x, ns, w, host(mean), host(rstd))
    big = max(1.0, float(host(rstd).max()))
    rows = x.size // want[1].size
    close(dx, want[0], 64 * big, "dx")
    # the parameter sums: within (rows) ulps of the sum of absolute terms, any summation order
    xhat = ref.layer_norm(x, ns)[0].reshape(rows, -1)
    dyr = dy.reshape(rows, -1)
    close(dw, want[1], 4 * rows, "dweight", scale=max(1.0, float(np.abs(dyr * xhat).sum(0).max())))
    close(db, want[2], 4 * rows, "dbias", scale=max(1.0, float(np.abs(dyr).sum(0).max())))


def test_layer_norm_large_mean_and_repeatable(rng):
    x = (1e4 + rng.standard_normal((6, 1000)) * 0.1).astype(np.float32)
    y, mean, rstd = ops.layer_norm(cp.asarray(x), 1000)
    want_y = ops.layer_norm(x, 1000)[0]
    assert np.max(np.abs(host(y) - want_y)) < 1e-3
    y2 = ops.layer_norm(cp.asarray(x), 1000)[0]
    np.testing.assert_array_equal(host(y), host(y2))


def test_layer_norm_bad_input():
    x = cp.ones((3, 4), cp.float32)
    with pytest.raises(ValueError, match="normalized_shape"):
        ops.layer_norm(x, 5)
    with pytest.raises(ValueError, match="weight must have shape"):
        ops.layer_norm(x, 4, cp.ones(3, cp.float32))
    with pytest.raises(TypeError, match="float32"):
        ops.layer_norm(cp.ones((3, 4), cp.float64), 4)
    with pytest.raises(ValueError, match="mean"):
        _cuda.layer_norm_forward(x, cp.empty(2, cp.float32), cp.empty(3, cp.float32), x, None, None, 1e-5)
