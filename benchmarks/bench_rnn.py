"""The rnn family: lstm_cell, rnn_cell and the whole-sequence lstm, forward and forward +
backward: fastdl against a NumPy composition (matmul + ufuncs, written out below) and PyTorch
(torch.lstm_cell / torch.rnn_tanh_cell, the functions behind nn.LSTMCell / nn.RNNCell, and
nn.LSTM), one group per case, in one process.

Napkin math (float32): a cell step is 2 N G H (I + H) FLOPs (G = 4 gates for the LSTM, 1 for
the RNN), its backward twice that (dx and dh, then dw_ih and dw_hh); the point-wise work is
O(N G H) and only matters when I + H is small. The sequence is T steps of that. "forward" is
inference (fastdl need_cache=False, torch under no_grad, NumPy keeping nothing); "forward +
backward" keeps what the backward needs (torch through autograd, the only way it has to run
the backward). GFLOP/s and the share of the FMA peak (benchutil.fma_peak_gflops) are in
extra_info. Results are checked against the NumPy composition after timing. With
--benchmark-disable (CI's smoke run) every case shrinks to batch 4, 16 -> 24, T 3.
"""

import numpy as np
import pytest

from fastdl import ops

from benchutil import record_peak

# (kind, N, I, H, T): T only for the sequence.
CASES = [("lstm_cell", 64, 256, 512, 1), ("lstm_cell", 128, 1024, 1024, 1),
         ("rnn_cell", 64, 256, 512, 1), ("lstm", 64, 256, 512, 50)]


def _case_id(case):
    kind, n, i, h, t = case
    return f"{kind} {'T%d ' % t if kind == 'lstm' else ''}b{n} {i}->{h}"


# ---- the NumPy composition ---------------------------------------------------------------------

def _sig(z):
    return 1 / (1 + np.exp(-z))


def np_lstm_cell(x, h, c, w_ih, w_hh, b):
    z = x @ w_ih.T
    z += h @ w_hh.T
    z += b
    hid = h.shape[1]
    i, f, o = _sig(z[:, :hid]), _sig(z[:, hid:2 * hid]), _sig(z[:, 3 * hid:])
    g = np.tanh(z[:, 2 * hid:3 * hid])
    c_new = f * c + i * g
    return o * np.tanh(c_new), c_new, (i, f, g, o)


def np_lstm_cell_backward(dh, dc, x, h, c, w_ih, w_hh, gates, c_new):
    i, f, g, o = gates
    tc = np.tanh(c_new)
    dct = dc + dh * o * (1 - tc * tc)
    dz = np.concatenate([dct * g * i * (1 - i), dct * c * f * (1 - f), dct * i * (1 - g * g),
                         dh * tc * o * (1 - o)], axis=1)
    return dz @ w_ih, dz @ w_hh, dct * f, dz.T @ x, dz.T @ h, dz.sum(axis=0)


def np_rnn_cell(x, h, w_ih, w_hh, b):
    z = x @ w_ih.T
    z += h @ w_hh.T
    z += b
    return np.tanh(z, out=z)


def np_rnn_cell_backward(dh, x, h, w_ih, w_hh, h_new):
    da = dh * (1 - h_new * h_new)
    return da @ w_ih, da @ w_hh, da.T @ x, da.T @ h, da.sum(axis=0)


def np_lstm(x, h, c, w_ih, w_hh, b, keep=False):
    t, n, _ = x.shape
    zx = (x.reshape(t * n, -1) @ w_ih.T + b).reshape(t, n, -1)
    ys, cs, gs = [], [c], []
    hid = h.shape[1]
    for s in range(t):
        z = zx[s] + h @ w_hh.T
        i, f, o = _sig(z[:, :hid]), _sig(z[:, hid:2 * hid]), _sig(z[:, 3 * hid:])
        g = np.tanh(z[:, 2 * hid:3 * hid])
        c = f * c + i * g
        h = o * np.tanh(c)
        ys.append(h)
        if keep:
            cs.append(c), gs.append((i, f, g, o))
    return np.stack(ys), h, c, (cs, gs)


def np_lstm_backward(dy, x, h0, w_ih, w_hh, y, cs, gs):
    t, n, _ = x.shape
    hid = h0.shape[1]
    dh, dc = np.zeros_like(h0), np.zeros_like(h0)
    dz = np.empty((t, n, 4 * hid), x.dtype)
    for s in reversed(range(t)):
        dh = dh + dy[s]
        i, f, g, o = gs[s]
        tc = np.tanh(cs[s + 1])
        dct = dc + dh * o * (1 - tc * tc)
        dz[s] = np.concatenate([dct * g * i * (1 - i), dct * cs[s] * f * (1 - f),
                                dct * i * (1 - g * g), dh * tc * o * (1 - o)], axis=1)
        dc = dct * f
        dh = dz[s] @ w_hh
    dz2 = dz.reshape(t * n, -1)
    hprev = np.concatenate([h0[None], y[:-1]]).reshape(t * n, -1)
    return (dz2 @ w_ih).reshape(x.shape), dh, dc, dz2.T @ x.reshape(t * n, -1), dz2.T @ hprev, \
        dz2.sum(axis=0)


# ---- the three libraries, one (forward, forward + backward) pair per kind ------------------------

