"""Helpers shared by the benchmark files."""


def record(benchmark, flops=None, nbytes=None):
    """Put the work done per call in extra_info, and the achieved rate when timings exist."""
    stats = getattr(benchmark, "stats", None)
    mean = stats.stats.mean if stats is not None and getattr(stats, "stats", None) else None
    if flops is not None:
        benchmark.extra_info["flops"] = flops
        if mean:
            benchmark.extra_info["GFLOP/s"] = round(flops / mean / 1e9, 1)
    if nbytes is not None:
        benchmark.extra_info["bytes"] = nbytes
        if mean:
            benchmark.extra_info["GB/s"] = round(nbytes / mean / 1e9, 1)


def timed_sync(benchmark, fn, sync, flops=None, nbytes=None):
    """Time fn() followed by sync() (a device synchronize, so each round is one complete call),
    then record the work per call and the achieved rate; returns fn's last result."""

    def run():
        out = fn()
        sync()
        return out

    out = benchmark(run)
    record(benchmark, flops=flops, nbytes=nbytes)
    return out


_COPY_ROOF = {}


def copy_roof(nbytes):
    """GB/s of np.copyto moving nbytes (half read, half written) on fastdl's thread count (one
    slice a thread: NumPy releases the GIL while it copies): the roof of a streaming op that
    moves as many bytes. Minimum time of a few copies, measured once per size and process."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    import fastdl

    if nbytes not in _COPY_ROOF:
        half = max(1, nbytes // 2)
        src = np.ones(half, np.uint8)
        dst = np.empty_like(src)
        k = max(1, fastdl.get_num_threads())
        parts = [(dst[i * half // k:(i + 1) * half // k], src[i * half // k:(i + 1) * half // k])
                 for i in range(k)]
        best = float("inf")
        with ThreadPoolExecutor(k) as pool:
            for _ in range(7):
                t0 = time.perf_counter()
                list(pool.map(lambda p: np.copyto(*p), parts))
                best = min(best, time.perf_counter() - t0)
        _COPY_ROOF[nbytes] = 2 * half / best / 1e9
    return _COPY_ROOF[nbytes]


def record_roof(benchmark, nbytes):
    """record(nbytes=...) plus the copy roof of as many bytes and the share of it reached."""
    record(benchmark, nbytes=nbytes)
    if "GB/s" in benchmark.extra_info:
        roof = copy_roof(nbytes)
        benchmark.extra_info["copy GB/s"] = round(roof, 1)
        benchmark.extra_info["% of copy"] = round(100 * benchmark.extra_info["GB/s"] / roof)


def gpu_modules():
    """(cupy, have_torch_cuda) for a GPU benchmark module; skips the whole module unless CuPy
    imports, a GPU is visible and fastdl was built with CUDA. Call it at module level."""
    import warnings

    import pytest

    import fastdl

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CuPy may warn at import that it cannot find CUDA_PATH
        cp = pytest.importorskip("cupy")
    if not fastdl.cuda_available():
        pytest.skip("needs a CUDA GPU and fastdl built with CUDA", allow_module_level=True)
    try:
        import torch

        have_torch = torch.cuda.is_available()
    except Exception:  # torch missing or built without CUDA
        have_torch = False
    return cp, have_torch



# ---- rnn (branch rnn) --------------------------------------------------------------------------
_PEAK = {}


def fma_peak_gflops():
    """The fp32 roof for "% of peak": one-thread 1024^3 sgemm GFLOP/s (best of 5; the GEMM runs
    near the FMA peak) times fastdl's thread count. Measured once per process."""
    import time

    import numpy as np

    import fastdl
    from fastdl import ops

    threads = fastdl.get_num_threads()
    if threads not in _PEAK:
        a = np.ones((1024, 1024), np.float32)
        fastdl.set_num_threads(1)
        try:
            ops.matmul(a, a)
            best = float("inf")
            for _ in range(5):
                t0 = time.perf_counter()
                ops.matmul(a, a)
                best = min(best, time.perf_counter() - t0)
        finally:
            fastdl.set_num_threads(threads)
        _PEAK[threads] = 2.0 * 1024 ** 3 / best / 1e9 * threads
    return _PEAK[threads]


def record_peak(benchmark, flops):
    """record(flops=...) plus the share of fma_peak_gflops() reached."""
    record(benchmark, flops=flops)
    if "GFLOP/s" in benchmark.extra_info:
        benchmark.extra_info["% of peak"] = round(
            100 * benchmark.extra_info["GFLOP/s"] / fma_peak_gflops(), 1)
# ---- end rnn -------------------------------------------------------------------------------------
