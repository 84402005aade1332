"""conv2d forward and backward (dx, dw, db): fastdl against the NumPy im2col baseline and PyTorch
(oneDNN), one group per layer and direction, in one process.

FLOPs: forward 2*N*K*(C/G)*R*S*OH*OW; backward twice that (dx and dw; db is a sum). extra_info
also gives the share of the machine's fp32 FMA peak, measured once per session as the one-thread
1024^3 sgemm rate times the thread count (the GEMM runs near peak, so it stands in for the
roof). Results are checked against NumPy after timing. With --benchmark-disable (CI's smoke
run) every layer shrinks to one image at a quarter of the spatial size.
"""

import time

import numpy as np
import pytest

import fastdl
from fastdl import ops
from fastdl._bench import CONV_CASES, conv_flops, conv_impls, conv_shape_str

from benchutil import record


@pytest.fixture(scope="session")
def peak_gflops():
    """One-thread 1024^3 sgemm GFLOP/s (best of 5) times the thread count."""
    threads = fastdl.get_num_threads()
    a = np.ones((1024, 1024), np.float32)
    fastdl.set_num_threads(1)
    try:
        ops.matmul(a, a)
        best = min(_timed(lambda: ops.matmul(a, a)) for _ in range(5))
    finally:
        fastdl.set_num_threads(threads)
    return 2.0 * 1024 ** 3 / best / 1e9 * threads


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _small(case):
    n, c, h, w, k, r, st, p, g = case
    return (1, c, max(h // 4, r), max(w // 4, r), k, r, st, p, g)


@pytest.mark.parametrize("case", CONV_CASES, ids=conv_shape_str)
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_conv2d(benchmark, lib, rng, case, direction, peak_gflops):
    if benchmark.disabled:
        case = _small(case)
    n, c, h, w, k, r, st, p, g = case
    benchmark.group = f"conv2d {direction} {conv_shape_str(case)}"
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    wt = rng.standard_normal((k, c // g, r, r), dtype=np.float32) * 0.1
    b = rng.standard_normal(k, dtype=np.float32)
    oh, ow = (h + 2 * p - r) // st + 1, (w + 2 * p - r) // st + 1
    dy = rng.standard_normal((n, k, oh, ow), dtype=np.float32)
    torch = None
    if lib == "torch":
        import torch
    impl = conv_impls(case, x, wt, b, dy, torch)
    got = benchmark(impl[lib][0 if direction == "forward" else 1])
    flops = conv_flops(case) * (1 if direction == "forward" else 2)
    record(benchmark, flops=flops)
    if "GFLOP/s" in benchmark.extra_info:
        benchmark.extra_info["% of peak"] = round(100 * benchmark.extra_info["GFLOP/s"] / peak_gflops, 1)
    want = impl["numpy"][0 if direction == "forward" else 1]()
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    for a, e in zip(got, want):
        a = a.numpy() if hasattr(a, "numpy") else a
        np.testing.assert_allclose(a, e, rtol=2e-3, atol=2e-3 * float(np.abs(e).max()))
