"""The rnn family: rnn_cell, lstm_cell and the whole-sequence lstm, forward and backward, against
the float64 NumPy reference (tests/reference.py, step by step from the equations), the kernels'
plain-loop oracles on every ISA, float64 finite differences (through time, T up to 20, nonzero
dy, dh_n and dc_n), torch.nn.LSTMCell / torch.nn.LSTM, and bad input.

float32 results are held to twice the error of the same computation done by NumPy in float32
(tests/helpers.py); float64 ones to a few ulps of the long-double reference."""

import numpy as np
import pytest

import fastdl
from fastdl import _core, ops

import reference as ref
from helpers import assert_close, check_op, gradcheck

DTYPES = [np.float32, np.float64]
ORDER = ["generic", "avx2", "avx512"]
ISAS = [i for i in ORDER if ORDER.index(i) <= ORDER.index(_core.cpu_isa_supported())]
# (N, I, H): batch 1, sizes that are not multiples of any vector width.
CELL_SHAPES = [(1, 1, 1), (3, 7, 3), (1, 17, 17), (3, 1, 33), (4, 16, 16), (5, 9, 40), (2, 0, 3),
               (0, 3, 4)]


def _np32(fn):
    """fn from tests/reference.py computed in float32: the tolerance yardstick of check_op."""
    def run(*args):
        prev, ref.REF_DTYPE = ref.REF_DTYPE, np.float32
        try:
            return fn(*args)
        finally:
            ref.REF_DTYPE = prev
    return run


def _weights(rng, i, h, gates, bias=True):
    s = 1 / np.sqrt(max(h, 1))
    w_ih = rng.uniform(-s, s, (gates * h, i)) * 2
    w_hh = rng.uniform(-s, s, (gates * h, h)) * 2
    b_ih = rng.uniform(-s, s, gates * h) if bias else None
    b_hh = rng.uniform(-s, s, gates * h) if bias else None
    return w_ih, w_hh, b_ih, b_hh


def _ulps(k):
    return 16 + 4 * np.sqrt(k)


# ---- rnn_cell ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", CELL_SHAPES, ids=str)
def test_rnn_cell(rng, shape, bias, dtype):
    n, i, h = shape
    x, h0 = rng.standard_normal((n, i)), rng.standard_normal((n, h))
    w_ih, w_hh, b_ih, b_hh = _weights(rng, i, h, 1, bias)
    h_new = check_op(ops.rnn_cell, ref.rnn_cell, [x, h0, w_ih, w_hh, b_ih, b_hh], dtype,
                     baseline=_np32(ref.rnn_cell) if dtype == np.float32 else None)
    dh = rng.standard_normal((n, h))
    args = [dh, x, h0, w_ih, w_hh, h_new.astype(np.float64)]
    check_op(ops.rnn_cell_backward, ref.rnn_cell_backward, args, dtype,
             baseline=_np32(ref.rnn_cell_backward) if dtype == np.float32 else None,
             names=["dx", "dh", "dw_ih", "dw_hh", "db"])


def test_rnn_cell_gradcheck(rng):
    n, i, h = 3, 4, 5
    x, h0 = rng.standard_normal((n, i)), rng.standard_normal((n, h))
    w_ih, w_hh, b_ih, b_hh = _weights(rng, i, h, 1)

    def fwd(x, h0, w_ih, w_hh, b_ih, b_hh):
        return ops.rnn_cell(x, h0, w_ih, w_hh, b_ih, b_hh)

    def bwd(g, x, h0, w_ih, w_hh, b_ih, b_hh):
        dx, dh, dwi, dwh, db = ops.rnn_cell_backward(g, x, h0, w_ih, w_hh,
                                                     fwd(x, h0, w_ih, w_hh, b_ih, b_hh))
        return dx, dh, dwi, dwh, db, db

    gradcheck(fwd, bwd, [x, h0, w_ih, w_hh, b_ih, b_hh], wrt=[0, 1, 2, 3, 4, 5], rng=rng)


