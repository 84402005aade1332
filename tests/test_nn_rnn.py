"""fastdl.nn Embedding, RNNCell, LSTMCell and LSTM (and their nn.functional forms and autograd
Functions): PyTorch's constructor arguments, parameter names, shapes, initialisation and state
shapes; a PyTorch module's state dict (converted to NumPy) loads and computes the same outputs,
input and state gradients and parameter gradients (float32 and float64; LSTM with 1-3 layers,
batch_first, no bias, given and missing states, unbatched input, T = 1, bidirectional); the
Functions against float64 finite differences; bad arguments raise ValueError/TypeError naming
them."""

import math

import numpy as np
import pytest

import fastdl
from fastdl import Tensor, nn
from fastdl.functions import Concat
from fastdl.nn import functional as F

from helpers import gradcheck

DTYPES = [np.float32, np.float64]


def _torch():
    return pytest.importorskip("torch")


def _tol(dtype):
    return dict(rtol=2e-4, atol=3e-5) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-11)


def _load_from_torch(ours, theirs, dtype):
    torch = _torch()
    theirs.to(torch.float32 if np.dtype(dtype) == np.float32 else torch.float64)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    ours.to(dtype)
    assert list(ours.state_dict()) == list(theirs.state_dict())


def _as_tuple(out):
    """(y, (h, c)) / (h, c) / h -> a flat tuple of outputs."""
    if not isinstance(out, tuple):
        return (out,)
    flat = []
    for o in out:
        flat.extend(_as_tuple(o))
    return tuple(flat)


def _compare(ours, theirs, x, states, rng, dtype, call=None):
    """Forward of both modules on x (and states: None, one array or a pair), then a backward of
    sum_k <out_k, g_k> with random g_k over every output; compares outputs, the gradients of x,
    of the states and of every parameter."""
    torch = _torch()
    tol = _tol(dtype)
    call = call or (lambda m, x, s: m(x, s))
    pack_t = (lambda s: None if s is None else
              tuple(s) if isinstance(s, tuple) else s)
    xt = torch.tensor(x, requires_grad=True)
    st = None if states is None else (
        tuple(torch.tensor(s, requires_grad=True) for s in states) if isinstance(states, tuple)
        else torch.tensor(states, requires_grad=True))
    xf = Tensor(x.copy(), requires_grad=True)
    sf = None if states is None else (
        tuple(Tensor(s.copy(), requires_grad=True) for s in states) if isinstance(states, tuple)
        else Tensor(states.copy(), requires_grad=True))
    out_t = _as_tuple(call(theirs, xt, pack_t(st)))
    out_f = _as_tuple(call(ours, xf, sf))
    assert len(out_t) == len(out_f)
    loss_t, loss_f = 0, None
    for k, (a, b) in enumerate(zip(out_f, out_t)):
        assert a.shape == tuple(b.shape), f"output {k}: shape {a.shape} vs {tuple(b.shape)}"
        assert a.dtype == dtype
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), **tol, err_msg=f"output {k}")
        g = rng.standard_normal(a.shape).astype(dtype)
        loss_t = loss_t + (b * torch.from_numpy(g)).sum()
        term = (a * g).sum()
        loss_f = term if loss_f is None else loss_f + term
    loss_t.backward()
    loss_f.backward()
    np.testing.assert_allclose(xf.grad, xt.grad.numpy(), **tol, err_msg="input gradient")
    if states is not None:
        pairs = zip(sf, st) if isinstance(states, tuple) else [(sf, st)]
        for k, (a, b) in enumerate(pairs):
            np.testing.assert_allclose(a.grad, b.grad.numpy(), **tol, err_msg=f"state {k} gradient")
    theirs_p = dict(theirs.named_parameters())
    names = [name for name, _ in ours.named_parameters()]
    assert names == list(theirs_p)
    for name, p in ours.named_parameters():
        assert p.grad is not None, name
        np.testing.assert_allclose(p.grad, theirs_p[name].grad.numpy(), **tol, err_msg=name)
    return out_f


