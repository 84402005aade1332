"""softmax forward / backward and fused softmax + cross-entropy (forward and backward in one
timed call): fastdl against NumPy and PyTorch.

Napkin math (float32, (N, C)): softmax forward reads x and writes y (8 NC bytes), backward reads
dy and y and writes dx (12 NC bytes); cross-entropy forward + backward reads the logits, writes
the probs, reads them again and writes dlogits (16 NC bytes). GB/s in extra_info.
"""

import numpy as np
import pytest

from fastdl import ops

from benchutil import record

# The last is a language-model head: 512 tokens over a 32000-word vocabulary (64 MB of logits).
SHAPES = [(64, 10), (256, 1000), (4096, 1000), (512, 32000)]


def _np_softmax(x):
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    e /= e.sum(axis=1, keepdims=True)
    return e


def _np_ce(x, t):
    probs = _np_softmax(x)
    n = len(t)
    loss = -np.mean(np.log(probs[np.arange(n), t]))
    d = probs.copy()
    d[np.arange(n), t] -= 1
    d /= n
    return loss, d


def _impl(lib):
    if lib == "fastdl":
        def ce(x, t):
            loss, probs = ops.cross_entropy(x, t)
            return loss, ops.cross_entropy_backward(probs, t)
        return ops.softmax, ops.softmax_backward, ce
    if lib == "numpy":
        return (_np_softmax, lambda dy, y: y * (dy - (dy * y).sum(axis=1, keepdims=True)), _np_ce)
    import torch

    t_ = torch.from_numpy
    F = torch.nn.functional

    def ce(x, t):
        xt = t_(x).requires_grad_()
        loss = F.cross_entropy(xt, t_(t))
        loss.backward()
        return loss.detach().numpy(), xt.grad.numpy()

    return (lambda x: torch.softmax(t_(x), -1).numpy(),
            lambda dy, y: torch.ops.aten._softmax_backward_data(t_(dy), t_(y), -1, torch.float32).numpy(),
            ce)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("what", ["softmax forward", "softmax backward", "cross_entropy fwd+bwd"])
def test_softmax(benchmark, lib, rng, shape, what):
    n, c = shape
    benchmark.group = f"{what} {n}x{c}"
    x = rng.standard_normal(shape, dtype=np.float32) * 3
    sm, sm_bwd, ce = _impl(lib)
    ref_sm, ref_bwd, ref_ce = _impl("numpy")
    if what == "softmax forward":
        got = benchmark(sm, x)
        record(benchmark, nbytes=8 * n * c)
        np.testing.assert_allclose(got, ref_sm(x), rtol=1e-4, atol=1e-7)
    elif what == "softmax backward":
        y = ref_sm(x)
        dy = rng.standard_normal(shape, dtype=np.float32)
        got = benchmark(sm_bwd, dy, y)
        record(benchmark, nbytes=12 * n * c)
        np.testing.assert_allclose(got, ref_bwd(dy, y), rtol=1e-3, atol=1e-6)
    else:
        t = rng.integers(0, c, n)
        loss, d = benchmark(ce, x, t)
        record(benchmark, nbytes=16 * n * c)
        want_loss, want_d = ref_ce(x, t)
        assert abs(float(loss) - want_loss) <= 1e-4 * abs(want_loss)
        np.testing.assert_allclose(d, want_d, rtol=1e-3, atol=1e-7 / n)
