"""fastdl.optim against the update equations written out in NumPy (20 steps, float64 and
float32) and against torch.optim when importable; schedulers, clipping, early stopping."""

import math

import numpy as np
import pytest

import fastdl
from fastdl import nn, optim

STEPS = 20
SHAPES = [(5, 3), (4,)]


# ---- the update rules, written out (PyTorch's documented algorithms) ---------------------------------

def _signs(grads, maximize):
    return [-g for g in grads] if maximize else grads


def ref_sgd(p, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False):
    buf = None
    for g in _signs(grads, maximize):
        g = g + weight_decay * p
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
    return p


def ref_adam(p, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False,
             amsgrad=False, maximize=False):
    b1, b2 = betas
    m, v, vmax = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(_signs(grads, maximize), 1):
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v)
        m_hat, v_hat = m / (1 - b1**t), (vmax if amsgrad else v) / (1 - b2**t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


def ref_rmsprop(p, grads, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                maximize=False):
    sq, gavg, buf = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for g in _signs(grads, maximize):
        g = g + weight_decay * p
        sq = alpha * sq + (1 - alpha) * g * g
        if centered:
            gavg = alpha * gavg + (1 - alpha) * g
            avg = np.sqrt(sq - gavg * gavg) + eps
        else:
            avg = np.sqrt(sq) + eps
        if momentum:
            buf = momentum * buf + g / avg
            p = p - lr * buf
        else:
            p = p - lr * g / avg
    return p


def ref_adagrad(p, grads, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
                maximize=False):
    s = np.full_like(p, initial_accumulator_value)
    for t, g in enumerate(_signs(grads, maximize), 1):
        g = g + weight_decay * p
        clr = lr / (1 + (t - 1) * lr_decay)
        s = s + g * g
        p = p - clr * g / (np.sqrt(s) + eps)
    return p


CASES = [
    ("SGD", ref_sgd, dict(lr=0.1)),
    ("SGD", ref_sgd, dict(lr=0.05, momentum=0.9)),
    ("SGD", ref_sgd, dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", ref_sgd, dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("SGD", ref_sgd, dict(lr=0.05, momentum=0.5, maximize=True)),
    ("Adam", ref_adam, dict()),
    ("Adam", ref_adam, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("Adam", ref_adam, dict(lr=0.01, amsgrad=True, maximize=True)),
    ("AdamW", lambda p, gs, **k: ref_adam(p, gs, decoupled=True, **{"weight_decay": 1e-2, **k}), dict(lr=0.01)),
    ("AdamW", lambda p, gs, **k: ref_adam(p, gs, decoupled=True, **k), dict(lr=0.01, weight_decay=0.3)),
    ("AdamW", lambda p, gs, **k: ref_adam(p, gs, decoupled=True, **k), dict(weight_decay=0.1, amsgrad=True)),
    ("RMSprop", ref_rmsprop, dict()),
    ("RMSprop", ref_rmsprop, dict(lr=0.01, alpha=0.9, weight_decay=0.1, momentum=0.9)),
    ("RMSprop", ref_rmsprop, dict(lr=0.01, centered=True, momentum=0.5)),
    ("RMSprop", ref_rmsprop, dict(lr=0.01, centered=True, maximize=True)),
    ("Adagrad", ref_adagrad, dict()),
    ("Adagrad", ref_adagrad, dict(lr=0.1, lr_decay=0.05, weight_decay=0.1, initial_accumulator_value=0.1)),
    ("Adagrad", ref_adagrad, dict(maximize=True)),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}" for name, _, kw in CASES]


def _run(name, kw, params, grads, steps=STEPS, opt=None):
    opt = opt or getattr(optim, name)(params, **kw)
    for t in range(steps):
        for p, g in zip(params, grads):
            p.grad = g[t].copy()
        opt.step()
    return opt


def _grads(rng, dtype, steps=STEPS):
    return [rng.standard_normal((steps,) + s).astype(dtype) for s in SHAPES]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,ref,kw", CASES, ids=IDS)
def test_matches_update_equations(rng, dtype, name, ref, kw):
    p0 = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = _grads(rng, dtype)
    params = [nn.Parameter(p.copy()) for p in p0]
    _run(name, kw, params, grads)
    for p, start, gs in zip(params, p0, grads):
        want = ref(start.astype(np.float64), list(gs.astype(np.float64)), **kw)
        assert p.dtype == dtype
        tol = 1e-12 if dtype == np.float64 else 2e-5
        np.testing.assert_allclose(p.data, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("name,ref,kw", CASES, ids=IDS)
def test_matches_torch(rng, name, ref, kw):
    torch = pytest.importorskip("torch")
    p0 = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    grads = _grads(rng, np.float32)
    params = [nn.Parameter(p.copy()) for p in p0]
    _run(name, kw, params, grads)
    tparams = [torch.tensor(p, requires_grad=True) for p in p0]
    topt = getattr(torch.optim, name)(tparams, **kw)
    for t in range(STEPS):
        for tp, g in zip(tparams, grads):
            tp.grad = torch.from_numpy(g[t].copy())
        topt.step()
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("name,kw", [("Adam", {}), ("AdamW", {}), ("SGD", {"lr": 0.01, "momentum": 0.9}),
                                     ("RMSprop", {"lr": 1e-3}), ("Adagrad", {})])
def test_long_run_tracks_torch_float32(rng, name, kw):
    # 1000 float32 steps on the same gradients: rounding differences would compound here (an
    # FMA where PyTorch rounds twice drifted AdamW to 6e-5); the kernels round as PyTorch does.
    torch = pytest.importorskip("torch")
    p0 = rng.standard_normal((64, 33)).astype(np.float32)
    p = nn.Parameter(p0.copy())
    tp = torch.tensor(p0.copy(), requires_grad=True)
    opt, topt = getattr(optim, name)([p], **kw), getattr(torch.optim, name)([tp], **kw)
    for _ in range(1000):
        g = rng.standard_normal(p0.shape).astype(np.float32)
        p.grad, tp.grad = g, torch.from_numpy(g.copy())
        opt.step()
        topt.step()
    # A few ulps after 1000 steps (PyTorch's own add(alpha=) may fuse where we round twice).
    np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-6, atol=1e-6)


def test_state_dict_round_trip_through_save_load(rng, tmp_path):
    kw = dict(lr=0.01, betas=(0.8, 0.95), weight_decay=0.1)
    p0 = [rng.standard_normal(s) for s in SHAPES]
    grads = _grads(rng, np.float64)
    straight = [nn.Parameter(p.copy()) for p in p0]
    _run("AdamW", kw, straight, grads)

    resumed = [nn.Parameter(p.copy()) for p in p0]
    first = _run("AdamW", kw, resumed, [g[:10] for g in grads], steps=10)
    fastdl.save(first.state_dict(), tmp_path / "opt.npz")
    second = optim.AdamW(resumed, lr=1.0)  # hyperparameters come back from the file
    second.load_state_dict(fastdl.load(tmp_path / "opt.npz"))
    assert second.param_groups[0]["betas"] == (0.8, 0.95) and second.param_groups[0]["lr"] == 0.01
    assert second.state[resumed[0]]["step"] == 10
    _run("AdamW", kw, resumed, [g[10:] for g in grads], steps=10, opt=second)
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a.data, b.data)


def test_state_dict_layout_is_pytorchs():
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(3))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1, momentum=0.9)
    a.grad, b.grad = np.ones(2), np.ones(3)
    opt.step()
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1]]
    assert [g["lr"] for g in sd["param_groups"]] == [0.1, 0.5]
    assert set(sd["state"]) == {0, 1} and "momentum_buffer" in sd["state"][0]
    with pytest.raises(ValueError):
        optim.SGD([a], lr=0.1).load_state_dict(sd)


