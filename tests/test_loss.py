"""cross_entropy (fused softmax), mse_loss and binary_cross_entropy_with_logits: mean loss and
gradient against the float64 NumPy reference and finite differences; stability and bad input."""

import numpy as np
import pytest

import fastdl
from fastdl import _core, ops

import reference as ref
from helpers import assert_close, check_op, gradcheck

DTYPES = [np.float32, np.float64]
ORDER = ["generic", "avx2", "avx512"]
ISAS = [i for i in ORDER if ORDER.index(i) <= ORDER.index(_core.cpu_isa_supported())]
CE_SHAPES = [(1, 1), (1, 10), (7, 3), (64, 10), (17, 129), (129, 1000), (3, 4099)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,c", CE_SHAPES, ids=str)
def test_cross_entropy(rng, dtype, n, c):
    logits = rng.standard_normal((n, c)) * 3
    target = rng.integers(0, c, n)
    ulps = 8 + c ** 0.5  # blocked row sums, see test_softmax
    loss, probs = ops.cross_entropy(logits.astype(dtype), target)
    want_loss, want_probs = ref.cross_entropy(logits, target)
    assert loss.shape == () and loss.dtype == dtype
    assert_close(loss, want_loss, dtype, ulps=ulps, name="loss")
    assert_close(probs, want_probs, dtype, ulps=ulps, name="probs")
    check_op(lambda p: ops.cross_entropy_backward(p, target),
             lambda p: ref.cross_entropy_backward(p, target), [want_probs], dtype)


@pytest.mark.parametrize("isa", ISAS)
def test_cross_entropy_matches_kernel_reference(rng, isa):
    logits = (rng.standard_normal((33, 77)) * 4).astype(np.float32)
    target = rng.integers(0, 77, 33)
    p1, p2 = np.empty_like(logits), np.empty_like(logits)
    l1 = _core.cross_entropy_forward(p1, logits, target, isa=isa)
    l2 = _core.cross_entropy_forward_reference(p2, logits, target)
    assert l1 == pytest.approx(l2, rel=1e-5)
    assert_close(p1, p2, np.float32, ulps=16)


# C <= 16 takes the narrow path (rows exponentiated a 256-row sub-block at a time); N = 1037 is
# no multiple of any vector width or of the sub-block, so every tail is exercised.
NARROW_C = [1, 2, 3, 4, 5, 15, 16, 17]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", NARROW_C)
def test_cross_entropy_narrow(rng, isa, dtype, c):
    n = 1037
    logits = rng.standard_normal((n, c)) * 3
    logits[5] *= 1e4  # large spreads: probs of exactly 0 and 1
    target = rng.integers(0, c, n)
    x = logits.astype(dtype)
    probs = np.empty_like(x)
    loss = _core.cross_entropy_forward(probs, x, target, isa=isa)
    want_loss, want_probs = ref.cross_entropy(x, target)
    ulps = 8 + c ** 0.5
    # The loss sums terms up to ~1e5 (row 5) against a mean of ~3: a few ulps of the big terms.
    assert_close(np.asarray(loss, dtype), want_loss, dtype, ulps=64, name="loss")
    assert_close(probs, want_probs, dtype, ulps=ulps, name="probs")
    p2 = np.empty_like(x)
    l2 = _core.cross_entropy_forward_reference(p2, x, target)
    assert loss == pytest.approx(l2, rel=1e-5 if dtype == np.float32 else 1e-12)
    d = np.empty_like(x)
    _core.cross_entropy_backward(d, probs, target)
    assert_close(d, ref.cross_entropy_backward(probs, target), dtype, name="dlogits")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("c", [2, 3, 4, 5, 16])
def test_cross_entropy_narrow_inf_nan(isa, c):
    x = np.zeros((300, c), np.float32)  # 300 rows: the special rows sit in both sub-blocks
    x[:, 0] = 1.0
    x[3, 1:] = -np.inf            # one finite logit: probs one-hot, loss 0 (target 0)
    x[270, :] = -np.inf           # every logit -inf: probs 0, loss NaN
    x[7, :] = 1e30                # a huge but equal row: uniform probs
    x[9, 1] = -1e30
    target = np.zeros(300, np.int64)
    probs = np.empty_like(x)
    loss = _core.cross_entropy_forward(probs, x, target, isa=isa)
    assert np.isnan(loss)
    np.testing.assert_array_equal(probs[270], 0)
    np.testing.assert_array_equal(probs[3], [1] + [0] * (c - 1))
    np.testing.assert_allclose(probs[7], 1 / c, rtol=1e-6)
    assert probs[9, 1] == 0
    keep = np.arange(300) != 270
    loss = _core.cross_entropy_forward(probs[keep], x[keep], target[keep], isa=isa)
    want, want_p = ref.cross_entropy(x[keep], target[keep])
    assert loss == pytest.approx(want, rel=1e-5)
    x[270, 1] = np.nan            # NaN among -inf: probs NaN
    loss = _core.cross_entropy_forward(probs, x, target, isa=isa)
    assert np.isnan(loss) and np.isnan(probs[270]).all()
    x[270] = 0.0
    x[271, 1] = np.nan            # NaN among finite logits: that row's probs NaN, the rest exact
    loss = _core.cross_entropy_forward(probs, x, target, isa=isa)
    assert np.isnan(loss) and np.isnan(probs[271]).all() and np.isfinite(probs[272:]).all()


def test_cross_entropy_narrow_thread_invariance(rng):
    x = rng.standard_normal((40000, 4)).astype(np.float32)  # several blocks of rows
    t = rng.integers(0, 4, 40000)
    fastdl.set_num_threads(1)
    one, p1 = ops.cross_entropy(x, t)
    for n in (2, 3):
        fastdl.set_num_threads(n)
        got, p = ops.cross_entropy(x, t)
        assert got.tobytes() == one.tobytes() and p.tobytes() == p1.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_extreme_logits(dtype):
    logits = np.array([[1e30, -1e30, 0.0], [-1e30, 1e30, 1e30], [0.0, 0.0, -np.inf],
                       [-1e30, -1e30, -1e30]], dtype)
    target = np.array([0, 0, 2, 1])
    loss, probs = ops.cross_entropy(logits[:2], target[:2])
    # row 0: target is the max -> 0; row 1: target is 2e30 below the max -> 2e30 (+ log 2)
    assert loss == pytest.approx(1e30, rel=1e-6)
    np.testing.assert_array_equal(probs, [[1, 0, 0], [0, 0.5, 0.5]])
    loss, probs = ops.cross_entropy(logits[2:], target[2:])
    assert loss == np.inf  # a -inf logit as the target: infinite loss, finite probs
    np.testing.assert_allclose(probs, [[0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]])
    assert np.isfinite(ops.cross_entropy_backward(probs, target[2:])).all()


def test_cross_entropy_targets():
    logits = np.zeros((3, 4), np.float32)
    want = np.log(4.0)
    for t in ([0, 1, 3], np.array([0, 1, 3], np.int32), np.array([0, 1, 3], np.uint8)):
        assert ops.cross_entropy(logits, t)[0] == pytest.approx(want)
    for t in (np.array([0.0, 1.0, 3.0]), np.array([True, False, True])):
        with pytest.raises(TypeError, match="integer class indices"):
            ops.cross_entropy(logits, t)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7,), (17, 3), (129, 33), (4, 5, 6), (300_001,)], ids=str)
