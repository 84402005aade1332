"""CUDA activations, softmax, losses, dropout, bias_add and optimizers against the CPU ops.

Every op runs through fastdl.ops on CuPy float32 arrays and is compared with the same op on the
NumPy copy (the CPU kernels, themselves tested against NumPy float64) and, where cheap, with a
float64 NumPy formula. Skipped as a whole unless CuPy imports and fastdl sees a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastdl import ops
from helpers import cupy_or_skip

cp = cupy_or_skip()

from fastdl import _cuda  # noqa: E402

pytestmark = pytest.mark.gpu

SIZES = [1, 3, 4, 5, 31, 1000, 4099]
RTOL = 2e-6  # a few float32 ulps: expf/tanhf (<= 2 ulp) against the CPU's vector exp/tanh


def gpu(a):
    return cp.asarray(a)


def close(got, want, rtol=RTOL, atol=1e-7):
    np.testing.assert_allclose(cp.asnumpy(got), want, rtol=rtol, atol=atol)


def extreme(rng, n):
    x = rng.standard_normal(n).astype(np.float32) * 30
    special = np.array([0.0, -0.0, 1e-38, -1e-38, 88.0, -88.0, 100.0, -100.0, 1e30, -1e30,
                        np.inf, -np.inf, np.nan], np.float32)
    x[: min(n, special.size)] = special[: min(n, special.size)]
    return x


# ---- activations ----------------------------------------------------------------------------


@pytest.mark.parametrize("act", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("n", SIZES)
def test_activation_forward_backward(act, n, rng):
    x = extreme(rng, n)
    y_cpu = getattr(ops, act)(x)
    y = getattr(ops, act)(gpu(x))
    assert isinstance(y, cp.ndarray) and y.dtype == np.float32 and y.shape == x.shape
    close(y, y_cpu, atol=1e-38)
    ref = cp.empty_like(y)
    getattr(_cuda, f"{act}_forward_reference")(ref, gpu(x))
    np.testing.assert_array_equal(cp.asnumpy(ref), cp.asnumpy(y))  # vector path == scalar path
    dy = rng.standard_normal(n).astype(np.float32)
    dx = getattr(ops, f"{act}_backward")(gpu(dy), gpu(y_cpu))
    np.testing.assert_array_equal(cp.asnumpy(dx), getattr(ops, f"{act}_backward")(dy, y_cpu))


def test_activation_views_and_offsets(rng):
    x = rng.standard_normal((7, 9)).astype(np.float32)
    xg = gpu(x)
    close(ops.sigmoid(xg.T), ops.sigmoid(x.T))             # non-contiguous: copied
    close(ops.tanh(xg.ravel()[1:]), ops.tanh(x.ravel()[1:]))  # offset 4 bytes: scalar path
    close(ops.relu(gpu(np.float32(-2.0))), ops.relu(np.float32(-2.0)))  # 0-d


# ---- softmax --------------------------------------------------------------------------------


@pytest.mark.parametrize("shape,axis", [((5, 1), -1), ((3, 7), -1), ((9, 33), 1), ((4, 1024), -1),
                                        ((3, 1025), -1), ((2, 5000), -1), ((4, 6, 5), 1),
                                        ((6, 3, 4), 0)])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_forward_backward(shape, axis, log, rng):
    x = (rng.standard_normal(shape) * 10).astype(np.float32)
    f, fb = (ops.log_softmax, ops.log_softmax_backward) if log else (ops.softmax, ops.softmax_backward)
    y_cpu = f(x, axis=axis)
    y = f(gpu(x), axis=axis)
    close(y, y_cpu, rtol=1e-5, atol=1e-6 if log else 1e-30)
    dy = rng.standard_normal(shape).astype(np.float32)
    close(fb(gpu(dy), gpu(y_cpu), axis=axis), fb(dy, y_cpu, axis=axis), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("n", [3, 40, 2000])
def test_softmax_masked_rows(n):
    x = np.zeros((4, n), np.float32)
    x[0] = -np.inf                      # fully masked: zeros, never NaN
    x[1] = -np.inf
    x[1, n // 2] = np.nan               # masked with a NaN: NaN throughout
    x[2, 0] = np.inf                    # +inf: NaN (as PyTorch)
    x[3, :] = [1e30] + [-1e30] * (n - 1)  # huge logits stay exact
    for log in (False, True):
        f = ops.log_softmax if log else ops.softmax
        np.testing.assert_array_equal(cp.asnumpy(f(gpu(x))), f(x))
    ref = cp.empty((4, n), np.float32)
    _cuda.softmax_forward_reference(ref, gpu(x))
    np.testing.assert_array_equal(cp.asnumpy(ref), ops.softmax(x))


# ---- losses ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n,c", [(1, 1), (7, 5), (64, 10), (33, 1024), (5, 3000)])
def test_cross_entropy(n, c, rng):
    logits = (rng.standard_normal((n, c)) * 8).astype(np.float32)
    logits[0, 0] = 1e30 if c > 1 else logits[0, 0]
    t = rng.integers(0, c, n)
    loss_cpu, probs_cpu = ops.cross_entropy(logits, t)
    loss, probs = ops.cross_entropy(gpu(logits), gpu(t))
    assert isinstance(loss, cp.ndarray) and loss.shape == () and loss.dtype == np.float32
    close(loss, loss_cpu, rtol=1e-5)
    close(probs, probs_cpu, rtol=1e-5, atol=1e-30)
    x64 = logits.astype(np.float64)
    m = x64.max(1, keepdims=True)
    want = np.mean(np.log(np.exp(x64 - m).sum(1)) + m[:, 0] - x64[np.arange(n), t])
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    d = ops.cross_entropy_backward(probs, gpu(t))
    np.testing.assert_array_equal(cp.asnumpy(d), ops.cross_entropy_backward(cp.asnumpy(probs), t))


@pytest.mark.parametrize("bad", [-1, 5, 2**40])
def test_cross_entropy_bad_target(bad):
    logits, t = gpu(np.zeros((6, 5), np.float32)), np.array([0, 1, 2, 3, 4, 0])
    t[3] = bad
    msg = f"target\\[3\\] = {bad} is out of range \\[0, C\\) with C = 5"
    with pytest.raises(ValueError, match="cross_entropy: " + msg):
        ops.cross_entropy(logits, gpu(t))
    with pytest.raises(ValueError, match="cross_entropy_backward: " + msg):
        ops.cross_entropy_backward(logits, gpu(t))
    with pytest.raises(ValueError, match="empty batch"):
        ops.cross_entropy(gpu(np.zeros((0, 5), np.float32)), gpu(np.zeros(0, np.int64)))


@pytest.mark.parametrize("n", [1, 5, 1000, 70001])
def test_mse_and_bce(n, rng):
    a = extreme(rng, n)
    a[~np.isfinite(a)] = 3.0
    b = rng.random(n).astype(np.float32)
    for f, fb in ((ops.mse_loss, ops.mse_loss_backward),
                  (ops.binary_cross_entropy_with_logits,
                   ops.binary_cross_entropy_with_logits_backward)):
        close(f(gpu(a), gpu(b)), f(a, b), rtol=1e-6)
        close(fb(gpu(a), gpu(b)), fb(a, b), rtol=1e-5, atol=1e-30)
    with pytest.raises(ValueError, match="zero elements"):
        ops.mse_loss(gpu(np.zeros(0, np.float32)), gpu(np.zeros(0, np.float32)))


def test_losses_are_repeatable(rng):
    a, b = gpu(rng.standard_normal(1 << 20).astype(np.float32)), gpu(np.zeros(1 << 20, np.float32))
    assert len({float(ops.mse_loss(a, b)) for _ in range(5)}) == 1


# ---- dropout --------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 1001, 1 << 16])
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_dropout_matches_cpu_bitwise(n, p, rng):
    x = rng.standard_normal(n).astype(np.float32)
    seed = 1234567 + n
    y_cpu, m_cpu = ops.dropout(x, p, seed)
    y, m = ops.dropout(gpu(x), p, seed)
    assert m.dtype == np.uint8
    np.testing.assert_array_equal(cp.asnumpy(m), m_cpu)
    np.testing.assert_array_equal(cp.asnumpy(y), y_cpu)
    yr, mr = cp.empty(n, np.float32), cp.empty(n, np.uint8)
    _cuda.dropout_forward_reference(yr, mr, gpu(x), p, seed)
    np.testing.assert_array_equal(cp.asnumpy(mr), m_cpu)
    dy = rng.standard_normal(n).astype(np.float32)
    np.testing.assert_array_equal(cp.asnumpy(ops.dropout_backward(gpu(dy), m, p)),
                                  ops.dropout_backward(dy, m_cpu, p))


def test_dropout_views_and_odd_offsets(rng):
    x = rng.standard_normal((5, 7)).astype(np.float32)
    for xv, xg in ((x.T, gpu(x).T), (x.ravel()[3:], gpu(x).ravel()[3:])):
        y_cpu, m_cpu = ops.dropout(xv, 0.3, 99)
        y, m = ops.dropout(xg, 0.3, 99)
        np.testing.assert_array_equal(cp.asnumpy(m), m_cpu)
        np.testing.assert_array_equal(cp.asnumpy(y), y_cpu)


# ---- bias_add -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape,axis", [((5, 3), 1), ((1, 1), 1), ((4, 300), 1), ((2, 3, 7, 5), 1),
                                        ((3, 2, 600), 1), ((6, 4), 0), ((2, 3, 4), 2)])
def test_bias_add(shape, axis, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    b = rng.standard_normal(shape[axis]).astype(np.float32)
    np.testing.assert_array_equal(cp.asnumpy(ops.bias_add(gpu(x), gpu(b), axis)), ops.bias_add(x, b, axis))
    dy = rng.standard_normal(shape).astype(np.float32)
    close(ops.bias_add_backward(gpu(dy), axis), ops.bias_add_backward(dy, axis), rtol=1e-5, atol=1e-5)


# ---- optimizers -----------------------------------------------------------------------------

OPTIM_CASES = {
    "sgd": dict(momentum=0.0),
    "sgd_momentum_nesterov_wd": dict(momentum=0.9, nesterov=True, weight_decay=0.01),
    "sgd_dampening_maximize": dict(momentum=0.8, dampening=0.3, maximize=True),
    "adam": dict(weight_decay=0.1),
    "adamw_amsgrad": dict(weight_decay=0.1, decoupled=True, amsgrad=True, beta1=0.3),
    "rmsprop_centered_momentum": dict(momentum=0.9, centered=True, weight_decay=0.01),
    "rmsprop_centered_low_alpha": dict(alpha=0.2, centered=True),
    "adagrad": dict(weight_decay=0.01),
    "adagrad_maximize": dict(maximize=True),
}


def run_optimizer(case, xp, p0, grads):
    kw = dict(OPTIM_CASES[case])
    p = xp.array(p0)
    z = lambda: xp.zeros_like(p)  # noqa: E731
    if case.startswith("sgd"):
        buf = z()
        for s, g in enumerate(grads):
            ops.sgd_step_(p, xp.asarray(g), buf, 0.05, first_step=s == 0, **kw)
        return [p, buf]
    if case.startswith("adam"):
        m, v, mv = z(), z(), z() if kw.get("amsgrad") else None
        b1 = kw.pop("beta1", 0.9)
        for s, g in enumerate(grads):
            ops.adam_step_(p, xp.asarray(g), m, v, s + 1, 1e-2, b1, 0.999, 1e-8, max_v=mv, **kw)
        return [p, m, v] + ([mv] if mv is not None else [])
    if case.startswith("rmsprop"):
        sq, buf, ga = z(), z(), z()
        for g in grads:
            ops.rmsprop_step_(p, xp.asarray(g), sq, 1e-2, buf=buf, grad_avg=ga, **kw)
        return [p, sq, buf, ga]
    ss = z()
    for g in grads:
        ops.adagrad_step_(p, xp.asarray(g), ss, 0.1, **kw)
    return [p, ss]


@pytest.mark.parametrize("case", list(OPTIM_CASES))
@pytest.mark.parametrize("n", [1, 5, 1003])
def test_optimizer_20_steps_match_cpu(case, n, rng):
    p0 = rng.standard_normal(n).astype(np.float32)
    grads = [rng.standard_normal(n).astype(np.float32) for _ in range(20)]
    want = run_optimizer(case, np, p0, grads)
    got = run_optimizer(case, cp, p0, grads)
    # Both sides round every product and sum separately (no FMA), so they agree bit for bit.
    for g, w in zip(got, want):
        np.testing.assert_array_equal(cp.asnumpy(g), w)


def test_optimizer_strided_grad_and_bad_input(rng):
    p = gpu(rng.standard_normal((4, 6)).astype(np.float32))
    p_cpu = cp.asnumpy(p)
    g = rng.standard_normal((6, 4)).astype(np.float32)
    ops.sgd_step_(p, gpu(g).T, None, 0.1)   # a transposed gradient is copied, not misread
    ops.sgd_step_(p_cpu, g.T, None, 0.1)
    close(p, p_cpu, rtol=0, atol=0)
    with pytest.raises(TypeError, match="C-contiguous"):
        ops.sgd_step_(p.T, gpu(g), None, 0.1)
    with pytest.raises(TypeError):
        ops.adam_step_(p, p, gpu(np.zeros((4, 6))), gpu(np.zeros((4, 6))), 1, 1e-3, 0.9, 0.999, 1e-8)
    with pytest.raises(ValueError, match="share memory"):
        ops.adam_step_(p, p, p, cp.zeros_like(p), 1, 1e-3, 0.9, 0.999, 1e-8)
    with pytest.raises(TypeError, match="mix"):
        ops.sgd_step_(p, g.T.copy(), None, 0.1)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
def test_clip_grad_norm(norm_type, rng):
    xs = [rng.standard_normal(s).astype(np.float32) for s in (5, 70000, 0, 1003)]
    want_total = ops.clip_grad_norm_(xs_cpu := [x.copy() for x in xs], 1.0, norm_type)
    gs = [gpu(x) for x in xs]
    total = ops.clip_grad_norm_(gs + [None], 1.0, norm_type)
    np.testing.assert_allclose(total, want_total, rtol=1e-12)
    for g, w in zip(gs, xs_cpu):
        close(g, w, rtol=1e-6, atol=1e-9)
    again = [gpu(x) for x in xs]
    assert ops.clip_grad_norm_(again, 1.0, norm_type) == total  # deterministic
    bad = [gpu(np.array([1.0, np.nan], np.float32))]
    with pytest.raises(RuntimeError, match="non-finite"):
        ops.clip_grad_norm_(bad, 1.0, error_if_nonfinite=True)


# ---- gelu --------------------------------------------------------------------------------------

@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("n", SIZES)
def test_gelu_against_cpu(approximate, n, rng):
    x = (rng.standard_normal(n) * 4).astype(np.float32)
    if n > 4:
        x[:4] = [-np.inf, np.inf, -1e4, np.nan]
    dy = rng.standard_normal(n).astype(np.float32)
    y = cp.asnumpy(ops.gelu(cp.asarray(x), approximate))
    dx = cp.asnumpy(ops.gelu_backward(cp.asarray(dy), cp.asarray(x), approximate))
    np.testing.assert_allclose(y, ops.gelu(x, approximate), rtol=1e-5, atol=1e-6)  # normcdff <= 5 ulp
    np.testing.assert_allclose(dx, ops.gelu_backward(dy, x, approximate), rtol=1e-5, atol=1e-6)


def test_gelu_views_and_bad_input(rng):
    x = cp.asarray(rng.standard_normal((8, 9)).astype(np.float32))
    view = x[:, 1:]  # not 16-byte aligned: the scalar path
    np.testing.assert_allclose(cp.asnumpy(ops.gelu(view)), ops.gelu(cp.asnumpy(view)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="approximate"):
        ops.gelu(x, "fast")
    with pytest.raises(ValueError, match="approximate"):
        _cuda.gelu_forward(cp.empty_like(x), x, 3)
    with pytest.raises(TypeError, match="float32"):
        ops.gelu(cp.ones(3, cp.float64))