def test_param_groups_and_skipped_params():
    a, b, c = (nn.Parameter(np.zeros(2)) for _ in range(3))
    opt = optim.SGD([{"params": [a, b]}, {"params": c, "lr": 1.0}], lr=0.1)
    a.grad, c.grad = np.ones(2), np.ones(2)
    opt.step()
    np.testing.assert_allclose(a.data, -0.1)
    np.testing.assert_array_equal(b.data, 0)  # no grad: untouched, no state
    np.testing.assert_allclose(c.data, -1.0)
    assert b not in opt.state
    opt.zero_grad()
    assert a.grad is None and c.grad is None


def test_optimizer_trains_a_module(rng):
    fastdl.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32))
    opt = optim.Adam(m.parameters(), lr=0.02)
    loss_fn = nn.MSELoss()
    first = None
    for _ in range(200):
        opt.zero_grad()
        loss = loss_fn(m(x), y)
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.02 * first


@pytest.mark.parametrize("bad", [
    lambda p: optim.SGD(p, lr=-1),
    lambda p: optim.SGD(p, lr=0.1, momentum=-0.5),
    lambda p: optim.SGD(p, lr=0.1, nesterov=True),
    lambda p: optim.Adam(p, betas=(1.0, 0.9)),
    lambda p: optim.Adam(p, betas=(0.9,)),
    lambda p: optim.Adam(p, eps=-1e-8),
    lambda p: optim.AdamW(p, weight_decay=-1),
    lambda p: optim.RMSprop(p, alpha=-0.1),
    lambda p: optim.Adagrad(p, lr_decay=-1),
    lambda p: optim.SGD([], lr=0.1),
    lambda p: optim.SGD(p + p, lr=0.1),
])
def test_bad_hyperparameters(bad):
    with pytest.raises(ValueError):
        bad([nn.Parameter(np.ones(2))])


