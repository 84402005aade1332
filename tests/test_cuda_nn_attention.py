"""The transformer's modules on the GPU (CuPy arrays through fastdl._cuda): MultiheadAttention
(flash path, explicit path with weights and masks), PositionalEncoding and
TransformerEncoderLayer give the outputs and gradients of the same modules on the CPU, in
float32. Skipped as a whole unless CuPy imports and fastdl sees a GPU."""

from __future__ import annotations

import numpy as np
import pytest

import fastdl
from fastdl import Tensor, nn
from helpers import cupy_or_skip

cp = cupy_or_skip()

pytestmark = pytest.mark.gpu

TOL = dict(rtol=2e-4, atol=2e-5)


def _twins(make):
    fastdl.manual_seed(0)
    cpu, gpu = make(), make()
    gpu.load_state_dict({k: np.array(v) for k, v in cpu.state_dict().items()})
    return cpu, gpu.to("cuda")


def _run(module, x, dy, call):
    """(output, weights or None, input grad, {name: param grad}) as NumPy arrays."""
    dev = next(module.parameters()).device
    conv = cp.asarray if dev == "cuda" else (lambda a: a)
    xt = Tensor(conv(x), requires_grad=True)
    out = call(module, xt)
    y, w = out if isinstance(out, tuple) else (out, None)
    assert y.device == dev
    y.backward(conv(dy))
    host = cp.asnumpy if dev == "cuda" else (lambda a: a)
    return (y.numpy(), None if w is None else w.numpy(), host(xt.grad),
            {k: host(p.grad) for k, p in module.named_parameters()})


def _compare(a, b):
    for i, (u, v) in enumerate(zip(a[:3], b[:3])):
        if u is not None:
            np.testing.assert_allclose(v, u, **TOL, err_msg=f"item {i}")
    for k in a[3]:
        np.testing.assert_allclose(b[3][k], a[3][k], **TOL, err_msg=k)


@pytest.mark.parametrize("kw", [dict(), dict(is_causal=True), dict(need_weights=True),
                                dict(key_padding_mask="padding")], ids=repr)
@pytest.mark.parametrize("batch_first", [False, True])
def test_multihead_attention_cuda_matches_cpu(kw, batch_first, rng):
    cpu, gpu = _twins(lambda: nn.MultiheadAttention(32, 4, batch_first=batch_first))
    shape = (3, 17, 32) if batch_first else (17, 3, 32)
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    kw = dict(kw)
    if kw.get("key_padding_mask") == "padding":
        kpm = np.zeros((3, 17), bool)
        kpm[1, -5:] = True
        kw["key_padding_mask"] = kpm

    def call(m, t):
        return m(t, t, t, **kw)

    _compare(_run(cpu, x, dy, call), _run(gpu, x, dy, call))


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_cuda_matches_cpu(norm_first, activation, rng):
    def make():
        return nn.Sequential(nn.PositionalEncoding(32, batch_first=True),
                             nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True,
                                                        norm_first=norm_first,
                                                        activation=activation))

    cpu, gpu = _twins(make)
    x = rng.standard_normal((2, 33, 32)).astype(np.float32)
    dy = rng.standard_normal((2, 33, 32)).astype(np.float32)
    _compare(_run(cpu, x, dy, lambda m, t: m(t)), _run(gpu, x, dy, lambda m, t: m(t)))
