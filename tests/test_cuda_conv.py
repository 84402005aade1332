"""CUDA conv2d (forward, backward-data, backward-weight) and conv_transpose2d against NumPy
float64 (tests/reference.py) and against the one-thread-per-output *_reference kernels.

Skipped as a whole unless CuPy imports and fastdl sees a GPU. Float32 results are held to the
textbook bound of a float32 dot product, |err| <= (D + 2) u (|a| . |b|) with u = 2**-24 and D
the number of terms summed, evaluated per element by running the float64 reference on |inputs|:
it holds for any summation order, so the implicit GEMM and the references are judged alike, and
an indexing slip (a wrong tap, a missed tile edge) shows up as an error far above it.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastdl import ops

import reference as ref
from helpers import cupy_or_skip

cp = cupy_or_skip()

from fastdl import _cuda  # noqa: E402

pytestmark = pytest.mark.gpu

U = 2.0**-24

# (N, C, H, W, K, R, S, stride, padding, dilation, groups)
CASES = [
    (1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1),
    (2, 3, 7, 7, 5, 3, 3, 1, 1, 1, 1),
    (1, 4, 9, 11, 6, 3, 3, 2, 1, 1, 2),
    (3, 6, 8, 5, 6, 3, 2, (2, 1), (1, 0), (2, 1), 3),
    (2, 8, 17, 17, 8, 3, 3, 1, 1, 1, 8),      # depthwise
    (1, 3, 5, 5, 2, 5, 5, 1, 2, 1, 1),        # kernel as large as the padded input
    (2, 16, 13, 13, 70, 1, 1, 1, 0, 1, 1),    # 1x1, two row tiles
    (1, 70, 12, 12, 3, 3, 3, 3, 0, 1, 1),     # depth 630: many slices, stride 3
    (4, 33, 20, 20, 65, 3, 3, 1, 1, 1, 1),    # every GEMM dimension past one tile; split depth
    (1, 2, 31, 3, 3, 4, 1, (3, 1), (0, 0), (1, 1), 1),
]


def pair(v):
    return tuple(v) if isinstance(v, tuple) else (v, v)


def sizes(stride, padding, dilation, groups):
    return (*pair(stride), *pair(padding), *pair(dilation), groups)


def normal(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def host(a):
    assert isinstance(a, cp.ndarray), f"expected a CuPy array, got {type(a).__name__}"
    return cp.asnumpy(a)


def assert_bound(got, want, bound, depth, name):
    got = host(got).astype(np.float64)
    assert got.shape == want.shape, f"{name}: shape {got.shape}, expected {want.shape}"
    err = np.abs(got - want)
    tol = (depth + 2) * U * bound + 1e-30
    worst = np.unravel_index(np.argmax(err - tol), err.shape) if err.size else ()
    assert (err <= tol).all(), (f"{name}: error {err[worst]:.3g} > bound {tol[worst]:.3g} at "
                                f"{worst} (got {got[worst]!r}, want {want[worst]!r})")


def make(case, rng):
    n, c, h, w, k, r, s, stride, padding, dilation, groups = case
    x = normal(rng, (n, c, h, w))
    wt = normal(rng, (k, c // groups, r, s))
    b = normal(rng, (k,))
    return x, wt, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward(case, rng):
    x, w, b, geo = make(case, rng)
    want = ref.conv2d(x, w, b, **geo)
    bound = ref.conv2d(np.abs(x), np.abs(w), np.abs(b), **geo)
    depth = w[0].size + 1
    y = ops.conv2d(cp.asarray(x), cp.asarray(w), cp.asarray(b), **geo)
    assert y.dtype == np.float32
    assert_bound(y, want, bound, depth, "y")
    # the extension directly: fast kernel, oracle kernel, no bias
    yr = cp.empty_like(y)
    args = (cp.asarray(x), cp.asarray(w))
    _cuda.conv2d_forward_reference(yr, *args, cp.asarray(b), *sizes(**geo))
    assert_bound(yr, want, bound, depth, "y (reference kernel)")
    y0 = cp.full_like(y, np.nan)
    _cuda.conv2d_forward(y0, *args, None, *sizes(**geo))
    assert_bound(y0, want - b.reshape(1, -1, 1, 1), bound, depth, "y (no bias)")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_backward(case, rng):
    x, w, _, geo = make(case, rng)
    n, k = x.shape[0], w.shape[0]
    oh, ow = ref.conv2d(x[:1], w, **geo).shape[2:]
    dy = normal(rng, (n, k, oh, ow))
    dx_want, dw_want, db_want = ref.conv2d_backward(dy, x, w, **geo)
    dx_bound, dw_bound, db_bound = ref.conv2d_backward(np.abs(dy), np.abs(x), np.abs(w), **geo)
    pix = n * oh * ow
    dx, dw, db = ops.conv2d_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(w), **geo)
    dx_depth = (k // geo["groups"]) * w.shape[2] * w.shape[3]
    assert_bound(dx, dx_want, dx_bound, dx_depth, "dx")
    assert_bound(dw, dw_want, dw_bound, pix + 256, "dw")  # + the split partials' final sum
    assert_bound(db, db_want, db_bound, pix, "db")
    # oracle kernels; dx/dw/db start as NaN so an unwritten element shows
    g = cp.asarray
    dxr, dwr, dbr = (cp.full(a.shape, np.nan, np.float32) for a in (x, w, db_want))
    _cuda.conv2d_backward_data_reference(dxr, g(dy), g(w), *sizes(**geo))
    _cuda.conv2d_backward_weight_reference(dwr, dbr, g(dy), g(x), *sizes(**geo))
    assert_bound(dxr, dx_want, dx_bound, dx_depth, "dx (reference kernel)")
    assert_bound(dwr, dw_want, dw_bound, pix, "dw (reference kernel)")
    assert_bound(dbr, db_want, db_bound, pix, "db (reference kernel)")
    # db=None: dw alone, and bitwise repeatable
    dw2 = cp.full(w.shape, np.nan, np.float32)
    _cuda.conv2d_backward_weight(dw2, None, g(dy), g(x), *sizes(**geo))
    np.testing.assert_array_equal(host(dw2), host(dw))


@pytest.mark.parametrize("stride,padding,output_padding", [(1, 0, 0), (2, 1, 1), ((3, 2), (1, 0), (2, 1))])
def test_conv_transpose2d(stride, padding, output_padding, rng):
    """Exercises backward_data with dx larger than the smallest input (output_padding)."""
    x = normal(rng, (2, 5, 6, 7))
    w = normal(rng, (5, 3, 3, 4))
    b = normal(rng, (3,))
    geo = dict(stride=stride, padding=padding, output_padding=output_padding)
    want = ref.conv_transpose2d(x, w, b, **geo)
    bound = ref.conv_transpose2d(np.abs(x), np.abs(w), np.abs(b), **geo)
    y = ops.conv_transpose2d(cp.asarray(x), cp.asarray(w), cp.asarray(b), **geo)
    assert_bound(y, want, bound, 5 * 12 + 1, "y")
    dy = normal(rng, want.shape)
    dxw, dww, dbw = ref.conv_transpose2d_backward(dy, x, w, **geo)
    dxb, dwb, dbb = ref.conv_transpose2d_backward(np.abs(dy), np.abs(x), np.abs(w), **geo)
    dx, dw, db = ops.conv_transpose2d_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(w), **geo)
    assert_bound(dx, dxw, dxb, 3 * 12, "dx")
    assert_bound(dw, dww, dwb, dy[:, 0].size + 256, "dw")
    assert_bound(db, dbw, dbb, dy[:, 0].size, "db")


def test_exact_small_integers(rng):
    """Small integers make every partial sum exact: any indexing slip is a wrong integer."""
    x = rng.integers(-3, 4, (3, 12, 10, 9)).astype(np.float32)
    w = rng.integers(-3, 4, (21, 4, 3, 3)).astype(np.float32)
    geo = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=3)
    y = ops.conv2d(cp.asarray(x), cp.asarray(w), **geo)
    np.testing.assert_array_equal(host(y), ref.conv2d(x, w, **geo))
    dy = rng.integers(-3, 4, y.shape).astype(np.float32)
    got = ops.conv2d_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(w), **geo)
    for name, g, want in zip(("dx", "dw", "db"), got, ref.conv2d_backward(dy, x, w, **geo)):
        np.testing.assert_array_equal(host(g), want, err_msg=name)


def test_views_and_empty_batch(rng):
    x = normal(rng, (4, 3, 9, 8))
    w = normal(rng, (5, 3, 3, 3))
    xg = cp.asarray(x.transpose(0, 1, 3, 2).copy()).transpose(0, 1, 3, 2)  # non-contiguous view
    assert not xg.flags.c_contiguous
    y = ops.conv2d(xg, cp.asarray(w), padding=1)
    assert_bound(y, ref.conv2d(x, w, padding=1), ref.conv2d(np.abs(x), np.abs(w), padding=1), 28, "y")
    # N = 0: empty outputs, and dw / db are sums over nothing (zeros)
    x0 = cp.zeros((0, 3, 9, 8), np.float32)
    assert ops.conv2d(x0, cp.asarray(w)).shape == (0, 5, 7, 6)
    dx, dw, db = ops.conv2d_backward(cp.zeros((0, 5, 7, 6), np.float32), x0, cp.asarray(w))
    assert dx.shape == (0, 3, 9, 8)
    np.testing.assert_array_equal(host(dw), np.zeros(w.shape, np.float32))
    np.testing.assert_array_equal(host(db), np.zeros(5, np.float32))


def test_bad_arguments():
    y = cp.empty((1, 2, 3, 3), np.float32)
    x = cp.ones((1, 4, 5, 5), np.float32)
    w = cp.ones((2, 4, 3, 3), np.float32)
    s = (1, 1, 0, 0, 1, 1, 1)
    _cuda.conv2d_forward(y, x, w, None, *s)  # the good call
    with pytest.raises(TypeError, match="x: expected a CUDA array"):
        _cuda.conv2d_forward(y, cp.asnumpy(x), w, None, *s)
    with pytest.raises(TypeError, match="w: expected dtype float32, got float64"):
        _cuda.conv2d_forward(y, x, w.astype(np.float64), None, *s)
    with pytest.raises(TypeError, match="x: must be C-contiguous"):
        _cuda.conv2d_forward(y, cp.ones((1, 4, 10, 5), np.float32)[:, :, ::2], w, None, *s)
    with pytest.raises(ValueError, match=r"y: expected shape \(1, 2, 3, 3\), got shape \(1, 2, 4, 4\)"):
        _cuda.conv2d_forward(cp.empty((1, 2, 4, 4), np.float32), x, w, None, *s)
    with pytest.raises(ValueError, match=r"b: expected shape \(2,\), got shape \(3,\)"):
        _cuda.conv2d_forward(y, x, w, cp.ones(3, np.float32), *s)
    with pytest.raises(ValueError, match="groups: 3 does not divide the input channels C = 4"):
        _cuda.conv2d_forward(y, x, w, None, 1, 1, 0, 0, 1, 1, 3)
    with pytest.raises(ValueError, match="stride: expected >= 1"):
        _cuda.conv2d_forward(y, x, w, None, 0, 1, 0, 0, 1, 1, 1)
    with pytest.raises(ValueError, match="dilated kernel"):
        _cuda.conv2d_forward(y, x, cp.ones((2, 4, 7, 3), np.float32), None, *s)
    with pytest.raises(ValueError, match=r"dy: expected shape \(1, 2, 3, 3\)"):
        _cuda.conv2d_backward_data(cp.empty_like(x), cp.empty((1, 2, 2, 3), np.float32), w, *s)
    with pytest.raises(ValueError, match=r"db: expected shape \(2,\)"):
        _cuda.conv2d_backward_weight(cp.empty_like(w), cp.empty(5, np.float32), y, x, *s)
    with pytest.raises(TypeError, match="float32"):
        ops.conv2d(x.astype(np.float64), w)


@pytest.mark.parametrize("stride,padding,output_padding,groups,dilation", [
    (2, 1, 1, 2, 1), (1, 0, 0, 1, 2), ((2, 1), (1, 2), (1, 2), 2, (2, 3)),  # the last: op >= stride
], ids=str)
def test_conv_transpose2d_groups_dilation(stride, padding, output_padding, groups, dilation, rng):
    """groups and dilation (issue 9), small integers so every sum is exact on the device."""
    x = rng.integers(-3, 4, (2, 4, 5, 6)).astype(np.float32)
    w = rng.integers(-3, 4, (4, 3, 3, 2)).astype(np.float32)
    b = rng.integers(-3, 4, (3 * groups,)).astype(np.float32)
    geo = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups,
               dilation=dilation)
    y = ops.conv_transpose2d(cp.asarray(x), cp.asarray(w), cp.asarray(b), **geo)
    np.testing.assert_array_equal(host(y), ref.conv_transpose2d_grouped(x, w, b, **geo))
    dy = rng.integers(-3, 4, y.shape).astype(np.float32)
    got = ops.conv_transpose2d_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(w), **geo)
    for name, g_, want in zip(("dx", "dw", "db"), got, ref.conv_transpose2d_grouped_backward(dy, x, w, **geo)):
        np.testing.assert_array_equal(host(g_), want, err_msg=name)