def test_bad_params():
    with pytest.raises(TypeError, match="single Tensor"):
        optim.SGD(nn.Parameter(np.ones(2)), lr=0.1)
    with pytest.raises(TypeError, match="Tensors"):
        optim.SGD([np.ones(2)], lr=0.1)
    with pytest.raises(TypeError):
        optim.Adam([nn.Parameter(np.ones(2))], lr="fast")
    x = nn.Parameter(np.ones(2))
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([x * 2], lr=0.1)


# ---- gradient clipping ------------------------------------------------------------------------------------

@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm(rng, norm_type, max_norm):
    gs = [rng.standard_normal(s) for s in SHAPES]
    ps = [nn.Parameter(np.zeros(s)) for s in SHAPES] + [nn.Parameter(np.zeros(2))]  # last: no grad
    for p, g in zip(ps, gs):
        p.grad = g.copy()
    flat = np.concatenate([g.ravel() for g in gs])
    total = np.abs(flat).max() if norm_type == float("inf") else np.linalg.norm(flat, norm_type)
    got = optim.clip_grad_norm_(ps, max_norm, norm_type)
    assert isinstance(got, float)
    np.testing.assert_allclose(got, total, rtol=1e-12)
    coef = min(1.0, max_norm / (total + 1e-6))
    for p, g in zip(ps, gs):
        np.testing.assert_allclose(p.grad, g * coef, rtol=1e-12)
    assert ps[-1].grad is None
    assert optim.clip_grad_norm_([nn.Parameter(np.ones(2))], 1.0) == 0.0


def test_clip_grad_norm_nonfinite():
    p = nn.Parameter(np.zeros(3))
    p.grad = np.array([1.0, np.inf, 0.0])
    with pytest.raises(RuntimeError):
        optim.clip_grad_norm_(p, 1.0, error_if_nonfinite=True)


