"""Fused optimizer steps and clip_grad_norm_: fastdl against NumPy (the equations written out)
and PyTorch (fused=True and the default foreach implementation), one group per case.

Bytes per parameter (the roof is memory bandwidth; nothing here is compute-bound):
  Adam: reads p, g, m, v and writes p, m, v        = 7 * 4 = 28 B (float32)
  SGD with momentum: reads p, g, buf, writes p, buf = 5 * 4 = 20 B
  clip_grad_norm_ (clipping): reads g twice, writes g once = 12 B
Each implementation's state after timing is checked against one more step of the float64
NumPy equations.
"""

import numpy as np
import pytest

from fastdl import ops

from benchutil import record

SIZES = [100_000, 1_000_000, 10_000_000]
IMPLS = ["fastdl", "numpy", "torch-fused", "torch-foreach"]
LR, BETA1, BETA2, EPS, WD = 1e-3, 0.9, 0.999, 1e-8, 0.01


@pytest.fixture(params=IMPLS)
def impl(request):
    if request.param.startswith("torch"):
        torch = pytest.importorskip("torch")
        import fastdl

        torch.set_num_threads(fastdl.get_num_threads())
    return request.param


def _size_id(n):
    return f"{n:.0e}".replace("+0", "")


# ---- Adam (AdamW: decoupled weight decay, the common training setting) ------------------------

def _adam_ref(p, g, m, v, step):
    """One AdamW step in float64, from copies."""
    p, g, m, v = (np.asarray(x, np.float64) for x in (p, g, m, v))
    p = p * (1 - LR * WD)
    m = BETA1 * m + (1 - BETA1) * g
    v = BETA2 * v + (1 - BETA2) * g * g
    denom = np.sqrt(v) / np.sqrt(1 - BETA2**step) + EPS
    return p - LR / (1 - BETA1**step) * m / denom, m, v


class _NumpyAdamW:
    """AdamW written out in NumPy with in-place updates (the best NumPy can do without fusion)."""

    def __init__(self, p, g):
        self.p, self.g = p, g
        self.m, self.v = np.zeros_like(p), np.zeros_like(p)
        self.t = 0
        self.tmp = np.empty_like(p)

    def step(self):
        self.t += 1
        p, g, m, v, tmp = self.p, self.g, self.m, self.v, self.tmp
        p *= np.float32(1 - LR * WD)
        m *= np.float32(BETA1)
        m += np.multiply(g, np.float32(1 - BETA1), out=tmp)
        v *= np.float32(BETA2)
        np.multiply(g, g, out=tmp)
        tmp *= np.float32(1 - BETA2)
        v += tmp
        np.sqrt(v, out=tmp)
        tmp /= np.float32(np.sqrt(1 - BETA2**self.t))
        tmp += np.float32(EPS)
        np.divide(m, tmp, out=tmp)
        tmp *= np.float32(LR / (1 - BETA1**self.t))
        p -= tmp

    def state(self):
        return self.p, self.m, self.v, self.t


class _FastdlAdamW(_NumpyAdamW):
    def step(self):
        self.t += 1
        ops.adam_step_(self.p, self.g, self.m, self.v, self.t, LR, BETA1, BETA2, EPS, WD, True)


class _TorchAdamW:
    def __init__(self, p, g, **kw):
        import torch

        self.tp = torch.nn.Parameter(torch.from_numpy(p))
        self.tp.grad = torch.from_numpy(g)
        self.opt = torch.optim.AdamW([self.tp], lr=LR, betas=(BETA1, BETA2), eps=EPS,
                                     weight_decay=WD, **kw)
        self.step = self.opt.step

    def state(self):
        st = self.opt.state[self.tp]
        return (self.tp.detach().numpy(), st["exp_avg"].numpy(), st["exp_avg_sq"].numpy(),
                int(st["step"]))


def _make_adam(impl, p, g):
    if impl == "fastdl":
        return _FastdlAdamW(p, g)
    if impl == "numpy":
        return _NumpyAdamW(p, g)
    return _TorchAdamW(p, g, **({"fused": True} if impl == "torch-fused" else {"foreach": True}))


