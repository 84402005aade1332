"""fastdl's CUDA memory-bound kernels against the same math written out in CuPy and, when it is
installed with CUDA, PyTorch: activations, softmax, cross-entropy, dropout and Adam.

    pytest benchmarks/bench_cuda_ops.py                      # time them
    pytest benchmarks/bench_cuda_ops.py --benchmark-disable  # run once and check results

Skipped without CuPy or a GPU. Each group holds one op and size; the timed function ends with a
device synchronize. extra_info["GB/s"] counts the minimum traffic (every input read once, every
output written once), read against the card's roof (H100 SXM ~3.3 TB/s):
    relu / sigmoid   8 B per element          softmax     8 B per element
    cross_entropy    8 B per logit            dropout     9 B per element (y and a uint8 mask)
    adam            28 B per parameter (p, g, m, v read; p, m, v written); 10M params = 280 MB
Results are checked against the reference after timing.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastdl import ops

from benchutil import gpu_modules

cp, HAVE_TORCH = gpu_modules()  # skips this module without CuPy, a GPU or a CUDA build
if HAVE_TORCH:
    import torch

pytestmark = pytest.mark.gpu

N = 1 << 24  # elements of the element-wise cases


def timed(benchmark, fn, nbytes):
    def run():
        out = fn()
        cp.cuda.get_current_stream().synchronize()
        return out

    out = benchmark(run)
    if benchmark.stats is not None:
        benchmark.extra_info["GB/s"] = round(nbytes / benchmark.stats["median"] / 1e9, 1)
    return out


def to_torch(a):
    return torch.as_tensor(a, device="cuda")


@pytest.fixture(scope="module")
def x():
    return cp.random.default_rng(0).standard_normal(N, dtype=np.float32)


@pytest.mark.parametrize("impl", ["fastdl", "cupy", "torch"])
@pytest.mark.parametrize("act", ["relu", "sigmoid"])
def test_activation(benchmark, impl, act, x):
    benchmark.group = f"cuda {act} {N}"
    if impl == "torch" and not HAVE_TORCH:
        pytest.skip("needs PyTorch with CUDA")
    fns = {
        ("fastdl", "relu"): lambda: ops.relu(x),
        ("fastdl", "sigmoid"): lambda: ops.sigmoid(x),
        ("cupy", "relu"): lambda: cp.maximum(x, 0),
        ("cupy", "sigmoid"): lambda: 1 / (1 + cp.exp(-x)),
    }
    if impl == "torch":
        xt = to_torch(x)
        fns[("torch", act)] = (lambda: torch.relu(xt)) if act == "relu" else (lambda: torch.sigmoid(xt))
    y = timed(benchmark, fns[(impl, act)], 8 * N)
    cp.testing.assert_allclose(cp.asarray(y), ops.relu(x) if act == "relu" else ops.sigmoid(x),
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("impl", ["fastdl", "cupy", "torch"])
@pytest.mark.parametrize("shape", [(4096, 4096), (512, 32000)])
def test_softmax(benchmark, impl, shape):
    benchmark.group = f"cuda softmax {shape}"
    a = cp.random.default_rng(1).standard_normal(shape, dtype=np.float32)
    if impl == "torch" and not HAVE_TORCH:
        pytest.skip("needs PyTorch with CUDA")

    def cupy_softmax():
        e = cp.exp(a - a.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    fn = {"fastdl": lambda: ops.softmax(a), "cupy": cupy_softmax}.get(impl)
    if impl == "torch":
        at = to_torch(a)
        fn = lambda: torch.softmax(at, dim=1)  # noqa: E731
    y = timed(benchmark, fn, 8 * a.size)
    cp.testing.assert_allclose(cp.asarray(y), cupy_softmax(), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("impl", ["fastdl", "cupy", "torch"])
def test_cross_entropy(benchmark, impl):
    n, c = 4096, 1000
    benchmark.group = f"cuda cross_entropy ({n}, {c})"
    rng = cp.random.default_rng(2)
    logits = rng.standard_normal((n, c), dtype=np.float32)
    t = cp.asarray(np.random.default_rng(2).integers(0, c, n))
    if impl == "torch" and not HAVE_TORCH:
        pytest.skip("needs PyTorch with CUDA")

    def cupy_ce():
        m = logits.max(axis=1, keepdims=True)
        lse = cp.log(cp.exp(logits - m).sum(axis=1)) + m[:, 0]
        return (lse - logits[cp.arange(n), t]).mean()

    fn = {"fastdl": lambda: ops.cross_entropy(logits, t)[0], "cupy": cupy_ce}.get(impl)
    if impl == "torch":
        lt, tt = to_torch(logits), to_torch(t)
        fn = lambda: torch.nn.functional.cross_entropy(lt, tt)  # noqa: E731
    loss = timed(benchmark, fn, 8 * n * c)
    np.testing.assert_allclose(float(loss), float(cupy_ce()), rtol=1e-5)


@pytest.mark.parametrize("impl", ["fastdl", "cupy"])
def test_dropout(benchmark, impl, x):
    benchmark.group = f"cuda dropout {N}"

    def cupy_dropout():  # a different RNG: the same traffic, not the same mask
        keep = cp.random.random(N, dtype=np.float32) >= 0.5
        return x * keep * 2.0, keep.view(np.uint8)

    fn = {"fastdl": lambda: ops.dropout(x, 0.5, 7), "cupy": cupy_dropout}[impl]
    y, m = timed(benchmark, fn, 9 * N)
    assert abs(float(m.mean()) - 0.5) < 0.01


@pytest.mark.parametrize("impl", ["fastdl", "cupy", "torch_fused", "torch_foreach"])
def test_adam(benchmark, impl):
    n = 10_000_000
    benchmark.group = f"cuda adam {n}"
    rng = cp.random.default_rng(3)
    p0, g = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
    if impl.startswith("torch"):
        if not HAVE_TORCH:
            pytest.skip("needs PyTorch with CUDA")
        pt = torch.nn.Parameter(to_torch(p0.copy()))
        pt.grad = to_torch(g)
        opt = torch.optim.Adam([pt], lr=lr, betas=(b1, b2), eps=eps,
                               **({"fused": True} if impl == "torch_fused" else {"foreach": True}))
        timed(benchmark, opt.step, 28 * n)
        return
    p, m, v = p0.copy(), cp.zeros(n, np.float32), cp.zeros(n, np.float32)
    step = [0]

    def fastdl_step():
        step[0] += 1
        ops.adam_step_(p, g, m, v, step[0], lr, b1, b2, eps)

    def cupy_step():  # the same update written out: ~10 kernels, each a full pass
        step[0] += 1
        m[...] = b1 * m + (1 - b1) * g
        v[...] = b2 * v + (1 - b2) * g * g
        p[...] -= lr / (1 - b1 ** step[0]) * m / (cp.sqrt(v) / np.sqrt(1 - b2 ** step[0]) + eps)

    timed(benchmark, fastdl_step if impl == "fastdl" else cupy_step, 28 * n)
    assert bool(cp.isfinite(p).all())
