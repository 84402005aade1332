"""Scaled dot-product attention, forward and backward: fastdl against PyTorch's CPU flash
attention (aten::_scaled_dot_product_flash_attention_for_cpu and its backward: what
scaled_dot_product_attention runs for float32 on the CPU, without autograd overhead), in one
process. NumPy has no baseline worth its memory here (its composition builds the S x S matrix).

FLOPs: forward 4*B*H*Sq*Sk*D (two products, Q.K^T and P.V), backward 2.5x that (five products),
causal half of each. extra_info also gives the share of the fp32 FMA roof, measured once per
session as the one-thread 1024^3 sgemm rate times the thread count (benchutil.gemm_roof_gflops).
Results are checked against PyTorch after timing. With --benchmark-disable (CI's smoke run)
every shape shrinks to B1 H2 S(1/8) so the file doubles as a fast test.
"""

import numpy as np
import pytest

from fastdl import ops

from benchutil import gemm_roof_gflops, record

SHAPES = [(8, 8, 512, 64), (4, 8, 2048, 64)]


def _id(s):
    return "B{}H{}S{}D{}".format(*s)


def _impl(lib, causal):
    """forward(q, k, v) -> (out, lse); backward(dout, q, k, v, out, lse) -> (dq, dk, dv)."""
    if lib == "fastdl":
        return (lambda q, k, v: ops.attention(q, k, v, causal=causal),
                lambda g, q, k, v, o, l: ops.attention_backward(g, q, k, v, o, l, causal=causal))
    import torch

    t, aten = torch.from_numpy, torch.ops.aten

    def fwd(q, k, v):
        o, l = aten._scaled_dot_product_flash_attention_for_cpu(t(q), t(k), t(v), 0.0, causal)
        return o.numpy(), l.numpy()

    def bwd(g, q, k, v, o, l):
        out = aten._scaled_dot_product_flash_attention_for_cpu_backward(
            t(g), t(q), t(k), t(v), t(o), t(l), 0.0, causal)
        return tuple(x.numpy() for x in out)

    return fwd, bwd


@pytest.fixture(params=["fastdl", "torch"])
def attn_lib(request):
    if request.param == "torch":
        import fastdl

        torch = pytest.importorskip("torch")
        torch.set_num_threads(fastdl.get_num_threads())
    return request.param


@pytest.mark.parametrize("shape", SHAPES, ids=_id)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_attention(benchmark, attn_lib, rng, shape, causal, direction):
    if benchmark.disabled:
        shape = (1, 2, shape[2] // 8, shape[3])
    b, h, s, d = shape
    benchmark.group = f"attention {direction} {'causal' if causal else 'full'} {_id(shape)}"
    q, k, v, g = (rng.standard_normal((b, h, s, d), dtype=np.float32) for _ in range(4))
    fwd, bwd = _impl(attn_lib, causal)
    flops = 4.0 * b * h * s * s * d * (0.5 if causal else 1.0)
    if direction == "forward":
        got = benchmark(fwd, q, k, v)
    else:
        out, lse = fwd(q, k, v)
        got = benchmark(bwd, g, q, k, v, out, lse)
        flops *= 2.5
    record(benchmark, flops=flops)
    if "GFLOP/s" in benchmark.extra_info:
        benchmark.extra_info["% of roof"] = round(
            100 * benchmark.extra_info["GFLOP/s"] / gemm_roof_gflops(), 1)
    # checked against the other library (fastdl's own correctness: tests/test_attention.py)
    other = "torch" if attn_lib == "fastdl" else "fastdl"
    if other == "torch":
        pytest.importorskip("torch")
    ofwd, obwd = _impl(other, causal)
    if direction == "forward":
        want = ofwd(q, k, v)
    else:
        want = obwd(g, q, k, v, *ofwd(q, k, v))
    for a, e in zip(got, want):
        np.testing.assert_allclose(a, e, rtol=2e-3, atol=2e-3 * max(1.0, float(np.abs(e).max())))