@pytest.mark.parametrize("loss", ["mse_loss", "binary_cross_entropy_with_logits"])
def test_pointwise_losses(rng, dtype, shape, loss):
    a = rng.standard_normal(shape) * 3
    t = rng.standard_normal(shape) if loss == "mse_loss" else rng.random(shape)
    fwd, bwd = getattr(ops, loss), getattr(ops, f"{loss}_backward")
    got = fwd(a.astype(dtype), t.astype(dtype))
    assert got.shape == () and got.dtype == dtype
    # accumulated in double over blocks of 16K: a float64 mean of 300K terms is good to ~10 ulps
    assert_close(got, getattr(ref, loss)(a.astype(dtype), t.astype(dtype)), dtype, ulps=32)
    check_op(bwd, getattr(ref, f"{loss}_backward"), [a, t], dtype)


def test_bce_extreme_logits():
    x = np.array([-1e4, -100.0, 100.0, 1e4, 0.0], np.float32)
    t = np.array([1.0, 0.0, 1.0, 0.0, 0.5], np.float32)
    got = ops.binary_cross_entropy_with_logits(x, t)
    assert np.isfinite(got) and got == pytest.approx(ref.binary_cross_entropy_with_logits(x, t))
    d = ops.binary_cross_entropy_with_logits_backward(x, t)
    np.testing.assert_allclose(d, [-0.2, 0, 0, 0.2, 0], atol=1e-7)


