"""CUDA rnn family (RNN and LSTM cells, whole-sequence LSTM, forward and backward) against the
CPU ops in float64 and float32.

Skipped as a whole unless CuPy imports and fastdl sees a GPU. CuPy arrays go through fastdl.ops
(the same functions as the CPU tests) and are compared with the CPU ops computing in float64
(the oracle) and in float32 (the yardstick): the GPU float32 result must be within the bound a
float32 computation of these sums meets (a few ulps of the scale times the square root of the
longest reduction, T N rows for the sequence's weight gradients). Sizes cover batch 1, odd
sizes, T = 0 and T = 1, no biases, None incoming gradients, and inference (need_cache=False).
Shape errors must carry the CPU binding's message word for word (one check in bindings/args.h).
"""

from __future__ import annotations

import numpy as np
import pytest

from fastdl import ops
from helpers import cupy_or_skip

cp = cupy_or_skip()
if not hasattr(ops, "lstm"):
    pytest.skip("fastdl.ops has no rnn ops in this tree (ops/rnn.py)", allow_module_level=True)

from fastdl import _cuda  # noqa: E402

pytestmark = pytest.mark.gpu

EPS32 = float(np.finfo(np.float32).eps)
# (N, I, H)
CELL_SIZES = [(1, 1, 1), (3, 5, 7), (2, 17, 3), (64, 33, 128)]
# (T, N, I, H)
SEQ_SIZES = [(1, 1, 1, 1), (4, 3, 5, 7), (1, 2, 3, 17), (0, 2, 3, 4), (9, 1, 2, 3),
             (20, 16, 33, 64)]


def dev(a):
    return None if a is None else cp.asarray(a)


def host(a):
    assert isinstance(a, cp.ndarray), f"expected a CuPy array, got {type(a).__name__}"
    return cp.asnumpy(a)


def close(got, want, depth, name):
    """got (CuPy float32) within ~ sqrt(depth) float32 ulps of the float64 result's scale."""
    got = host(got)
    want = np.asarray(want)
    assert got.dtype == np.float32 and got.shape == want.shape, name
    if want.size == 0:
        return
    scale = max(1.0, float(np.abs(want).max()))
    tol = 32 * EPS32 * scale * np.sqrt(max(depth, 1))
    err = float(np.abs(got.astype(np.float64) - want).max())
    assert err <= tol, f"{name}: max abs error {err:.3g} > {tol:.3g}"


def params(rng, i, h, gates, bias=True):
    w_ih = rng.standard_normal((gates * h, i)) * 0.5
    w_hh = rng.standard_normal((gates * h, h)) * 0.5
    b_ih = rng.standard_normal(gates * h) if bias else None
    b_hh = rng.standard_normal(gates * h) if bias else None
    return w_ih, w_hh, b_ih, b_hh


def f32(*xs):
    return [None if x is None else np.asarray(x, np.float32) for x in xs]


def both(fn, *args):
    """(GPU result, CPU float64 result, CPU float32 result) of fn(*args)."""
    gpu = fn(*[dev(a) for a in f32(*args)])
    cpu64 = fn(*[None if a is None else np.asarray(a, np.float64) for a in args])
    cpu32 = fn(*f32(*args))
    return gpu, cpu64, cpu32


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("n,i,h", CELL_SIZES, ids=str)
def test_cuda_rnn_cell(rng, n, i, h, bias):
    x, hh = rng.standard_normal((n, i)), rng.standard_normal((n, h))
    w_ih, w_hh, b_ih, b_hh = params(rng, i, h, 1, bias)
    g, want, _ = both(ops.rnn_cell, x, hh, w_ih, w_hh, b_ih, b_hh)
    close(g, want, max(i, h), "h_new")
    dh_new = rng.standard_normal((n, h))
    got, want, _ = both(ops.rnn_cell_backward, dh_new, x, hh, w_ih, w_hh, want)
    for name, a, b, depth in zip(["dx", "dh", "dw_ih", "dw_hh", "db"], got, want,
                                 [h, h, n, n, n]):
        close(a, b, depth, name)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("n,i,h", CELL_SIZES, ids=str)
def test_cuda_lstm_cell(rng, n, i, h, bias):
    x, hh, c = rng.standard_normal((n, i)), rng.standard_normal((n, h)), rng.standard_normal((n, h))
    w_ih, w_hh, b_ih, b_hh = params(rng, i, h, 4, bias)
    got, want, _ = both(ops.lstm_cell, x, hh, c, w_ih, w_hh, b_ih, b_hh)
    for name, a, b in zip(["h_new", "c_new", "gates"], got, want):
        close(a, b, max(i, h), name)
    _, c_new, gates = want
    for dh_new, dc_new in [(rng.standard_normal((n, h)), rng.standard_normal((n, h))),
                           (rng.standard_normal((n, h)), None), (None, rng.standard_normal((n, h))),
                           (None, None)]:
        got, ref, _ = both(ops.lstm_cell_backward, dh_new, dc_new, x, hh, c, w_ih, w_hh, gates,
                           c_new)
        for name, a, b, depth in zip(["dx", "dh", "dc", "dw_ih", "dw_hh", "db"], got, ref,
                                     [4 * h, 4 * h, 1, n, n, n]):
            close(a, b, depth, name)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("t,n,i,h", SEQ_SIZES, ids=str)
