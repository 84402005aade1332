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


# ---- gelu ------------------------------------------------------------------------------------
APPROX = ["none", "tanh"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("approximate", APPROX)
@pytest.mark.parametrize("n", [0, 1, 3, 7, 17, 129, 4099, 100_003])
def test_gelu(rng, approximate, dtype, n):
    x = rng.standard_normal(n) * 4
    dy = rng.standard_normal(n)
    check_op(lambda x: ops.gelu(x, approximate), lambda x: ref.gelu(x, approximate), [x], dtype,
             names=["y"])
    check_op(lambda dy, x: ops.gelu_backward(dy, x, approximate),
             lambda dy, x: ref.gelu_backward(dy, x, approximate), [dy, x], dtype, names=["dx"])


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_exact_accuracy(isa, dtype):
    """The exact form against math.erfc over [-14, 14] in ulps of the result (where it is a
    normal number), the lower tail included: the vector erf/erfc of vec_math.h for float32,
    std::erfc for float64."""
    import math
    if dtype == np.float32:
        x = np.linspace(-14, 14, 40_001).astype(dtype)
        # float64's own rounding of x / sqrt 2 (2 a^2 ulps of float64) is far below float32's ulp
        want = np.array([float(v) * 0.5 * math.erfc(-float(v) / math.sqrt(2)) for v in x])
    else:
        mp = pytest.importorskip("mpmath")
        x = np.linspace(-14, 14, 4_001)
        with mp.workdps(40):
            want = np.array([float(mp.mpf(float(v)) * mp.erfc(-mp.mpf(float(v)) / mp.sqrt(2)) / 2)
                             for v in x])
    y = np.empty_like(x)
    _core.gelu_forward(y, x, 0, isa=isa)
    normal = np.abs(want) >= np.finfo(dtype).tiny
    assert _ulps(y[normal], want[normal], dtype) <= 16
    # subnormal results: the exp factors underflow before the last products (a few 1e-44)
    assert np.max(np.abs(y[~normal] - want[~normal])) <= 32 * np.finfo(dtype).smallest_subnormal
    mid = np.abs(x) <= 5  # the bulk of real inputs
    assert _ulps(y[mid & normal], want[mid & normal], dtype) <= (6 if dtype == np.float32 else 4)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("approximate", [0, 1])
def test_gelu_matches_kernel_reference(rng, isa, dtype, approximate):
    x = (rng.standard_normal(5000) * 5).astype(dtype)
    dy = rng.standard_normal(5000).astype(dtype)
    y, yr, dx, dxr = (np.empty_like(x) for _ in range(4))
    _core.gelu_forward(y, x, approximate, isa=isa)
    _core.gelu_forward_reference(yr, x, approximate)
    _core.gelu_backward(dx, dy, x, approximate, isa=isa)
    _core.gelu_backward_reference(dxr, dy, x, approximate)
    assert_close(y, yr, dtype, name="y", ulps=8)
    assert_close(dx, dxr, dtype, name="dx", ulps=16)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("approximate", APPROX)
def test_gelu_special_values(isa, dtype, approximate):
    """+-1e4, +-inf and NaN: the limits (inf / -0 forward, 1 / 0 gradient), NaN kept."""
    x = np.array([-np.inf, -1e4, -60, -50, 0.0, 20, 50, 1e4, np.inf, np.nan], dtype)
    y, dx = np.empty_like(x), np.empty_like(x)
    a = APPROX.index(approximate)
    _core.gelu_forward(y, x, a, isa=isa)
    _core.gelu_backward(dx, np.ones_like(x), x, a, isa=isa)
    np.testing.assert_array_equal(y[:4], 0.0)
    assert y[4] == 0 and np.array_equal(y[5:9], x[5:9]) and np.isnan(y[9])
    np.testing.assert_array_equal(dx[:4], 0.0)
    assert dx[4] == 0.5 and np.array_equal(dx[5:9], np.ones(4, dtype)) and np.isnan(dx[9])


def test_gelu_lower_tail_relative():
    """gelu(-10) = -7.6e-23: relative accuracy, not the rounding noise of 1 + erf(x / sqrt 2)."""
    for dtype in DTYPES:
        x = np.array([-10.0, -8.0, -6.0], dtype)
        want = ref.gelu(x)
        np.testing.assert_allclose(ops.gelu(x), want, rtol=1e-5 if dtype == np.float32 else 1e-13)
        np.testing.assert_allclose(ops.gelu_backward(np.ones_like(x), x), ref.gelu_backward(np.ones(3), x),
                                   rtol=1e-4 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("approximate", APPROX)
def test_gelu_gradcheck(rng, approximate):
    x = rng.standard_normal((4, 7)) * 3
    gradcheck(lambda x: ops.gelu(x, approximate), lambda g, x: ops.gelu_backward(g, x, approximate),
              [x], [0], rng)


@pytest.mark.parametrize("approximate", APPROX)
def test_gelu_against_torch(rng, approximate):
    torch = pytest.importorskip("torch")
    x = (rng.standard_normal(3001) * 4).astype(np.float32)
    x[:4] = [-1e4, 1e4, -30, 30]
    dy = rng.standard_normal(3001).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_()
    yt = torch.nn.functional.gelu(xt, approximate=approximate)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(ops.gelu(x, approximate), yt.detach().numpy(), rtol=1e-5, atol=1e-6)
    dx, dxt = ops.gelu_backward(dy, x, approximate), xt.grad.numpy()
    np.testing.assert_allclose(dx, dxt, rtol=1e-5, atol=5e-6)
    # where they differ, fastdl is the closer to float64 (torch's float32 1 - tanh^2 cancels)
    want = ref.gelu_backward(dy, x, approximate)
    assert np.max(np.abs(dx - want)) <= np.max(np.abs(dxt - want)) + 1e-7


def test_gelu_views_dtypes_threads(rng):
    x = rng.standard_normal((6, 5, 9)).astype(np.float32)
    for view in (x[:, ::2], x.transpose(2, 0, 1)):
        y = ops.gelu(view)
        assert y.shape == view.shape and y.flags.c_contiguous
        assert_close(y, ref.gelu(view), np.float32)
        assert_close(ops.gelu_backward(view, view), ref.gelu_backward(view, view), np.float32)
    assert ops.gelu(np.arange(3)).dtype == np.float32
    assert ops.gelu(np.ones(3)).dtype == np.float64
    assert ops.gelu(np.float32(0.5)).shape == ()
    big = rng.standard_normal(300_001).astype(np.float32)
    outs = []
    for t in (1, 2):
        fastdl.set_num_threads(t)
        outs.append((ops.gelu(big), ops.gelu_backward(big, big, "tanh")))
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


GELU_BAD = [
    (lambda: ops.gelu(np.ones(3), "fast"), ValueError, "approximate must be 'none' or 'tanh', got 'fast'"),
    (lambda: ops.gelu(np.ones(3), None), ValueError, "approximate must be 'none' or 'tanh'"),
    (lambda: ops.gelu_backward(np.ones(3), np.ones(3), "erf"), ValueError, "approximate must be"),
    (lambda: ops.gelu_backward(np.ones(4), np.ones(3)), ValueError, "dy must have shape (3,), got (4,)"),
    (lambda: ops.gelu(None), TypeError, "x must be an array"),
    (lambda: ops.gelu(np.ones(3, complex)), TypeError, "x must have a real numeric dtype"),
    (lambda: _core.gelu_forward(np.empty(3, np.float32), np.ones(3, np.float32), 2), ValueError,
     "approximate: expected 0 (exact) or 1 (tanh), got 2"),
    (lambda: _core.gelu_forward(np.empty(3, np.float32), np.ones(3), 0), TypeError, "x"),
    (lambda: _core.gelu_backward(np.empty(3), np.ones(4), np.ones(3), 0), ValueError, "dy"),
]


@pytest.mark.parametrize("call,exc,msg", GELU_BAD, ids=[m for _, _, m in GELU_BAD])
def test_gelu_bad_input(call, exc, msg):
    with pytest.raises(exc) as info:
        call()
    assert msg in str(info.value)
