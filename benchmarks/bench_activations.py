"""relu, sigmoid, tanh forward and backward (from the output): fastdl against NumPy and PyTorch.

Napkin math: memory-bound streams of float32. forward reads x and writes y (8 bytes/element),
backward reads dy and y and writes dx (12 bytes/element); GB/s in extra_info reads against this
machine's ~50-90 GB/s (2 Zen 5 cores). sigmoid/tanh add an exp per element (~20 vector ops),
which stays under the memory time with AVX-512. Results are checked after timing.
"""

import numpy as np
import pytest

from fastdl import ops

from benchutil import record

SIZES = [10_000, 100_000, 1_000_000, 10_000_000]
ACTS = ["relu", "sigmoid", "tanh"]


def _numpy(act):
    if act == "relu":
        return lambda x: np.maximum(x, 0), lambda dy, y: dy * (y > 0)
    if act == "sigmoid":
        return lambda x: 1 / (1 + np.exp(-x)), lambda dy, y: dy * y * (1 - y)
    return np.tanh, lambda dy, y: dy * (1 - y * y)


def _impl(lib, act):
    if lib == "fastdl":
        return getattr(ops, act), getattr(ops, f"{act}_backward")
    if lib == "numpy":
        return _numpy(act)
    import torch

    aten = torch.ops.aten
    fwd = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}[act]
    bwd = {"relu": lambda dy, y: aten.threshold_backward(dy, y, 0),
           "sigmoid": aten.sigmoid_backward, "tanh": aten.tanh_backward}[act]
    t = torch.from_numpy
    return (lambda x: fwd(t(x)).numpy()), (lambda dy, y: bwd(t(dy), t(y)).numpy())


@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"{n:.0e}")
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_activation(benchmark, lib, rng, act, n, direction):
    benchmark.group = f"{act} {direction} {n:.0e}"
    x = rng.standard_normal(n, dtype=np.float32)
    dy = rng.standard_normal(n, dtype=np.float32)
    fwd, bwd = _impl(lib, act)
    ref_fwd, ref_bwd = _numpy(act)
    y = ref_fwd(x).astype(np.float32)
    # fastdl is held to a few ulps; the baselines only to what they promise: PyTorch's vectorised
    # tanh is ~5e-5 relative on some chunks of a multi-threaded call (seen on an AVX-512 Xeon).
    rtol = 1e-4 if lib == "torch" else 1e-5
    if direction == "forward":
        got = benchmark(fwd, x)
        record(benchmark, nbytes=8 * n)
        np.testing.assert_allclose(got, y, rtol=rtol, atol=1e-6)
    else:
        got = benchmark(bwd, dy, y)
        record(benchmark, nbytes=12 * n)
        np.testing.assert_allclose(got, ref_bwd(dy, y), rtol=rtol, atol=1e-6)


# ---- gelu --------------------------------------------------------------------------------------
# Forward reads x, writes y (8 bytes/element); backward reads dy and x, writes dx (12). The exact
# form costs an exp, a division and two polynomials per element (vec_math.h's erfc), the tanh form
# one sigmoid; PyTorch through aten.gelu / aten.gelu_backward.

def _gelu_numpy(approximate):
    import math
    erf = np.vectorize(math.erf, otypes=[np.float64])

    def fwd(x):
        x = x.astype(np.float64)
        if approximate == "tanh":
            return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
        return 0.5 * x * (1 + erf(x / np.sqrt(2)))

    def bwd(dy, x):
        x = x.astype(np.float64)
        if approximate == "tanh":
            k = np.sqrt(2 / np.pi)
            th = np.tanh(k * (x + 0.044715 * x ** 3))
            return dy * (0.5 * (1 + th) + 0.5 * x * (1 - th * th) * k * (1 + 3 * 0.044715 * x * x))
        return dy * (0.5 * (1 + erf(x / np.sqrt(2))) + x * np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi))

    return fwd, bwd


@pytest.mark.parametrize("n", [100_000, 1_000_000], ids=lambda n: f"{n:.0e}")
@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_gelu(benchmark, lib, rng, approximate, n, direction):
    if lib == "numpy" and approximate == "none":
        pytest.skip("NumPy has no erf: a per-element math.erf baseline measures nothing useful")
    benchmark.group = f"gelu({approximate}) {direction} {n:.0e}"
    x = rng.standard_normal(n, dtype=np.float32) * 3
    dy = rng.standard_normal(n, dtype=np.float32)
    ref_fwd, ref_bwd = _gelu_numpy(approximate)
    if lib == "fastdl":
        fwd = lambda x: ops.gelu(x, approximate)  # noqa: E731
        bwd = lambda dy, x: ops.gelu_backward(dy, x, approximate)  # noqa: E731
    elif lib == "numpy":  # the tanh form in NumPy (float64, cast back)
        fwd = lambda x: ref_fwd(x).astype(np.float32)  # noqa: E731
        bwd = lambda dy, x: ref_bwd(dy, x).astype(np.float32)  # noqa: E731
    else:
        import torch

        t, aten = torch.from_numpy, torch.ops.aten
        fwd = lambda x: aten.gelu(t(x), approximate=approximate).numpy()  # noqa: E731
        bwd = lambda dy, x: aten.gelu_backward(t(dy), t(x), approximate=approximate).numpy()  # noqa: E731
    if direction == "forward":
        got = benchmark(fwd, x)
        record(benchmark, nbytes=8 * n)
        np.testing.assert_allclose(got, ref_fwd(x), rtol=1e-4, atol=1e-5)
    else:
        got = benchmark(bwd, dy, x)
        record(benchmark, nbytes=12 * n)
        np.testing.assert_allclose(got, ref_bwd(dy, x), rtol=1e-4, atol=1e-5)
