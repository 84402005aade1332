"""CUDA attention (forward and backward) through fastdl.ops against the CPU ops in float64.

Skipped as a whole unless CuPy imports and fastdl sees a GPU. The same float32 inputs go to the
GPU (float32 kernels) and, converted, to the CPU ops in float64 (the oracle, itself tested
against NumPy and finite differences in test_attention.py). Tolerance: the flash-attention rule,
a few times the error the CPU float32 kernels make on the same inputs, with a floor of a few
float32 ulps of the result's scale per sqrt(terms). Shapes cover the D = 32/64/128 paths, the
generic path (D 1, 17, Dv != D), column slices (D or Dv > 128), Sq != Sk both ways, causal,
B = H = 1, partial tiles and huge logits. Small sizes: the whole file runs in seconds.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastdl import ops
from helpers import cupy_or_skip

cp = cupy_or_skip()

from fastdl import _cuda  # noqa: E402

pytestmark = pytest.mark.gpu

EPS32 = float(np.finfo(np.float32).eps)

# (B, H, Sq, Sk, D, Dv, causal)
CASES = [
    (1, 1, 1, 1, 1, 1, False),
    (2, 3, 17, 17, 17, 17, False),
    (1, 2, 70, 130, 17, 9, True),      # Sq < Sk, generic path, partial tiles
    (2, 1, 130, 70, 32, 32, True),     # Sq > Sk, D = 32 path
    (1, 1, 65, 65, 64, 64, True),      # D = 64, a one-row last tile
    (2, 2, 200, 96, 64, 64, False),
    (1, 1, 64, 100, 128, 128, False),  # D = 128
    (1, 3, 33, 129, 128, 128, True),
    (1, 1, 20, 33, 160, 40, False),    # dk in two column slices
    (1, 1, 9, 70, 3, 150, True),       # out / dv in two column slices
    (1, 1, 50, 31, 64, 17, True),      # Dv != D with a fast-path D
]


def host(a):
    assert isinstance(a, cp.ndarray), f"expected a CuPy array, got {type(a).__name__}"
    return cp.asnumpy(a)


def inputs(rng, b, h, sq, sk, d, dv, logit_scale=1.0):
    q = rng.standard_normal((b, h, sq, d)).astype(np.float32) * np.float32(logit_scale)
    k = rng.standard_normal((b, h, sk, d)).astype(np.float32)
    v = rng.standard_normal((b, h, sk, dv)).astype(np.float32)
    dout = rng.standard_normal((b, h, sq, dv)).astype(np.float32)
    return q, k, v, dout


def run_cpu(q, k, v, dout, causal, scale, dtype):
    c = [a.astype(dtype) for a in (q, k, v, dout)]
    out, lse = ops.attention(c[0], c[1], c[2], causal=causal, scale=scale)
    grads = ops.attention_backward(c[3], c[0], c[1], c[2], out, lse, causal=causal, scale=scale)
    return (out, lse, *grads)


def run_gpu(q, k, v, dout, causal, scale):
    g = [cp.asarray(a) for a in (q, k, v, dout)]
    out, lse = ops.attention(g[0], g[1], g[2], causal=causal, scale=scale)
    grads = ops.attention_backward(g[3], g[0], g[1], g[2], out, lse, causal=causal, scale=scale)
    return (out, lse, *grads)


def check_against_cpu(q, k, v, dout, causal, scale, slack=4.0):
    names = ("out", "lse", "dq", "dk", "dv")
    want = run_cpu(q, k, v, dout, causal, scale, np.float64)
    f32 = run_cpu(q, k, v, dout, causal, scale, np.float32)
    got = run_gpu(q, k, v, dout, causal, scale)
    terms = np.sqrt(max(q.shape[3], v.shape[3], k.shape[2]))
    for name, g, w, c in zip(names, got, want, f32):
        g = host(g)
        assert g.dtype == np.float32 and g.shape == w.shape, name
        assert np.isfinite(g).all(), f"{name}: non-finite values"
        mag = max(1.0, float(np.abs(w).max(initial=0)))
        err32 = float(np.abs(c.astype(np.float64) - w).max(initial=0))
        atol = max(slack * err32, 8 * EPS32 * mag * terms)
        np.testing.assert_allclose(g, w, rtol=0, atol=atol, err_msg=name)


@pytest.mark.parametrize("b,h,sq,sk,d,dv,causal", CASES)
def test_matches_cpu_float64(rng, b, h, sq, sk, d, dv, causal):
    q, k, v, dout = inputs(rng, b, h, sq, sk, d, dv)
    check_against_cpu(q, k, v, dout, causal, None)


@pytest.mark.parametrize("causal", [False, True])
def test_custom_scale_and_huge_logits(rng, causal):
    # |scale q.k| reaches ~1e3: the online softmax must rescale without overflow.
    q, k, v, dout = inputs(rng, 1, 2, 40, 90, 16, 16, logit_scale=30.0)
    check_against_cpu(q, k, v, dout, causal, 2.5)


def test_noncontiguous_heads(rng):
    # (B, S, H, D) arrays viewed as (B, H, S, D): the ops layer copies them once.
    b, s, h, d = 2, 37, 3, 32
    qs, ks, vs = (cp.asarray(rng.standard_normal((b, s, h, d)), np.float32) for _ in range(3))
    q, k, v = (a.transpose(0, 2, 1, 3) for a in (qs, ks, vs))
    out, lse = ops.attention(q, k, v, causal=True)
    want, want_lse = ops.attention(*(host(a).astype(np.float64) for a in (q, k, v)), causal=True)
    np.testing.assert_allclose(host(out), want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(host(lse), want_lse, rtol=0, atol=1e-5)


def test_deterministic(rng):
    q, k, v, dout = inputs(rng, 2, 2, 150, 150, 64, 64)
    first = [host(a) for a in run_gpu(q, k, v, dout, True, None)]
    second = [host(a) for a in run_gpu(q, k, v, dout, True, None)]
    for a, b in zip(first, second):
        assert np.array_equal(a, b)


def test_no_key_rows_through_the_extension(rng):
    # Sk = 0 is refused by the ops layer; the kernel itself defines it: out 0, lse -inf, dq 0.
    q = cp.asarray(rng.standard_normal((1, 2, 5, 8)).astype(np.float32))
    k = cp.empty((1, 2, 0, 8), np.float32)
    v = cp.empty((1, 2, 0, 4), np.float32)
    out = cp.full((1, 2, 5, 4), cp.nan, np.float32)
    lse = cp.full((1, 2, 5), cp.nan, np.float32)
    _cuda.attention_forward(out, lse, q, k, v, False, 0.5)
    assert (host(out) == 0).all() and (host(lse) == -np.inf).all()
    dq = cp.full(q.shape, cp.nan, np.float32)
    dout = cp.asarray(rng.standard_normal((1, 2, 5, 4)).astype(np.float32))
    _cuda.attention_backward(dq, cp.empty_like(k), cp.empty_like(v), dout, q, k, v, out, lse,
                             False, 0.5)
    assert (host(dq) == 0).all()
    with pytest.raises(ValueError, match="zero keys"):
        ops.attention(q, k, v)


def test_empty_batch_and_queries(rng):
    q = cp.zeros((0, 2, 4, 8), np.float32)
    k, v = cp.zeros((0, 2, 3, 8), np.float32), cp.zeros((0, 2, 3, 5), np.float32)
    out, lse = ops.attention(q, k, v)
    assert out.shape == (0, 2, 4, 5) and lse.shape == (0, 2, 4)
    k = cp.asarray(rng.standard_normal((1, 1, 3, 8)).astype(np.float32))
    v = cp.asarray(rng.standard_normal((1, 1, 3, 5)).astype(np.float32))
    q = cp.zeros((1, 1, 0, 8), np.float32)
    out, lse = ops.attention(q, k, v)
    dq, dk, dv = ops.attention_backward(cp.zeros_like(out), q, k, v, out, lse)
    assert dq.shape == (1, 1, 0, 8) and (host(dk) == 0).all() and (host(dv) == 0).all()


def test_bad_input():
    q = cp.zeros((1, 1, 4, 8), np.float32)
    with pytest.raises(TypeError, match="mix CPU"):
        ops.attention(q, np.zeros((1, 1, 4, 8), np.float32), q)
    with pytest.raises(TypeError, match="float32"):
        ops.attention(q.astype(np.float64), q, q)
    with pytest.raises(ValueError, match="4-D"):
        ops.attention(q[0], q[0], q[0])
    out, lse = cp.empty((1, 1, 4, 8), np.float32), cp.empty((1, 1, 4), np.float32)
    with pytest.raises(TypeError):
        _cuda.attention_forward(out, lse, q.astype(np.float64), q, q, False, 1.0)
    with pytest.raises(TypeError):
        _cuda.attention_forward(out, lse, np.zeros((1, 1, 4, 8), np.float32), q, q, False, 1.0)
    with pytest.raises(ValueError, match="k"):
        _cuda.attention_forward(out, lse, q, cp.zeros((1, 1, 4, 7), np.float32), q, False, 1.0)
    with pytest.raises(ValueError, match="lse"):
        _cuda.attention_forward(out, cp.empty((1, 1, 5), np.float32), q, q, q, False, 1.0)
    with pytest.raises(ValueError, match="scale"):
        _cuda.attention_forward(out, lse, q, q, q, False, float("nan"))
