"""embedding: the lookup and its scatter-add gradient against the NumPy float64 reference and
finite differences; repeated indices, padding_idx, indices of any shape and integer dtype,
bitwise determinism across thread counts, and bad input."""

import numpy as np
import pytest

import fastdl
from fastdl import _core, ops

import reference as ref
from helpers import assert_close, gradcheck

DTYPES = [np.float32, np.float64]
# (indices shape, V, D): 0-d, empty, batch 1, odd sizes, a D that is no multiple of any vector
# width, a table of one row.
CASES = [((), 5, 3), ((0,), 4, 7), ((1,), 1, 1), ((7,), 3, 17), ((3, 5), 11, 8),
         ((2, 3, 4), 17, 5), ((4, 0), 3, 2), ((6,), 9, 0)]


def _case(rng, shape, v, d):
    idx = rng.integers(0, v, shape) if v else np.zeros(shape, np.int64)
    return idx, rng.standard_normal((v, d)), rng.standard_normal(tuple(shape) + (d,))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,v,d", CASES, ids=str)
def test_embedding_forward(rng, dtype, shape, v, d):
    idx, w, _ = _case(rng, shape, v, d)
    y = ops.embedding(idx, w.astype(dtype))
    assert y.dtype == dtype and y.shape == tuple(shape) + (d,)
    np.testing.assert_array_equal(y, ref.embedding(idx, w.astype(dtype)))  # a copy: exact


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,v,d", CASES, ids=str)
def test_embedding_backward(rng, dtype, shape, v, d):
    idx, _, dy = _case(rng, shape, v, d)
    dw = ops.embedding_backward(dy.astype(dtype), idx, v)
    assert dw.dtype == dtype and dw.shape == (v, d)
    hits = max(1, int(np.bincount(np.ravel(idx), minlength=1).max())) if idx.size else 1
    assert_close(dw, ref.embedding_backward(dy, idx, v), dtype, ulps=4.0 * hits, name="dweight")


def test_embedding_repeated_indices_exact():
    # small integers: every partial sum is exact, so any order gives these values
    idx = np.array([[2, 2, 0], [2, 4, 2]])
    dy = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3) - 7
    dw = ops.embedding_backward(dy, idx, 5)
    want = np.zeros((5, 3), np.float32)
    for m, i in enumerate(idx.ravel()):
        want[i] += dy.reshape(-1, 3)[m]
    np.testing.assert_array_equal(dw, want)
    assert not dw[[1, 3]].any()


def test_embedding_repeats_accumulate_in_index_order(rng):
    # float32 rounding depends on the order: the kernel must add in index order, as the reference
    idx = rng.integers(0, 3, 4000)
    dy = (rng.standard_normal((4000, 9)) * 10 ** rng.uniform(-4, 4, (4000, 1))).astype(np.float32)
    want = np.zeros((3, 9), np.float32)
    _core.embedding_backward_reference(want, dy, idx, -1)
    np.testing.assert_array_equal(ops.embedding_backward(dy, idx, 3), want)
    seq = np.zeros((3, 9), np.float32)
    for m in range(4000):
        seq[idx[m]] += dy[m]
    np.testing.assert_array_equal(want, seq)


def test_embedding_gradcheck(rng):
    idx = np.array([[0, 3, 3], [1, 0, 3]])
    w = rng.standard_normal((5, 4))
    gradcheck(lambda w_: ops.embedding(idx, w_),
              lambda g, w_: ops.embedding_backward(g, idx, 5), [w], [0], rng)


def test_embedding_gradcheck_padding(rng):
    idx = np.array([2, 0, 2, 1, 4])
    w = rng.standard_normal((5, 3))

    def forward(w_):  # PyTorch's padding semantics: the padding row gets no gradient
        y = ops.embedding(idx, w_)
        return np.where((idx == 2)[:, None], y * 0, y)

    gradcheck(forward, lambda g, w_: ops.embedding_backward(g, idx, 5, padding_idx=2), [w], [0], rng)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pad", [0, 2, -1, -5])
def test_embedding_padding_idx(rng, dtype, pad):
    v = 5
    idx = rng.integers(0, v, (4, 6))
    idx[0, :3] = pad % v
    dy = rng.standard_normal((4, 6, 7)).astype(dtype)
    dw = ops.embedding_backward(dy, idx, v, padding_idx=pad)
    assert not dw[pad % v].any()
    assert_close(dw, ref.embedding_backward(dy, idx, v, pad % v), dtype, ulps=32, name="dweight")


