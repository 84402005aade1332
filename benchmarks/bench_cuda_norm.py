"""fastdl's CUDA batch_norm against cuDNN / ATen through PyTorch: training forward (with the
running-statistics update), eval forward and training backward.

    pytest benchmarks/bench_cuda_norm.py                      # time them
    pytest benchmarks/bench_cuda_norm.py --benchmark-disable  # run once and check results

Skipped without CuPy or a GPU; the torch rows skip without PyTorch CUDA. Memory-bound:
extra_info GB/s counts the minimum traffic (training forward: x read, y written = 8 bytes per
value; backward: x, dy read, dx written = 12), though fastdl's training passes read the inputs
twice (statistics, then the element-wise pass). Results are checked against PyTorch's.
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

SHAPES = [(32, 64, 56, 56), (256, 1024, 1, 1)]  # a ResNet stage-1 BatchNorm2d, a BatchNorm1d
MODES = ["train_forward", "eval_forward", "train_backward"]


def stream():
    return cp.cuda.get_current_stream().ptr


def tensors(shape):
    rng = cp.random.default_rng(0)
    n, c = shape[:2]
    x = rng.standard_normal(shape, dtype=np.float32) * 2 + 1
    dy = rng.standard_normal(shape, dtype=np.float32)
    w = rng.standard_normal(c, dtype=np.float32)
    b = rng.standard_normal(c, dtype=np.float32)
    return x, dy, w, b


def fastdl_fn(mode, x, dy, w, b):
    n, c = x.shape[:2]
    x3, dy3 = x.reshape(n, c, -1), dy.reshape(n, c, -1)
    rm, rv = cp.zeros(c, np.float32), cp.ones(c, np.float32)
    y, mean, invstd = cp.empty_like(x3), cp.empty(c, np.float32), cp.empty(c, np.float32)
    train = mode != "eval_forward"
    fwd = lambda: _cuda.batch_norm_forward(y, mean, invstd, x3, w, b, rm, rv, train, 0.1, 1e-5,  # noqa: E731
                                           stream=stream())
    fwd()
    if mode != "train_backward":
        return lambda: (fwd(), y.reshape(x.shape))[1]
    dx, dw, db = cp.empty_like(x3), cp.empty(c, np.float32), cp.empty(c, np.float32)
    return lambda: (_cuda.batch_norm_backward(dx, dw, db, dy3, x3, w, mean, invstd, True,
                                              stream=stream()), dx.reshape(x.shape))[1]


def torch_fn(mode, x, dy, w, b):
    xt, dyt, wt, bt = (torch.as_tensor(a, device="cuda") for a in (x, dy, w, b))
    c = x.shape[1]
    rm, rv = torch.zeros(c, device="cuda"), torch.ones(c, device="cuda")
    if mode != "train_backward":
        train = mode == "train_forward"
        return lambda: torch.nn.functional.batch_norm(xt, rm, rv, wt, bt, train, 0.1, 1e-5)
    _, mean, invstd = torch.ops.aten.native_batch_norm(xt, wt, bt, rm, rv, True, 0.1, 1e-5)
    return lambda: torch.ops.aten.native_batch_norm_backward(
        dyt, xt, wt, rm, rv, mean, invstd, True, 1e-5, [True, True, True])[0]


@pytest.mark.parametrize("impl", ["fastdl", "torch"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_batch_norm(benchmark, shape, mode, impl):
    benchmark.group = f"cuda batch_norm {mode} {shape}"
    if impl == "torch" and not HAVE_TORCH:
        pytest.skip("needs PyTorch with CUDA")
    x, dy, w, b = tensors(shape)
    fn = fastdl_fn(mode, x, dy, w, b) if impl == "fastdl" else torch_fn(mode, x, dy, w, b)
    nbytes = (12 if mode == "train_backward" else 8) * x.size
    out = timed_sync(benchmark, fn, cp.cuda.Device().synchronize, nbytes=nbytes)
    if HAVE_TORCH:
        want = torch_fn(mode, x, dy, w, b)()
        got = torch.as_tensor(cp.asarray(out), device="cuda")
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