# ---- lstm_cell ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", CELL_SHAPES, ids=str)
def test_lstm_cell(rng, shape, bias, dtype):
    n, i, h = shape
    x, h0, c0 = (rng.standard_normal(s) for s in [(n, i), (n, h), (n, h)])
    w_ih, w_hh, b_ih, b_hh = _weights(rng, i, h, 4, bias)
    base = (lambda f: _np32(f) if dtype == np.float32 else None)
    h_new, c_new, gates = check_op(ops.lstm_cell, ref.lstm_cell,
                                   [x, h0, c0, w_ih, w_hh, b_ih, b_hh], dtype,
                                   baseline=base(ref.lstm_cell), names=["h_new", "c_new", "gates"])
    dh, dc = rng.standard_normal((n, h)), rng.standard_normal((n, h))
    for gh, gc in [(dh, dc), (dh, None), (None, dc)]:
        args = [gh, gc, x, h0, c0, w_ih, w_hh, gates.astype(np.float64), c_new.astype(np.float64)]
        check_op(ops.lstm_cell_backward, ref.lstm_cell_backward, args, dtype,
                 baseline=base(ref.lstm_cell_backward),
                 names=["dx", "dh", "dc", "dw_ih", "dw_hh", "db"])


def test_lstm_cell_gradcheck(rng):
    n, i, h = 2, 3, 5
    x, h0, c0 = (rng.standard_normal(s) for s in [(n, i), (n, h), (n, h)])
    w_ih, w_hh, b_ih, b_hh = _weights(rng, i, h, 4)
    # The loss sees h_new and c_new: fwd returns them stacked, g splits the same way.

    def fwd(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        hn, cn, _ = ops.lstm_cell(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
        return np.concatenate([hn, cn])

    def bwd(g, x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        hn, cn, gates = ops.lstm_cell(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
        dx, dh, dc, dwi, dwh, db = ops.lstm_cell_backward(g[:n], g[n:], x, h0, c0, w_ih, w_hh,
                                                          gates, cn)
        return dx, dh, dc, dwi, dwh, db, db

    gradcheck(fwd, bwd, [x, h0, c0, w_ih, w_hh, b_ih, b_hh], wrt=list(range(7)), rng=rng)


# ---- lstm (whole sequence) ---------------------------------------------------------------------

SEQ_SHAPES = [(0, 2, 3, 5), (1, 1, 1, 1), (1, 3, 7, 3), (5, 3, 17, 17), (20, 1, 7, 33),
              (7, 4, 16, 16), (3, 0, 4, 3), (2, 3, 0, 4), (2, 3, 4, 0)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", SEQ_SHAPES, ids=str)
def test_lstm(rng, shape, bias, dtype):
    t, n, i, h = shape
    x, h0, c0 = (rng.standard_normal(s) for s in [(t, n, i), (n, h), (n, h)])
    w_ih, w_hh, b_ih, b_hh = _weights(rng, i, h, 4, bias)
    cast = [a if a is None else a.astype(dtype) for a in (x, h0, c0, w_ih, w_hh, b_ih, b_hh)]
    y, h_n, c_n, cache = ops.lstm(*cast)
    want_y, want_h, want_c, want_g, want_cells = ref.lstm(*cast)
    base = ref.lstm(*cast) if dtype == np.float64 else _np32(ref.lstm)(*cast)
    ulps = _ulps(i + h) * max(t, 1)
    for got, want, b, name in zip((y, h_n, c_n, cache.gates, cache.cells),
                                  (want_y, want_h, want_c, want_g, want_cells), base,
                                  ("y", "h_n", "c_n", "gates", "cells")):
        assert_close(got, want, dtype, b if dtype == np.float32 else None, name=name, ulps=ulps)
    # Inference: the same results, no cache.
    y2, h2, c2, none = ops.lstm(*cast, need_cache=False)
    assert none is None
    for a, b in ((y, y2), (h_n, h2), (c_n, c2)):
        np.testing.assert_allclose(a, b, rtol=0, atol=8 * np.finfo(dtype).eps * max(1, t))

    dy, dh_n, dc_n = (rng.standard_normal(s) for s in [(t, n, h), (n, h), (n, h)])
    for gy, gh, gc in [(dy, dh_n, dc_n), (dy, None, None), (None, dh_n, None), (None, None, dc_n)]:
        gcast = [a if a is None else a.astype(dtype) for a in (gy, gh, gc)]
        got = ops.lstm_backward(*gcast, cache)
        want = ref.lstm_backward(*gcast, *cast)
        base = (ref.lstm_backward if dtype == np.float64 else _np32(ref.lstm_backward))(
            *gcast, *cast)
        for g, w, b, name in zip(got, want, base, ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db")):
            assert_close(g, w, dtype, b if dtype == np.float32 else None, name=name,
                         ulps=_ulps(4 * h + t * n) * max(t, 1))


def test_lstm_zero_state_default(rng):
    t, n, i, h = 3, 2, 4, 5
    x = rng.standard_normal((t, n, i))
    w_ih, w_hh, b_ih, b_hh = _weights(rng, i, h, 4)
    z = np.zeros((n, h))
    got = ops.lstm(x, None, None, w_ih, w_hh, b_ih, b_hh)
    want = ops.lstm(x, z, z, w_ih, w_hh, b_ih, b_hh)
    for a, b in zip(got[:3], want[:3]):
        np.testing.assert_array_equal(a, b)


def test_lstm_t0(rng):
    n, i, h = 3, 4, 5
    x = np.zeros((0, n, i))
    h0, c0 = rng.standard_normal((n, h)), rng.standard_normal((n, h))
    w_ih, w_hh, b_ih, b_hh = _weights(rng, i, h, 4)
    y, h_n, c_n, cache = ops.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    assert y.shape == (0, n, h)
    np.testing.assert_array_equal(h_n, h0)
    np.testing.assert_array_equal(c_n, c0)
    dh_n, dc_n = rng.standard_normal((n, h)), rng.standard_normal((n, h))
    dx, dh0, dc0, dwi, dwh, db = ops.lstm_backward(None, dh_n, dc_n, cache)
    assert dx.shape == (0, n, i)
    np.testing.assert_array_equal(dh0, dh_n)
    np.testing.assert_array_equal(dc0, dc_n)
    assert not dwi.any() and not dwh.any() and not db.any()


@pytest.mark.parametrize("t", [1, 4, 20])
def test_lstm_gradcheck_through_time(rng, t):
    n, i, h = 2, 3, 3
    x, h0, c0 = (rng.standard_normal(s) for s in [(t, n, i), (n, h), (n, h)])
    w_ih, w_hh, b_ih, b_hh = _weights(rng, i, h, 4)
    # The loss sees y, h_n and c_n: L = sum(y gy) + sum(h_n gh) + sum(c_n gc).

    def fwd(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        y, h_n, c_n, _ = ops.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
        return np.concatenate([y.reshape(-1), h_n.reshape(-1), c_n.reshape(-1)])

    def bwd(g, x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        cache = ops.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh)[3]
        gy, gh, gc = np.split(g, [t * n * h, (t + 1) * n * h])
        dx, dh0, dc0, dwi, dwh, db = ops.lstm_backward(gy.reshape(t, n, h), gh.reshape(n, h),
                                                       gc.reshape(n, h), cache)
        return dx, dh0, dc0, dwi, dwh, db, db

    gradcheck(fwd, bwd, [x, h0, c0, w_ih, w_hh, b_ih, b_hh], wrt=list(range(7)), rng=rng,
              max_elems=12)


def test_lstm_inference_chunks(rng):
    """need_cache=False projects the inputs in chunks of steps (a bounded workspace of 2^20
    elements): 40 steps of N * 4H = 32768 take two chunks; results as with the cache."""
    t, n, i, h = 40, 64, 3, 128
    x, h0, c0 = (rng.standard_normal(s).astype(np.float32) for s in [(t, n, i), (n, h), (n, h)])
    w_ih, w_hh, b_ih, b_hh = (a.astype(np.float32) for a in _weights(rng, i, h, 4))
    y, h_n, c_n, _ = ops.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    y2, h2, c2, _ = ops.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, need_cache=False)
    np.testing.assert_allclose(y2, y, rtol=0, atol=1e-5)
    np.testing.assert_allclose(h2, h_n, rtol=0, atol=1e-5)
    np.testing.assert_allclose(c2, c_n, rtol=0, atol=1e-5)


# ---- every ISA against the kernels' plain-loop oracles -------------------------------------------

@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_cells_every_isa(rng, isa, dtype):
    for n, i, h in [(3, 7, 17), (1, 1, 33), (5, 16, 9)]:
        x, h0, c0 = (rng.standard_normal(s).astype(dtype) for s in [(n, i), (n, h), (n, h)])
        w_ih, w_hh, b_ih, b_hh = (a.astype(dtype) for a in _weights(rng, i, h, 4))
        outs = [np.empty((n, h), dtype), np.empty((n, h), dtype), np.empty((n, 4 * h), dtype)]
        refs = [np.empty_like(o) for o in outs]
        _core.lstm_cell_forward(*outs, x, h0, c0, w_ih, w_hh, b_ih, b_hh, isa=isa)
        _core.lstm_cell_forward_reference(*refs, x, h0, c0, w_ih, w_hh, b_ih, b_hh)
        for o, r in zip(outs, refs):
            assert_close(o, r, dtype, ulps=_ulps(i + h))
        dh, dc = rng.standard_normal((n, h)).astype(dtype), rng.standard_normal((n, h)).astype(dtype)
        shapes = [(n, i), (n, h), (n, h), (4 * h, i), (4 * h, h), (4 * h,)]
        g = [np.empty(s, dtype) for s in shapes]
        gr = [np.empty(s, dtype) for s in shapes]
        _core.lstm_cell_backward(*g, dh, dc, x, h0, c0, w_ih, w_hh, refs[2], refs[1], isa=isa)
        _core.lstm_cell_backward_reference(*gr, dh, dc, x, h0, c0, w_ih, w_hh, refs[2], refs[1])
        for a, b in zip(g, gr):
            assert_close(a, b, dtype, ulps=_ulps(4 * h + n))
        # The RNN cell on the first H rows of the weights.
        wi, wh, bi, bh = w_ih[:h].copy(), w_hh[:h].copy(), b_ih[:h].copy(), b_hh[:h].copy()
        o, r = np.empty((n, h), dtype), np.empty((n, h), dtype)
        _core.rnn_cell_forward(o, x, h0, wi, wh, bi, bh, isa=isa)
        _core.rnn_cell_forward_reference(r, x, h0, wi, wh, bi, bh)
        assert_close(o, r, dtype, ulps=_ulps(i + h))
        shapes = [(n, i), (n, h), (h, i), (h, h), (h,)]
        g = [np.empty(s, dtype) for s in shapes]
        gr = [np.empty(s, dtype) for s in shapes]
        _core.rnn_cell_backward(*g, dh, x, h0, wi, wh, r, isa=isa)
        _core.rnn_cell_backward_reference(*gr, dh, x, h0, wi, wh, r)
        for a, b in zip(g, gr):
            assert_close(a, b, dtype, ulps=_ulps(h + n))


@pytest.mark.parametrize("isa", ISAS)
def test_sequence_every_isa(rng, isa):
    t, n, i, h = 6, 3, 5, 17
    dtype = np.float32
    x, h0, c0 = (rng.standard_normal(s).astype(dtype) for s in [(t, n, i), (n, h), (n, h)])
    w_ih, w_hh, b_ih, b_hh = (a.astype(dtype) for a in _weights(rng, i, h, 4))
    y, hn, cn = np.empty((t, n, h), dtype), np.empty((n, h), dtype), np.empty((n, h), dtype)
    gates, cells = np.empty((t, n, 4 * h), dtype), np.empty((t, n, h), dtype)
    _core.lstm_forward(y, hn, cn, gates, cells, x, h0, c0, w_ih, w_hh, b_ih, b_hh, isa=isa)
    want = ref.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    base = _np32(ref.lstm)(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    for got, w, b in zip((y, hn, cn, gates, cells), want, base):
        assert_close(got, w, dtype, b, ulps=_ulps(i + h) * t)
    dy, dh_n, dc_n = (rng.standard_normal(s).astype(dtype) for s in [(t, n, h), (n, h), (n, h)])
    shapes = [(t, n, i), (n, h), (n, h), (4 * h, i), (4 * h, h), (4 * h,)]
    g = [np.empty(s, dtype) for s in shapes]
    _core.lstm_backward(*g, dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, y, gates, cells, isa=isa)
    want = ref.lstm_backward(dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    base = _np32(ref.lstm_backward)(dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    for got, w, b in zip(g, want, base):
        assert_close(got, w, dtype, b, ulps=_ulps(4 * h + t * n) * t)


# ---- layouts, repeatability --------------------------------------------------------------------

def test_non_contiguous_inputs(rng):
    t, n, i, h = 4, 3, 5, 7
    x = rng.standard_normal((n, t, i)).transpose(1, 0, 2)  # (T, N, I), not contiguous
    h0 = rng.standard_normal((h, n)).T
    c0 = rng.standard_normal((n, 2 * h))[:, ::2]
    w_ih, w_hh, b_ih, b_hh = _weights(rng, i, h, 4)
    w_hh_t = np.asfortranarray(w_hh)
    b_ih_s = np.repeat(b_ih, 2)[::2]
    assert not (x.flags.c_contiguous or h0.flags.c_contiguous or c0.flags.c_contiguous)
    got = ops.lstm(x, h0, c0, w_ih, w_hh_t, b_ih_s, b_hh)
    want = ops.lstm(*(np.ascontiguousarray(a) for a in (x, h0, c0, w_ih, w_hh, b_ih, b_hh)))
    for a, b in zip(got[:3], want[:3]):
        np.testing.assert_array_equal(a, b)
    hn, cn, g = ops.lstm_cell(x[0], h0, c0, w_ih, w_hh_t, b_ih_s, b_hh)
    want = ref.lstm_cell(x[0], h0, c0, w_ih, w_hh, b_ih, b_hh)
    for a, b in zip((hn, cn, g), want):
        assert_close(a, b, np.float64, ulps=64)
    hr = ops.rnn_cell(x[1], h0, w_ih[:h], w_hh_t[:h, :], b_ih_s[:h], None)
    assert_close(hr, ref.rnn_cell(x[1], h0, w_ih[:h], w_hh[:h], b_ih[:h]), np.float64, ulps=64)


def test_bitwise_repeatable(rng):
    t, n, i, h = 9, 16, 64, 96
    x, h0, c0 = (rng.standard_normal(s).astype(np.float32) for s in [(t, n, i), (n, h), (n, h)])
    w_ih, w_hh, b_ih, b_hh = (a.astype(np.float32) for a in _weights(rng, i, h, 4))
    dy = rng.standard_normal((t, n, h)).astype(np.float32)
    for threads in (1, 2):
        fastdl.set_num_threads(threads)
        runs = []
        for _ in range(2):
            y, h_n, c_n, cache = ops.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
            runs.append((y, h_n, c_n) + ops.lstm_backward(dy, h_n, c_n, cache)
                        + ops.lstm_cell(x[0], h0, c0, w_ih, w_hh, b_ih, b_hh))
        for a, b in zip(*runs):
            np.testing.assert_array_equal(a, b)


def test_dtype_rule(rng):
    n, i, h = 2, 3, 4
    x, h0, c0 = (rng.standard_normal(s).astype(np.float32) for s in [(n, i), (n, h), (n, h)])
    w_ih, w_hh, _, _ = (a if a is None else a.astype(np.float32) for a in _weights(rng, i, h, 4))
    assert all(o.dtype == np.float32 for o in ops.lstm_cell(x, h0, c0, w_ih, w_hh))
    assert all(o.dtype == np.float64 for o in ops.lstm_cell(x.astype(np.float64), h0, c0, w_ih, w_hh))
    assert ops.rnn_cell(x.astype(np.int64), h0, w_ih[:h], w_hh[:h]).dtype == np.float32


# ---- bad input ---------------------------------------------------------------------------------

def test_bad_shapes(rng):
    n, i, h = 3, 5, 4
    f = np.float32
    x, h0, c0 = (rng.standard_normal(s).astype(f) for s in [(n, i), (n, h), (n, h)])
    w_ih, w_hh, b_ih, b_hh = (a.astype(f) for a in _weights(rng, i, h, 4))
    with pytest.raises(ValueError, match=r"w_hh must have shape \(4H, H\) = \(16, 4\).*got \(12, 4\)"):
        ops.lstm_cell(x, h0, c0, w_ih, w_hh[:12])
    with pytest.raises(ValueError, match=r"w_ih must have shape \(4H, I\)"):
        ops.lstm_cell(x, h0, c0, w_ih[:, :4], w_hh)
    with pytest.raises(ValueError, match=r"lstm_cell: c must have shape \(N, H\)"):
        ops.lstm_cell(x, h0, c0[:, :3], w_ih, w_hh)
    with pytest.raises(ValueError, match=r"lstm_cell: h must have shape \(N, H\) with N = 3"):
        ops.lstm_cell(x, h0[:2], c0, w_ih, w_hh)
    with pytest.raises(ValueError, match=r"b_hh must have shape \(4H,\)"):
        ops.lstm_cell(x, h0, c0, w_ih, w_hh, b_ih, b_hh[:5])
    with pytest.raises(ValueError, match=r"rnn_cell: w_hh must have shape \(H, H\)"):
        ops.rnn_cell(x, h0, w_ih[:h], w_hh)
    with pytest.raises(ValueError, match=r"rnn_cell: x must be 2-D"):
        ops.rnn_cell(x[0], h0, w_ih[:h], w_hh[:h])
    xs = rng.standard_normal((6, n, i)).astype(f)
    with pytest.raises(ValueError, match=r"lstm: x must be 3-D"):
        ops.lstm(x, h0, c0, w_ih, w_hh)
    with pytest.raises(ValueError, match=r"lstm: h0 must have shape \(N, H\) with N = 3"):
        ops.lstm(xs, h0[:1], c0, w_ih, w_hh)
    with pytest.raises(ValueError, match=r"lstm: c0 must have shape \(N, H\)"):
        ops.lstm(xs, h0, c0[:1], w_ih, w_hh)
    with pytest.raises(ValueError, match=r"lstm: w_hh must have shape \(4H, H\)"):
        ops.lstm(xs, None, None, w_ih, w_hh[:15])
    _, _, _, cache = ops.lstm(xs, h0, c0, w_ih, w_hh)
    with pytest.raises(ValueError, match=r"lstm_backward: dy must have shape \(T, N, H\) = \(6, 3, 4\)"):
        ops.lstm_backward(np.zeros((5, n, h), f), None, None, cache)
    with pytest.raises(ValueError, match=r"lstm_backward: dc_n must have shape \(N, H\)"):
        ops.lstm_backward(None, None, np.zeros((n, h + 1), f), cache)
    hn, cn, g = ops.lstm_cell(x, h0, c0, w_ih, w_hh)
    with pytest.raises(ValueError, match=r"lstm_cell_backward: gates must have shape \(N, 4H\)"):
        ops.lstm_cell_backward(hn, None, x, h0, c0, w_ih, w_hh, g[:, :8], cn)
    with pytest.raises(ValueError, match=r"rnn_cell_backward: dh_new must have shape \(N, H\)"):
        ops.rnn_cell_backward(hn[:2], x, h0, w_ih[:h], w_hh[:h], hn)


def test_bad_types(rng):
    n, i, h = 3, 5, 4
    f = np.float32
    x, h0, c0 = (rng.standard_normal(s).astype(f) for s in [(n, i), (n, h), (n, h)])
    w_ih, w_hh, _, _ = (a.astype(f) for a in _weights(rng, i, h, 4))
    with pytest.raises(TypeError, match="lstm_cell: w_hh"):
        ops.lstm_cell(x, h0, c0, w_ih, w_hh.astype(np.complex64))
    with pytest.raises(TypeError, match="lstm_cell: c must be an array, got None"):
        ops.lstm_cell(x, h0, None, w_ih, w_hh)
    with pytest.raises(TypeError, match="lstm_backward: cache"):
        ops.lstm_backward(None, None, None, (x, h0))
    # The extension: one dtype, C-contiguous arrays.
    out = [np.empty((n, h), f), np.empty((n, h), f), np.empty((n, 4 * h), f)]
    with pytest.raises(TypeError, match="w_hh: expected dtype float32, got float64"):
        _core.lstm_cell_forward(*out, x, h0, c0, w_ih, w_hh.astype(np.float64), None, None)
    with pytest.raises(TypeError, match="w_ih: must be C-contiguous"):
        _core.lstm_cell_forward(*out, x, h0, c0, np.asfortranarray(w_ih), w_hh, None, None)
    with pytest.raises(TypeError, match="gates: expected dtype float32"):
        _core.lstm_cell_forward(out[0], out[1], out[2].astype(np.float64), x, h0, c0, w_ih, w_hh,
                                None, None)
    with pytest.raises(TypeError, match="x: expected dtype float32 or float64, got int64"):
        _core.rnn_cell_forward(out[0], x.astype(np.int64), h0, w_ih[:h], w_hh[:h], None, None)
    xs = rng.standard_normal((2, n, i)).astype(f)
    y, hn, cn = np.empty((2, n, h), f), np.empty((n, h), f), np.empty((n, h), f)
    with pytest.raises(ValueError, match="gates and cells must both be arrays"):
        _core.lstm_forward(y, hn, cn, np.empty((2, n, 4 * h), f), None, xs, h0, c0, w_ih, w_hh,
                           None, None)
    ro = np.empty((n, h), f)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="h_n: output array is read-only"):
        _core.lstm_forward(y, ro, cn, None, None, xs, h0, c0, w_ih, w_hh, None, None)


# ---- PyTorch -----------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(3, 7, 5), (1, 16, 33), (8, 10, 12)], ids=str)
def test_lstm_cell_against_torch(rng, shape):
    torch = pytest.importorskip("torch")
    n, i, h = shape
    cell = torch.nn.LSTMCell(i, h)
    x = rng.standard_normal((n, i)).astype(np.float32)
    h0, c0 = (rng.standard_normal((n, h)).astype(np.float32) for _ in range(2))
    xt, ht, ct = (torch.from_numpy(a).requires_grad_() for a in (x, h0, c0))
    hnt, cnt = cell(xt, (ht, ct))
    p = [a.detach().numpy() for a in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)]
    hn, cn, gates = ops.lstm_cell(x, h0, c0, *p)
    np.testing.assert_allclose(hn, hnt.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cn, cnt.detach().numpy(), rtol=1e-5, atol=1e-6)
    dh, dc = (rng.standard_normal((n, h)).astype(np.float32) for _ in range(2))
    torch.autograd.backward([hnt, cnt], [torch.from_numpy(dh), torch.from_numpy(dc)])
    dx, dhp, dcp, dwi, dwh, db = ops.lstm_cell_backward(dh, dc, x, h0, c0, p[0], p[1], gates, cn)
    for got, want in [(dx, xt.grad), (dhp, ht.grad), (dcp, ct.grad), (dwi, cell.weight_ih.grad),
                      (dwh, cell.weight_hh.grad), (db, cell.bias_ih.grad), (db, cell.bias_hh.grad)]:
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(5, 3, 7, 5), (12, 2, 4, 17), (1, 4, 3, 8)], ids=str)
def test_lstm_against_torch(rng, shape):
    torch = pytest.importorskip("torch")
    t, n, i, h = shape
    net = torch.nn.LSTM(i, h)
    x = rng.standard_normal((t, n, i)).astype(np.float32)
    h0, c0 = (rng.standard_normal((n, h)).astype(np.float32) for _ in range(2))
    xt, ht, ct = (torch.from_numpy(a).requires_grad_() for a in (x, h0, c0))
    yt, (hnt, cnt) = net(xt, (ht[None], ct[None]))
    p = [a.detach().numpy() for a in (net.weight_ih_l0, net.weight_hh_l0, net.bias_ih_l0,
                                      net.bias_hh_l0)]
    y, hn, cn, cache = ops.lstm(x, h0, c0, *p)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(hn, hnt[0].detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cn, cnt[0].detach().numpy(), rtol=1e-5, atol=1e-5)
    dy = rng.standard_normal((t, n, h)).astype(np.float32)
    dh, dc = (rng.standard_normal((n, h)).astype(np.float32) for _ in range(2))
    torch.autograd.backward([yt, hnt, cnt], [torch.from_numpy(a) for a in (dy, dh[None], dc[None])])
    dx, dh0, dc0, dwi, dwh, db = ops.lstm_backward(dy, dh, dc, cache)
    for got, want in [(dx, xt.grad), (dh0, ht.grad), (dc0, ct.grad), (dwi, net.weight_ih_l0.grad),
                      (dwh, net.weight_hh_l0.grad), (db, net.bias_ih_l0.grad)]:
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threaded_odd_sizes(rng, threads):
    """Products big enough to split between threads (the split then keeps whole register tiles:
    the fused write-back's gate groups), H not a multiple of any tile width, against the float64
    reference."""
    fastdl.set_num_threads(threads)
    t, n, i, h = 3, 37, 50, 71
    f = np.float32
    x, h0, c0 = (rng.standard_normal(s) for s in [(t, n, i), (n, h), (n, h)])
    w_ih, w_hh, b_ih, b_hh = _weights(rng, i, h, 4)
    cast = [a.astype(f) for a in (x, h0, c0, w_ih, w_hh, b_ih, b_hh)]
    got = ops.lstm_cell(cast[0][0], *cast[1:])
    want = ref.lstm_cell(cast[0][0], *cast[1:])
    base = _np32(ref.lstm_cell)(cast[0][0], *cast[1:])
    for g, w, b in zip(got, want, base):
        assert_close(g, w, f, b, ulps=_ulps(i + h))
    y, hn, cn, cache = ops.lstm(*cast)
    for g, w, b in zip((y, hn, cn, cache.gates, cache.cells), ref.lstm(*cast),
                       _np32(ref.lstm)(*cast)):
        assert_close(g, w, f, b, ulps=_ulps(i + h) * t)
    dy, dh_n, dc_n = (rng.standard_normal(s).astype(f) for s in [(t, n, h), (n, h), (n, h)])
    got = ops.lstm_backward(dy, dh_n, dc_n, cache)
    for g, w, b in zip(got, ref.lstm_backward(dy, dh_n, dc_n, *cast),
                       _np32(ref.lstm_backward)(dy, dh_n, dc_n, *cast)):
        assert_close(g, w, f, b, ulps=_ulps(4 * h + t * n) * t)
    wi, wh, bi, bh = (a[:h].copy() for a in cast[3:])
    hr = ops.rnn_cell(cast[0][1], cast[1], wi, wh, bi, bh)
    assert_close(hr, ref.rnn_cell(cast[0][1], cast[1], wi, wh, bi, bh), f,
                 _np32(ref.rnn_cell)(cast[0][1], cast[1], wi, wh, bi, bh), ulps=_ulps(i + h))


@pytest.mark.parametrize("dtype", DTYPES)
def test_long_k(rng, dtype):
    """I + H longer than one k block of the GEMM (1024 float32 / 512 float64 elements): the packed
    panels of [w_ih | w_hh] are assembled per k slice, one slice straddling the two weights."""
    fastdl.set_num_threads(2)
    t, n, i, h = 2, 5, 1100, 21
    x, h0, c0 = (rng.standard_normal(s) for s in [(t, n, i), (n, h), (n, h)])
    w_ih, w_hh, b_ih, b_hh = _weights(rng, i, h, 4)
    w_ih /= 8
    cast = [a.astype(dtype) for a in (x, h0, c0, w_ih, w_hh, b_ih, b_hh)]
    base = (lambda fn: _np32(fn)(*cast) if dtype == np.float32 else [None] * 5)
    for g, w, b in zip(ops.lstm(*cast)[:3], ref.lstm(*cast)[:3], base(ref.lstm)):
        assert_close(g, w, dtype, b, ulps=_ulps(i + h) * t)
    args = (cast[0][0], *cast[1:])
    for g, w, b in zip(ops.lstm_cell(*args), ref.lstm_cell(*args),
                       _np32(ref.lstm_cell)(*args) if dtype == np.float32 else [None] * 3):
        assert_close(g, w, dtype, b, ulps=_ulps(i + h))
    wi, wh, bi, bh = (a[:h].copy() for a in cast[3:])
    assert_close(ops.rnn_cell(cast[0][1], cast[1], wi, wh, bi, bh),
                 ref.rnn_cell(cast[0][1], cast[1], wi, wh, bi, bh), dtype,
                 _np32(ref.rnn_cell)(cast[0][1], cast[1], wi, wh, bi, bh)
                 if dtype == np.float32 else None, ulps=_ulps(i + h))
