"""matmul and linear, forward and backward: fastdl against NumPy and PyTorch, one group per case.

FLOPs: forward 2*M*K*N, backward 4*M*K*N (two products). Each result is checked against NumPy
after timing.
"""

import numpy as np
import pytest

from fastdl import ops

from benchutil import record

SQUARE = [128, 256, 512, 1024, 2048]
NONSQUARE = [(1000, 300, 500), (4096, 64, 4096), (64, 4096, 64), (1024, 1024, 1)]
DENSE = [(64, 784, 256), (256, 1024, 1024), (1, 784, 256), (1, 1024, 1024)]  # (batch, in, out)
BATCHED = [(64, 128, 64, 128)]  # (B, M, K, N): attention-sized


def _matmul_impl(lib, a, b, dy):
    if lib == "fastdl":
        return lambda: ops.matmul(a, b), lambda: ops.matmul_backward(dy, a, b)
    if lib == "numpy":
        bt, at = np.swapaxes(b, -1, -2), np.swapaxes(a, -1, -2)
        return lambda: np.matmul(a, b), lambda: (np.matmul(dy, bt), np.matmul(at, dy))
    import torch

    ta, tb, tdy = map(torch.from_numpy, (a, b, dy))
    tbt, tat = tb.transpose(-1, -2), ta.transpose(-1, -2)
    return lambda: torch.matmul(ta, tb), lambda: (torch.matmul(tdy, tbt), torch.matmul(tat, tdy))


def _check(got, want):
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    for g, w in zip(got, want):
        g = g.numpy() if hasattr(g, "numpy") else g
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-3 * float(np.abs(w).max()))


def _mkn_cases():
    for n in SQUARE:
        yield pytest.param((n, n, n), id=f"{n}^3")
    for mkn in NONSQUARE:
        yield pytest.param(mkn, id="x".join(map(str, mkn)))


@pytest.mark.parametrize("mkn", list(_mkn_cases()))
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_matmul(benchmark, lib, rng, mkn, direction):
    m, k, n = mkn
    benchmark.group = f"matmul {direction} {m}x{k}x{n}"
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    dy = rng.standard_normal((m, n), dtype=np.float32)
    fwd, bwd = _matmul_impl(lib, a, b, dy)
    fn = fwd if direction == "forward" else bwd
    got = benchmark(fn)
    record(benchmark, flops=(2 if direction == "forward" else 4) * m * k * n)
    ref_fwd, ref_bwd = _matmul_impl("numpy", a, b, dy)
    _check(got, (ref_fwd if direction == "forward" else ref_bwd)())


@pytest.mark.parametrize("bmkn", BATCHED, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_matmul_batched(benchmark, lib, rng, bmkn, direction):
    bs, m, k, n = bmkn
    benchmark.group = f"bmm {direction} {bs}x({m}x{k}x{n})"
    a = rng.standard_normal((bs, m, k), dtype=np.float32)
    b = rng.standard_normal((bs, k, n), dtype=np.float32)
    dy = rng.standard_normal((bs, m, n), dtype=np.float32)
    fwd, bwd = _matmul_impl(lib, a, b, dy)
    got = benchmark(fwd if direction == "forward" else bwd)
    record(benchmark, flops=(2 if direction == "forward" else 4) * bs * m * k * n)
    ref_fwd, ref_bwd = _matmul_impl("numpy", a, b, dy)
    _check(got, (ref_fwd if direction == "forward" else ref_bwd)())


def _linear_impl(lib, x, w, bias, dy):
    if lib == "fastdl":
        return lambda: ops.linear(x, w, bias), lambda: ops.linear_backward(dy, x, w)
    if lib == "numpy":
        return lambda: x @ w.T + bias, lambda: (dy @ w, dy.T @ x, dy.sum(0))
    import torch

    tx, tw, tb, tdy = map(torch.from_numpy, (x, w, bias, dy))
    return (lambda: torch.nn.functional.linear(tx, tw, tb),
            lambda: (tdy @ tw, tdy.T @ tx, tdy.sum(0)))


@pytest.mark.parametrize("shape", DENSE, ids=lambda s: f"{s[0]}x{s[1]}->{s[2]}")
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_linear(benchmark, lib, rng, shape, direction):
    n, i, o = shape
    benchmark.group = f"linear {direction} {n}x{i}->{o}"
    x = rng.standard_normal((n, i), dtype=np.float32)
    w = rng.standard_normal((o, i), dtype=np.float32) * 0.05
    bias = rng.standard_normal(o, dtype=np.float32)
    dy = rng.standard_normal((n, o), dtype=np.float32)
    fwd, bwd = _linear_impl(lib, x, w, bias, dy)
    got = benchmark(fwd if direction == "forward" else bwd)
    record(benchmark, flops=(2 if direction == "forward" else 4) * n * i * o)
    ref_fwd, ref_bwd = _linear_impl("numpy", x, w, bias, dy)
    _check(got, (ref_fwd if direction == "forward" else ref_bwd)())
