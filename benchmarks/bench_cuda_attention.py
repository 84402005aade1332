"""fastdl's CUDA flash attention against PyTorch CUDA scaled_dot_product_attention, forward and
backward, causal and not.

    pytest benchmarks/bench_cuda_attention.py                      # time them
    pytest benchmarks/bench_cuda_attention.py --benchmark-disable  # run once and check results

Skipped without CuPy or a GPU; the torch rows skip without PyTorch CUDA. extra_info GFLOP/s
counts forward 4·B·H·S²·D, backward 2.5× that, half of each when causal (the issue's
convention). fastdl's kernels are plain-FMA tiles (no tensor cores, csrc/cuda/attention.cu);
PyTorch runs its flash / memory-efficient kernels on tensor cores (TF32 off: float32 inputs
keep float32 products there too only through the math or efficient paths, so compare the
times, not the precision). Results are checked against PyTorch's after timing.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchutil import gpu_modules, timed_sync

cp, HAVE_TORCH = gpu_modules()  # skips this module without CuPy, a GPU or a CUDA build
if HAVE_TORCH:
    import torch

from fastdl import ops  # noqa: E402

pytestmark = pytest.mark.gpu

SHAPES = [(8, 8, 512, 64), (4, 8, 2048, 64)]  # (B, H, S, D): the two shapes
MODES = ["forward", "backward"]


def tensors(shape):
    rng = cp.random.default_rng(0)
    q, k, v, dout = (rng.standard_normal(shape, dtype=np.float32) for _ in range(4))
    return q, k, v, dout


def flops(shape, mode, causal):
    b, h, s, d = shape
    f = 4.0 * b * h * s * s * d * (2.5 if mode == "backward" else 1.0)
    return f / 2 if causal else f


def fastdl_fn(mode, causal, q, k, v, dout):
    fwd = lambda: ops.attention(q, k, v, causal=causal)  # noqa: E731
    if mode == "forward":
        return lambda: fwd()[0]
    out, lse = fwd()
    return lambda: ops.attention_backward(dout, q, k, v, out, lse, causal=causal)


def torch_fn(mode, causal, q, k, v, dout):
    sdpa = torch.nn.functional.scaled_dot_product_attention
    qt, kt, vt, dt = (torch.as_tensor(a, device="cuda") for a in (q, k, v, dout))
    if mode == "forward":
        return lambda: sdpa(qt, kt, vt, is_causal=causal)
    qt, kt, vt = (a.clone().requires_grad_(True) for a in (qt, kt, vt))
    out = sdpa(qt, kt, vt, is_causal=causal)
    return lambda: torch.autograd.grad(out, (qt, kt, vt), dt, retain_graph=True)


@pytest.mark.parametrize("impl", ["fastdl", "torch"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_attention(benchmark, shape, mode, causal, impl):
    benchmark.group = f"cuda attention {mode} {'causal' if causal else 'full'} {shape}"
    if impl == "torch" and not HAVE_TORCH:
        pytest.skip("needs PyTorch with CUDA")
    q, k, v, dout = tensors(shape)
    make = fastdl_fn if impl == "fastdl" else torch_fn
    fn = make(mode, causal, q, k, v, dout)
    got = timed_sync(benchmark, fn, cp.cuda.Device().synchronize, flops=flops(shape, mode, causal))
    if HAVE_TORCH:
        want = torch_fn(mode, causal, q, k, v, dout)()
        got = got if isinstance(got, tuple) else (got,)
        want = want if isinstance(want, tuple) else (want,)
        for g, w in zip(got, want):
            g = torch.as_tensor(cp.asarray(g), device="cuda")
            torch.testing.assert_close(g, w.detach(), rtol=2e-3, atol=2e-3)
