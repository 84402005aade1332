"""softmax and log_softmax along every axis, forward and backward, against the float64 NumPy
reference, the plain-loop kernel oracle on every ISA, and finite differences."""

import numpy as np
import pytest

import fastdl
from fastdl import _core, ops

import reference as ref
from helpers import assert_close, check_op, gradcheck

DTYPES = [np.float32, np.float64]
ORDER = ["generic", "avx2", "avx512"]
ISAS = [i for i in ORDER if ORDER.index(i) <= ORDER.index(_core.cpu_isa_supported())]
KINDS = ["softmax", "log_softmax"]
SHAPES = [(1, 1), (1, 3), (7, 17), (64, 10), (3, 129), (129, 1000), (2, 4099), (0, 5), (5, 0)]


def _np(kind, dtype):
    """The same computation in NumPy in `dtype`: the tolerance yardstick."""
    def f(x, axis=-1):
        x = np.asarray(x, dtype)
        z = x - x.max(axis=axis, keepdims=True)
        if kind == "softmax":
            e = np.exp(z)
            return e / e.sum(axis=axis, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))
    return f


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward_backward(rng, kind, dtype, shape):
    x = rng.standard_normal(shape) * 3
    dy = rng.standard_normal(shape)
    if x.size == 0:  # empty in, empty out
        assert getattr(ops, kind)(x.astype(dtype)).shape == shape
        assert getattr(ops, f"{kind}_backward")(dy, x).shape == shape
        return
    y = getattr(ref, kind)(x)
    # The row sums use a few running accumulators per vector lane (one lane on the generic ISA),
    # not NumPy's pairwise sum: allow their error, growing like sqrt(n) ulps.
    ulps = 8 + shape[-1] ** 0.5
    for fast, want, args, base in [
        (getattr(ops, kind), getattr(ref, kind), [x], _np(kind, dtype)(x)),
        (getattr(ops, f"{kind}_backward"), getattr(ref, f"{kind}_backward"), [dy, y], None),
    ]:
        got = fast(*[a.astype(dtype) for a in args])
        assert_close(got, want(*args), dtype, base, ulps=ulps)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_axis(rng, kind, dtype):
    x = rng.standard_normal((3, 5, 7, 4)) * 2
    dy = rng.standard_normal(x.shape)
    for axis in range(-4, 4):
        f = lambda x, a=axis: getattr(ops, kind)(x, axis=a)  # noqa: E731
        got = check_op(f, lambda x, a=axis: getattr(ref, kind)(x, axis=a), [x], dtype)
        assert got.flags.c_contiguous
        y = getattr(ref, kind)(x, axis=axis)
        check_op(lambda dy, y, a=axis: getattr(ops, f"{kind}_backward")(dy, y, axis=a),
                 lambda dy, y, a=axis: getattr(ref, f"{kind}_backward")(dy, y, axis=a), [dy, y], dtype)


@pytest.mark.parametrize("kind", KINDS)
def test_noncontiguous(rng, kind):
    x = rng.standard_normal((9, 40)).astype(np.float32)
    for view in (x[:, ::3], x.T, x[::-1, ::-1], np.asfortranarray(x)):
        for axis in (0, -1):
            assert_close(getattr(ops, kind)(view, axis), getattr(ref, kind)(view, axis), np.float32)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log", [False, True])
def test_matches_kernel_reference(rng, isa, dtype, log):
    for rows, n in [(3, 1), (5, 15), (4, 16), (2, 17), (7, 63), (3, 65), (2, 1000)]:
        x = (rng.standard_normal((rows, n)) * 5).astype(dtype)
        got, want = np.empty_like(x), np.empty_like(x)
        _core.softmax_forward(got, x, log=log, isa=isa)
        _core.softmax_forward_reference(want, x, log=log)
        # the oracle sums n terms one after another: its own error grows like n eps
        assert_close(got, want, dtype, ulps=16 * n ** 0.5, name=f"forward {rows}x{n}")
        dy = rng.standard_normal((rows, n)).astype(dtype)
        _core.softmax_backward(got, dy, want, log=log, isa=isa)
        _core.softmax_backward_reference(x, dy, want, log=log)
        assert_close(got, x, dtype, ulps=16 * n ** 0.5, name=f"backward {rows}x{n}")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_values(isa, dtype):
    inf, nan = np.inf, np.nan
    x = np.array([
        [1e30, -1e30, 0.0, 1e30],          # huge magnitudes: still exact
        [-inf, -inf, -inf, -inf],          # fully masked: zeros / -inf, never NaN
        [-inf, 2.0, -inf, 2.0],            # partly masked
        [nan, 1.0, 2.0, 3.0],              # NaN poisons the row, as in PyTorch
        [-inf, nan, -inf, -inf],
        [-1e30, -1e30, -1e30, -1e30],
        [1e-40, -1e-40, 0.0, 5e-324],      # subnormals
    ]).astype(dtype)
    for log in (False, True):
        y = np.empty_like(x)
        _core.softmax_forward(y, x, log=log, isa=isa)
        with np.errstate(all="ignore"):
            want = (ref.log_softmax if log else ref.softmax)(x)
        want[3:5] = nan
        np.testing.assert_allclose(y, want.astype(dtype), rtol=4 * np.finfo(dtype).eps)
    assert not np.isnan(ops.softmax(x[:3])).any()


def test_masked_row_gradients():
    x = np.array([[-np.inf, -np.inf, -np.inf], [-np.inf, 0.0, 1.0]])
    dy = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    dx = ops.softmax_backward(dy, ops.softmax(x))
    np.testing.assert_array_equal(dx[0], 0)
    assert np.isfinite(dx).all()
    assert np.isfinite(ops.log_softmax_backward(dy[1:], ops.log_softmax(x[1:]))).all()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gradcheck(rng, kind, axis):
    x = rng.standard_normal((4, 6)) * 2
    f = lambda x: getattr(ops, kind)(x, axis)  # noqa: E731
    b = getattr(ops, f"{kind}_backward")
    gradcheck(f, lambda g, x: b(g, f(x), axis), [x], wrt=[0], rng=rng)


@pytest.mark.parametrize("kind", KINDS)
def test_thread_count_invariance(rng, kind):
    x = rng.standard_normal((300, 1000)).astype(np.float32)
    fastdl.set_num_threads(1)
    y1 = getattr(ops, kind)(x)
    d1 = getattr(ops, f"{kind}_backward")(x, y1)
    fastdl.set_num_threads(2)
    np.testing.assert_array_equal(getattr(ops, kind)(x), y1)
    np.testing.assert_array_equal(getattr(ops, f"{kind}_backward")(x, y1), d1)


BAD = [
    (lambda: ops.softmax(np.ones((2, 3)), axis=2), ValueError, "axis 2 is out of range"),
    (lambda: ops.log_softmax(np.float32(1)), ValueError, "at least 1 dimension"),
    (lambda: ops.softmax(np.ones(3), axis=1.0), TypeError, "axis must be an int"),
    (lambda: ops.softmax_backward(np.ones((2, 3)), np.ones((3, 2))), ValueError,
     "dy must have shape (3, 2), got (2, 3)"),
    (lambda: ops.log_softmax(np.ones(3, complex)), TypeError, "real numeric dtype"),
]


@pytest.mark.parametrize("call,exc,msg", BAD, ids=[m for _, _, m in BAD])
def test_bad_input(call, exc, msg):
    with pytest.raises(exc) as info:
        call()
    assert msg in str(info.value)
