"""fastdl's CUDA LSTM (cell and whole sequence) against PyTorch's (cuDNN for nn.LSTM, ATen for
the cell), float32.

    pytest benchmarks/bench_cuda_rnn.py                      # time them
    pytest benchmarks/bench_cuda_rnn.py --benchmark-disable  # run once and check results

Skipped without CuPy or a GPU; the torch rows skip without PyTorch CUDA. extra_info GFLOP/s
counts the matrix products: a step is 2 N 4H (I + H) FLOP forward, twice that backward (dx/dh
and the weight gradients). fastdl runs the T steps as T recurrent GEMMs + T point-wise kernels
(launch-bound at small N, see csrc/cuda/rnn.cu); cuDNN has persistent kernels that keep w_hh on
chip, so expect it ahead for long sequences of small batches. Results are checked against
PyTorch's after timing (same weights).
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

# (T, N, I, H): a char-LSTM-sized model, a wider batch
SEQ = [(50, 64, 256, 512), (20, 256, 512, 1024)]
MODES = ["forward", "forward+backward"]


def arrays(t, n, i, h):
    rng = cp.random.default_rng(0)
    k = 1 / np.sqrt(h)
    x = rng.standard_normal((t, n, i), dtype=np.float32)
    h0 = rng.standard_normal((n, h), dtype=np.float32)
    c0 = rng.standard_normal((n, h), dtype=np.float32)
    w_ih = rng.uniform(-k, k, (4 * h, i), dtype=np.float32)
    w_hh = rng.uniform(-k, k, (4 * h, h), dtype=np.float32)
    b_ih = rng.uniform(-k, k, 4 * h, dtype=np.float32)
    b_hh = rng.uniform(-k, k, 4 * h, dtype=np.float32)
    dy = rng.standard_normal((t, n, h), dtype=np.float32)
    return x, h0, c0, w_ih, w_hh, b_ih, b_hh, dy


def fastdl_seq(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, dy):
    if mode == "forward":
        return lambda: ops.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, need_cache=False)[0]

    def step():
        y, _, _, cache = ops.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
        return ops.lstm_backward(dy, None, None, cache)[3]  # dw_ih

    return step


def torch_seq(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, dy):
    i, h = x.shape[2], h0.shape[1]
    lstm = torch.nn.LSTM(i, h).cuda()
    with torch.no_grad():
        for name, a in [("weight_ih_l0", w_ih), ("weight_hh_l0", w_hh), ("bias_ih_l0", b_ih),
                        ("bias_hh_l0", b_hh)]:
            getattr(lstm, name).copy_(torch.as_tensor(a, device="cuda"))
    xt, dyt = torch.as_tensor(x, device="cuda"), torch.as_tensor(dy, device="cuda")
    state = (torch.as_tensor(h0, device="cuda")[None], torch.as_tensor(c0, device="cuda")[None])
    if mode == "forward":
        def fwd():
            with torch.no_grad():
                return lstm(xt, state)[0]

        return fwd

    def step():
        lstm.zero_grad(set_to_none=True)
        y, _ = lstm(xt, state)
        y.backward(dyt)
        return lstm.weight_ih_l0.grad

    return step


@pytest.mark.parametrize("impl", ["fastdl", "torch"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", SEQ, ids=lambda s: "T%d_N%d_I%d_H%d" % s)
def test_lstm(benchmark, size, mode, impl):
    benchmark.group = f"cuda lstm {mode} T,N,I,H={size}"
    if impl == "torch" and not HAVE_TORCH:
        pytest.skip("needs PyTorch with CUDA")
    t, n, i, h = size
    args = arrays(*size)
    fn = (fastdl_seq if impl == "fastdl" else torch_seq)(mode, *args)
    flops = 2 * t * n * 4 * h * (i + h) * (1 if mode == "forward" else 3)
    out = timed_sync(benchmark, fn, cp.cuda.Device().synchronize, flops=flops)
    if HAVE_TORCH:
        want = torch_seq(mode, *args)()
        got = torch.as_tensor(cp.asarray(out), device="cuda")
        scale = float(want.abs().max())
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3 * max(1.0, scale))


@pytest.mark.parametrize("impl", ["fastdl", "torch"])
def test_lstm_cell(benchmark, impl):
    n, i, h = 64, 256, 512
    benchmark.group = f"cuda lstm_cell forward N,I,H={(n, i, h)}"
    if impl == "torch" and not HAVE_TORCH:
        pytest.skip("needs PyTorch with CUDA")
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, _ = arrays(1, n, i, h)
    x = x[0]
    if impl == "fastdl":
        fn = lambda: ops.lstm_cell(x, h0, c0, w_ih, w_hh, b_ih, b_hh)[0]  # noqa: E731
    else:
        ts = [torch.as_tensor(a, device="cuda") for a in (x, h0, c0, w_ih, w_hh, b_ih, b_hh)]
        fn = lambda: torch.lstm_cell(ts[0], (ts[1], ts[2]), *ts[3:])[0]  # noqa: E731
    out = timed_sync(benchmark, fn, cp.cuda.Device().synchronize, flops=2 * n * 4 * h * (i + h))
    want = ops.lstm_cell(*[cp.asnumpy(a) for a in (x, h0, c0, w_ih, w_hh, b_ih, b_hh)])[0]
    np.testing.assert_allclose(cp.asnumpy(cp.asarray(out)), want, rtol=1e-4, atol=1e-4)
