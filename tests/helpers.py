"""The one helper every op test uses: compare fastdl's outputs and gradients with the float64
reference, and a float64 finite-difference gradient check as the second opinion.

Tolerances follow flash-attention's rule: a float32 kernel may be at most twice as far from the
float64 reference as the same computation done by NumPy in float32 (plus a few ulps of the
result's scale, for results NumPy happens to get exactly).
"""

from __future__ import annotations

import warnings

import numpy as np

EPS = {np.dtype(np.float32): float(np.finfo(np.float32).eps),
       np.dtype(np.float64): float(np.finfo(np.float64).eps)}


def _scale(ref) -> float:
    return max(1.0, float(np.max(np.abs(ref)))) if np.size(ref) else 1.0


def assert_close(got, ref, dtype, baseline=None, name="output", ulps=8.0):
    """got (dtype) against ref (float64); baseline: the same result computed by NumPy in dtype."""
    dtype = np.dtype(dtype)
    got = np.asarray(got)
    assert got.dtype == dtype, f"{name}: dtype {got.dtype}, expected {dtype}"
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{name}: shape {got.shape}, expected {ref.shape}"
    if got.size == 0:
        return
    err = float(np.max(np.abs(got.astype(np.float64) - ref)))
    tol = ulps * EPS[dtype] * _scale(ref)
    if baseline is not None:
        base = float(np.max(np.abs(np.asarray(baseline, np.float64) - ref)))
        tol = max(tol, 2.0 * base)
    assert np.isfinite(got).all() == np.isfinite(ref).all(), f"{name}: non-finite values differ"
    assert err <= tol, f"{name}: max abs error {err:.3g} > tolerance {tol:.3g} ({dtype})"


def _precise(ref, args):
    """ref(*args) computed in long double (tests/reference.py REF_DTYPE), as float64 arrays."""
    import reference

    prev, reference.REF_DTYPE = reference.REF_DTYPE, np.longdouble
    try:
        out = ref(*args)
    finally:
        reference.REF_DTYPE = prev
    conv = lambda o: o.astype(np.float64) if isinstance(o, np.ndarray) else o  # noqa: E731
    return tuple(conv(o) for o in out) if isinstance(out, tuple) else conv(out)


def check_op(fast, ref, args, dtype, baseline=None, names=None):
    """Run fast(*args cast to dtype) and ref(*args) and compare every output.

    baseline: a NumPy function computing the same thing in dtype (the tolerance yardstick).
    """
    cast = [None if a is None else np.asarray(a).astype(dtype) for a in args]
    got = fast(*cast)
    want = _precise(ref, args) if np.dtype(dtype) == np.float64 else ref(*args)
    base = baseline(*cast) if baseline is not None else None
    got_t = got if isinstance(got, tuple) else (got,)
    want_t = want if isinstance(want, tuple) else (want,)
    base_t = base if isinstance(base, tuple) else (base,) * len(want_t)
    assert len(got_t) == len(want_t), f"{len(got_t)} outputs, expected {len(want_t)}"
    for i, (g, w, b) in enumerate(zip(got_t, want_t, base_t)):
        assert_close(g, w, dtype, b, name=names[i] if names else f"output {i}")
    return got


def gradcheck(forward, backward, inputs, wrt, rng, h=1e-6, rtol=1e-6, max_elems=24):
    """Finite differences in float64 against an analytic backward.

    forward(*inputs) -> y; backward(dy, *inputs) -> grads, one per index in `wrt` (in that order).
    The scalar checked is L = sum(y * g) for a random g, along up to `max_elems` coordinates of
    each input (all of them when the input is small) plus one random direction.
    """
    inputs = [np.array(x, dtype=np.float64) if x is not None else None for x in inputs]
    y = forward(*inputs)
    g = rng.standard_normal(np.shape(y))
    grads = backward(g, *inputs)
    grads = grads if isinstance(grads, tuple) else (grads,)
    assert len(grads) == len(wrt)

    def loss(xs):
        return float(np.sum(forward(*xs) * g))

    for idx, grad in zip(wrt, grads):
        x = inputs[idx]
        assert grad.shape == x.shape, f"grad {idx}: shape {grad.shape}, expected {x.shape}"
        flat = np.arange(x.size) if x.size <= max_elems else rng.choice(x.size, max_elems, replace=False)
        dirs = [np.eye(1, x.size, int(i)).reshape(x.shape) for i in flat]
        dirs.append(rng.standard_normal(x.shape))
        for v in dirs:
            plus = list(inputs)
            minus = list(inputs)
            plus[idx] = x + h * v
            minus[idx] = x - h * v
            numeric = (loss(plus) - loss(minus)) / (2 * h)
            analytic = float(np.sum(grad * v))
            assert abs(numeric - analytic) <= rtol * max(1.0, abs(numeric)) + 1e-7, (
                f"grad of input {idx}: finite difference {numeric:.10g} vs analytic {analytic:.10g}"
            )


def cupy_or_skip():
    """CuPy, for a GPU test module; skips the whole module unless CuPy imports and fastdl sees a
    GPU (a CUDA build on a machine with a device). Call at module level, before importing _cuda."""
    import pytest

    import fastdl

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CuPy may warn at import that it cannot find CUDA_PATH
        cp = pytest.importorskip("cupy")
    if not fastdl.cuda_available():
        pytest.skip("needs a CUDA GPU and fastdl built with CUDA", allow_module_level=True)
    return cp