# ---- LSTM against torch.nn.LSTM ------------------------------------------------------------------

LSTM_CASES = [  # (I, H, num_layers, options, T, N)
    (3, 5, 1, dict(), 7, 3),
    (4, 3, 2, dict(), 5, 1),
    (2, 4, 3, dict(batch_first=True), 4, 2),
    (5, 7, 2, dict(bias=False), 3, 4),
    (3, 4, 1, dict(batch_first=True, bias=False), 1, 3),  # T = 1
    (3, 5, 1, dict(bidirectional=True), 6, 2),
    (2, 3, 2, dict(bidirectional=True, batch_first=True), 5, 3),
    (4, 17, 2, dict(), 9, 2),  # H not a multiple of a vector width
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_hx", [False, True], ids=["hx=None", "hx"])
@pytest.mark.parametrize("case", LSTM_CASES, ids=lambda c: f"I{c[0]}H{c[1]}L{c[2]}-{c[3]}-T{c[4]}N{c[5]}")
def test_lstm_matches_pytorch(case, with_hx, dtype, rng):
    torch = _torch()
    i, h, layers, opts, t, n = case
    theirs = torch.nn.LSTM(i, h, layers, **opts)
    ours = nn.LSTM(i, h, layers, **opts)
    _load_from_torch(ours, theirs, dtype)
    shape = (n, t, i) if opts.get("batch_first") else (t, n, i)
    x = rng.standard_normal(shape).astype(dtype)
    rows = layers * (2 if opts.get("bidirectional") else 1)
    hx = tuple(rng.standard_normal((rows, n, h)).astype(dtype) for _ in range(2)) if with_hx else None
    y, h_n, c_n = _compare(ours, theirs, x, hx, rng, dtype)
    assert h_n.shape == c_n.shape == (rows, n, h)


@pytest.mark.parametrize("with_hx", [False, True], ids=["hx=None", "hx"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_unbatched_matches_pytorch(with_hx, bidirectional, rng):
    torch = _torch()
    theirs = torch.nn.LSTM(3, 4, 2, bidirectional=bidirectional)
    ours = nn.LSTM(3, 4, 2, bidirectional=bidirectional)
    _load_from_torch(ours, theirs, np.float64)
    rows = 4 if bidirectional else 2
    x = rng.standard_normal((6, 3))
    hx = tuple(rng.standard_normal((rows, 4)) for _ in range(2)) if with_hx else None
    y, h_n, c_n = _compare(ours, theirs, x, hx, rng, np.float64)
    assert y.shape == (6, 4 * rows // 2) and h_n.shape == (rows, 4)


def test_lstm_eval_ignores_dropout_and_train_applies_it(rng):
    torch = _torch()
    theirs = torch.nn.LSTM(3, 6, 3, dropout=0.5)
    ours = nn.LSTM(3, 6, 3, dropout=0.5)
    _load_from_torch(ours, theirs, np.float64)
    theirs.eval()
    ours.eval()
    x = rng.standard_normal((5, 2, 3))
    _compare(ours, theirs, x, None, rng, np.float64)
    ours.train()
    fastdl.manual_seed(3)
    y1 = ours(x)[0].numpy()
    fastdl.manual_seed(3)
    y2 = ours(x)[0].numpy()
    y3 = ours(x)[0].numpy()
    np.testing.assert_array_equal(y1, y2)  # seeded by fastdl.manual_seed
    assert not np.allclose(y1, y3)
    ours.eval()
    assert not np.allclose(y1, ours(x)[0].numpy())


def test_lstm_dropout_needs_layers_warning():
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        nn.LSTM(3, 4, 1, dropout=0.2)


def test_lstm_no_grad_matches_grad_path(rng):
    m = nn.LSTM(3, 5, 2).double()
    x = rng.standard_normal((6, 2, 3))
    y, (h, c) = m(x)
    with fastdl.no_grad():
        y2, (h2, c2) = m(x)
    assert not y2.requires_grad
    np.testing.assert_allclose(y2.numpy(), y.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c2.numpy(), c.numpy(), rtol=1e-12, atol=1e-14)


def test_lstm_init_and_names():
    fastdl.manual_seed(0)
    m = nn.LSTM(10, 8, num_layers=2, bidirectional=True)
    names = [n for n, _ in m.named_parameters()]
    want = []
    for layer in range(2):
        for sfx in ("", "_reverse"):
            want += [f"weight_ih_l{layer}{sfx}", f"weight_hh_l{layer}{sfx}",
                     f"bias_ih_l{layer}{sfx}", f"bias_hh_l{layer}{sfx}"]
    assert names == want
    assert m.weight_ih_l0.shape == (32, 10) and m.weight_ih_l1.shape == (32, 16)
    assert m.weight_hh_l1_reverse.shape == (32, 8) and m.bias_hh_l0.shape == (32,)
    bound = 1 / math.sqrt(8)
    for _, p in m.named_parameters():
        assert p.dtype == np.float32 and p.requires_grad
        assert np.abs(p.data).max() <= bound and np.abs(p.data).max() > 0.8 * bound
    assert [n for n, _ in nn.LSTM(3, 4, bias=False).named_parameters()] == ["weight_ih_l0",
                                                                            "weight_hh_l0"]
    assert "num_layers=2" in repr(m) and "bidirectional=True" in repr(m)
    m.flatten_parameters()  # PyTorch code calls it; a no-op here


def test_lstm_trains_a_step(rng):
    """A char-LM-shaped step: Embedding -> LSTM -> Linear, loss falls under Adam."""
    fastdl.manual_seed(1)
    emb, lstm, head = nn.Embedding(11, 6), nn.LSTM(6, 12, 2), nn.Linear(12, 11)
    params = [*emb.parameters(), *lstm.parameters(), *head.parameters()]
    opt = fastdl.optim.Adam(params, lr=0.05)
    idx = rng.integers(0, 11, (9, 4))
    losses = []
    for _ in range(15):
        opt.zero_grad()
        y, _ = lstm(emb(idx[:-1]))
        loss = F.cross_entropy(head(y).reshape(-1, 11), idx[1:].reshape(-1))
        loss.backward()
        fastdl.optim.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


# ---- LSTMCell / RNNCell against torch -------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_hx", [False, True], ids=["hx=None", "hx"])
@pytest.mark.parametrize("n, i, h", [(1, 3, 4), (5, 7, 17)])
def test_lstm_cell_matches_pytorch(n, i, h, with_hx, bias, dtype, rng):
    torch = _torch()
    theirs, ours = torch.nn.LSTMCell(i, h, bias=bias), nn.LSTMCell(i, h, bias=bias)
    _load_from_torch(ours, theirs, dtype)
    x = rng.standard_normal((n, i)).astype(dtype)
    hx = tuple(rng.standard_normal((n, h)).astype(dtype) for _ in range(2)) if with_hx else None
    h1, c1 = _compare(ours, theirs, x, hx, rng, dtype)
    assert h1.shape == c1.shape == (n, h)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_hx", [False, True], ids=["hx=None", "hx"])
def test_rnn_cell_matches_pytorch(with_hx, bias, nonlinearity, dtype, rng):
    torch = _torch()
    theirs = torch.nn.RNNCell(5, 7, bias=bias, nonlinearity=nonlinearity)
    ours = nn.RNNCell(5, 7, bias=bias, nonlinearity=nonlinearity)
    _load_from_torch(ours, theirs, dtype)
    x = rng.standard_normal((3, 5)).astype(dtype)
    hx = rng.standard_normal((3, 7)).astype(dtype) if with_hx else None
    (h1,) = _compare(ours, theirs, x, hx, rng, dtype)
    assert h1.shape == (3, 7)


@pytest.mark.parametrize("cls", ["RNNCell", "LSTMCell"])
@pytest.mark.parametrize("with_hx", [False, True], ids=["hx=None", "hx"])
def test_cells_unbatched_match_pytorch(cls, with_hx, rng):
    torch = _torch()
    theirs, ours = getattr(torch.nn, cls)(4, 3), getattr(nn, cls)(4, 3)
    _load_from_torch(ours, theirs, np.float64)
    x = rng.standard_normal(4)
    hx = None
    if with_hx:
        hx = (rng.standard_normal(3) if cls == "RNNCell"
              else tuple(rng.standard_normal(3) for _ in range(2)))
    outs = _compare(ours, theirs, x, hx, rng, np.float64)
    assert all(o.shape == (3,) for o in outs)


def test_cell_init_names_and_repr():
    fastdl.manual_seed(0)
    c = nn.LSTMCell(6, 5)
    assert [n for n, _ in c.named_parameters()] == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    assert c.weight_ih.shape == (20, 6) and c.weight_hh.shape == (20, 5) and c.bias_ih.shape == (20,)
    r = nn.RNNCell(6, 5, bias=False, nonlinearity="relu")
    assert [n for n, _ in r.named_parameters()] == ["weight_ih", "weight_hh"]
    assert r.weight_ih.shape == (5, 6)
    for p in (*c.parameters(), *r.parameters()):
        assert np.abs(p.data).max() <= 1 / math.sqrt(5)
    assert repr(r) == "RNNCell(6, 5, bias=False, nonlinearity='relu')"


# ---- Embedding against torch ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding_idx", [None, 2, -1])
def test_embedding_matches_pytorch(padding_idx, dtype, rng):
    torch = _torch()
    theirs = torch.nn.Embedding(7, 5, padding_idx=padding_idx)
    ours = nn.Embedding(7, 5, padding_idx=padding_idx)
    assert ours.padding_idx == theirs.padding_idx
    _load_from_torch(ours, theirs, dtype)
    idx = rng.integers(0, 7, (4, 3))
    idx[0, :] = 6  # repeats accumulate
    idx[1, 0] = 2
    yt = theirs(torch.from_numpy(idx))
    yf = ours(idx)
    assert yf.shape == (4, 3, 5) and yf.dtype == dtype
    np.testing.assert_array_equal(yf.numpy(), yt.detach().numpy())
    g = rng.standard_normal(yf.shape).astype(dtype)
    yt.backward(torch.from_numpy(g))
    yf.backward(g)
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), **_tol(dtype))
    if padding_idx is not None:
        assert not ours.weight.grad[padding_idx].any()


def test_embedding_init_shapes_and_index_forms(rng):
    fastdl.manual_seed(0)
    e = nn.Embedding(300, 40, padding_idx=-3)
    assert e.padding_idx == 297 and not e.weight.data[297].any()
    w = np.delete(e.weight.data, 297, axis=0)
    assert abs(w.mean()) < 0.02 and abs(w.std() - 1) < 0.02  # N(0, 1)
    assert e(np.int64(5)).shape == (40,)  # 0-d index
    assert e(np.array([], np.int64)).shape == (0, 40)
    np.testing.assert_array_equal(e(Tensor(np.array([[1, 2]]))).numpy(), e.weight.data[[[1, 2]]])
    np.testing.assert_array_equal(e(np.array([3, 1], np.int32)).numpy(), e.weight.data[[3, 1]])
    np.testing.assert_array_equal(F.embedding([0, 4], e.weight).numpy(), e.weight.data[[0, 4]])
    assert repr(e) == "Embedding(300, 40, padding_idx=297)"
    p = nn.Embedding.from_pretrained(np.arange(6.0).reshape(3, 2))
    assert p.weight.dtype == np.float64 and not p.weight.requires_grad
    np.testing.assert_array_equal(p(np.array([2])).numpy(), [[4.0, 5.0]])


# ---- the Functions against finite differences (float64) ----------------------------------------------

def _fd(make, arrays, wrt, rng, max_elems=12):
    """gradcheck of y = make(*Tensors) over the given arrays, the analytic side from backward()."""
    def forward(*xs):
        with fastdl.no_grad():
            return make(*[Tensor(x) for x in xs]).numpy()

    def backward(g, *xs):
        ts = [Tensor(x.copy(), requires_grad=i in wrt) for i, x in enumerate(xs)]
        make(*ts).backward(g)
        return tuple(ts[i].grad for i in wrt)

    gradcheck(forward, backward, arrays, wrt, rng, max_elems=max_elems)


def _packed(outs):
    """Several outputs as one array (the finite differences need one y)."""
    return Concat.apply(*[o.reshape(-1) for o in outs], axis=0)


@pytest.mark.parametrize("bias", [True, False])
def test_rnn_cell_function_gradcheck(bias, rng):
    n, i, h = 3, 4, 5
    arrays = [rng.standard_normal(s) for s in [(n, i), (n, h), (h, i), (h, h)]]
    if bias:
        arrays += [rng.standard_normal(h), rng.standard_normal(h)]
    _fd(lambda *a: F.rnn_cell(*a), arrays, list(range(len(arrays))), rng)


@pytest.mark.parametrize("bias", [True, False])
def test_lstm_cell_function_gradcheck(bias, rng):
    n, i, h = 2, 3, 5
    arrays = [rng.standard_normal(s) for s in [(n, i), (n, h), (n, h), (4 * h, i), (4 * h, h)]]
    if bias:
        arrays += [rng.standard_normal(4 * h), rng.standard_normal(4 * h)]
    _fd(lambda *a: _packed(F.lstm_cell(*a)), arrays, list(range(len(arrays))), rng)


@pytest.mark.parametrize("t", [0, 1, 6])
@pytest.mark.parametrize("bias", [True, False])
def test_lstm_function_gradcheck(t, bias, rng):
    """y, h_n and c_n all carry gradient (h_n's folds into dy[T-1]); T = 0 returns the states."""
    n, i, h = 2, 3, 4
    arrays = [rng.standard_normal(s) for s in [(t, n, i), (n, h), (n, h), (4 * h, i), (4 * h, h)]]
    if bias:
        arrays += [0.5 * rng.standard_normal(4 * h), 0.5 * rng.standard_normal(4 * h)]
    wrt = [k for k in range(len(arrays)) if arrays[k].size]
    _fd(lambda *a: _packed(F.lstm(*a)), arrays, wrt, rng)
    y, h_n, c_n = F.lstm(*[Tensor(a) for a in arrays])
    assert y.shape == (t, n, h) and h_n.shape == c_n.shape == (n, h)
    if t == 0:
        np.testing.assert_array_equal(h_n.numpy(), arrays[1])
        np.testing.assert_array_equal(c_n.numpy(), arrays[2])
    else:
        np.testing.assert_array_equal(h_n.numpy(), y.numpy()[-1])


def test_lstm_module_gradcheck_two_layers_bidirectional(rng):
    m = nn.LSTM(2, 3, 2, bidirectional=True, batch_first=True).double()
    x0 = rng.standard_normal((2, 4, 2))
    w0 = m.weight_hh_l0_reverse.data.copy()

    def make(x, w):
        m.weight_hh_l0_reverse = nn.Parameter(w.data) if not w.requires_grad else w
        y, (h, c) = m(x)
        return _packed([y, h, c])

    try:
        _fd(make, [x0, w0], [0, 1], rng, max_elems=10)
    finally:
        m.weight_hh_l0_reverse = nn.Parameter(w0)


def test_embedding_and_concat_function_gradcheck(rng):
    idx = np.array([[0, 3, 3], [1, 0, 4]])
    _fd(lambda w: F.embedding(idx, w), [rng.standard_normal((5, 3))], [0], rng)  # (padding_idx
    # is no derivative: its row gets zero by rule, test_embedding_matches_pytorch checks that)
    _fd(lambda a, b: Concat.apply(a, b, axis=1),
        [rng.standard_normal((2, 3)), rng.standard_normal((2, 2))], [0, 1], rng)


# ---- bad input -----------------------------------------------------------------------------------------

def test_lstm_bad_input():
    m = nn.LSTM(3, 4, 2)
    x = np.zeros((5, 2, 3), np.float32)
    with pytest.raises(ValueError, match="input_size=3.*got shape \\(5, 2, 7\\)"):
        m(np.zeros((5, 2, 7), np.float32))
    with pytest.raises(ValueError, match="input must be 2-D .* or 3-D"):
        m(np.zeros((5, 2, 3, 1), np.float32))
    with pytest.raises(ValueError, match="h_0 must have shape \\(2, 2, 4\\), got \\(1, 2, 4\\)"):
        m(x, (np.zeros((1, 2, 4)), np.zeros((2, 2, 4))))
    with pytest.raises(ValueError, match="c_0 must have shape \\(2, 2, 4\\), got \\(2, 3, 4\\)"):
        m(x, (np.zeros((2, 2, 4)), np.zeros((2, 3, 4))))
    with pytest.raises(ValueError, match="h_0 must have shape \\(2, 4\\)"):  # unbatched
        m(np.zeros((5, 3)), (np.zeros((2, 1, 4)), np.zeros((2, 1, 4))))
    with pytest.raises(ValueError, match="hx must be a pair"):
        m(x, np.zeros((2, 2, 4)))
    with pytest.raises(ValueError, match="sequence length"):
        m(np.zeros((0, 2, 3)))
    with pytest.raises(ValueError, match="dropout"):
        nn.LSTM(3, 4, 2, dropout=1.5)
    with pytest.raises(ValueError, match="proj_size"):
        nn.LSTM(3, 4, proj_size=2)
    with pytest.raises(ValueError, match="hidden_size must be >= 1"):
        nn.LSTM(3, 0)
    with pytest.raises(TypeError, match="num_layers must be an int"):
        nn.LSTM(3, 4, 1.5)


def test_cells_bad_input():
    c = nn.LSTMCell(3, 4)
    with pytest.raises(ValueError, match="input_size=3.*got shape \\(2, 5\\)"):
        c(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="hx\\[0\\] must have shape \\(2, 4\\), got \\(3, 4\\)"):
        c(np.zeros((2, 3)), (np.zeros((3, 4)), np.zeros((2, 4))))
    with pytest.raises(ValueError, match="hx\\[1\\] must have shape \\(2, 4\\), got \\(2, 5\\)"):
        c(np.zeros((2, 3)), (np.zeros((2, 4)), np.zeros((2, 5))))
    with pytest.raises(ValueError, match="hx must be a pair"):
        c(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="input must be 1-D"):
        c(np.zeros((2, 2, 3)))
    r = nn.RNNCell(3, 4)
    with pytest.raises(ValueError, match="hx must have shape \\(2, 4\\), got \\(2, 3\\)"):
        r(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu', got 'gelu'"):
        nn.RNNCell(3, 4, nonlinearity="gelu")
    with pytest.raises(ValueError, match="b_ih and b_hh"):
        F.rnn_cell(np.zeros((1, 3)), np.zeros((1, 4)), r.weight_ih, r.weight_hh, r.bias_ih)


def test_embedding_bad_input():
    e = nn.Embedding(5, 3)
    with pytest.raises(ValueError, match="indices"):
        e(np.array([1, 5]))
    with pytest.raises(ValueError, match="indices"):
        e(np.array([-1]))
    with pytest.raises(TypeError, match="integer"):
        e(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="padding_idx must be within num_embeddings \\(5\\), got 5"):
        nn.Embedding(5, 3, padding_idx=5)
    with pytest.raises(ValueError, match="max_norm"):
        nn.Embedding(5, 3, max_norm=1.0)
    with pytest.raises(ValueError, match="weight must be 2-D"):
        F.embedding(np.array([0]), np.zeros(3))
