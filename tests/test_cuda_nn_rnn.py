"""The recurrent modules on the GPU (CuPy arrays through fastdl._cuda): nn.Embedding, RNNCell,
LSTMCell and LSTM (two layers, batch_first, bidirectional) give the outputs and gradients of the
same modules on the CPU, in float32, within a tolerance of float32 rounding over a few dozen
steps. Skipped as a whole unless CuPy imports and fastdl sees a GPU."""

from __future__ import annotations

import numpy as np
import pytest

from fastdl import Tensor, nn
from helpers import cupy_or_skip

cp = cupy_or_skip()

pytestmark = pytest.mark.gpu

TOL = dict(rtol=1e-4, atol=2e-5)


def _twins(make):
    """The same module twice, one moved to the GPU."""
    cpu, gpu = make(), make()
    gpu.load_state_dict({k: np.array(v) for k, v in cpu.state_dict().items()})
    return cpu, gpu.to("cuda")


def _run(module, x, states, grads, device):
    conv = (lambda a: cp.asarray(a)) if device == "cuda" else (lambda a: a)
    xt = Tensor(conv(x), requires_grad=x.dtype.kind == "f")
    st = None if states is None else tuple(Tensor(conv(s), requires_grad=True) for s in states)
    if st is not None and len(st) == 1:
        st = st[0]
    outs = module(xt) if st is None else module(xt, st)
    flat = []
    for o in (outs if isinstance(outs, tuple) else (outs,)):
        flat.extend(o if isinstance(o, tuple) else (o,))
    loss = None
    for o, g in zip(flat, grads):
        assert o.device == device
        term = (o * conv(g)).sum()
        loss = term if loss is None else loss + term
    loss.backward()
    host = lambda a: cp.asnumpy(a) if device == "cuda" else a  # noqa: E731
    got = [host(o.data) for o in flat]
    if xt.requires_grad:
        got.append(host(xt.grad))
    given = () if st is None else st if isinstance(st, tuple) else (st,)
    got += [host(s.grad) for s in given]
    got += [host(p.grad) for p in module.parameters()]
    return got


def _compare(make, x, states, out_shapes, rng):
    cpu, gpu = _twins(make)
    grads = [rng.standard_normal(s).astype(np.float32) for s in out_shapes]
    want = _run(cpu, x, states, grads, "cpu")
    got = _run(gpu, x, states, grads, "cuda")
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(g, w, **TOL, err_msg=f"result {k}")


@pytest.mark.parametrize("opts", [dict(), dict(batch_first=True, num_layers=2),
                                  dict(bidirectional=True, num_layers=2, bias=False)])
def test_lstm_on_gpu_matches_cpu(opts, rng):
    t, n, i, h = 9, 3, 5, 17
    d = 2 if opts.get("bidirectional") else 1
    rows = opts.get("num_layers", 1) * d
    x = rng.standard_normal((n, t, i) if opts.get("batch_first") else (t, n, i)).astype(np.float32)
    states = tuple(rng.standard_normal((rows, n, h)).astype(np.float32) for _ in range(2))
    y_shape = (n, t, d * h) if opts.get("batch_first") else (t, n, d * h)
    _compare(lambda: nn.LSTM(i, h, **opts), x, states, [y_shape, (rows, n, h), (rows, n, h)], rng)


def test_cells_and_embedding_on_gpu_match_cpu(rng):
    x = rng.standard_normal((4, 6)).astype(np.float32)
    hc = tuple(rng.standard_normal((4, 5)).astype(np.float32) for _ in range(2))
    _compare(lambda: nn.LSTMCell(6, 5), x, hc, [(4, 5), (4, 5)], rng)
    _compare(lambda: nn.RNNCell(6, 5), x, hc[:1], [(4, 5)], rng)
    idx = np.array([[0, 3, 3], [6, 1, 0]], np.int64)
    _compare(lambda: nn.Embedding(7, 4, padding_idx=1), idx, None, [(2, 3, 4)], rng)