def test_cuda_lstm(rng, t, n, i, h, bias):
    x = rng.standard_normal((t, n, i))
    h0, c0 = rng.standard_normal((n, h)), rng.standard_normal((n, h))
    w_ih, w_hh, b_ih, b_hh = params(rng, i, h, 4, bias)
    (y, h_n, c_n, cache), (y64, h_n64, c_n64, cache64), _ = both(ops.lstm, x, h0, c0, w_ih, w_hh,
                                                                 b_ih, b_hh)
    depth = max(i, h) * max(t, 1)
    for name, a, b in [("y", y, y64), ("h_n", h_n, h_n64), ("c_n", c_n, c_n64),
                       ("gates", cache.gates, cache64.gates), ("cells", cache.cells, cache64.cells)]:
        close(a, b, depth, name)
    yi, h_ni, c_ni, none = ops.lstm(*[dev(a) for a in f32(x, h0, c0, w_ih, w_hh, b_ih, b_hh)],
                                    need_cache=False)
    assert none is None
    for name, a, b in [("inference y", yi, y), ("inference h_n", h_ni, h_n),
                       ("inference c_n", c_ni, c_n)]:
        close(a, host(b).astype(np.float64), depth, name)
    dy, dh_n, dc_n = (rng.standard_normal((t, n, h)), rng.standard_normal((n, h)),
                      rng.standard_normal((n, h)))
    for grads in [(dy, dh_n, dc_n), (dy, None, None), (None, dh_n, None), (None, None, dc_n)]:
        got = ops.lstm_backward(*[dev(a) for a in f32(*grads)], cache)
        want = ops.lstm_backward(*grads, cache64)
        for name, a, b, dd in zip(["dx", "dh0", "dc0", "dw_ih", "dw_hh", "db"], got, want,
                                  [4 * h * max(t, 1)] * 3 + [t * n] * 3):
            close(a, b, dd * max(t, 1), name)


def test_cuda_lstm_zero_state_and_stream(rng):
    t, n, i, h = 5, 3, 4, 6
    x = rng.standard_normal((t, n, i)).astype(np.float32)
    w_ih, w_hh, b_ih, b_hh = f32(*params(rng, i, h, 4))
    want = ops.lstm(x, None, None, w_ih, w_hh, b_ih, b_hh)
    s = cp.cuda.Stream(non_blocking=True)
    with s:  # the kernels run on CuPy's current stream
        got = ops.lstm(*[dev(a) for a in (x, None, None, w_ih, w_hh, b_ih, b_hh)])
        grads = ops.lstm_backward(cp.ones((t, n, h), np.float32), None, None, got[3])
    s.synchronize()
    for a, b in zip(got[:3], want[:3]):
        close(a, b, 64, "forward on a side stream")
    for a, b in zip(grads, ops.lstm_backward(np.ones((t, n, h), np.float32), None, None, want[3])):
        close(a, b, 256, "backward on a side stream")


def test_cuda_lstm_repeatable(rng):
    t, n, i, h = 6, 8, 16, 32
    args = [dev(a) for a in f32(rng.standard_normal((t, n, i)), rng.standard_normal((n, h)),
                                rng.standard_normal((n, h)), *params(rng, i, h, 4))]
    first = ops.lstm(*args)
    g1 = ops.lstm_backward(cp.ones((t, n, h), np.float32), None, None, first[3])
    again = ops.lstm(*args)
    g2 = ops.lstm_backward(cp.ones((t, n, h), np.float32), None, None, again[3])
    for a, b in zip(list(first[:3]) + list(g1), list(again[:3]) + list(g2)):
        np.testing.assert_array_equal(host(a), host(b))


def _message(fn, *args):
    with pytest.raises(ValueError) as e:
        fn(*args)
    return str(e.value)


def test_cuda_rnn_shape_errors_match_cpu(rng):
    n, i, h = 3, 4, 5
    x, hh, c = (rng.standard_normal((n, i)).astype(np.float32),
                rng.standard_normal((n, h)).astype(np.float32),
                rng.standard_normal((n, h)).astype(np.float32))
    w_ih, w_hh = (rng.standard_normal((4 * h, i)).astype(np.float32),
                  rng.standard_normal((4 * h, h + 1)).astype(np.float32))  # wrong
    cpu = _message(ops.lstm_cell, x, hh, c, w_ih, w_hh)
    gpu = _message(ops.lstm_cell, *[dev(a) for a in (x, hh, c, w_ih, w_hh)])
    assert gpu == cpu and "w_hh" in gpu
    xs = rng.standard_normal((2, n, i)).astype(np.float32)
    y, h_n, c_n = cp.empty((2, n, h), np.float32), cp.empty((n, h), np.float32), cp.empty((n, h), np.float32)
    with pytest.raises(ValueError, match="gates and cells"):
        _cuda.lstm_forward(y, h_n, c_n, cp.empty((2, n, 4 * h), np.float32), None, dev(xs),
                           dev(hh), dev(c), dev(w_ih), cp.zeros((4 * h, h), np.float32), None, None)
    with pytest.raises(TypeError, match="float32"):
        _cuda.rnn_cell_forward(cp.empty((n, h)), dev(x), dev(hh), cp.zeros((h, i), np.float32),
                               cp.zeros((h, h), np.float32), None, None)