def _impls(lib, kind, a):
    x, h, c, w_ih, w_hh, b_ih, b_hh, dy = (a[k] for k in ("x", "h", "c", "w_ih", "w_hh", "b_ih",
                                                          "b_hh", "dy"))
    b = b_ih + b_hh
    if lib == "fastdl":
        if kind == "lstm_cell":
            def fb():
                hn, cn, g = ops.lstm_cell(x, h, c, w_ih, w_hh, b_ih, b_hh)
                return ops.lstm_cell_backward(dy, dy, x, h, c, w_ih, w_hh, g, cn)
            return lambda: ops.lstm_cell(x, h, c, w_ih, w_hh, b_ih, b_hh)[0], fb
        if kind == "rnn_cell":
            def fb():
                hn = ops.rnn_cell(x, h, w_ih, w_hh, b_ih, b_hh)
                return ops.rnn_cell_backward(dy, x, h, w_ih, w_hh, hn)
            return lambda: ops.rnn_cell(x, h, w_ih, w_hh, b_ih, b_hh), fb

        def fb():
            cache = ops.lstm(x, h, c, w_ih, w_hh, b_ih, b_hh)[3]
            return ops.lstm_backward(dy, None, None, cache)
        return lambda: ops.lstm(x, h, c, w_ih, w_hh, b_ih, b_hh, need_cache=False)[0], fb
    if lib == "numpy":
        if kind == "lstm_cell":
            def fb():
                hn, cn, g = np_lstm_cell(x, h, c, w_ih, w_hh, b)
                return np_lstm_cell_backward(dy, dy, x, h, c, w_ih, w_hh, g, cn)
            return lambda: np_lstm_cell(x, h, c, w_ih, w_hh, b)[0], fb
        if kind == "rnn_cell":
            def fb():
                hn = np_rnn_cell(x, h, w_ih, w_hh, b)
                return np_rnn_cell_backward(dy, x, h, w_ih, w_hh, hn)
            return lambda: np_rnn_cell(x, h, w_ih, w_hh, b), fb

        def fb():
            y, _, _, (cs, gs) = np_lstm(x, h, c, w_ih, w_hh, b, keep=True)
            return np_lstm_backward(dy, x, h, w_ih, w_hh, y, cs, gs)
        return lambda: np_lstm(x, h, c, w_ih, w_hh, b)[0], fb

    import torch

    t = torch.from_numpy
    if kind in ("lstm_cell", "rnn_cell"):
        cell = torch.lstm_cell if kind == "lstm_cell" else torch.rnn_tanh_cell
        state = (lambda hh, cc: (hh, cc)) if kind == "lstm_cell" else (lambda hh, cc: hh)
        p = [t(v) for v in (w_ih, w_hh, b_ih, b_hh)]

        def fwd():
            with torch.no_grad():
                out = cell(t(x), state(t(h), t(c)), *p)
            return (out[0] if kind == "lstm_cell" else out).numpy()

        def fb():
            xs, hs, cs = (t(v).requires_grad_() for v in (x, h, c))
            ps = [v.detach().requires_grad_() for v in p]
            out = cell(xs, state(hs, cs), *ps)
            outs = list(out) if kind == "lstm_cell" else [out]
            torch.autograd.backward(outs, [t(dy)] * len(outs))
            grads = [xs.grad, hs.grad] + ([cs.grad] if kind == "lstm_cell" else [])
            return tuple(g.numpy() for g in grads + [ps[0].grad, ps[1].grad, ps[2].grad])
        return fwd, fb

    net = torch.nn.LSTM(x.shape[2], h.shape[1])
    with torch.no_grad():
        for name, v in (("weight_ih_l0", w_ih), ("weight_hh_l0", w_hh), ("bias_ih_l0", b_ih),
                        ("bias_hh_l0", b_hh)):
            getattr(net, name).copy_(t(v))

    def fwd():
        with torch.no_grad():
            return net(t(x), (t(h)[None], t(c)[None]))[0].numpy()

    def fb():
        net.zero_grad()
        xs = t(x).requires_grad_()
        y, _ = net(xs, (t(h)[None], t(c)[None]))
        y.backward(t(dy))
        return (xs.grad.numpy(), None, None, net.weight_ih_l0.grad.numpy(),
                net.weight_hh_l0.grad.numpy(), net.bias_ih_l0.grad.numpy())
    return fwd, fb


def _arrays(rng, case):
    kind, n, i, h, t = case
    g = 1 if kind == "rnn_cell" else 4
    s = np.float32(1 / np.sqrt(h))
    f = lambda *shape: rng.standard_normal(shape, dtype=np.float32)  # noqa: E731
    seq = kind == "lstm"
    return {"x": f(t, n, i) if seq else f(n, i), "h": f(n, h), "c": f(n, h),
            "w_ih": f(g * h, i) * s, "w_hh": f(g * h, h) * s, "b_ih": f(g * h) * s,
            "b_hh": f(g * h) * s, "dy": f(t, n, h) if seq else f(n, h)}


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("what", ["forward", "forward+backward"])
def test_rnn(benchmark, lib, rng, case, what):
    if benchmark.disabled:
        case = (case[0], 4, 16, 24, min(case[4], 3))
    kind, n, i, h, t = case
    benchmark.group = f"{_case_id(case)} {what}"
    a = _arrays(rng, case)
    fwd, fb = _impls(lib, kind, a)
    got = benchmark(fwd if what == "forward" else fb)
    flops = 2 * n * (1 if kind == "rnn_cell" else 4) * h * (i + h) * t
    record_peak(benchmark, flops * (1 if what == "forward" else 3))
    want_f, want_fb = _impls("numpy", kind, a)
    want = want_f() if what == "forward" else want_fb()
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    for g, e in zip(got, want):
        if g is None:
            continue
        np.testing.assert_allclose(g, e, rtol=2e-3, atol=2e-3 * max(1.0, float(np.abs(e).max())))
