"""The transformer's Python layer: the Attention / HeadsAttention autograd Functions against float64
finite differences; MultiheadAttention, TransformerEncoderLayer and TransformerEncoder loaded from
PyTorch state dicts compute the same outputs, input gradients and parameter gradients (batch_first
both, kdim/vdim, bias False, need_weights both, causal, general masks, unbatched; norm_first both,
relu and gelu); the flash path never builds an L x S matrix; PositionalEncoding's values; bad
arguments raise ValueError/TypeError naming them."""

import math
import tracemalloc

import numpy as np
import pytest

import fastdl
from fastdl import Tensor, nn, ops
from fastdl.functions import Attention, HeadsAttention

from helpers import gradcheck


def _torch():
    return pytest.importorskip("torch")


def _tol(dtype):
    return dict(rtol=2e-4, atol=2e-5) if np.dtype(dtype) == np.float32 else dict(rtol=1e-9, atol=1e-10)


def _load_from_torch(ours, theirs, dtype):
    torch = _torch()
    theirs.to(torch.float32 if np.dtype(dtype) == np.float32 else torch.float64)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    ours.to(dtype)


def _grad_of(t):
    return t.grad.numpy() if hasattr(t.grad, "numpy") else t.grad


def _compare_params(ours, theirs, tol):
    theirs_p = dict(theirs.named_parameters())
    ours_p = dict(ours.named_parameters())
    assert sorted(ours_p) == sorted(theirs_p)
    for name, p in ours_p.items():
        np.testing.assert_allclose(p.grad, _grad_of(theirs_p[name]), **tol, err_msg=name)


# ---- the Functions against finite differences (float64) ---------------------------------------------

@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1, 3, 2), (2, 3, 5, 7, 4, 3), (1, 2, 7, 3, 5, 5)])
def test_attention_function_gradcheck(shape, causal, rng):
    b, h, sq, sk, d, dv = shape
    q, k = rng.standard_normal((b, h, sq, d)), rng.standard_normal((b, h, sk, d))
    v = rng.standard_normal((b, h, sk, dv))

    def fwd(q, k, v):
        return Attention.apply(Tensor(q), Tensor(k), Tensor(v), causal=causal, scale=0.7).data

    def bwd(g, q, k, v):
        ts = [Tensor(a, requires_grad=True) for a in (q, k, v)]
        Attention.apply(*ts, causal=causal, scale=0.7).backward(g)
        return tuple(t.grad for t in ts)

    gradcheck(fwd, bwd, [q, k, v], [0, 1, 2], rng)