def test_gradcheck(rng):
    x = rng.standard_normal((5, 7))
    t = rng.integers(0, 7, 5)
    gradcheck(lambda x: ops.cross_entropy(x, t)[0],
              lambda g, x: g * ops.cross_entropy_backward(ops.cross_entropy(x, t)[1], t),
              [x], wrt=[0], rng=rng)
    y = rng.standard_normal((4, 3))
    gradcheck(ops.mse_loss, lambda g, p, y: g * ops.mse_loss_backward(p, y), [x[:4, :3], y],
              wrt=[0], rng=rng)
    tb = rng.random((4, 3))
    gradcheck(ops.binary_cross_entropy_with_logits,
              lambda g, x, t: g * ops.binary_cross_entropy_with_logits_backward(x, t),
              [x[:4, :3] * 3, tb], wrt=[0], rng=rng)


def test_thread_count_invariance(rng):
    x = rng.standard_normal((2000, 100)).astype(np.float32)
    t = rng.integers(0, 100, 2000)
    y = rng.standard_normal(x.shape).astype(np.float32)
    fastdl.set_num_threads(1)
    one = [ops.cross_entropy(x, t)[0], ops.mse_loss(x, y), ops.binary_cross_entropy_with_logits(x, y)]
    for n in (2, 3):
        fastdl.set_num_threads(n)
        got = [ops.cross_entropy(x, t)[0], ops.mse_loss(x, y), ops.binary_cross_entropy_with_logits(x, y)]
        assert [g.tobytes() for g in got] == [o.tobytes() for o in one]


BAD = [
    (lambda: ops.cross_entropy(np.ones((2, 3)), [0, 3]), ValueError,
     "target[1] = 3 is out of range [0, C) with C = 3"),
    (lambda: ops.cross_entropy(np.ones((2, 3)), [-1, 0]), ValueError, "target[0] = -1 is out of range"),
    (lambda: ops.cross_entropy_backward(np.ones((2, 3)), [0, 5]), ValueError, "target[1] = 5"),
    (lambda: ops.cross_entropy(np.ones((0, 3)), np.zeros(0, np.int64)), ValueError, "empty batch (N = 0)"),
    (lambda: ops.cross_entropy(np.ones((2, 3)), [0]), ValueError, "target must have shape (2,)"),
    (lambda: ops.cross_entropy(np.ones(3), [0]), ValueError, "logits must be 2-D, got shape (3,)"),
    (lambda: ops.cross_entropy(np.ones((2, 3)), "ab"), TypeError, "integer class indices"),
    (lambda: ops.mse_loss(np.ones(3), np.ones(4)), ValueError, "target must have shape (3,), got (4,)"),
    (lambda: ops.mse_loss(np.ones(0), np.ones(0)), ValueError, "mean over zero elements"),
    (lambda: ops.binary_cross_entropy_with_logits(np.ones((0, 2)), np.ones((0, 2))), ValueError,
     "mean over zero elements"),
    (lambda: ops.binary_cross_entropy_with_logits_backward(np.ones(2), np.ones(3)), ValueError,
     "target must have shape (2,)"),
]


@pytest.mark.parametrize("call,exc,msg", BAD, ids=[m for _, _, m in BAD])
def test_bad_input(call, exc, msg):
    with pytest.raises(exc) as info:
        call()
    assert msg in str(info.value)


def test_core_rejects_bad_targets():
    probs = np.empty((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"target\[1\] = 7 is out of range \[0, C\) with C = 3"):
        _core.cross_entropy_forward(probs, np.zeros((2, 3), np.float32), np.array([0, 7]))
    with pytest.raises(TypeError, match="target: expected dtype int64"):
        _core.cross_entropy_forward(probs, np.zeros((2, 3), np.float32), np.array([0, 1], np.int32))
