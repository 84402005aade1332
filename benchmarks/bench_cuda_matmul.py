"""fastdl's CUDA matmul against cupy.matmul (cuBLAS), fp32 and TF32, at 1024^3, 2048^3, 4096^3.

    pytest benchmarks/bench_cuda_matmul.py                      # time them
    pytest benchmarks/bench_cuda_matmul.py --benchmark-disable  # run once and check results

Skipped without CuPy or a GPU. Each group holds fastdl and cuBLAS for one size and precision.
The timed function ends with a device synchronize, so a time is one product plus one launch
(a few microseconds), not a launch rate.

Napkin math: an n^3 product is 2 n^3 FLOP over 3 n^2 floats. At n = 4096 that is 137 GFLOP and
201 MB: ~2.0 ms at an H100 SXM's ~67 TFLOP/s fp32 roof, ~0.28 ms at ~495 TFLOP/s dense TF32,
while moving the bytes once takes ~0.06 ms at 3.3 TB/s, so every case here is compute-bound and
GFLOP/s (in benchmark.extra_info) read directly against the roof. After timing, 64 sampled rows
of each result are checked against NumPy float64 within the float32 dot-product error bound
(plus input rounding for TF32).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import fastdl
from fastdl import ops

from benchutil import gpu_modules

cp, _ = gpu_modules()  # skips this module without CuPy, a GPU or a CUDA build

from cupy._core import _routines_linalg as cupy_linalg  # noqa: E402  (CuPy's cuBLAS compute type)

pytestmark = pytest.mark.gpu

SIZES = [1024, 2048, 4096]
U = 2.0**-24  # float32 unit roundoff
TF32_ROUNDING = 2 * 2.0**-10  # both inputs cut to a 10-bit mantissa (cuBLAS may truncate)


@functools.lru_cache(maxsize=None)
def operands(n: int):
    rng = cp.random.default_rng(n)
    a = rng.standard_normal((n, n), dtype=cp.float32)
    b = rng.standard_normal((n, n), dtype=cp.float32)
    return a, b


@pytest.fixture(params=["fp32", "tf32"])
def precision(request):
    """Sets fastdl's flag and CuPy's cuBLAS compute type alike, and restores both after."""
    tf32 = request.param == "tf32"
    flags = fastdl.backends.cuda.matmul
    old_flag, old_type = flags.allow_tf32, cupy_linalg.get_compute_type(np.float32)
    flags.allow_tf32 = tf32
    cupy_linalg.set_compute_type(
        np.float32, cupy_linalg.COMPUTE_TYPE_TF32 if tf32 else cupy_linalg.COMPUTE_TYPE_DEFAULT
    )
    yield request.param
    flags.allow_tf32 = old_flag
    cupy_linalg.set_compute_type(np.float32, old_type)


def check(y, a, b, tf32: bool, rows: int = 64) -> None:
    n = a.shape[1]
    pick = np.random.default_rng(0).choice(a.shape[0], size=rows, replace=False)
    a64, b64 = cp.asnumpy(a[pick]).astype(np.float64), cp.asnumpy(b).astype(np.float64)
    want, bound = a64 @ b64, np.abs(a64) @ np.abs(b64)
    err = np.abs(cp.asnumpy(y[pick]).astype(np.float64) - want)
    rel = (n + 2) * U + (TF32_ROUNDING if tf32 else 0.0)
    assert (err <= rel * bound).all(), f"max error {err.max():.3g} exceeds the bound"


@pytest.mark.parametrize("impl", ["fastdl", "cupy"])
@pytest.mark.parametrize("n", SIZES)
def test_matmul(benchmark, precision, n, impl):
    a, b = operands(n)
    product = ops.matmul if impl == "fastdl" else cp.matmul

    def run():
        y = product(a, b)
        cp.cuda.Device().synchronize()
        return y

    run()  # warm-up: module load, cuBLAS handle, memory pool
    benchmark.group = f"matmul {precision} {n}^3"
    benchmark.extra_info.update(flop=2 * n**3, precision=precision, impl=impl)
    y = benchmark(run)
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["gflops"] = 2 * n**3 / benchmark.stats.stats.median / 1e9
    check(y, a, b, tf32=precision == "tf32")
