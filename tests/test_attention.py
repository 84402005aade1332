"""attention / attention_backward (csrc/cpu/attention.cpp) against the float64 NumPy reference
(which builds the S x S matrix), float64 finite differences and PyTorch's SDPA."""

from __future__ import annotations

import numpy as np
import pytest

import fastdl
import fastdl.ops as F
import reference as R
from helpers import assert_close, gradcheck

DTYPES = [np.float32, np.float64]


def _qkv(rng, b, h, sq, sk, d, dv, dtype=np.float64, scale=1.0):
    q = rng.standard_normal((b, h, sq, d)) * scale
    k = rng.standard_normal((b, h, sk, d)) * scale
    v = rng.standard_normal((b, h, sk, dv))
    return [a.astype(dtype) for a in (q, k, v)]


def _tol_check(got, want, dtype, name, factor=1.0):
    """float32: relative to the values' scale, allowing the rounding of sums over Sk and D."""
    dtype = np.dtype(dtype)
    got = np.asarray(got)
    assert got.dtype == dtype, name
    assert got.shape == want.shape, name
    if dtype == np.float64:
        assert_close(got, want, dtype, name=name, ulps=2000)
    else:
        scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
        err = float(np.max(np.abs(got - want))) if want.size else 0.0
        assert err <= 2e-5 * factor * scale, f"{name}: max abs error {err:.3g}"


