"""Fused optimizer steps and clip_grad_norm_ against the update equations written out in NumPy
(tests/reference.py), against the plain-loop C++ reference for every ISA, and against
torch.optim when torch is installed.

Each optimizer runs 20 steps on random gradients. The float64 run checks the formulas (epsilon
placement, bias corrections, lerp); the float32 run checks the fast path's rounding with
helpers.assert_close's rule (at most twice the error of the same equations in NumPy float32).
"""

import itertools

import numpy as np
import pytest

import fastdl
from fastdl import _core, ops

import reference as ref
from helpers import assert_close

DTYPES = [np.float32, np.float64]
SIZES = [1, 3, 17, 129, 100003]
STEPS = 20
ULPS = 4.0 * STEPS  # rounding accumulates over the steps
ISAS = [isa for isa in ("generic", "avx2", "avx512")
        if ["generic", "avx2", "avx512"].index(isa)
        <= ["generic", "avx2", "avx512"].index(_core.cpu_isa_supported())]


def _ids(case):
    return ",".join(f"{k}={v}" for k, v in case.items()) or "plain"


SGD_CASES = [
    {}, {"weight_decay": 0.1}, {"momentum": 0.9}, {"momentum": 0.9, "dampening": 0.5},
    {"momentum": 0.9, "nesterov": True}, {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
    {"momentum": 0.5, "dampening": 0.1, "weight_decay": 0.05, "maximize": True},
]
ADAM_CASES = [
    {"weight_decay": wd, "decoupled": dec, "amsgrad": ams}
    for wd, dec, ams in itertools.product([0.0, 0.1], [False, True], [False, True])
    if wd or not dec
] + [{"maximize": True, "weight_decay": 0.01}, {"beta1": 0.3}]  # beta1 <= 0.5: lerp's other form
RMSPROP_CASES = [
    {"centered": c, "momentum": mom, "weight_decay": wd}
    for c, mom, wd in itertools.product([False, True], [0.0, 0.9], [0.0, 0.1])
] + [{"alpha": 0.3, "centered": True}, {"maximize": True, "momentum": 0.5}]
ADAGRAD_CASES = [{}, {"weight_decay": 0.1}, {"eps": 1e-3, "maximize": True}]


def _drive(rng, n, dtype, state, fast, slow):
    """20 steps of fast (in place, dtype) and of slow (returns new arrays) in float64 and dtype.

    state: name -> float64 array or None; fast(st, g, step) and slow(st, g, step) -> st.
    """
    got = {k: None if a is None else a.astype(dtype) for k, a in state.items()}
    want = {k: None if a is None else a.copy() for k, a in state.items()}
    base = {k: None if a is None else a.astype(dtype) for k, a in state.items()}
    for step in range(1, STEPS + 1):
        g = rng.standard_normal(n)
        fast(got, g.astype(dtype), step)
        want = slow(want, g, step)
        if dtype != np.float64:  # in float64 the oracle is its own baseline
            base = slow(base, g.astype(dtype), step)
    for k, a in got.items():
        if a is not None:
            baseline = base[k] if dtype != np.float64 else None
            assert_close(a, want[k], dtype, baseline=baseline, name=k, ulps=ULPS)
    return got


# ---- against the equations in NumPy ------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("case", SGD_CASES, ids=_ids)
def test_sgd(rng, dtype, n, case):
    kw = dict(lr=0.05, **case)
    state = {"p": rng.standard_normal(n), "buf": np.zeros(n) if kw.get("momentum") else None}

    def fast(st, g, step):
        ops.sgd_step_(st["p"], g, st["buf"], first_step=step == 1, **kw)

    def slow(st, g, step):
        p, buf = ref.sgd_step(st["p"], g, st["buf"], first_step=step == 1, **kw)
        return {"p": p, "buf": buf}

    _drive(rng, n, dtype, state, fast, slow)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("case", ADAM_CASES, ids=_ids)
def test_adam(rng, dtype, n, case):
    kw = dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8)
    kw.update(case)
    ams = kw.get("amsgrad", False)
    state = {"p": rng.standard_normal(n), "m": np.zeros(n), "v": np.zeros(n),
             "max_v": np.zeros(n) if ams else None}

    def fast(st, g, step):
        ops.adam_step_(st["p"], g, st["m"], st["v"], step, max_v=st["max_v"], **kw)

    def slow(st, g, step):
        p, m, v, mv = ref.adam_step(st["p"], g, st["m"], st["v"], step, max_v=st["max_v"], **kw)
        return {"p": p, "m": m, "v": v, "max_v": mv}

    _drive(rng, n, dtype, state, fast, slow)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("case", RMSPROP_CASES, ids=_ids)