def test_clip_grad_norm_matches_torch(rng):
    torch = pytest.importorskip("torch")
    gs = [rng.standard_normal(s).astype(np.float32) * 3 for s in SHAPES]
    ps = [nn.Parameter(np.zeros(s, np.float32)) for s in SHAPES]
    tps = [torch.zeros(s, requires_grad=True) for s in SHAPES]
    for p, tp, g in zip(ps, tps, gs):
        p.grad, tp.grad = g.copy(), torch.from_numpy(g.copy())
    a = optim.clip_grad_norm_(ps, 1.0)
    b = torch.nn.utils.clip_grad_norm_(tps, 1.0)
    np.testing.assert_allclose(a, b.item(), rtol=1e-5)
    for p, tp in zip(ps, tps):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-5, atol=1e-7)


# ---- schedulers ------------------------------------------------------------------------------------------

def _lrs(make_sched, epochs, opt_factory):
    opt = opt_factory()
    sched = make_sched(opt)
    out = [sched.get_last_lr()[0]]
    for _ in range(epochs):
        opt.step()
        sched.step()
        out.append(sched.get_last_lr()[0])
        assert opt.param_groups[0]["lr"] == out[-1]
    return out


def _fastdl_opt():
    return optim.SGD([nn.Parameter(np.zeros(1))], lr=0.5)


def test_step_lr_closed_form():
    got = _lrs(lambda o: optim.StepLR(o, step_size=3, gamma=0.5), 10, _fastdl_opt)
    want = [0.5 * 0.5 ** (e // 3) for e in range(11)]
    np.testing.assert_allclose(got, want, rtol=1e-15)


def test_cosine_closed_form():
    T, lo = 8, 0.01
    got = _lrs(lambda o: optim.CosineAnnealingLR(o, T_max=T, eta_min=lo), T, _fastdl_opt)
    want = [lo + (0.5 - lo) * (1 + math.cos(math.pi * e / T)) / 2 for e in range(T + 1)]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("which", ["step", "cosine"])
def test_schedulers_match_torch(which):
    torch = pytest.importorskip("torch")
    if which == "step":
        ours = lambda o: optim.StepLR(o, step_size=4, gamma=0.3)  # noqa: E731
        theirs = lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=4, gamma=0.3)  # noqa: E731
    else:
        ours = lambda o: optim.CosineAnnealingLR(o, T_max=5, eta_min=0.02)  # noqa: E731
        theirs = lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=5, eta_min=0.02)  # noqa: E731
    a = _lrs(ours, 17, _fastdl_opt)
    b = _lrs(theirs, 17, lambda: torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5))
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_scheduler_errors():
    opt = _fastdl_opt()
    with pytest.raises(ValueError):
        optim.StepLR(opt, step_size=0)
    with pytest.raises(ValueError):
        optim.CosineAnnealingLR(opt, T_max=0)
    with pytest.raises(TypeError):
        optim.StepLR(object(), step_size=2)


# ---- early stopping ---------------------------------------------------------------------------------------

def test_early_stopping_min():
    es = optim.EarlyStopping(patience=2, min_delta=0.1)
    seq = [1.0, 0.8, 0.75, 0.72, 0.5, 0.6, 0.55]
    stops = [es(v) for v in seq]
    # 0.75 and 0.72 are within min_delta of 0.8: not improvements -> stop at the second
    assert stops == [False, False, False, True, False, False, True]
    assert es.best == 0.5 and es.counter == 2 and es.should_stop and not es.improved


def test_early_stopping_max_and_reset():
    es = optim.EarlyStopping(patience=1, mode="max")
    assert not es.step(0.5) and es.improved
    assert not es.step(0.7) and es.best == 0.7
    assert es.step(0.7)
    es.reset()
    assert es.best is None and es.counter == 0 and not es.should_stop
    assert optim.EarlyStopping(patience=0)(1.0) is False
    for bad in (dict(patience=-1), dict(patience=2, mode="median"), dict(patience=1, min_delta=-1)):
        with pytest.raises(ValueError):
            optim.EarlyStopping(**bad)
