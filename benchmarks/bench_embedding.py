"""embedding lookup (forward) and its gradient (backward): fastdl against NumPy (fancy indexing,
np.zeros + np.add.at) and PyTorch (aten.embedding / aten.embedding_dense_backward, no autograd).

Napkin math (float32, M indices, a (V, D) table): the forward reads M rows of the table and
writes y: 8 M D bytes (+ 8 M of indices). The backward writes the zeroed dweight (4 V D), reads
dy (4 M D) and reads and writes each hit row (8 M D at most, less where repeats stay in cache):
GB/s in extra_info counts the minimum, 4 V D + 4 M D. fastdl's backward is deterministic (each
thread owns a tile of dweight and scans all indices), PyTorch's CPU one sorts the indices.
Results are checked after timing.
"""

import numpy as np
import pytest

from fastdl import ops

from benchutil import record_roof

# (V, D, M): a word-embedding table with a batch of sentences, a narrow table with many tokens
CASES = [(10000, 256, 8192), (1000, 64, 32768)]


def _impl(lib):
    """forward(indices, weight) -> y; backward(dy, indices, V) -> dweight."""
    if lib == "fastdl":
        return ops.embedding, ops.embedding_backward
    if lib == "numpy":
        def bwd(dy, idx, v):
            dw = np.zeros((v, dy.shape[-1]), dy.dtype)
            np.add.at(dw, idx, dy)
            return dw

        return (lambda idx, w: w[idx]), bwd
    import torch

    t, aten = torch.from_numpy, torch.ops.aten
    return (lambda idx, w: aten.embedding(t(w), t(idx)).numpy(),
            lambda dy, idx, v: aten.embedding_dense_backward(t(dy), t(idx), v, -1, False).numpy())


@pytest.mark.parametrize("case", CASES, ids=lambda c: "V%d_D%d_M%d" % c)
@pytest.mark.parametrize("what", ["forward", "backward"])
def test_embedding(benchmark, lib, rng, case, what):
    v, d, m = case
    benchmark.group = f"embedding {what} V={v} D={d} M={m}"
    idx = rng.integers(0, v, m)
    w = rng.standard_normal((v, d), dtype=np.float32)
    fwd, bwd = _impl(lib)
    if what == "forward":
        y = benchmark(fwd, idx, w)
        record_roof(benchmark, 8 * m * d + 8 * m)
        np.testing.assert_array_equal(y, w[idx])
    else:
        dy = rng.standard_normal((m, d), dtype=np.float32)
        dw = benchmark(bwd, dy, idx, v)
        record_roof(benchmark, 4 * v * d + 4 * m * d)
        want = np.zeros((v, d))
        np.add.at(want, idx, dy.astype(np.float64))
        np.testing.assert_allclose(dw, want, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(want).max())))
