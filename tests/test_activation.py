"""relu, sigmoid, tanh (forward and backward from the output) and bias_add against the float64
NumPy reference, the plain-loop kernel oracle, every ISA, and finite differences."""

import numpy as np
import pytest

import fastdl
from fastdl import _core, ops

import reference as ref
from helpers import assert_close, check_op, gradcheck

DTYPES = [np.float32, np.float64]
ACTS = ["relu", "sigmoid", "tanh"]
ORDER = ["generic", "avx2", "avx512"]
ISAS = [i for i in ORDER if ORDER.index(i) <= ORDER.index(_core.cpu_isa_supported())]
SIZES = [0, 1, 3, 7, 17, 129, 1000, 4099, 200_003]  # the last runs threaded


def fwd(act):
    return getattr(ops, act), getattr(ref, act)


def bwd(act):
    return getattr(ops, f"{act}_backward"), getattr(ref, f"{act}_backward")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("n", SIZES)
def test_forward_backward(rng, act, dtype, n):
    x = rng.standard_normal(n) * 4
    y = getattr(ref, act)(x).astype(dtype)
    dy = rng.standard_normal(n)
    check_op(fwd(act)[0], fwd(act)[1], [x], dtype, names=["y"])
    check_op(bwd(act)[0], bwd(act)[1], [dy, y], dtype, names=["dx"])


@pytest.mark.parametrize("act", ACTS)
def test_shapes_and_views(rng, act):
    x = rng.standard_normal((6, 5, 9)).astype(np.float32)
    for view in (x[:, ::2], x.transpose(2, 0, 1), x[::-1], np.asfortranarray(x)):
        y = getattr(ops, act)(view)
        assert y.shape == view.shape and y.flags.c_contiguous
        assert_close(y, getattr(ref, act)(view), np.float32)
        dx = getattr(ops, f"{act}_backward")(view, y)
        assert_close(dx, getattr(ref, f"{act}_backward")(view, y), np.float32)
    assert getattr(ops, act)(np.float32(0.5)).shape == ()  # 0-d works too


def _ulps(got, want64, dtype):
    """|got - want| in units of the spacing of want (rounded to dtype); inf/NaN must match."""
    want = want64.astype(dtype)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    fin = np.isfinite(want)
    assert np.array_equal(got[~fin & ~np.isnan(want)], want[~fin & ~np.isnan(want)])
    sp = np.spacing(np.abs(want[fin])).astype(np.float64)
    return float(np.max(np.abs(got[fin].astype(np.float64) - want64[fin]) / sp))


def _hard_inputs(dtype):
    fi = np.finfo(dtype)
    wide = np.concatenate([np.linspace(-120, 120, 24001), np.linspace(-2, 2, 4001),
                           np.geomspace(1e-30, 1e3, 2000), -np.geomspace(1e-30, 1e3, 2000)])
    special = [np.inf, -np.inf, np.nan, 0.0, -0.0, fi.tiny, -fi.tiny, fi.smallest_subnormal,
               -fi.smallest_subnormal, fi.tiny / 3, fi.max, -fi.max, 88.7, 88.8, -87.4, -103.9,
               -104, 709.7, 710, -745, 0.625, -0.625, 0.6249, 1e6, -1e6, 1e30, -1e30]
    return np.concatenate([wide, special]).astype(dtype)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["sigmoid", "tanh"])
def test_accuracy_wide_range(isa, dtype, act):
    x = _hard_inputs(dtype)
    y = np.empty_like(x)
    getattr(_core, f"{act}_forward")(y, x, isa=isa)
    with np.errstate(all="ignore"):
        want = getattr(ref, act)(x.astype(np.float64))
    assert _ulps(y, want, dtype) <= 4.0


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_special_values(isa, dtype):
    x = _hard_inputs(dtype)
    y = np.empty_like(x)
    _core.relu_forward(y, x, isa=isa)
    np.testing.assert_array_equal(y, ref.relu(x).astype(dtype))  # NaN propagates
    dx = np.empty_like(x)
    _core.relu_backward(dx, np.full_like(x, np.inf), y, isa=isa)
    np.testing.assert_array_equal(dx, np.where(y > 0, np.inf, 0).astype(dtype))  # no inf * 0


def test_sigmoid_no_overflow():
    y = ops.sigmoid(np.array([-100, -1e4, -np.inf, 100, np.inf], np.float32))
    assert y[0] == np.float32(np.exp(-100.0)) > 0  # a float32 subnormal, correctly rounded
    np.testing.assert_array_equal(y[1:], [0, 0, 1, 1])
    assert ops.sigmoid(np.array(-700.0))[()] == pytest.approx(np.exp(-700.0), rel=1e-14)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_matches_kernel_reference(rng, isa, dtype, act):
    x = (rng.standard_normal(1031) * 6).astype(dtype)
    y, want = np.empty_like(x), np.empty_like(x)
    getattr(_core, f"{act}_forward")(y, x, isa=isa)
    getattr(_core, f"{act}_forward_reference")(want, x)
    assert_close(y, want, dtype, ulps=4)
    dy = rng.standard_normal(1031).astype(dtype)
    getattr(_core, f"{act}_backward")(y, dy, want, isa=isa)
    getattr(_core, f"{act}_backward_reference")(x, dy, want)
    assert_close(y, x, dtype, ulps=2)


