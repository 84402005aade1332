"""CUDA embedding (lookup and deterministic scatter-add gradient) against the CPU kernels.

Skipped as a whole unless CuPy imports and fastdl sees a GPU. Both passes are exact in float32:
the forward is a copy, and the backward adds each element's contributions in index order, as
the CPU kernel does, so the results are compared bit for bit. Sizes cover the float4 and
scalar paths (D % 4), a misaligned table, several row blocks and column blocks of the backward
grid, index tiles past one block's width, padding_idx, empty and 0-d indices, bad indices.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastdl import ops
from helpers import cupy_or_skip

cp = cupy_or_skip()

from fastdl import _cuda  # noqa: E402

pytestmark = pytest.mark.gpu

# (indices shape, V, D)
CASES = [((), 5, 3), ((0,), 4, 8), ((1,), 1, 1), ((7,), 3, 17), ((3, 5), 11, 8),
         ((600,), 9, 4), ((40, 50), 1000, 33), ((3000,), 2, 1024), ((5000,), 50000, 16),
         ((6,), 9, 0)]


def host(a):
    assert isinstance(a, cp.ndarray), f"expected a CuPy array, got {type(a).__name__}"
    return cp.asnumpy(a)


@pytest.mark.parametrize("shape,v,d", CASES, ids=str)
def test_cuda_embedding_matches_cpu(rng, shape, v, d):
    idx = rng.integers(0, min(v, 13), shape)
    if idx.size:
        idx.reshape(-1)[::3] = rng.integers(0, v, idx.reshape(-1)[::3].size)
    w = rng.standard_normal((v, d)).astype(np.float32)
    dy = rng.standard_normal(tuple(shape) + (d,)).astype(np.float32)
    y = ops.embedding(cp.asarray(idx), cp.asarray(w))
    assert y.shape == tuple(shape) + (d,) and y.dtype == np.float32
    np.testing.assert_array_equal(host(y), ops.embedding(idx, w))
    for pad in (None, int(idx.reshape(-1)[0]) if idx.size else None):
        dw = ops.embedding_backward(cp.asarray(dy), cp.asarray(idx), v, padding_idx=pad)
        assert dw.shape == (v, d) and dw.dtype == np.float32
        np.testing.assert_array_equal(host(dw), ops.embedding_backward(dy, idx, v, padding_idx=pad))


def test_cuda_embedding_deterministic(rng):
    idx = cp.asarray(rng.integers(0, 4, 20000))
    dy = cp.asarray(rng.standard_normal((20000, 64)).astype(np.float32))
    first = host(ops.embedding_backward(dy, idx, 7))
    for _ in range(3):
        np.testing.assert_array_equal(host(ops.embedding_backward(dy, idx, 7)), first)


def test_cuda_embedding_misaligned(rng):
    # a table that starts 4 bytes past a 16-byte boundary takes the scalar path
    buf = cp.asarray(rng.standard_normal(1 + 6 * 8).astype(np.float32))
    w = buf[1:].reshape(6, 8)
    idx = rng.integers(0, 6, 11)
    np.testing.assert_array_equal(host(ops.embedding(cp.asarray(idx), w)), host(w)[idx])
    dbuf = cp.zeros(1 + 11 * 8, np.float32)
    dy = dbuf[1:].reshape(11, 8)
    dy[...] = cp.asarray(rng.standard_normal((11, 8)).astype(np.float32))
    out = cp.empty((6, 8), np.float32)
    _cuda.embedding_backward(out, dy, cp.asarray(idx), -1)
    np.testing.assert_array_equal(host(out), ops.embedding_backward(host(dy), idx, 6))


@pytest.mark.parametrize("value", [-1, 9, 2**40])
def test_cuda_embedding_out_of_range(rng, value):
    idx = rng.integers(0, 9, 700)
    idx[[333, 500]] = value
    w = cp.asarray(rng.standard_normal((9, 5)).astype(np.float32))
    msg = rf"indices\[333\] = {value} is out of range \[0, V\) with V = 9"
    with pytest.raises(ValueError, match=msg):
        ops.embedding(cp.asarray(idx), w)
    with pytest.raises(ValueError, match=msg):
        ops.embedding_backward(cp.ones((700, 5), np.float32), cp.asarray(idx), 9)


def test_cuda_embedding_bad_arguments(rng):
    w = cp.ones((4, 3), np.float32)
    with pytest.raises(TypeError, match="indices"):
        ops.embedding(cp.asarray([0.5]), w)
    with pytest.raises(TypeError, match="indices"):
        ops.embedding(np.array([0, 1]), w)  # NumPy indices with a CuPy table
    with pytest.raises(TypeError, match="float32"):
        ops.embedding([0], cp.ones((4, 3), np.float64))
    with pytest.raises(TypeError, match="indices: expected dtype int64"):
        _cuda.embedding_forward(cp.empty((1, 3), np.float32), cp.zeros(1, np.int32), w)
    with pytest.raises(ValueError, match=r"y: expected shape \(2, 3\)"):
        _cuda.embedding_forward(cp.empty((1, 3), np.float32), cp.zeros(2, np.int64), w)
    with pytest.raises(ValueError, match="padding_idx"):
        _cuda.embedding_backward(cp.empty((4, 3), np.float32), cp.ones((1, 3), np.float32),
                                 cp.zeros(1, np.int64), 7)