def test_rmsprop(rng, dtype, n, case):
    kw = dict(lr=0.01, **case)
    state = {"p": rng.standard_normal(n), "square_avg": np.zeros(n),
             "buf": np.zeros(n) if kw.get("momentum") else None,
             "grad_avg": np.zeros(n) if kw.get("centered") else None}

    def fast(st, g, step):
        ops.rmsprop_step_(st["p"], g, st["square_avg"], buf=st["buf"], grad_avg=st["grad_avg"], **kw)

    def slow(st, g, step):
        p, sq, buf, ga = ref.rmsprop_step(st["p"], g, st["square_avg"], buf=st["buf"],
                                          grad_avg=st["grad_avg"], **kw)
        return {"p": p, "square_avg": sq, "buf": buf, "grad_avg": ga}

    _drive(rng, n, dtype, state, fast, slow)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("case", ADAGRAD_CASES, ids=_ids)
def test_adagrad(rng, dtype, n, case):
    lr0, lr_decay = 0.1, 0.05  # PyTorch's lr_decay, applied by the caller

    def clr(step):
        return lr0 / (1 + (step - 1) * lr_decay)

    state = {"p": rng.standard_normal(n), "sum_sq": np.full(n, 0.1)}  # initial_accumulator_value

    def fast(st, g, step):
        ops.adagrad_step_(st["p"], g, st["sum_sq"], clr(step), **case)

    def slow(st, g, step):
        p, s = ref.adagrad_step(st["p"], g, st["sum_sq"], clr(step), **case)
        return {"p": p, "sum_sq": s}

    _drive(rng, n, dtype, state, fast, slow)


# ---- every ISA against the C++ reference loops; thread-count independence ----------------------

def _core_steps():
    """(name, call(arrays, **kw)) for one step of each optimizer with every option on."""
    return [
        ("sgd", 2, lambda a, **kw: _core.sgd_step_(a[0], a[-1], a[1], 0.1, 0.9, 0.01, True, **kw)),
        ("sgd_damp", 2, lambda a, **kw: _core.sgd_step_(a[0], a[-1], a[1], 0.1, 0.9, 0.01, False, 0.3, **kw)),
        ("adam", 4, lambda a, **kw: _core.adam_step_(a[0], a[-1], a[1], a[2], 3, 0.01, 0.9, 0.999, 1e-8, 0.1, False, amsgrad=True, max_v=a[3], **kw)),
        ("adamw", 3, lambda a, **kw: _core.adam_step_(a[0], a[-1], a[1], a[2], 3, 0.01, 0.9, 0.999, 1e-8, 0.1, True, **kw)),
        ("rmsprop", 4, lambda a, **kw: _core.rmsprop_step_(a[0], a[-1], a[1], 0.01, 0.9, 1e-8, 0.1, 0.9, a[2], True, a[3], **kw)),
        ("adagrad", 2, lambda a, **kw: _core.adagrad_step_(a[0], a[-1], a[1], 0.1, 1e-10, 0.1, **kw)),
    ]