@pytest.mark.parametrize("act", ACTS)
def test_gradcheck(rng, act):
    x = rng.standard_normal((3, 7)) * 2
    x[np.abs(x) < 1e-3] = 0.5  # relu's kink
    f = getattr(ops, act)
    b = getattr(ops, f"{act}_backward")
    gradcheck(f, lambda g, x: b(g, f(x)), [x], wrt=[0], rng=rng)


@pytest.mark.parametrize("act", ACTS)
def test_thread_count_invariance(rng, act):
    x = rng.standard_normal(300_001).astype(np.float32)
    fastdl.set_num_threads(1)
    one = getattr(ops, act)(x)
    fastdl.set_num_threads(2)
    np.testing.assert_array_equal(getattr(ops, act)(x), one)
    back = getattr(ops, f"{act}_backward")
    fastdl.set_num_threads(1)
    dx = back(x, one)
    fastdl.set_num_threads(3)
    np.testing.assert_array_equal(back(x, one), dx)


def test_dtype_policy():
    assert ops.relu([1, -2]).dtype == np.float32
    assert ops.tanh(np.ones(3, np.float64)).dtype == np.float64
    assert ops.sigmoid_backward(np.ones(2, np.float32), np.ones(2)).dtype == np.float64


# ---- bias_add ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", [((1, 1), 1), ((7, 17), 1), ((129, 1000), 1), ((5,), 0),
                                        ((2, 3, 4, 5), 1), ((4, 6, 3), -1), ((3, 4, 5), 0),
                                        ((64, 32, 16, 16), 1), ((0, 3), 1)])
def test_bias_add(rng, dtype, shape, axis):
    x = rng.standard_normal(shape)
    b = rng.standard_normal(shape[axis])
    dy = rng.standard_normal(shape)
    check_op(lambda x, b: ops.bias_add(x, b, axis), lambda x, b: ref.bias_add(x, b, axis), [x, b],
             dtype)
    check_op(lambda dy: ops.bias_add_backward(dy, axis), lambda dy: ref.bias_add_backward(dy, axis),
             [dy], dtype, baseline=lambda dy: ref.bias_add_backward(dy, axis).astype(dtype))


def test_bias_add_gradcheck(rng):
    x, b = rng.standard_normal((3, 4, 5)), rng.standard_normal(4)
    gradcheck(ops.bias_add, lambda g, x, b: (g, ops.bias_add_backward(g)), [x, b], wrt=[0, 1], rng=rng)


# ---- bad input ---------------------------------------------------------------------------------

BAD = [
    (lambda: ops.relu_backward(np.ones(3), np.ones(4)), ValueError, "dy must have shape (4,), got (3,)"),
    (lambda: ops.tanh(np.ones(3, complex)), TypeError, "x must have a real numeric dtype"),
    (lambda: ops.sigmoid(object()), TypeError, "sigmoid: x"),
    (lambda: ops.bias_add(np.ones((2, 3)), np.ones(2)), ValueError, "b must have shape (3,)"),
    (lambda: ops.bias_add(np.ones((2, 3)), np.ones(3), axis=2), ValueError, "axis 2 is out of range"),
    (lambda: ops.bias_add_backward(np.ones((2, 3)), axis=-3), ValueError, "axis -3 is out of range"),
]


@pytest.mark.parametrize("call,exc,msg", BAD, ids=[m for _, _, m in BAD])
def test_bad_input(call, exc, msg):
    with pytest.raises(exc) as info:
        call()
    assert msg in str(info.value)


def test_core_rejects_bad_direct_calls():
    out = np.empty(4, np.float32)
    with pytest.raises(TypeError, match="x: expected dtype float32"):
        _core.relu_forward(out, np.ones(4))
    with pytest.raises(ValueError, match=r"x: expected shape \(4,\), got shape \(5,\)"):
        _core.sigmoid_forward(out, np.ones(5, np.float32))
    with pytest.raises(TypeError, match="C-contiguous"):
        _core.tanh_forward(out, np.ones(8, np.float32)[::2])
    with pytest.raises(TypeError, match="float32 or float64"):
        _core.relu_forward(np.empty(2, np.int32), np.ones(2, np.int32))
    with pytest.raises(ValueError, match="unknown CPU ISA"):
        _core.relu_forward(out, out.copy(), isa="sse9")
