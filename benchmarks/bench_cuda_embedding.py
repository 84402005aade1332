"""fastdl's CUDA embedding lookup and (deterministic) gradient against PyTorch's CUDA ones
(aten.embedding / aten.embedding_dense_backward, no autograd), float32.

    pytest benchmarks/bench_cuda_embedding.py                      # time them
    pytest benchmarks/bench_cuda_embedding.py --benchmark-disable  # run once and check results

Skipped without CuPy or a GPU; the torch rows skip without PyTorch CUDA. extra_info GB/s counts
the minimum traffic: forward 8 M D bytes (rows read, y written), backward 4 V D (dweight
zeroed) + 4 M D (dy read). Both fastdl calls include the device-side index check and its one
synchronising copy; PyTorch's backward sorts the indices (also deterministic unless told not
to be). Results are checked against PyTorch's (forward exactly, backward to 1e-5).
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

# (V, D, M): a word-embedding table and a batch of 64 x 512 tokens, a small vocabulary
CASES = [(50000, 512, 32768), (1000, 128, 262144)]


def fns(impl, what, idx, w, dy):
    v = w.shape[0]
    if impl == "fastdl":
        if what == "forward":
            return lambda: ops.embedding(idx, w)
        return lambda: ops.embedding_backward(dy, idx, v)
    ti, tw, tdy = (torch.as_tensor(a, device="cuda") for a in (idx, w, dy))
    if what == "forward":
        return lambda: torch.ops.aten.embedding(tw, ti)
    return lambda: torch.ops.aten.embedding_dense_backward(tdy, ti, v, -1, False)


@pytest.mark.parametrize("impl", ["fastdl", "torch"])
@pytest.mark.parametrize("what", ["forward", "backward"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "V%d_D%d_M%d" % c)
def test_embedding(benchmark, case, what, impl):
    v, d, m = case
    benchmark.group = f"cuda embedding {what} V={v} D={d} M={m}"
    if impl == "torch" and not HAVE_TORCH:
        pytest.skip("needs PyTorch with CUDA")
    rng = cp.random.default_rng(0)
    idx = rng.integers(0, v, m)
    w = rng.standard_normal((v, d), dtype=np.float32)
    dy = rng.standard_normal((m, d), dtype=np.float32)
    nbytes = 8 * m * d if what == "forward" else 4 * v * d + 4 * m * d
    out = timed_sync(benchmark, fns(impl, what, idx, w, dy), cp.cuda.Device().synchronize,
                     nbytes=nbytes)
    if HAVE_TORCH:
        want = fns("torch", what, idx, w, dy)()
        got = torch.as_tensor(cp.asarray(out), device="cuda")
        tol = 0 if what == "forward" else 1e-5
        torch.testing.assert_close(got, want, rtol=tol, atol=tol * max(1.0, float(want.abs().max())))