def _arrays(rng, k, n, dtype):
    """p, k-1 state buffers and g. The first buffer (square_avg, sum_sq) is in [1, 2), the others
    in [0, 0.5), so square roots stay real (centered RMSprop: square_avg > grad_avg**2)."""
    out = [rng.standard_normal(n).astype(dtype)]
    out += [(rng.random(n) * (1.0 if i == 0 else 0.5) + (1.0 if i == 0 else 0.0)).astype(dtype)
            for i in range(k - 1)]
    out.append(rng.standard_normal(n).astype(dtype))
    return out


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 63, 1000, 70001])
def test_isa_against_reference_loops(rng, isa, dtype, n):
    for name, k, call in _core_steps():
        a = _arrays(rng, k, n, dtype)
        b = [x.copy() for x in a]
        call(a, isa=isa)
        call(b, reference=True)
        # Same operations in the same order with no fused multiply-adds on any ISA: bit for bit.
        for i, (x, y) in enumerate(zip(a, b)):
            np.testing.assert_array_equal(x, y, err_msg=f"{name} array {i}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [100003, 1 << 18])
def test_bitwise_independent_of_threads(rng, dtype, n):
    for name, k, call in _core_steps():
        a = _arrays(rng, k, n, dtype)
        outs = []
        for threads in (1, 2, 3):
            fastdl.set_num_threads(threads)
            b = [x.copy() for x in a]
            call(b)
            outs.append(b)
        for b in outs[1:]:
            for i, (x, y) in enumerate(zip(outs[0], b)):
                np.testing.assert_array_equal(x, y, err_msg=f"{name} array {i}")
    grads = [rng.standard_normal(n).astype(dtype), rng.standard_normal(1000).astype(dtype)]
    norms = []
    for threads in (1, 2, 3):
        fastdl.set_num_threads(threads)
        norms.append([_core.grads_norm(grads, q) for q in (2.0, 1.0, 3.0, np.inf)])
    assert norms[0] == norms[1] == norms[2]


# ---- gradient handling, aliasing, empty arrays --------------------------------------------------

def test_gradient_is_converted_not_required_contiguous(rng):
    p0 = rng.standard_normal((4, 6)).astype(np.float32)
    g = rng.standard_normal((6, 4))  # float64, transposed view below
    want = p0.copy()
    ops.sgd_step_(want, np.ascontiguousarray(g.T).astype(np.float32), None, 0.1)
    for gg in (g.T, g.T.tolist()):
        p = p0.copy()
        ops.sgd_step_(p, gg, None, 0.1)
        np.testing.assert_array_equal(p, want)


def test_gradient_may_be_the_parameter(rng):
    p = rng.standard_normal(100)
    want = p - 0.1 * p
    ops.sgd_step_(p, p, None, 0.1)
    np.testing.assert_allclose(p, want, rtol=1e-15)


def test_empty_arrays():
    p = np.empty((0, 3), np.float32)
    ops.adam_step_(p, p.copy(), p.copy(), p.copy(), 1, 0.1, 0.9, 0.999, 1e-8)
    ops.sgd_step_(p, p.copy(), p.copy(), 0.1, momentum=0.9)


def test_multidimensional_shapes(rng):
    p = rng.standard_normal((3, 5, 7))
    m, v = np.zeros_like(p), np.zeros_like(p)
    g = rng.standard_normal(p.shape)
    want, *_ = ref.adam_step(p, g, m, v, 1, 0.1, 0.9, 0.999, 1e-8)
    ops.adam_step_(p, g, m, v, 1, 0.1, 0.9, 0.999, 1e-8)
    assert_close(p, want, np.float64)


# ---- bad input ---------------------------------------------------------------------------------

def _adam_args(dtype=np.float32, n=8):
    return [np.zeros(n, dtype) for _ in range(4)]


@pytest.mark.parametrize("call,exc,match", [
    (lambda p, g, m, v: ops.adam_step_(p, g, m, np.zeros(9, np.float32), 1, 0.1, 0.9, 0.999, 1e-8),
     ValueError, r"v: expected shape \(8,\) \(that of p\), got \(9,\)"),
    (lambda p, g, m, v: ops.adam_step_(p, np.zeros(7), m, v, 1, 0.1, 0.9, 0.999, 1e-8),
     ValueError, "g: expected shape"),
    (lambda p, g, m, v: ops.adam_step_(np.zeros(16, np.float32)[::2], g, m, v, 1, 0.1, 0.9, 0.999, 1e-8),
     TypeError, "p: expected a C-contiguous array"),
    (lambda p, g, m, v: ops.adam_step_(p, g, m, np.zeros(8), 1, 0.1, 0.9, 0.999, 1e-8),
     TypeError, "v: expected dtype float32 .that of p., got float64"),
    (lambda p, g, m, v: ops.adam_step_(p.tolist(), g, m, v, 1, 0.1, 0.9, 0.999, 1e-8),
     TypeError, "p: expected a numpy.ndarray"),
    (lambda p, g, m, v: ops.adam_step_(np.zeros(8, np.int64), g, m, v, 1, 0.1, 0.9, 0.999, 1e-8),
     TypeError, "p: expected dtype float32 or float64, got int64"),
    (lambda p, g, m, v: ops.adam_step_(p, g, m, m, 1, 0.1, 0.9, 0.999, 1e-8),
     ValueError, "m and v share memory"),
    (lambda p, g, m, v: ops.adam_step_(p, g, m, v, 1, -0.1, 0.9, 0.999, 1e-8), ValueError, "invalid lr"),
    (lambda p, g, m, v: ops.adam_step_(p, g, m, v, 1, 0.1, 0.9, 0.999, -1e-8), ValueError, "invalid eps"),
    (lambda p, g, m, v: ops.adam_step_(p, g, m, v, 1, 0.1, 1.0, 0.999, 1e-8), ValueError, "invalid beta1"),
    (lambda p, g, m, v: ops.adam_step_(p, g, m, v, 1, 0.1, 0.9, -0.1, 1e-8), ValueError, "invalid beta2"),
    (lambda p, g, m, v: ops.adam_step_(p, g, m, v, 0, 0.1, 0.9, 0.999, 1e-8), ValueError, "invalid step"),
    (lambda p, g, m, v: ops.adam_step_(p, g, m, v, 1, float("nan"), 0.9, 0.999, 1e-8), ValueError, "invalid lr"),
    (lambda p, g, m, v: ops.adam_step_(p, g, m, v, 1, 0.1, 0.9, 0.999, 1e-8, -1.0), ValueError, "invalid weight_decay"),
    (lambda p, g, m, v: ops.adam_step_(p, g, m, v, 1, 0.1, 0.9, 0.999, 1e-8, amsgrad=True),
     ValueError, "max_v: expected an array"),
    (lambda p, g, m, v: ops.adam_step_(p, g, m, v, 1, 0.1, 0.9, 0.999, 1e-8, max_v=v.copy()),
     ValueError, "max_v is only used with amsgrad"),
    (lambda p, g, m, v: ops.sgd_step_(p, g, None, 0.1, momentum=0.9), ValueError, "buf: expected an array"),
    (lambda p, g, m, v: ops.sgd_step_(p, g, m, 0.1, nesterov=True), ValueError, "nesterov"),
    (lambda p, g, m, v: ops.sgd_step_(p, g, m, 0.1, momentum=0.9, nesterov=True, dampening=0.1),
     ValueError, "nesterov"),
    (lambda p, g, m, v: ops.sgd_step_(p, g, m, 0.1, momentum=-0.9), ValueError, "invalid momentum"),
    (lambda p, g, m, v: ops.sgd_step_(p, g, p, 0.1, momentum=0.9), ValueError, "p and buf share memory"),
    (lambda p, g, m, v: ops.sgd_step_(p, m[1:], p, 0.1), ValueError, "g: expected shape"),
    (lambda p, g, m, v: ops.rmsprop_step_(p, g, m, 0.1, centered=True), ValueError, "grad_avg: expected an array"),
    (lambda p, g, m, v: ops.rmsprop_step_(p, g, m, 0.1, momentum=0.5), ValueError, "buf: expected an array"),
    (lambda p, g, m, v: ops.rmsprop_step_(p, g, m, 0.1, alpha=-0.5), ValueError, "invalid alpha"),
    (lambda p, g, m, v: ops.adagrad_step_(p, g, m, -0.1), ValueError, "invalid lr"),
    (lambda p, g, m, v: ops.adagrad_step_(p, g, np.zeros(8, np.float64), 0.1), TypeError, "sum_sq: expected dtype float32"),
    (lambda p, g, m, v: ops.adagrad_step_(p, None, m, 0.1), TypeError, "g: expected an array"),
    (lambda p, g, m, v: ops.adagrad_step_(p, g.astype(np.complex64), m, 0.1), TypeError, "g: expected a real dtype"),
])
def test_bad_input(call, exc, match):
    p, g, m, v = _adam_args()
    with pytest.raises(exc, match=match):
        call(p, g, m, v)


def test_read_only_parameter():
    p, g, m, v = _adam_args()
    p.flags.writeable = False
    with pytest.raises(ValueError, match="p: array is read-only"):
        ops.adam_step_(p, g, m, v, 1, 0.1, 0.9, 0.999, 1e-8)


def test_bad_input_leaves_arrays_untouched():
    p, g, m, v = _adam_args()
    g[:] = 1
    with pytest.raises(TypeError):
        ops.adam_step_(p, g, m, np.zeros(8), 1, 0.1, 0.9, 0.999, 1e-8)
    assert not p.any() and not m.any()


# ---- clip_grad_norm_ ---------------------------------------------------------------------------

def _grads(rng, dtype, shapes=((3, 4), (17,), (129, 5), (1,))):
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_type", [2.0, np.inf, 1.0, 3.0])
def test_clip_grad_norm(rng, dtype, norm_type):
    grads = _grads(rng, dtype)
    want, want_total = ref.clip_grad_norm(grads, 0.5, norm_type)
    total = ops.clip_grad_norm_(grads, 0.5, norm_type)
    assert isinstance(total, float)
    assert total == pytest.approx(want_total, rel=1e-12)  # float64 accumulation either way
    for g, w in zip(grads, want):
        assert_close(g, w, dtype, ulps=2)
    # Clipped: the new total is max_norm (up to the 1e-6 and the rounding of the scale).
    assert ops.clip_grad_norm_(grads, 1e9, norm_type) == pytest.approx(0.5, rel=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_grad_norm_no_clip_leaves_grads_bitwise(rng, dtype):
    grads = _grads(rng, dtype)
    before = [g.copy() for g in grads]
    total = ops.clip_grad_norm_(grads, 1e6)
    assert total == pytest.approx(ref.clip_grad_norm(before, 1e6)[1], rel=1e-12)
    for g, b in zip(grads, before):
        np.testing.assert_array_equal(g, b)


def test_clip_grad_norm_edge_cases(rng):
    assert ops.clip_grad_norm_([], 1.0) == 0.0
    zeros = [np.zeros(5, np.float32), np.zeros((2, 2))]
    assert ops.clip_grad_norm_(zeros, 1.0) == 0.0
    assert ops.clip_grad_norm_(zeros, 1.0, np.inf) == 0.0
    assert all(not z.any() for z in zeros)
    # One array instead of a list; None entries skipped; mixed dtypes.
    g = np.full(4, 3.0, np.float32)
    assert ops.clip_grad_norm_(g, 1.0) == pytest.approx(6.0)
    np.testing.assert_allclose(g, 3.0 / (6.0 + 1e-6), rtol=1e-6)
    mixed = [np.full(3, 2.0), None, np.full(1, 2.0, np.float32)]
    assert ops.clip_grad_norm_(mixed, 2.0) == pytest.approx(4.0)
    assert mixed[0].dtype == np.float64 and mixed[2].dtype == np.float32
    # Accumulation in float64: a float32 sum of squares of 1e6 ones would not be exact.
    ones = np.ones(1_000_003, np.float32)
    assert ops.clip_grad_norm_([ones], 1e9) == np.sqrt(1_000_003.0)


def test_clip_grad_norm_nonfinite():
    g = np.array([1.0, np.nan, 2.0], np.float32)
    assert np.isnan(ops.clip_grad_norm_([g], 1.0))
    assert np.isnan(g).all()  # PyTorch: the NaN scale reaches every gradient
    h = np.array([1.0, np.inf], np.float32)
    assert ops.clip_grad_norm_([h.copy()], 1.0, np.inf) == np.inf
    with pytest.raises(RuntimeError, match="non-finite"):
        ops.clip_grad_norm_([h], 1.0, error_if_nonfinite=True)
    np.testing.assert_array_equal(h, [1.0, np.inf])  # untouched
    assert np.isnan(ops.clip_grad_norm_([np.array([np.inf, np.nan])], 1.0, np.inf))


@pytest.mark.parametrize("call,exc,match", [
    (lambda g: ops.clip_grad_norm_([g[:, ::2]], 1.0), TypeError, r"grads\[0\]: expected a C-contiguous"),
    (lambda g: ops.clip_grad_norm_([g, g.astype(np.int32)], 1.0), TypeError, r"grads\[1\]: expected dtype"),
    (lambda g: ops.clip_grad_norm_([[1.0, 2.0]], 1.0), TypeError, r"grads\[0\]: expected a numpy.ndarray"),
    (lambda g: ops.clip_grad_norm_([g], -1.0), ValueError, "invalid max_norm"),
    (lambda g: ops.clip_grad_norm_([g], 1.0, 0.0), ValueError, "invalid norm_type"),
])
def test_clip_grad_norm_bad_input(rng, call, exc, match):
    with pytest.raises(exc, match=match):
        call(rng.standard_normal((3, 4)))


# ---- against torch.optim -----------------------------------------------------------------------

TORCH_CASES = [
    ("SGD", {"lr": 0.05}, {}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.2, "weight_decay": 0.01}, {}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "maximize": True}, {}),
    ("Adam", {"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.1}, {}),
    ("Adam", {"lr": 0.01, "betas": (0.3, 0.99), "eps": 1e-6, "amsgrad": True, "maximize": True}, {}),
    ("AdamW", {"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.1}, {}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}, {}),
    ("RMSprop", {"lr": 0.01, "alpha": 0.9, "weight_decay": 0.1}, {}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.9, "centered": True}, {}),
    ("RMSprop", {"lr": 0.01, "alpha": 0.3, "centered": True, "maximize": True}, {}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.05, "weight_decay": 0.1, "initial_accumulator_value": 0.1}, {}),
]


class _FastdlOptimizer:
    """The minimal optimizer loop over the fused ops, for the comparison with torch.optim."""

    def __init__(self, kind, p, kw):
        self.kind, self.p, self.kw, self.t = kind, p, dict(kw), 0
        z = lambda: np.zeros_like(p)  # noqa: E731
        self.s = {"buf": z(), "m": z(), "v": z(), "max_v": z(), "sq": z(), "ga": z(),
                  "sum": np.full_like(p, kw.get("initial_accumulator_value", 0.0))}

    def step(self, g):
        self.t += 1
        kw, s, p = self.kw, self.s, self.p
        if self.kind == "SGD":
            ops.sgd_step_(p, g, s["buf"], kw["lr"], kw.get("momentum", 0), kw.get("weight_decay", 0),
                          kw.get("nesterov", False), kw.get("dampening", 0),
                          maximize=kw.get("maximize", False), first_step=self.t == 1)
        elif self.kind in ("Adam", "AdamW"):
            b1, b2 = kw.get("betas", (0.9, 0.999))
            wd = kw.get("weight_decay", 0.0 if self.kind == "Adam" else 0.01)
            ams = kw.get("amsgrad", False)
            ops.adam_step_(p, g, s["m"], s["v"], self.t, kw["lr"], b1, b2, kw.get("eps", 1e-8), wd,
                           self.kind == "AdamW", amsgrad=ams, max_v=s["max_v"] if ams else None,
                           maximize=kw.get("maximize", False))
        elif self.kind == "RMSprop":
            ops.rmsprop_step_(p, g, s["sq"], kw["lr"], kw.get("alpha", 0.99), kw.get("eps", 1e-8),
                              kw.get("weight_decay", 0), kw.get("momentum", 0), s["buf"],
                              kw.get("centered", False), s["ga"], maximize=kw.get("maximize", False))
        else:
            clr = kw["lr"] / (1 + (self.t - 1) * kw.get("lr_decay", 0))
            ops.adagrad_step_(p, g, s["sum"], clr, kw.get("eps", 1e-10), kw.get("weight_decay", 0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind,kw,_", TORCH_CASES, ids=[f"{c[0]}-{_ids(c[1])}" for c in TORCH_CASES])
def test_against_torch(rng, dtype, kind, kw, _):
    torch = pytest.importorskip("torch")
    n = 1003
    p0 = rng.standard_normal(n)
    grads = [rng.standard_normal(n) for _ in range(STEPS)]

    def run_torch(tdtype, **extra):
        tp = torch.nn.Parameter(torch.tensor(p0, dtype=tdtype))
        opt = getattr(torch.optim, kind)([tp], **kw, **extra)
        for g in grads:
            tp.grad = torch.tensor(g, dtype=tdtype)
            opt.step()
        return tp.detach().numpy().copy()

    mine = _FastdlOptimizer(kind, p0.astype(dtype), kw)
    for g in grads:
        mine.step(g.astype(dtype))
    t64 = run_torch(torch.float64, foreach=False)
    if dtype == np.float64:
        # Same formulas in float64: agreement to rounding, far below any formula difference.
        np.testing.assert_allclose(mine.p, t64, rtol=1e-13, atol=1e-13)
    else:
        t32 = run_torch(torch.float32, foreach=False)
        assert_close(mine.p, t64, dtype, baseline=t32, ulps=ULPS)
        if kind in ("SGD", "Adam", "AdamW", "Adagrad"):  # PyTorch's fused CPU kernels
            t32f = run_torch(torch.float32, fused=True)
            assert_close(mine.p, t64, dtype, baseline=t32f, ulps=ULPS)


@pytest.mark.parametrize("norm_type", [2.0, np.inf, 1.0])
def test_clip_against_torch(rng, norm_type):
    torch = pytest.importorskip("torch")
    grads = _grads(rng, np.float64)
    params = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads]
    for tp, g in zip(params, grads):
        tp.grad = torch.tensor(g)
    want = float(torch.nn.utils.clip_grad_norm_(params, 0.5, norm_type))
    assert ops.clip_grad_norm_(grads, 0.5, norm_type) == pytest.approx(want, rel=1e-13)
    for tp, g in zip(params, grads):
        np.testing.assert_allclose(g, tp.grad.numpy(), rtol=1e-13)
