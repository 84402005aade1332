"""fastdl's CUDA pooling against cuDNN / ATen through PyTorch: max (with argmax), avg and
adaptive avg, forward and backward.

    pytest benchmarks/bench_cuda_pool.py                      # time them
    pytest benchmarks/bench_cuda_pool.py --benchmark-disable  # run once and check results

Skipped without CuPy or a GPU; the torch rows skip without PyTorch CUDA. Memory-bound:
extra_info GB/s counts the minimum traffic (input read once, outputs written once; max adds
the int64 argmax), read against the card's ~3.3-4.8 TB/s. Results are checked against PyTorch's
after timing.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchutil import gpu_modules, timed_sync

cp, HAVE_TORCH = gpu_modules()  # skips this module without CuPy, a GPU or a CUDA build
if HAVE_TORCH:
    import torch

from fastdl import _cuda  # noqa: E402

pytestmark = pytest.mark.gpu

# name: (x shape, kernel, stride, padding) ; adaptive: output size in `kernel`
CASES = {
    "max 3x3/2 (32, 64, 112, 112)": ("max", (32, 64, 112, 112), 3, 2, 1),
    "avg 2x2/2 (32, 256, 56, 56)": ("avg", (32, 256, 56, 56), 2, 2, 0),
    "adaptive (32, 2048, 7, 7) -> 1x1": ("adaptive", (32, 2048, 7, 7), 1, None, None),
}


def stream():
    return cp.cuda.get_current_stream().ptr


def setup(case):
    kind, shape, k, s, p = CASES[case]
    x = cp.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    n, c, h, w = shape
    oh, ow = ((h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1) if kind != "adaptive" else (k, k)
    y = cp.empty((n, c, oh, ow), np.float32)
    argmax = cp.empty((n, c, oh, ow), np.int64)
    dy = cp.random.default_rng(1).standard_normal((n, c, oh, ow), dtype=np.float32)
    return kind, x, y, argmax, dy, k, s, p


def fastdl_fn(kind, direction, x, y, argmax, dy, k, s, p):
    win = (k, k, s, s, p, p)
    if kind == "max":
        _cuda.max_pool2d_forward(y, argmax, x, *win, stream=stream())  # argmax for backward
        if direction == "forward":
            return lambda: (_cuda.max_pool2d_forward(y, argmax, x, *win, stream=stream()), y)[1]
        dx = cp.empty_like(x)
        return lambda: (_cuda.max_pool2d_backward(dx, dy, argmax, stream=stream()), dx)[1]
    if kind == "avg":
        if direction == "forward":
            return lambda: (_cuda.avg_pool2d_forward(y, x, *win, stream=stream()), y)[1]
        dx = cp.empty_like(x)
        return lambda: (_cuda.avg_pool2d_backward(dx, dy, *win, stream=stream()), dx)[1]
    if direction == "forward":
        return lambda: (_cuda.adaptive_avg_pool2d_forward(y, x, stream=stream()), y)[1]
    dx = cp.empty_like(x)
    return lambda: (_cuda.adaptive_avg_pool2d_backward(dx, dy, stream=stream()), dx)[1]


def torch_fn(kind, direction, x, dy, k, s, p):
    F = torch.nn.functional
    xt, dyt = torch.as_tensor(x, device="cuda"), torch.as_tensor(dy, device="cuda")
    if kind == "max":
        if direction == "forward":
            return lambda: F.max_pool2d(xt, k, s, p)
        _, idx = F.max_pool2d(xt, k, s, p, return_indices=True)
        return lambda: torch.ops.aten.max_pool2d_with_indices_backward(dyt, xt, [k, k], [s, s],
                                                                        [p, p], [1, 1], False, idx)
    if kind == "avg":
        if direction == "forward":
            return lambda: F.avg_pool2d(xt, k, s, p)
        return lambda: torch.ops.aten.avg_pool2d_backward(dyt, xt, [k, k], [s, s], [p, p], False,
                                                          True, None)
    if direction == "forward":
        return lambda: F.adaptive_avg_pool2d(xt, k)
    return lambda: torch.ops.aten._adaptive_avg_pool2d_backward(dyt, xt)


@pytest.mark.parametrize("impl", ["fastdl", "torch"])
@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("case", list(CASES))
def test_pool(benchmark, case, direction, impl):
    benchmark.group = f"cuda pool {direction} {case}"
    if impl == "torch" and not HAVE_TORCH:
        pytest.skip("needs PyTorch with CUDA")
    kind, x, y, argmax, dy, k, s, p = setup(case)
    fn = fastdl_fn(kind, direction, x, y, argmax, dy, k, s, p) if impl == "fastdl" \
        else torch_fn(kind, direction, x, dy, k, s, p)
    extra = 8 * y.size if kind == "max" and direction == "forward" else 0  # argmax
    if kind == "max" and direction == "backward":
        extra = 8 * y.size  # argmax read
    nbytes = 4 * (x.size + y.size) + extra
    out = timed_sync(benchmark, fn, cp.cuda.Device().synchronize, nbytes=nbytes)
    if HAVE_TORCH:
        want = torch_fn(kind, direction, x, dy, k, s, p)()
        got = torch.as_tensor(cp.asarray(out), device="cuda")
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
