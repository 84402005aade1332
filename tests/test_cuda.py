"""The CUDA kernels (fastdl._cuda), through fastdl.ops and directly, against NumPy float64.

Skipped as a whole unless CuPy imports and fastdl sees a GPU. Most checks use small-integer
inputs, which make every path exact: products and partial sums are integers below 2**24, and
integers up to 3 are exact in TF32 too, so any indexing slip shows as a wrong value, not as
noise. Random-normal inputs then check accuracy against the textbook error bound of a float32
dot product, |err| <= (K + 2) u (|a| @ |b|) with u = 2**-24, which holds for any summation order;
TF32 adds 2 * 2**-11 for rounding both inputs to a 10-bit mantissa.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastdl
from fastdl import ops
from helpers import cupy_or_skip

cp = cupy_or_skip()

from fastdl import _cuda  # noqa: E402  (only importable in a CUDA build)

pytestmark = pytest.mark.gpu

F64 = np.float64
U = 2.0**-24  # unit roundoff of float32
TF32_ROUNDING = 2 * 2.0**-11  # both inputs rounded to nearest with a 10-bit mantissa


# ---- helpers --------------------------------------------------------------------------------


def ints(shape, seed, lo=-3, hi=3):
    """float32 array of small integers (exact in float32 and TF32)."""
    return np.random.default_rng(seed).integers(lo, hi + 1, size=shape).astype(np.float32)


def normal(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def host(x):
    assert isinstance(x, cp.ndarray), f"expected a CuPy array, got {type(x).__name__}"
    return cp.asnumpy(x)


def assert_exact(got, want):
    got = host(got)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want.astype(np.float32))


def assert_within_bound(got, want, bound, k, tf32=False):
    """|got - want| <= rel * bound elementwise, rel from K (and TF32 rounding)."""
    got = host(got).astype(F64)
    rel = (k + 2) * U + (TF32_ROUNDING if tf32 else 0.0)
    excess = np.abs(got - want) - rel * bound
    assert got.shape == want.shape
    assert excess.max(initial=-1.0) <= 0.0, (
        f"error exceeds the float32 bound by {excess.max():.3g} "
        f"(max error {np.abs(got - want).max():.3g}, K={k}, tf32={tf32})"
    )


def mm64(a, b):
    return np.matmul(a.astype(F64), b.astype(F64))


@pytest.fixture(params=[False, True], ids=["fp32", "tf32"])
def tf32(request):
    """Runs the test with fastdl.backends.cuda.matmul.allow_tf32 off and on."""
    flags = fastdl.backends.cuda.matmul
    old = flags.allow_tf32
    flags.allow_tf32 = request.param
    yield request.param
    flags.allow_tf32 = old


SHAPES = [  # (M, K, N): ones, odd primes, around the 128 x 128 tile and its 8/16-deep K slice
    (1, 1, 1),
    (3, 7, 17),
    (7, 129, 3),
    (17, 3, 129),
    (1, 1000, 1),
    (129, 129, 129),
    (128, 16, 128),
    (130, 9, 257),
    (1031, 67, 1100),
]


# ---- matmul forward -------------------------------------------------------------------------


@pytest.mark.parametrize("m,k,n", SHAPES)
def test_matmul_exact(tf32, m, k, n):
    a, b = ints((m, k), 1), ints((k, n), 2)
    assert_exact(ops.matmul(cp.asarray(a), cp.asarray(b)), mm64(a, b))


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (17, 1000, 3), (257, 129, 130), (1100, 1031, 1029)])
def test_matmul_accuracy(tf32, m, k, n):
    a, b = normal((m, k), 3), normal((k, n), 4)
    got = ops.matmul(cp.asarray(a), cp.asarray(b))
    assert_within_bound(got, mm64(a, b), mm64(np.abs(a), np.abs(b)), k, tf32)


@pytest.mark.parametrize(
    "a_shape,b_shape",
    [
        ((3, 5, 7), (3, 7, 9)),  # both batched
        ((4, 130, 17), (17, 129)),  # b shared: folded into one tall product
        ((7, 17), (4, 17, 130)),  # a shared: batch stride 0 in the kernel
        ((2, 1, 1), (2, 1, 1)),
    ],
)
def test_matmul_batched(tf32, a_shape, b_shape):
    a, b = ints(a_shape, 5), ints(b_shape, 6)
    assert_exact(ops.matmul(cp.asarray(a), cp.asarray(b)), mm64(a, b))


VIEWS = ["contiguous", "transposed", "step2", "reversed", "offset", "padded_rows"]


def _views(x):
    """Strided views of a CuPy array: transposed storage, every other column, reversed rows,
    and an offset start (not 16-byte aligned)."""
    m, n = x.shape
    return {
        "contiguous": x,
        "transposed": cp.ascontiguousarray(x.T).T,
        "step2": cp.repeat(x, 2, axis=1)[:, ::2],
        "reversed": cp.ascontiguousarray(x[::-1])[::-1],
        "offset": cp.pad(x, ((1, 0), (1, 0)))[1:, 1:],
        "padded_rows": cp.pad(x, ((0, 0), (0, 3)))[:, :n],
    }


@pytest.mark.parametrize("a_view", VIEWS)
@pytest.mark.parametrize("b_view", ["contiguous", "transposed", "step2", "offset"])
def test_matmul_strided_views(tf32, a_view, b_view):
    a, b = ints((67, 33), 7), ints((33, 130), 8)
    da, db = _views(cp.asarray(a))[a_view], _views(cp.asarray(b))[b_view]
    assert not (a_view != "contiguous" and da.flags.c_contiguous)
    assert_exact(ops.matmul(da, db), mm64(a, b))


def test_matmul_zero_sizes():
    assert ops.matmul(cp.ones((0, 3), cp.float32), cp.ones((3, 4), cp.float32)).shape == (0, 4)
    assert ops.matmul(cp.ones((2, 0, 3), cp.float32), cp.ones((2, 3, 4), cp.float32)).shape == (2, 0, 4)
    y = ops.matmul(cp.ones((3, 0), cp.float32), cp.ones((0, 4), cp.float32))  # K = 0: zeros
    assert_exact(y, np.zeros((3, 4)))


def test_matmul_batch_beyond_grid_limit():
    """More batches than gridDim.z (65535) takes several launches."""
    a, b = ints((65535 + 3, 2, 3), 9), ints((65535 + 3, 3, 2), 10)
    assert_exact(ops.matmul(cp.asarray(a), cp.asarray(b)), mm64(a, b))


def test_matmul_on_a_non_default_stream():
    a, b = ints((300, 70), 11), ints((70, 90), 12)
    with cp.cuda.Stream(non_blocking=True) as stream:
        y = ops.matmul(cp.asarray(a), cp.asarray(b))
        stream.synchronize()
    assert_exact(y, mm64(a, b))


# ---- backward ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "a_shape,b_shape",
    [((7, 129), (129, 3)), ((130, 17), (17, 131)), ((3, 5, 7), (3, 7, 9)), ((4, 33, 17), (17, 9)),
     ((33, 17), (4, 17, 9))],
)
def test_matmul_backward_exact(tf32, a_shape, b_shape):
    a, b = ints(a_shape, 13), ints(b_shape, 14)
    dy = ints(np.broadcast_shapes(a_shape[:-2], b_shape[:-2]) + (a_shape[-2], b_shape[-1]), 15)
    da, db = ops.matmul_backward(cp.asarray(dy), cp.asarray(a), cp.asarray(b))
    want_da = mm64(dy, np.swapaxes(b, -1, -2))
    want_db = mm64(np.swapaxes(a, -1, -2), dy)
    if a.ndim < dy.ndim:
        want_da = want_da.sum(axis=0)
    if b.ndim < dy.ndim:
        want_db = want_db.sum(axis=0)
    assert_exact(da, want_da)
    assert_exact(db, want_db)


@pytest.mark.parametrize("x_shape", [(1, 3), (37, 129), (2, 65, 17), (1031, 7)])
@pytest.mark.parametrize("out_features", [1, 5, 130])
def test_linear_forward_backward_exact(tf32, x_shape, out_features):
    in_features = x_shape[-1]
    x, w, b = ints(x_shape, 16), ints((out_features, in_features), 17), ints((out_features,), 18)
    dy = ints(x_shape[:-1] + (out_features,), 19)
    y = ops.linear(cp.asarray(x), cp.asarray(w), cp.asarray(b))
    assert_exact(y, mm64(x, w.T) + b)
    assert_exact(ops.linear(cp.asarray(x), cp.asarray(w)), mm64(x, w.T))
    dx, dw, db = ops.linear_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(w))
    dy2, x2 = dy.reshape(-1, out_features), x.reshape(-1, in_features)
    assert_exact(dx, mm64(dy, w))
    assert_exact(dw, mm64(dy2.T, x2))
    assert_exact(db, dy2.astype(F64).sum(axis=0))


def test_linear_backward_accuracy(tf32):
    x, w, dy = normal((1030, 257), 20), normal((129, 257), 21), normal((1030, 129), 22)
    dx, dw, db = ops.linear_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(w))
    assert_within_bound(dx, mm64(dy, w), mm64(np.abs(dy), np.abs(w)), 129, tf32)
    assert_within_bound(dw, mm64(dy.T, x), mm64(np.abs(dy).T, np.abs(x)), 1030, tf32)
    assert_within_bound(db, dy.astype(F64).sum(0), np.abs(dy).astype(F64).sum(0), 1030)


# ---- _cuda.gemm directly: epilogue, TF32, the reference kernel -------------------------------


@pytest.mark.parametrize("kernel", ["fp32", "tf32", "reference"])
@pytest.mark.parametrize("bias_axis", [None, 0, 1])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (0.5, -2.0)])
@pytest.mark.parametrize("batch", [None, 3])
def test_gemm_epilogue_exact(kernel, bias_axis, relu, alpha, beta, batch):
    m, k, n = 131, 19, 67
    lead = () if batch is None else (batch,)
    a, b = ints(lead + (m, k), 23), ints(lead + (k, n), 24)
    c0 = ints(lead + (m, n), 25)
    bias = None if bias_axis is None else ints((m if bias_axis == 0 else n,), 26, -9, 9)
    want = alpha * mm64(a, b) + beta * c0.astype(F64)
    if bias_axis == 0:
        want += bias[:, None]
    elif bias_axis == 1:
        want += bias
    if relu:
        want = np.maximum(want, 0)
    # beta == 0 must not read out: fill it with NaN
    out = cp.asarray(c0) if beta != 0 else cp.full(lead + (m, n), cp.nan, cp.float32)
    kw = dict(alpha=alpha, beta=beta, bias=None if bias is None else cp.asarray(bias),
              bias_axis=1 if bias_axis is None else bias_axis, relu=relu)
    if kernel == "reference":
        _cuda.gemm_reference(out, cp.asarray(a), cp.asarray(b), **kw)
    else:
        _cuda.gemm(out, cp.asarray(a), cp.asarray(b), tf32=kernel == "tf32", **kw)
    assert_exact(out, want)


@pytest.mark.parametrize("tf32_flag", [False, True])
def test_gemm_relu_passes_nan(tf32_flag):
    a, b = ints((5, 4), 27), ints((4, 6), 28)
    a[2, 1] = np.nan
    out = cp.empty((5, 6), cp.float32)
    _cuda.gemm(out, cp.asarray(a), cp.asarray(b), relu=True, tf32=tf32_flag)
    got = host(out)
    assert np.isnan(got[2]).all() and not np.isnan(np.delete(got, 2, axis=0)).any()


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (129, 257, 131), (300, 1000, 17)])
def test_fast_kernel_matches_reference_bitwise(m, k, n):
    """Both accumulate with one fmaf per k in the same order (the tiles' zero padding adds
    exact zeros), so with alpha = 1 the fp32 kernel equals the oracle bit for bit."""
    a, b, bias = normal((m, k), 29), normal((k, n), 30), normal((n,), 31)
    da, db = cp.asarray(a), cp.asarray(b).T.copy().T  # b column-major: the other loader path
    fast, ref = cp.empty((m, n), cp.float32), cp.empty((m, n), cp.float32)
    _cuda.gemm(fast, da, db, bias=cp.asarray(bias), relu=True)
    _cuda.gemm_reference(ref, da, db, bias=cp.asarray(bias), relu=True)
    np.testing.assert_array_equal(host(fast), host(ref))


def test_tf32_flag_selects_tensor_cores():
    """1 + 2**-12 is not a TF32 number: exact fp32 keeps it, TF32 rounds it to 1."""
    a = cp.full((16, 8), 1 + 2.0**-12, cp.float32)
    b = cp.zeros((8, 16), cp.float32)
    b[0] = 1
    exact, rounded = cp.empty((16, 16), cp.float32), cp.empty((16, 16), cp.float32)
    _cuda.gemm(exact, a, b)
    _cuda.gemm(rounded, a, b, tf32=True)
    assert (host(exact) == np.float32(1 + 2.0**-12)).all()
    assert (host(rounded) == 1).all()
    fastdl.backends.cuda.matmul.allow_tf32 = True
    try:
        assert (host(ops.matmul(a, b)) == 1).all()
    finally:
        fastdl.backends.cuda.matmul.allow_tf32 = False
    assert (host(ops.matmul(a, b)) == np.float32(1 + 2.0**-12)).all()


# ---- sum_rows ---------------------------------------------------------------------------------


@pytest.mark.parametrize("m", [0, 1, 7, 256, 257, 5000, 70001])
@pytest.mark.parametrize("n", [1, 33, 100])
def test_sum_rows_exact(m, n):
    x = ints((m, n), 32)
    out = cp.full((n,), cp.nan, cp.float32)
    _cuda.sum_rows(out, cp.asarray(x))
    assert_exact(out, x.astype(F64).sum(axis=0))


# ---- errors and types -------------------------------------------------------------------------


def test_results_are_cupy_arrays():
    a, b = cp.ones((3, 4), cp.float32), cp.ones((4, 5), cp.float32)
    assert isinstance(ops.matmul(a, b), cp.ndarray)
    assert all(isinstance(g, cp.ndarray) for g in ops.matmul_backward(cp.ones((3, 5), cp.float32), a, b))
    w = cp.ones((5, 4), cp.float32)
    assert isinstance(ops.linear(a, w, cp.ones(5, cp.float32)), cp.ndarray)
    assert all(isinstance(g, cp.ndarray) for g in ops.linear_backward(cp.ones((3, 5), cp.float32), a, w))


def test_float64_input_is_a_type_error():
    a = cp.ones((3, 4), cp.float64)
    with pytest.raises(TypeError, match="float32"):
        ops.matmul(a, a.T)
    with pytest.raises(TypeError, match="a: expected dtype float32, got float64"):
        _cuda.gemm(cp.empty((3, 3), cp.float32), a, a.T.astype(cp.float32))
    with pytest.raises(TypeError, match="out: expected dtype float32, got float64"):
        _cuda.sum_rows(cp.empty((4,), cp.float64), cp.ones((3, 4), cp.float32))


def test_mixing_numpy_and_cupy_is_a_type_error():
    a = np.ones((3, 4), np.float32)
    with pytest.raises(TypeError, match="mix"):
        ops.matmul(a, cp.ones((4, 2), cp.float32))
    with pytest.raises(TypeError, match="a: expected a CUDA array"):
        _cuda.gemm(cp.empty((3, 2), cp.float32), a, cp.ones((4, 2), cp.float32))


def test_gemm_argument_errors():
    a, b = cp.ones((3, 4), cp.float32), cp.ones((4, 5), cp.float32)
    with pytest.raises(ValueError, match=r"out: expected size 5 along axis 1, got shape \(3, 6\)"):
        _cuda.gemm(cp.empty((3, 6), cp.float32), a, b)
    with pytest.raises(ValueError, match=r"b: expected 4 rows to match a of shape \(3, 4\), got shape \(5, 5\)"):
        _cuda.gemm(cp.empty((3, 5), cp.float32), a, cp.ones((5, 5), cp.float32))
    with pytest.raises(TypeError, match="C-contiguous"):
        _cuda.gemm(cp.empty((5, 3), cp.float32).T, a, b)
    with pytest.raises(ValueError, match="bias: expected size 5"):
        _cuda.gemm(cp.empty((3, 5), cp.float32), a, b, bias=cp.ones(3, cp.float32))
    with pytest.raises(ValueError, match="bias_axis"):
        _cuda.gemm(cp.empty((3, 5), cp.float32), a, b, bias_axis=2)


def test_device_count_matches_cupy():
    assert _cuda.device_count() == cp.cuda.runtime.getDeviceCount() >= 1