def test_attention_function_non_contiguous_heads(rng):
    # (B, S, H, D) transposed to (B, H, S, D): copied once, same result as contiguous input.
    q, k, v = (rng.standard_normal((2, 5, 3, 4)).transpose(0, 2, 1, 3) for _ in range(3))
    ts = [Tensor(a, requires_grad=True) for a in (q, k, v)]
    out = Attention.apply(*ts)
    ref, _ = ops.attention(*(np.ascontiguousarray(a) for a in (q, k, v)))
    np.testing.assert_allclose(out.data, ref, rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(out.shape)
    out.backward(g)
    want = ops.attention_backward(g, *(np.ascontiguousarray(a) for a in (q, k, v)), ref, _)
    for t, w in zip(ts, want):
        np.testing.assert_allclose(t.grad, w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_heads_attention_packed_gradcheck(batch_first, causal, rng):
    n, s, h, dh = 2, 5, 2, 3
    shape = (n, s, 3 * h * dh) if batch_first else (s, n, 3 * h * dh)
    qkv = rng.standard_normal(shape)

    def fwd(x):
        return HeadsAttention.apply(Tensor(x), num_heads=h, batch_first=batch_first, causal=causal).data

    def bwd(g, x):
        t = Tensor(x, requires_grad=True)
        HeadsAttention.apply(t, num_heads=h, batch_first=batch_first, causal=causal).backward(g)
        return t.grad

    gradcheck(fwd, bwd, [qkv], [0], rng, max_elems=40)


@pytest.mark.parametrize("batch_first", [False, True])
def test_heads_attention_separate_matches_packed_and_gradcheck(batch_first, rng):
    n, L, S, h, dh, dvh = 2, 4, 6, 2, 3, 2

    def tok(length, e):
        return rng.standard_normal((n, length, e) if batch_first else (length, n, e))

    q, k, v = tok(L, h * dh), tok(S, h * dh), tok(S, h * dvh)

    def fwd(q, k, v):
        return HeadsAttention.apply(Tensor(q), Tensor(k), Tensor(v), num_heads=h,
                                    batch_first=batch_first).data

    def bwd(g, q, k, v):
        ts = [Tensor(a, requires_grad=True) for a in (q, k, v)]
        HeadsAttention.apply(*ts, num_heads=h, batch_first=batch_first).backward(g)
        return tuple(t.grad for t in ts)

    out = fwd(q, k, v)
    assert out.shape == ((n, L, h * dvh) if batch_first else (L, n, h * dvh))
    gradcheck(fwd, bwd, [q, k, v], [0, 1, 2], rng)
    # self-attention: the packed form gives the same as three separate copies of one tensor
    x = tok(S, 3 * h * dh)
    e = h * dh
    packed = HeadsAttention.apply(Tensor(x), num_heads=h, batch_first=batch_first).data
    split = fwd(x[..., :e], x[..., e:2 * e], x[..., 2 * e:])
    np.testing.assert_allclose(packed, split, rtol=1e-12, atol=1e-12)


# ---- MultiheadAttention against PyTorch ------------------------------------------------------------------

MHA_CASES = [
    # (ctor kwargs, L, S, self-attention?, forward kwargs)
    (dict(), 5, 5, True, dict()),
    (dict(batch_first=True), 5, 5, True, dict()),
    (dict(), 4, 7, False, dict()),
    (dict(batch_first=True), 6, 3, False, dict()),
    (dict(bias=False), 5, 5, True, dict()),
    (dict(kdim=5, vdim=7), 4, 6, False, dict()),
    (dict(kdim=5, vdim=7, batch_first=True, bias=False), 3, 6, False, dict()),
    (dict(), 5, 5, True, dict(need_weights=True)),
    (dict(batch_first=True), 4, 7, False, dict(need_weights=True)),
    (dict(), 5, 5, True, dict(need_weights=True, average_attn_weights=False)),
    (dict(), 6, 6, True, dict(is_causal=True)),
    (dict(batch_first=True), 6, 6, True, dict(is_causal=True, need_weights=True)),
    (dict(), 4, 7, False, dict(is_causal=True)),
    (dict(), 5, 6, False, dict(attn_mask="float")),
    (dict(batch_first=True), 5, 5, True, dict(attn_mask="bool3d")),
    (dict(), 5, 6, False, dict(key_padding_mask="bool")),
    (dict(batch_first=True), 5, 5, True, dict(key_padding_mask="float", need_weights=True)),
]


def _make_masks(kw, n, h, L, S, rng, torch, dtype):
    """Turn the case's mask names into (fastdl kwargs, torch kwargs)."""
    ours, theirs = dict(kw), dict(kw)
    if kw.get("is_causal"):  # PyTorch needs the mask beside its is_causal hint
        theirs["attn_mask"] = torch.from_numpy(np.triu(np.ones((L, S), bool), 1))
    m = kw.get("attn_mask")
    if m == "float":
        a = rng.standard_normal((L, S)).astype(dtype)
        ours["attn_mask"], theirs["attn_mask"] = a, torch.from_numpy(a)
    elif m == "bool3d":
        a = rng.random((n * h, L, S)) < 0.3
        a[..., 0] = False  # every row keeps a key: PyTorch gives NaN for a fully masked row
        ours["attn_mask"], theirs["attn_mask"] = a, torch.from_numpy(a)
    m = kw.get("key_padding_mask")
    if m == "bool":
        a = np.zeros((n, S), bool)
        a[0, -2:] = True
        ours["key_padding_mask"], theirs["key_padding_mask"] = a, torch.from_numpy(a)
    elif m == "float":
        a = rng.standard_normal((n, S)).astype(dtype)
        ours["key_padding_mask"], theirs["key_padding_mask"] = a, torch.from_numpy(a)
    return ours, theirs


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", MHA_CASES, ids=lambda c: repr(c))
def test_multihead_attention_matches_pytorch(case, dtype, rng):
    torch = _torch()
    ctor, L, S, self_attn, fkw = case
    e, h, n = 8, 2, 3
    fastdl.manual_seed(0)
    theirs = torch.nn.MultiheadAttention(e, h, **ctor)
    ours = nn.MultiheadAttention(e, h, **ctor)
    _load_from_torch(ours, theirs, dtype)
    tol = _tol(dtype)
    bf = ctor.get("batch_first", False)
    kdim, vdim = ctor.get("kdim", e), ctor.get("vdim", e)

    def seq(length, d):
        return rng.standard_normal((n, length, d) if bf else (length, n, d)).astype(dtype)

    if self_attn:
        x = seq(L, e)
        xt = torch.tensor(x, requires_grad=True)
        xf = Tensor(x.copy(), requires_grad=True)
        args_t, args_f = (xt, xt, xt), (xf, xf, xf)
        leaves = [(xf, xt)]
    else:
        arrays = (seq(L, e), seq(S, kdim), seq(S, vdim))
        ts = [torch.tensor(a, requires_grad=True) for a in arrays]
        fs = [Tensor(a.copy(), requires_grad=True) for a in arrays]
        args_t, args_f, leaves = tuple(ts), tuple(fs), list(zip(fs, ts))
    fkw_f, fkw_t = _make_masks(fkw, n, h, L, S, rng, torch, dtype)
    fkw_t.setdefault("need_weights", False)
    yt, wt = theirs(*args_t, **fkw_t)
    yf, wf = ours(*args_f, **fkw_f)
    assert yf.dtype == dtype and yf.shape == tuple(yt.shape)
    np.testing.assert_allclose(yf.numpy(), yt.detach().numpy(), **tol, err_msg="output")
    if fkw.get("need_weights"):
        np.testing.assert_allclose(wf.numpy(), wt.detach().numpy(), **tol, err_msg="weights")
    else:
        assert wf is None and wt is None
    dy = rng.standard_normal(tuple(yt.shape)).astype(dtype)
    yt.backward(torch.from_numpy(dy))
    yf.backward(dy)
    for i, (f, t) in enumerate(leaves):
        np.testing.assert_allclose(f.grad, _grad_of(t), **tol, err_msg=f"input {i} gradient")
    _compare_params(ours, theirs, tol)


def _np_mha(m, q, k, v, causal=False):
    """A float64 NumPy reference of MultiheadAttention (sequence-first, no masks but causal)."""
    e, h = m.embed_dim, m.num_heads
    w = m.in_proj_weight.data.astype(np.float64)
    b = m.in_proj_bias.data.astype(np.float64)
    qp, kp, vp = (x @ w[i * e:(i + 1) * e].T + b[i * e:(i + 1) * e] for i, x in enumerate((q, k, v)))
    L, n, _ = q.shape
    S = k.shape[0]
    split = lambda t, s: t.reshape(s, n, h, e // h).transpose(1, 2, 0, 3)  # noqa: E731
    sc = split(qp, L) @ split(kp, S).transpose(0, 1, 3, 2) / math.sqrt(e // h)
    if causal:
        sc = np.where(np.arange(S)[None] > np.arange(L)[:, None], -np.inf, sc)
    p = np.exp(sc - sc.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    o = (p @ split(vp, S)).transpose(2, 0, 1, 3).reshape(L, n, e)
    return o @ m.out_proj.weight.data.T + m.out_proj.bias.data, p.mean(1)


@pytest.mark.parametrize("causal", [False, True])
def test_multihead_attention_numpy_reference_and_gradcheck(causal, rng):
    # No PyTorch needed: both paths against a NumPy float64 formula, and finite differences.
    fastdl.manual_seed(1)
    m = nn.MultiheadAttention(6, 2).double()
    m.in_proj_bias.data[...] = rng.standard_normal(18)
    m.out_proj.bias.data[...] = rng.standard_normal(6)
    x = rng.standard_normal((5, 2, 6))
    want, want_w = _np_mha(m, x, x, x, causal)
    flash, none = m(x, x, x, is_causal=causal)
    expl, w = m(x, x, x, is_causal=causal, need_weights=True)
    assert none is None
    for got in (flash, expl):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(w.numpy(), want_w, rtol=1e-12, atol=1e-12)
    for need in (False, True):
        def fwd(xa, wa):
            m.in_proj_weight.data[...] = wa
            return m(xa, xa, xa, is_causal=causal, need_weights=need)[0].data

        def bwd(g, xa, wa):
            m.in_proj_weight.data[...] = wa
            m.zero_grad()
            t = Tensor(xa.copy(), requires_grad=True)
            m(t, t, t, is_causal=causal, need_weights=need)[0].backward(g)
            return t.grad, m.in_proj_weight.grad

        gradcheck(fwd, bwd, [x, m.in_proj_weight.data.copy()], [0, 1], rng)


def test_multihead_attention_unbatched_matches_pytorch(rng):
    torch = _torch()
    theirs = torch.nn.MultiheadAttention(6, 3, kdim=4, vdim=5).double()
    ours = nn.MultiheadAttention(6, 3, kdim=4, vdim=5)
    _load_from_torch(ours, theirs, np.float64)
    q, k, v = rng.standard_normal((5, 6)), rng.standard_normal((7, 4)), rng.standard_normal((7, 5))
    for need in (False, True):
        yt, wt = theirs(*(torch.from_numpy(a) for a in (q, k, v)), need_weights=need)
        yf, wf = ours(q, k, v, need_weights=need)
        assert yf.shape == (5, 6)
        np.testing.assert_allclose(yf.numpy(), yt.detach().numpy(), **_tol(np.float64))
        if need:
            assert wf.shape == (5, 7)
            np.testing.assert_allclose(wf.numpy(), wt.detach().numpy(), **_tol(np.float64))


def test_multihead_attention_parameter_names_shapes_and_init():
    torch = _torch()
    for kw in (dict(), dict(kdim=5, vdim=3), dict(bias=False)):
        ours, theirs = nn.MultiheadAttention(12, 4, **kw), torch.nn.MultiheadAttention(12, 4, **kw)
        assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == \
               [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()]
    m = nn.MultiheadAttention(64, 4)
    bound = math.sqrt(6.0 / (64 + 3 * 64))  # xavier_uniform_ over the whole (3E, E) weight
    w = m.in_proj_weight.data
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert not m.in_proj_bias.data.any() and not m.out_proj.bias.data.any()
    assert m.out_proj.weight.shape == (64, 64) and m.head_dim == 16


def _no_scores(monkeypatch):
    """Make any softmax (the explicit path's) fail: the flash path never computes one."""
    def boom(*a, **k):
        raise AssertionError("the explicit L x S path ran")
    monkeypatch.setattr(ops, "softmax", boom)


def test_flash_path_is_taken_and_builds_nothing_quadratic(monkeypatch, rng):
    m = nn.MultiheadAttention(16, 2)
    x = Tensor(rng.standard_normal((7, 2, 16)).astype(np.float32), requires_grad=True)
    causal = np.triu(np.ones((7, 7), bool), 1)
    float_causal = np.where(causal, -np.inf, 0.0)
    with monkeypatch.context() as mp:
        _no_scores(mp)
        y0, _ = m(x, x, x)
        y1, _ = m(x, x, x, is_causal=True)
        y2, _ = m(x, x, x, attn_mask=causal)          # PyTorch's causal masks are recognised
        y3, _ = m(x, x, x, attn_mask=float_causal)
        (y0.sum() + y1.sum()).backward()
    np.testing.assert_allclose(y2.numpy(), y1.numpy(), rtol=0, atol=0)
    np.testing.assert_allclose(y3.numpy(), y1.numpy(), rtol=0, atol=0)
    yw, w = m(x, x, x, is_causal=True, need_weights=True)   # the explicit path agrees
    np.testing.assert_allclose(yw.numpy(), y1.numpy(), rtol=1e-5, atol=1e-6)
    assert np.all(np.triu(w.numpy()[0], 1) == 0)
    np.testing.assert_allclose(w.numpy().sum(-1), 1.0, rtol=1e-5)


def test_flash_path_memory_stays_linear(rng):
    # L = S = 2048, one head: an L x S float32 matrix alone is 16 MiB; the flash path's arrays
    # are 2048 x 16 (128 KiB each).
    m = nn.MultiheadAttention(16, 1, batch_first=True)
    x = Tensor(rng.standard_normal((1, 2048, 16)).astype(np.float32), requires_grad=True)
    tracemalloc.start()
    try:
        y, _ = m(x, x, x, is_causal=True)
        y.sum().backward()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 6 * 2**20, f"peak {peak / 2**20:.1f} MiB traced: something L x S was built"


def test_attention_dropout_in_training_only(rng):
    m = nn.MultiheadAttention(8, 2, dropout=0.5)
    x = rng.standard_normal((5, 2, 8)).astype(np.float32)
    m.eval()
    ye, _ = m(x, x, x)
    m.train()
    fastdl.manual_seed(3)
    y1, _ = m(x, x, x)
    fastdl.manual_seed(3)
    y2, _ = m(x, x, x)
    np.testing.assert_array_equal(y1.numpy(), y2.numpy())  # seeded
    assert not np.allclose(y1.numpy(), ye.numpy())
    m.dropout = 0.0
    np.testing.assert_allclose(m(x, x, x)[0].numpy(), ye.numpy(), rtol=1e-6, atol=1e-6)


def test_fully_masked_row_gives_zero_attention(rng):
    m = nn.MultiheadAttention(8, 2, bias=False)
    x = rng.standard_normal((4, 1, 8))
    kpm = np.ones((1, 4), bool)  # every key masked
    y, w = m(x, x, x, key_padding_mask=kpm, need_weights=True)
    assert np.all(np.isfinite(y.numpy())) and not y.numpy().any()
    assert not w.numpy().any()


def test_multihead_attention_bad_input(rng):
    with pytest.raises(ValueError, match="embed_dim must be divisible by num_heads"):
        nn.MultiheadAttention(10, 3)
    with pytest.raises(ValueError, match="dropout"):
        nn.MultiheadAttention(8, 2, dropout=1.5)
    with pytest.raises(ValueError, match="add_bias_kv"):
        nn.MultiheadAttention(8, 2, add_bias_kv=True)
    m = nn.MultiheadAttention(8, 2)
    x = rng.standard_normal((5, 2, 8))
    with pytest.raises(ValueError, match=r"query must be 3-D .* got shape \(5, 2, 8, 1\)"):
        m(x[..., None], x[..., None], x[..., None])
    with pytest.raises(ValueError, match=r"query must have 8 features"):
        m(x[..., :6], x, x)
    with pytest.raises(ValueError, match=r"key must have 8 features"):
        m(x, x[..., :6], x)
    with pytest.raises(ValueError, match="key has batch size 1"):
        m(x, x[:, :1], x[:, :1])
    with pytest.raises(ValueError, match="key and value must agree"):
        m(x, x, x[:4])
    with pytest.raises(ValueError, match="value must be 3-D"):
        m(x, x, x[:, 0])
    with pytest.raises(ValueError, match="zero keys"):
        m(x, x[:0], x[:0])
    with pytest.raises(ValueError, match=r"attn_mask must have shape \(5, 5\) or \(4, 5, 5\)"):
        m(x, x, x, attn_mask=np.zeros((5, 4), bool))
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \(2, 5\)"):
        m(x, x, x, key_padding_mask=np.zeros((5, 2), bool))
    with pytest.raises(TypeError, match="attn_mask must be bool or float"):
        m(x, x, x, attn_mask=np.zeros((5, 5), np.int64))
    with pytest.raises(TypeError, match="need_weights must be a bool"):
        m(x, x, x, np.zeros((2, 5), bool))


# ---- PositionalEncoding ---------------------------------------------------------------------------------

def test_positional_encoding_values_and_layouts(rng):
    d, s, n = 6, 9, 2
    pe = nn.PositionalEncoding(d, max_len=20)
    x = rng.standard_normal((s, n, d)).astype(np.float32)
    want = np.array([[math.sin(p / 10000 ** (i / d)) if i % 2 == 0 else
                      math.cos(p / 10000 ** ((i - 1) / d)) for i in range(d)] for p in range(s)])
    y = pe(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y.numpy() - x, np.broadcast_to(want[:, None], x.shape), atol=1e-6)
    y64 = pe(x.astype(np.float64))  # the table is float64, cast to the input's dtype
    assert y64.dtype == np.float64
    np.testing.assert_allclose(y64.numpy() - x.astype(np.float64), np.broadcast_to(want[:, None], x.shape),
                               rtol=1e-13, atol=1e-13)
    bf = nn.PositionalEncoding(d, max_len=20, batch_first=True)
    xb = np.ascontiguousarray(x.transpose(1, 0, 2))
    np.testing.assert_allclose(bf(xb).numpy(), y.numpy().transpose(1, 0, 2), rtol=0, atol=0)
    assert "pe" not in pe.state_dict() and len(list(pe.parameters())) == 0
    # gradient passes straight through
    t = Tensor(x, requires_grad=True)
    pe(t).sum().backward()
    np.testing.assert_array_equal(t.grad, np.ones_like(x))


def test_positional_encoding_bad_input(rng):
    with pytest.raises(ValueError, match="d_model must be even"):
        nn.PositionalEncoding(7)
    pe = nn.PositionalEncoding(4, max_len=8)
    with pytest.raises(ValueError, match="exceeds max_len=8"):
        pe(np.zeros((9, 1, 4), np.float32))
    with pytest.raises(ValueError, match=r"input must be \(S, N, d_model\) with d_model=4"):
        pe(np.zeros((3, 1, 5), np.float32))
    with pytest.raises(ValueError, match="dropout"):
        nn.PositionalEncoding(4, dropout=-0.1)


# ---- TransformerEncoderLayer / TransformerEncoder against PyTorch ------------------------------------

@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_matches_pytorch(activation, norm_first, batch_first, rng):
    torch = _torch()
    d, h, ff, n, s = 8, 2, 12, 3, 5
    kw = dict(dim_feedforward=ff, dropout=0.0, activation=activation, batch_first=batch_first,
              norm_first=norm_first)
    theirs = torch.nn.TransformerEncoderLayer(d, h, **kw)
    ours = nn.TransformerEncoderLayer(d, h, **kw)
    _load_from_torch(ours, theirs, np.float64)
    x = rng.standard_normal((n, s, d) if batch_first else (s, n, d))
    xt = torch.tensor(x, requires_grad=True)
    xf = Tensor(x.copy(), requires_grad=True)
    yt, yf = theirs(xt), ours(xf)
    np.testing.assert_allclose(yf.numpy(), yt.detach().numpy(), **_tol(np.float64))
    dy = rng.standard_normal(x.shape)
    yt.backward(torch.from_numpy(dy))
    yf.backward(dy)
    np.testing.assert_allclose(xf.grad, xt.grad.numpy(), **_tol(np.float64))
    _compare_params(ours, theirs, _tol(np.float64))


@pytest.mark.parametrize("masks", ["causal", "padding"])
def test_encoder_float32_with_masks_matches_pytorch(masks, rng):
    torch = _torch()
    d, h, n, s = 16, 4, 2, 7
    layer = torch.nn.TransformerEncoderLayer(d, h, dim_feedforward=24, dropout=0.0, batch_first=True)
    theirs = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    ours = nn.TransformerEncoder(nn.TransformerEncoderLayer(d, h, 24, 0.0, batch_first=True), 2)
    _load_from_torch(ours, theirs, np.float32)
    x = rng.standard_normal((n, s, d)).astype(np.float32)
    if masks == "causal":
        mask = np.triu(np.ones((s, s), bool), 1)
        kw_t = dict(mask=torch.from_numpy(mask), is_causal=True)
        kw_f = dict(is_causal=True)
    else:
        kpm = np.zeros((n, s), bool)
        kpm[1, -3:] = True
        kw_t = kw_f = dict(src_key_padding_mask=kpm)
        kw_t = dict(src_key_padding_mask=torch.from_numpy(kpm))
    xt = torch.tensor(x, requires_grad=True)
    xf = Tensor(x.copy(), requires_grad=True)
    yt, yf = theirs(xt, **kw_t), ours(xf, **kw_f)
    tol = _tol(np.float32)
    np.testing.assert_allclose(yf.numpy(), yt.detach().numpy(), **tol)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    yt.backward(torch.from_numpy(dy))
    yf.backward(dy)
    np.testing.assert_allclose(xf.grad, xt.grad.numpy(), **tol)
    _compare_params(ours, theirs, tol)


def test_encoder_layer_names_and_bad_arguments():
    torch = _torch()
    ours = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32)
    theirs = torch.nn.TransformerEncoderLayer(16, 4, dim_feedforward=32)
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == \
           [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()]
    nb = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, bias=False)
    tb = torch.nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, bias=False)
    assert sorted(nb.state_dict()) == sorted(tb.state_dict())
    with pytest.raises(ValueError, match="activation must be 'relu', 'gelu'"):
        nn.TransformerEncoderLayer(16, 4, activation="tanh")
    with pytest.raises(ValueError, match="embed_dim must be divisible by num_heads"):
        nn.TransformerEncoderLayer(16, 3)
    with pytest.raises(ValueError, match=r"src must be .* got shape \(5, 2, 8\)"):
        ours(np.zeros((5, 2, 8), np.float32))
    custom = nn.TransformerEncoderLayer(16, 4, 32, activation=nn.functional.tanh, dropout=0.0)
    assert custom(np.ones((3, 1, 16), np.float32)).shape == (3, 1, 16)


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_gradcheck(norm_first, rng):
    # No PyTorch needed: the whole layer (gelu, smooth) against float64 finite differences.
    fastdl.manual_seed(2)
    layer = nn.TransformerEncoderLayer(6, 2, 10, dropout=0.0, activation="gelu",
                                       norm_first=norm_first).double()
    x = rng.standard_normal((4, 2, 6))
    w0 = layer.linear1.weight.data.copy()

    def fwd(xa, wa):
        layer.linear1.weight.data[...] = wa
        return layer(xa, is_causal=True).data

    def bwd(g, xa, wa):
        layer.linear1.weight.data[...] = wa
        layer.zero_grad()
        t = Tensor(xa.copy(), requires_grad=True)
        layer(t, is_causal=True).backward(g)
        return t.grad, layer.linear1.weight.grad

    gradcheck(fwd, bwd, [x, w0], [0, 1], rng)