def _check(rng, b, h, sq, sk, d, dv, causal, dtype, scale=None, mag=1.0):
    q, k, v = _qkv(rng, b, h, sq, sk, d, dv, dtype, mag)
    out, lse = F.attention(q, k, v, causal=causal, scale=scale)
    ro, rl = R.attention(q, k, v, causal, scale)
    _tol_check(out, ro, dtype, "out")
    _tol_check(lse, rl, dtype, "lse", factor=max(1.0, mag * mag))
    g = rng.standard_normal(out.shape).astype(dtype)
    dq, dk, dv_ = F.attention_backward(g, q, k, v, out, lse, causal=causal, scale=scale)
    rq, rk, rv = R.attention_backward(g, q, k, v, causal, scale)
    f = max(1.0, mag * mag) * (1 if dtype == np.float64 else 5)
    _tol_check(dq, rq, dtype, "dq", f)
    _tol_check(dk, rk, dtype, "dk", f)
    _tol_check(dv_, rv, dtype, "dv", f)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", [
    (1, 1, 1, 1, 1, 1), (2, 3, 7, 5, 3, 4), (1, 2, 5, 9, 17, 3), (1, 1, 130, 70, 33, 17),
    (2, 1, 70, 200, 64, 64), (1, 1, 65, 129, 32, 32), (1, 2, 67, 67, 128, 128),
    (1, 1, 200, 3, 8, 1),
])
def test_against_reference(rng, shape, causal, dtype):
    _check(rng, *shape, causal, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_custom_scale(rng, dtype):
    _check(rng, 2, 2, 19, 23, 16, 8, False, dtype, scale=0.3)
    _check(rng, 1, 1, 19, 23, 16, 8, True, dtype, scale=-1.7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_huge_logits(rng, dtype):
    # scores ~1e4: the row max is subtracted, nothing overflows
    q, k, v = _qkv(rng, 1, 2, 33, 40, 8, 5, dtype)
    q = q * dtype(300.0)
    out, lse = F.attention(q, k, v, scale=1.0)
    assert np.isfinite(out).all() and np.isfinite(lse).all()
    ro, rl = R.attention(q, k, v, False, 1.0)
    assert float(np.max(np.abs(rl))) > 1e3
    # float32 rounds a score of 1e4 by ~1e-3 (|s| eps), and exp(s - lse) inherits that
    atol = 4e-3 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(out, ro, atol=atol)
    np.testing.assert_allclose(lse, rl, rtol=1e-6 if dtype == np.float32 else 1e-12)
    g = rng.standard_normal(out.shape).astype(dtype)
    grads = F.attention_backward(g, q, k, v, out, lse, scale=1.0)
    for a in grads:
        assert np.isfinite(a).all()
    _, _, rv = R.attention_backward(g, q, k, v, False, 1.0)
    np.testing.assert_allclose(grads[2], rv, atol=atol)


def test_fully_masked_rows_through_the_kernel(rng):
    # Top-left causal masking never empties a row (row i always sees key 0), so a fully masked
    # row exists only with Sk = 0; the ops layer refuses that, the extension defines it.
    core = fastdl._core
    q = rng.standard_normal((1, 2, 5, 4)).astype(np.float32)
    k = np.zeros((1, 2, 0, 4), np.float32)
    v = np.zeros((1, 2, 0, 3), np.float32)
    out = np.full((1, 2, 5, 3), np.nan, np.float32)
    lse = np.full((1, 2, 5), np.nan, np.float32)
    core.attention_forward(out, lse, q, k, v, True, 0.5)
    assert (out == 0).all() and (lse == -np.inf).all()
    dq = np.full_like(q, np.nan)
    core.attention_backward(dq, k.copy(), v.copy(), np.ones_like(out), q, k, v, out, lse, True, 0.5)
    assert (dq == 0).all()
    # lse = -inf handed to the backward for some rows: those rows contribute nothing
    q, k, v = _qkv(rng, 1, 1, 6, 4, 3, 2, np.float64)
    out, lse = F.attention(q, k, v)
    lse[0, 0, 2] = -np.inf
    out[0, 0, 2] = 0
    g = rng.standard_normal(out.shape)
    dq, dk, dv = F.attention_backward(g, q, k, v, out, lse)
    assert np.isfinite(dq).all() and np.isfinite(dk).all() and np.isfinite(dv).all()
    assert (dq[0, 0, 2] == 0).all()


def test_causal_sq_vs_sk(rng):
    # top-left alignment: query i sees keys j <= i, also when Sq != Sk
    for sq, sk in ((9, 4), (4, 9)):
        q, k, v = _qkv(rng, 1, 1, sq, sk, 5, 3)
        out, _ = F.attention(q, k, v, causal=True)
        np.testing.assert_allclose(out[0, 0, 0], v[0, 0, 0], rtol=1e-12)  # row 0 sees key 0 only
        ro, _ = R.attention(q, k, v, True)
        np.testing.assert_allclose(out, ro, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
def test_gradcheck(rng, causal):
    q, k, v = _qkv(rng, 1, 2, 5, 7, 3, 4)
    fwd = lambda q, k, v: F.attention(q, k, v, causal=causal, scale=0.7)[0]  # noqa: E731

    def bwd(g, q, k, v):
        out, lse = F.attention(q, k, v, causal=causal, scale=0.7)
        return F.attention_backward(g, q, k, v, out, lse, causal=causal, scale=0.7)

    gradcheck(fwd, bwd, [q, k, v], [0, 1, 2], rng)


def test_non_contiguous_heads(rng):
    # q from a (B, S, H, D) array transposed to (B, H, S, D)
    x = rng.standard_normal((2, 11, 3, 8)).astype(np.float32)
    y = rng.standard_normal((2, 13, 3, 8)).astype(np.float32)
    z = rng.standard_normal((2, 13, 3, 6)).astype(np.float32)
    q, k, v = (a.transpose(0, 2, 1, 3) for a in (x, y, z))
    assert not q.flags.c_contiguous
    out, lse = F.attention(q, k, v, causal=True)
    out2, lse2 = F.attention(*(np.ascontiguousarray(a) for a in (q, k, v)), causal=True)
    np.testing.assert_array_equal(out, out2)
    np.testing.assert_array_equal(lse, lse2)
    g = rng.standard_normal(out.shape).astype(np.float32)
    a = F.attention_backward(g[:, :, ::1], q, k, v, out, lse, causal=True)
    b = F.attention_backward(g, *(np.ascontiguousarray(t) for t in (q, k, v)), out, lse, causal=True)
    for x1, x2 in zip(a, b):
        np.testing.assert_array_equal(x1, x2)


@pytest.mark.parametrize("causal", [False, True])
def test_bitwise_repeatable(rng, causal):
    q, k, v = _qkv(rng, 1, 1, 300, 260, 64, 64, np.float32)
    fastdl.set_num_threads(2)
    r1 = F.attention(q, k, v, causal=causal)
    g = rng.standard_normal(r1[0].shape).astype(np.float32)
    b1 = F.attention_backward(g, q, k, v, *r1, causal=causal)
    r2 = F.attention(q, k, v, causal=causal)
    b2 = F.attention_backward(g, q, k, v, *r2, causal=causal)
    for x1, x2 in zip(r1 + b1, r2 + b2):
        np.testing.assert_array_equal(x1, x2)


@pytest.mark.parametrize("causal", [False, True])
def test_against_torch(rng, causal):
    torch = pytest.importorskip("torch")
    q, k, v = _qkv(rng, 2, 2, 37, 50, 16, 12, np.float64)
    out, lse = F.attention(q, k, v, causal=causal)
    g = rng.standard_normal(out.shape)
    grads = F.attention_backward(g, q, k, v, out, lse, causal=causal)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    to = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)
    to.backward(torch.tensor(g))
    np.testing.assert_allclose(out, to.detach().numpy(), rtol=1e-10, atol=1e-12)
    for a, t in zip(grads, (tq, tk, tv)):
        np.testing.assert_allclose(a, t.grad.numpy(), rtol=1e-9, atol=1e-11)


def test_empty_batch(rng):
    q, k, v = _qkv(rng, 0, 2, 3, 4, 5, 6)
    out, lse = F.attention(q, k, v)
    assert out.shape == (0, 2, 3, 6) and lse.shape == (0, 2, 3)
    q, k, v = _qkv(rng, 1, 2, 0, 4, 5, 6)
    out, lse = F.attention(q, k, v)
    assert out.shape == (1, 2, 0, 6)
    dq, dk, dv = F.attention_backward(out, q, k, v, out, lse)
    assert dq.shape == q.shape and (dk == 0).all() and (dv == 0).all()


def test_dtype_rule(rng):
    q, k, v = _qkv(rng, 1, 1, 3, 4, 5, 6, np.float32)
    assert F.attention(q, k, v)[0].dtype == np.float32
    assert F.attention(q, k.astype(np.float64), v)[0].dtype == np.float64


def test_bad_input(rng):
    q, k, v = _qkv(rng, 1, 2, 3, 4, 5, 6, np.float32)
    with pytest.raises(ValueError, match="q must be 4-D"):
        F.attention(q[0], k, v)
    with pytest.raises(ValueError, match="k must have shape"):
        F.attention(q, k[:, :1], v)
    with pytest.raises(ValueError, match="k must have shape"):
        F.attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match="v must have shape"):
        F.attention(q, k, v[:, :, :3])
    with pytest.raises(ValueError, match="zero keys"):
        F.attention(q, k[:, :, :0], v[:, :, :0])
    with pytest.raises(ValueError, match="D >= 1"):
        F.attention(q[..., :0], k[..., :0], v)
    with pytest.raises(TypeError, match="q must have a real numeric dtype"):
        F.attention(q.astype(np.complex64), k, v)
    with pytest.raises(TypeError, match="scale must be a real number"):
        F.attention(q, k, v, scale="big")
    with pytest.raises(ValueError, match="scale must be finite"):
        F.attention(q, k, v, scale=float("nan"))
    with pytest.raises(TypeError, match="causal must be a bool"):
        F.attention(q, k, v, causal="yes")
    with pytest.raises(TypeError, match="q must be an array, got None"):
        F.attention(None, k, v)
    out, lse = F.attention(q, k, v)
    with pytest.raises(ValueError, match="lse must have shape"):
        F.attention_backward(out, q, k, v, out, lse[:, :1])
    with pytest.raises(ValueError, match="dout must have shape"):
        F.attention_backward(out[..., :2], q, k, v, out, lse)
    # the extension checks too (shared with the CUDA module: bindings/args.h)
    core = fastdl._core
    with pytest.raises(ValueError, match="out: expected shape"):
        core.attention_forward(out[..., :2].copy(), lse, q, k, v, False, 1.0)
    with pytest.raises(TypeError, match="k: expected dtype float32"):
        core.attention_forward(out, lse, q, k.astype(np.float64), v, False, 1.0)
    with pytest.raises(TypeError, match="q: expected dtype float32 or float64"):
        core.attention_forward(out, lse, q.astype(np.int32), k, v, False, 1.0)
    with pytest.raises(TypeError, match="must be C-contiguous"):
        core.attention_forward(out, lse, q.transpose(0, 1, 3, 2).copy().transpose(0, 1, 3, 2),
                               k, v, False, 1.0)
    with pytest.raises(ValueError, match="scale: expected a finite"):
        core.attention_forward(out, lse, q, k, v, False, float("inf"))
