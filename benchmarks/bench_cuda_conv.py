"""fastdl's CUDA conv2d (implicit GEMM, float32) against cuDNN through PyTorch: forward,
backward-data and backward-weight on ResNet-like layers.

    pytest benchmarks/bench_cuda_conv.py                      # time them
    pytest benchmarks/bench_cuda_conv.py --benchmark-disable  # run once and check results

Skipped without CuPy or a GPU; the torch rows skip without PyTorch CUDA. Each group holds one
layer and pass. cuDNN runs in exact fp32 (allow_tf32 off, as fastdl's kernels) with
cudnn.benchmark on, so it gets its best algorithm. Each pass is 2 N K OH OW C/g R S FLOP
(extra_info GFLOP/s, read against the card's fp32 roof: H100/H200 SXM ~67 TFLOP/s). After timing,
fastdl's result is checked against cuDNN's.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastdl import ops

from benchutil import gpu_modules, timed_sync

cp, HAVE_TORCH = gpu_modules()  # skips this module without CuPy, a GPU or a CUDA build
if HAVE_TORCH:
    import torch


from fastdl import _cuda  # noqa: E402

pytestmark = pytest.mark.gpu

# name: (N, C, H, W, K, R, S, stride, padding, groups)
LAYERS = {
    "3x3 64ch 56x56": (32, 64, 56, 56, 64, 3, 3, 1, 1, 1),
    "3x3 256ch 14x14": (32, 256, 14, 14, 256, 3, 3, 1, 1, 1),
    "1x1 256->64 28x28": (32, 256, 28, 28, 64, 1, 1, 1, 0, 1),
    "3x3/2 128->256 28x28": (32, 128, 28, 28, 256, 3, 3, 2, 1, 1),
    "depthwise 3x3 128ch 28x28": (32, 128, 28, 28, 128, 3, 3, 1, 1, 128),
}
PASSES = ["forward", "backward_data", "backward_weight"]


def operands(layer):
    n, c, h, w, k, r, s, stride, pad, groups = LAYERS[layer]
    rng = cp.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    scale = float(1 / np.sqrt(c // groups * r * s))  # a Python float keeps float32 (NEP 50)
    wt = rng.standard_normal((k, c // groups, r, s), dtype=np.float32) * scale
    oh, ow = (h + 2 * pad - r) // stride + 1, (w + 2 * pad - s) // stride + 1
    dy = rng.standard_normal((n, k, oh, ow), dtype=np.float32)
    flops = 2 * n * k * oh * ow * (c // groups) * r * s
    return x, wt, dy, dict(stride=stride, padding=pad, groups=groups), flops


def fastdl_pass(p, x, w, dy, geo):
    sizes = (geo["stride"],) * 2 + (geo["padding"],) * 2 + (1, 1, geo["groups"])
    if p == "forward":
        return lambda: ops.conv2d(x, w, None, **geo)
    if p == "backward_data":
        dx = cp.empty_like(x)
        return lambda: (_cuda.conv2d_backward_data(dx, dy, w, *sizes,
                                                          stream=cp.cuda.get_current_stream().ptr), dx)[1]
    dw, db = cp.empty_like(w), cp.empty(w.shape[0], np.float32)
    return lambda: (_cuda.conv2d_backward_weight(dw, db, dy, x, *sizes,
                                                        stream=cp.cuda.get_current_stream().ptr), dw)[1]


def torch_pass(p, x, w, dy, geo):
    xt, wt, dyt = (torch.as_tensor(a, device="cuda") for a in (x, w, dy))
    st, pd, g = (geo["stride"],) * 2, (geo["padding"],) * 2, geo["groups"]
    if p == "forward":
        return lambda: torch.nn.functional.conv2d(xt, wt, None, st, pd, 1, g)
    mask = [True, False, False] if p == "backward_data" else [False, True, False]
    i = 0 if p == "backward_data" else 1
    return lambda: torch.ops.aten.convolution_backward(dyt, xt, wt, None, st, pd, (1, 1), False,
                                                       (0, 0), g, mask)[i]


@pytest.mark.parametrize("impl", ["fastdl", "cudnn"])
@pytest.mark.parametrize("p", PASSES)
@pytest.mark.parametrize("layer", list(LAYERS))
def test_conv2d(benchmark, layer, p, impl):
    benchmark.group = f"cuda conv2d {p} {layer}"
    x, w, dy, geo, flops = operands(layer)
    if impl == "cudnn" and not HAVE_TORCH:
        pytest.skip("needs PyTorch with CUDA")
    if HAVE_TORCH:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    fn = fastdl_pass(p, x, w, dy, geo) if impl == "fastdl" else torch_pass(p, x, w, dy, geo)
    fn()  # cuDNN's autotuning and any lazy setup stay out of the timing
    sync = cp.cuda.Device().synchronize
    out = timed_sync(benchmark, fn, sync, flops=flops)
    if HAVE_TORCH:
        want = torch_pass(p, x, w, dy, geo)()
        got = torch.as_tensor(cp.asarray(out), device="cuda")
        scale = float(want.abs().max())
        err = float((got - want).abs().max())
        assert err <= 1e-4 * max(scale, 1.0) * np.sqrt(flops / (2 * got.numel())), \
            f"{impl} differs from cuDNN by {err:.3g} (scale {scale:.3g})"
