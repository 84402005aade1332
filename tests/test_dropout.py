"""Inverted dropout: mask statistics, exact scaling, the same mask for any thread count and ISA,
p = 0 and p = 1, gradients, bad input."""

import numpy as np
import pytest

import fastdl
from fastdl import _core, ops

import reference as ref
from helpers import assert_close, gradcheck

DTYPES = [np.float32, np.float64]
ORDER = ["generic", "avx2", "avx512"]
ISAS = [i for i in ORDER if ORDER.index(i) <= ORDER.index(_core.cpu_isa_supported())]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_statistics_and_scaling(rng, dtype, p):
    n = 200_003
    x = rng.standard_normal(n).astype(dtype)
    y, mask = ops.dropout(x, p, seed=1234)
    assert mask.dtype == np.uint8 and mask.shape == x.shape and set(np.unique(mask)) <= {0, 1}
    kept = mask.mean()
    sigma = np.sqrt(p * (1 - p) / n)
    assert abs(kept - (1 - p)) < 5 * sigma
    assert_close(y, ref.dropout_apply(x, mask, p), dtype, ulps=1)
    # neighbours (which share a hash) and elements 64 apart are uncorrelated
    m = mask.astype(np.float64) - kept
    for lag in (1, 2, 64):
        corr = float(np.mean(m[:-lag] * m[lag:])) / (kept * (1 - kept))
        assert abs(corr) < 5 / np.sqrt(n)


def test_seeds():
    x = np.ones((64, 100), np.float32)
    a, ma = ops.dropout(x, 0.5, 7)
    b, mb = ops.dropout(x, 0.5, 7)
    np.testing.assert_array_equal(ma, mb)
    np.testing.assert_array_equal(a, b)
    _, mc = ops.dropout(x, 0.5, 8)
    assert (ma != mc).mean() > 0.4  # nearby seeds give unrelated masks
    _, md = ops.dropout(x, 0.5, -1)  # any int, modulo 2**64
    np.testing.assert_array_equal(md, ops.dropout(x, 0.5, 2**64 - 1)[1])


@pytest.mark.parametrize("n", [0, 1, 3, 7, 17, 129, 1001, 300_001])
def test_same_mask_any_thread_count_and_isa(rng, n):
    x = rng.standard_normal(n).astype(np.float32)
    want_y, want_m = np.empty_like(x), np.empty(n, np.uint8)
    _core.dropout_forward_reference(want_y, want_m, x, 0.3, 99)
    for threads in (1, 2, 3):
        fastdl.set_num_threads(threads)
        for isa in ISAS:
            y, m = np.empty_like(x), np.empty(n, np.uint8)
            _core.dropout_forward(y, m, x, 0.3, 99, isa=isa)
            np.testing.assert_array_equal(m, want_m, err_msg=f"{threads} threads, {isa}")
            np.testing.assert_array_equal(y, want_y, err_msg=f"{threads} threads, {isa}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_p_zero_and_one(rng, dtype):
    x = rng.standard_normal((5, 7)).astype(dtype)
    y, m = ops.dropout(x, 0.0, 1)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(m, 1)
    y, m = ops.dropout(x, 1.0, 1)
    np.testing.assert_array_equal(y, 0)
    np.testing.assert_array_equal(m, 0)
    dx = ops.dropout_backward(x, m, 1.0)
    np.testing.assert_array_equal(dx, 0)
    assert ops.dropout(np.zeros((0, 3), dtype), 0.5, 1)[0].shape == (0, 3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward(rng, dtype):
    x = rng.standard_normal((33, 17)).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    _, mask = ops.dropout(x, 0.25, 5)
    assert_close(ops.dropout_backward(dy, mask, 0.25), ref.dropout_apply(dy, mask, 0.25), dtype, ulps=1)
    np.testing.assert_array_equal(ops.dropout_backward(dy, mask.astype(bool), 0.25),
                                  ops.dropout_backward(dy, mask, 0.25))
    gradcheck(lambda x: ops.dropout(x, 0.25, 5)[0],
              lambda g, x: ops.dropout_backward(g, ops.dropout(x, 0.25, 5)[1], 0.25),
              [x.astype(np.float64)], wrt=[0], rng=rng)


def test_noncontiguous(rng):
    x = rng.standard_normal((20, 30)).astype(np.float32)
    y, m = ops.dropout(x.T, 0.5, 3)
    assert y.shape == (30, 20)
    assert_close(y, ref.dropout_apply(x.T, m, 0.5), np.float32, ulps=1)


BAD = [
    (lambda: ops.dropout(np.ones(3), 1.5, 0), ValueError, "p must be a probability in [0, 1], got 1.5"),
    (lambda: ops.dropout(np.ones(3), -0.1, 0), ValueError, "got -0.1"),
    (lambda: ops.dropout(np.ones(3), float("nan"), 0), ValueError, "got nan"),
    (lambda: ops.dropout(np.ones(3), "0.5", 0), TypeError, "p must be a real number"),
    (lambda: ops.dropout(np.ones(3), 0.5, 1.5), TypeError, "seed must be an int"),
    (lambda: ops.dropout(np.ones(3), 0.5, True), TypeError, "seed must be an int"),
    (lambda: ops.dropout_backward(np.ones(3), np.ones(4, np.uint8), 0.5), ValueError,
     "mask must have shape (3,), got (4,)"),
    (lambda: ops.dropout_backward(np.ones(3), np.ones(3), 0.5), TypeError, "mask must be the uint8 mask"),
    (lambda: ops.dropout_backward(np.ones(3), np.ones(3, np.uint8), 2), ValueError, "p must be a probability"),
]


@pytest.mark.parametrize("call,exc,msg", BAD, ids=[m for _, _, m in BAD])
def test_bad_input(call, exc, msg):
    with pytest.raises(exc) as info:
        call()
    assert msg in str(info.value)