@pytest.mark.parametrize("n", SIZES, ids=_size_id)
def test_adamw(benchmark, impl, n):
    benchmark.group = f"adamw step float32 n={_size_id(n)}"
    rng = np.random.default_rng(0)
    p = rng.standard_normal(n, dtype=np.float32)
    g = rng.standard_normal(n, dtype=np.float32)
    opt = _make_adam(impl, p, g)
    opt.step()
    benchmark(opt.step)
    record(benchmark, nbytes=28 * n)
    # Check: one more step against the float64 equations.
    p0, m0, v0, t = (np.array(x) if i < 3 else x for i, x in enumerate(opt.state()))
    opt.step()
    want = _adam_ref(p0, g, m0, v0, t + 1)
    for got, w in zip(opt.state()[:3], want):
        np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-6)


# ---- SGD with momentum -------------------------------------------------------------------------

@pytest.mark.parametrize("n", SIZES[1:], ids=_size_id)
def test_sgd_momentum(benchmark, impl, n):
    if impl == "torch-fused":
        pytest.skip("covered by torch-foreach for SGD; fused SGD has the same memory traffic")
    benchmark.group = f"sgd momentum step float32 n={_size_id(n)}"
    rng = np.random.default_rng(0)
    p = rng.standard_normal(n, dtype=np.float32)
    g = rng.standard_normal(n, dtype=np.float32)
    buf = np.zeros_like(p)
    mom = 0.9
    if impl == "fastdl":
        ops.sgd_step_(p, g, buf, LR, mom, first_step=True)
        fn = lambda: ops.sgd_step_(p, g, buf, LR, mom)  # noqa: E731
    elif impl == "numpy":
        def fn():
            buf.__imul__(np.float32(mom)).__iadd__(g)
            p.__isub__(np.float32(LR) * buf)
    else:
        import torch

        tp = torch.nn.Parameter(torch.from_numpy(p))
        tp.grad = torch.from_numpy(g)
        opt = torch.optim.SGD([tp], lr=LR, momentum=mom, foreach=True)
        opt.step()
        buf = opt.state[tp]["momentum_buffer"].numpy()
        fn = opt.step
    fn()
    benchmark(fn)
    record(benchmark, nbytes=20 * n)
    p0, b0 = p.copy(), buf.copy()
    fn()
    b1 = mom * b0.astype(np.float64) + g
    np.testing.assert_allclose(buf, b1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p, p0 - LR * b1, rtol=1e-5, atol=1e-6)


# ---- clip_grad_norm_ ---------------------------------------------------------------------------

@pytest.mark.parametrize("n", SIZES[2:], ids=_size_id)
def test_clip_grad_norm(benchmark, impl, n):
    if impl == "torch-fused":
        pytest.skip("no fused variant")
    benchmark.group = f"clip_grad_norm_ float32 n={_size_id(n)} (10 arrays)"
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(n // 10, dtype=np.float32) for _ in range(10)]
    max_norm = 1.0  # the total is sqrt(n): always clips
    if impl == "fastdl":
        fn = lambda: ops.clip_grad_norm_(grads, max_norm)  # noqa: E731
    elif impl == "numpy":
        def fn():
            total = np.sqrt(sum(float(np.dot(x, x)) for x in grads))
            coef = max_norm / (total + 1e-6)
            if coef < 1:
                for x in grads:
                    x *= np.float32(coef)
            return total
    else:
        import torch

        params = [torch.nn.Parameter(torch.empty(x.shape)) for x in grads]
        for tp, x in zip(params, grads):
            tp.grad = torch.from_numpy(x)
        fn = lambda: float(torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True))  # noqa: E731

    def reset():
        for x in grads:
            x[:] = 1.0
        return (), {}

    benchmark.pedantic(fn, setup=reset, rounds=10)
    record(benchmark, nbytes=12 * n)
    reset()
    total = fn()
    assert total == pytest.approx(np.sqrt(n), rel=1e-5)
    assert all(np.allclose(x, 1.0 / np.sqrt(n), rtol=1e-5) for x in grads)