def test_embedding_bitwise_across_threads(rng):
    # large enough for several tiles of dweight (row tiles and, for the short table, column tiles)
    for v, d, m in [(300, 64, 5000), (2, 1000, 3000), (4001, 3, 20000)]:
        idx = rng.integers(0, min(v, 20), m)
        idx[::7] = rng.integers(0, v, idx[::7].size)
        w = rng.standard_normal((v, d)).astype(np.float32)
        dy = rng.standard_normal((m, d)).astype(np.float32)
        outs = []
        for t in (1, 2, 3):
            fastdl.set_num_threads(t)
            outs.append((ops.embedding(idx, w), ops.embedding_backward(dy, idx, v, padding_idx=1)))
        for y, dw in outs[1:]:
            np.testing.assert_array_equal(y, outs[0][0])
            np.testing.assert_array_equal(dw, outs[0][1])
        want = np.empty((v, d), np.float32)
        _core.embedding_backward_reference(want, dy, idx, 1)
        np.testing.assert_array_equal(outs[0][1], want)
        np.testing.assert_array_equal(outs[0][0], w[idx])


@pytest.mark.parametrize("itype", [np.int32, np.uint8, np.int16, np.uint32, np.int64])
def test_embedding_integer_dtypes(rng, itype):
    idx = rng.integers(0, 7, (3, 4)).astype(itype)
    w = rng.standard_normal((7, 5)).astype(np.float32)
    np.testing.assert_array_equal(ops.embedding(idx, w), w[idx.astype(np.int64)])
    dy = rng.standard_normal((3, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(ops.embedding_backward(dy, idx, 7),
                                  ops.embedding_backward(dy, idx.astype(np.int64), 7))


def test_embedding_python_lists_and_scalars(rng):
    w = rng.standard_normal((4, 3))
    np.testing.assert_array_equal(ops.embedding([[1, 3], [0, 0]], w), w[[[1, 3], [0, 0]]])
    np.testing.assert_array_equal(ops.embedding(2, w), w[2])
    assert ops.embedding(2, w).shape == (3,)


def test_embedding_non_contiguous(rng):
    w = rng.standard_normal((6, 10))[:, ::2]          # (6, 5), strided columns
    idx = rng.integers(0, 6, (5, 4)).T                 # transposed indices
    dy = rng.standard_normal((5, 4, 5)).transpose(1, 0, 2)
    np.testing.assert_array_equal(ops.embedding(idx, w), w[idx])
    assert_close(ops.embedding_backward(dy, idx, 6), ref.embedding_backward(dy, idx, 6),
                 np.float64, ulps=16)


def test_embedding_dtype_rule(rng):
    w = rng.integers(-3, 3, (4, 2))
    y = ops.embedding([0, 3], w)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, w[[0, 3]].astype(np.float32))
    assert ops.embedding_backward(np.ones((2, 2), np.float64), [0, 3], 4).dtype == np.float64


@pytest.mark.parametrize("bad", [np.array([0.0, 1.0]), np.array([True, False]), "ab", [1.5]])
def test_embedding_rejects_non_integer_indices(bad):
    w = np.ones((3, 2), np.float32)
    with pytest.raises(TypeError, match="indices"):
        ops.embedding(bad, w)
    with pytest.raises(TypeError, match="indices"):
        ops.embedding_backward(np.ones((2, 2), np.float32), bad, 3)


@pytest.mark.parametrize("value", [-1, 5, 2**40, -(2**40)])
@pytest.mark.parametrize("kernel", ["fast", "reference"])
def test_embedding_out_of_range(rng, value, kernel):
    v = 5
    idx = rng.integers(0, v, 600)
    idx[[377, 450]] = value
    w = rng.standard_normal((v, 3)).astype(np.float32)
    dy = rng.standard_normal((600, 3)).astype(np.float32)
    msg = rf"indices.*indices\[377\] = {value}.*V = {v}"
    suffix = "" if kernel == "fast" else "_reference"
    for t in (1, 2):
        fastdl.set_num_threads(t)
        with pytest.raises(ValueError, match=msg):
            getattr(_core, "embedding_forward" + suffix)(np.empty((600, 3), np.float32), idx, w)
        with pytest.raises(ValueError, match=msg):
            getattr(_core, "embedding_backward" + suffix)(np.empty((v, 3), np.float32), dy, idx, -1)
    with pytest.raises(ValueError, match="indices"):
        ops.embedding(idx.reshape(20, 30), w)
    with pytest.raises(ValueError, match="indices"):
        ops.embedding_backward(dy, idx, v)


def test_embedding_empty_table():
    y = ops.embedding(np.zeros((0,), np.int64), np.zeros((0, 4), np.float32))
    assert y.shape == (0, 4)
    assert ops.embedding_backward(np.zeros((0, 4)), np.zeros(0, np.int64), 0).shape == (0, 4)
    with pytest.raises(ValueError, match=r"indices\[0\] = 0"):
        ops.embedding([0], np.zeros((0, 4), np.float32))


def test_embedding_bad_arguments(rng):
    with pytest.raises(ValueError, match="weight"):
        ops.embedding([0], np.ones(4))
    with pytest.raises(TypeError, match="weight"):
        ops.embedding([0], None)
    with pytest.raises(TypeError, match="weight"):
        ops.embedding([0], np.ones((2, 2), np.complex64))
    with pytest.raises(ValueError, match=r"dy must have shape indices.shape \+ \(D,\) = \(2, D\)"):
        ops.embedding_backward(np.ones((3, 3)), [0, 1], 4)
    with pytest.raises(ValueError, match="dy"):
        ops.embedding_backward(np.ones((2, 3)), 1, 4)  # 0-d indices take dy of shape (D,)
    with pytest.raises(ValueError, match="num_embeddings"):
        ops.embedding_backward(np.ones((1, 3)), [0], -1)
    with pytest.raises(TypeError, match="num_embeddings"):
        ops.embedding_backward(np.ones((1, 3)), [0], 4.0)
    with pytest.raises(ValueError, match="padding_idx"):
        ops.embedding_backward(np.ones((1, 3)), [0], 4, padding_idx=4)
    with pytest.raises(ValueError, match="padding_idx"):
        ops.embedding_backward(np.ones((1, 3)), [0], 4, padding_idx=-5)
    with pytest.raises(TypeError, match="padding_idx"):
        ops.embedding_backward(np.ones((1, 3)), [0], 4, padding_idx=1.0)


def test_embedding_extension_checks(rng):
    w = rng.standard_normal((4, 3)).astype(np.float32)
    idx = np.array([0, 3, 1])
    y = np.empty((3, 3), np.float32)
    with pytest.raises(TypeError, match="indices: expected dtype int64, got int32"):
        _core.embedding_forward(y, idx.astype(np.int32), w)
    with pytest.raises(TypeError, match="weight: expected dtype float32, got float64"):
        _core.embedding_forward(y, idx, w.astype(np.float64))
    with pytest.raises(TypeError, match="float32 or float64"):
        _core.embedding_forward(np.empty((3, 3), np.int64), idx, w.astype(np.int64))
    with pytest.raises(ValueError, match=r"y: expected shape \(3, 3\), got shape \(3, 2\)"):
        _core.embedding_forward(np.empty((3, 2), np.float32), idx, w)
    with pytest.raises(ValueError, match="weight: expected 2-D"):
        _core.embedding_forward(y, idx, w.ravel())
    with pytest.raises(ValueError, match="indices: expected 1-D"):
        _core.embedding_forward(y, idx.reshape(3, 1), w)
    with pytest.raises(TypeError, match="y: output must be C-contiguous"):
        _core.embedding_forward(np.empty((3, 3), np.float32).T, idx, w)
    with pytest.raises(TypeError, match="weight.*contiguous"):
        _core.embedding_forward(y, idx, np.asfortranarray(w))
    ro = np.empty((3, 3), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="y: output array is read-only"):
        _core.embedding_forward(ro, idx, w)
    dw = np.empty((4, 3), np.float32)
    with pytest.raises(ValueError, match="padding_idx: expected -1"):
        _core.embedding_backward(dw, y, idx, 4)
    with pytest.raises(ValueError, match="padding_idx"):
        _core.embedding_backward(dw, y, idx, -2)
    with pytest.raises(ValueError, match=r"dy: expected shape \(3, 3\)"):
        _core.embedding_backward(dw, np.empty((2, 3), np.float32), idx, -1)
    with pytest.raises(TypeError, match="dy: expected dtype float32"):
        _core.embedding_backward(dw, y.astype(np.float64), idx, -1)
