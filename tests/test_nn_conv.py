"""fastdl.nn conv, pool and norm modules (and their nn.functional forms): PyTorch's constructor
arguments, names, shapes and initialisation; a PyTorch module's state dict loads and computes the
same forward, input gradient and parameter gradients (float32 and float64; BatchNorm2d in train
and eval modes, its running statistics after a few steps); a float64 finite-difference check of
a small network built from them; bad arguments raise ValueError/TypeError naming them."""

import math

import numpy as np
import pytest

import fastdl
from fastdl import Tensor, nn
from fastdl.nn import functional as F

from helpers import gradcheck

DTYPES = [np.float32, np.float64]


def _tol(dtype):
    return dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-11)


def _torch():
    return pytest.importorskip("torch")


def _load_from_torch(ours, theirs, dtype):
    theirs.to(_torch_dtype(dtype))
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    ours.to(dtype)


def _torch_dtype(dtype):
    torch = _torch()
    return torch.float32 if np.dtype(dtype) == np.float32 else torch.float64


def _compare(ours, theirs, x, rng, dtype, outputs=1):
    """Forward, d(input) and d(parameters) of both modules for the same x and a random dy."""
    torch = _torch()
    tol = _tol(dtype)
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    xf = Tensor(x.copy(), requires_grad=True)
    yf = ours(xf)
    np.testing.assert_allclose(yf.numpy(), yt.detach().numpy(), **tol, err_msg="forward")
    assert yf.dtype == dtype
    dy = rng.standard_normal(yt.shape).astype(dtype)
    yt.backward(torch.from_numpy(dy))
    yf.backward(dy)
    np.testing.assert_allclose(xf.grad, xt.grad.numpy(), **tol, err_msg="input gradient")
    theirs_p = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, theirs_p[name].grad.numpy(), **tol, err_msg=name)
    return yf


# ---- Conv2d / ConvTranspose2d ----------------------------------------------------------------------------

CONV_CASES = [  # (C, K, kernel, options, H, W)
    (1, 4, 3, dict(padding=1), 7, 5),
    (3, 5, (3, 2), dict(stride=2, padding=(1, 0)), 9, 8),
    (4, 6, 3, dict(dilation=2, groups=2, bias=False), 7, 7),
    (4, 4, 3, dict(groups=4, padding=1), 5, 6),  # depthwise
    (2, 3, 1, dict(), 3, 1),
    (2, 3, 3, dict(padding="same"), 5, 4),
    (2, 3, (2, 4), dict(padding="same", dilation=(1, 1)), 5, 7),  # odd total padding
    (2, 3, 3, dict(padding="valid"), 5, 4),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")  # torch's
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}-{c[3]}")
@pytest.mark.parametrize("batch", [1, 3])
def test_conv2d_matches_pytorch(case, batch, dtype, rng):
    torch = _torch()
    c, k, ks, opts, h, w = case
    theirs = torch.nn.Conv2d(c, k, ks, **opts)
    ours = nn.Conv2d(c, k, ks, **opts)
    assert ours.weight.shape == tuple(theirs.weight.shape)
    _load_from_torch(ours, theirs, dtype)
    x = rng.standard_normal((batch, c, h, w)).astype(dtype)
    _compare(ours, theirs, x, rng, dtype)


TRANSPOSE_CASES = [  # (C_in, C_out, kernel, options, H, W)
    (3, 2, 2, dict(stride=2), 4, 5),
    (2, 3, 3, dict(stride=2, padding=1, output_padding=1), 3, 4),
    (4, 1, (3, 2), dict(stride=(1, 2), padding=(1, 0), bias=False), 5, 3),
    (1, 2, 1, dict(), 1, 1),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}-{c[3]}")
def test_conv_transpose2d_matches_pytorch(case, dtype, rng):
    torch = _torch()
    c_in, c_out, ks, opts, h, w = case
    theirs = torch.nn.ConvTranspose2d(c_in, c_out, ks, **opts)
    ours = nn.ConvTranspose2d(c_in, c_out, ks, **opts)
    assert ours.weight.shape == tuple(theirs.weight.shape) == (c_in, c_out) + ours.kernel_size
    _load_from_torch(ours, theirs, dtype)
    x = rng.standard_normal((2, c_in, h, w)).astype(dtype)
    _compare(ours, theirs, x, rng, dtype)


PADDING_MODE_CASES = [  # Conv2d padding_mode (issue 9): (C, K, kernel, options, H, W)
    (2, 3, 3, dict(padding=1), 5, 7),
    (4, 6, 3, dict(padding=(2, 1), stride=2, groups=2), 7, 5),
    (2, 3, (2, 4), dict(padding="same", dilation=(2, 1)), 5, 9),  # odd total: the extra cell last
    (3, 2, 3, dict(padding="valid", bias=False), 5, 5),
    (2, 2, 3, dict(padding=3, dilation=2), 4, 5),  # padding up to the reflect limit (size - 1)
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")  # torch's
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("case", PADDING_MODE_CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}-{c[3]}")
def test_conv2d_padding_mode_matches_pytorch(case, mode, dtype, rng):
    torch = _torch()
    c, k, ks, opts, h, w = case
    theirs = torch.nn.Conv2d(c, k, ks, padding_mode=mode, **opts)
    ours = nn.Conv2d(c, k, ks, padding_mode=mode, **opts)
    _load_from_torch(ours, theirs, dtype)
    x = rng.standard_normal((1, c, h, w)).astype(dtype)
    _compare(ours, theirs, x, rng, dtype)
    assert repr(ours).endswith(f"padding_mode={mode})")


def test_conv2d_padding_mode_bad_input(rng):
    x = rng.standard_normal((1, 2, 3, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="reflect padding must be smaller than the input size"):
        nn.Conv2d(2, 2, 3, padding=3, padding_mode="reflect")(x)
    with pytest.raises(ValueError, match="circular padding must be at most the input size"):
        nn.Conv2d(2, 2, 3, padding=4, padding_mode="circular")(x)


TRANSPOSE_OPTION_CASES = [  # groups and dilation (issue 9): (C_in, C_out, kernel, options, H, W)
    (4, 6, 3, dict(stride=2, padding=1, output_padding=1, groups=2), 4, 5),
    (3, 3, 2, dict(groups=3, bias=False), 5, 3),
    (2, 4, 3, dict(dilation=2, padding=1), 5, 4),
    (4, 2, (3, 2), dict(stride=(2, 1), dilation=(2, 3), groups=2, output_padding=(1, 2)), 3, 4),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", TRANSPOSE_OPTION_CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}-{c[3]}")
@pytest.mark.parametrize("batch", [1, 2])
def test_conv_transpose2d_options_match_pytorch(case, batch, dtype, rng):
    torch = _torch()
    c_in, c_out, ks, opts, h, w = case
    theirs = torch.nn.ConvTranspose2d(c_in, c_out, ks, **opts)
    ours = nn.ConvTranspose2d(c_in, c_out, ks, **opts)
    assert ours.weight.shape == tuple(theirs.weight.shape) == (c_in, c_out // ours.groups) + ours.kernel_size
    _load_from_torch(ours, theirs, dtype)
    x = rng.standard_normal((batch, c_in, h, w)).astype(dtype)
    _compare(ours, theirs, x, rng, dtype)


def test_conv_transpose2d_options_repr():
    t = nn.ConvTranspose2d(4, 6, 3, stride=2, output_padding=1, groups=2, dilation=2)
    assert (t.groups, t.dilation, t.weight.shape) == (2, (2, 2), (4, 3, 3, 3))
    assert repr(t) == ("ConvTranspose2d(4, 6, kernel_size=(3, 3), stride=(2, 2), dilation=(2, 2), "
                       "output_padding=(1, 1), groups=2)")  # PyTorch's order


@pytest.mark.parametrize("make", [
    lambda m: m.Conv2d(16, 32, 3), lambda m: m.Conv2d(8, 8, (5, 3), groups=4),
    lambda m: m.ConvTranspose2d(16, 24, 2, stride=2),
    lambda m: m.ConvTranspose2d(16, 24, 3, groups=4, dilation=2)],
    ids=["conv", "grouped", "transpose", "grouped-transpose"])
def test_conv_init_distribution_matches_pytorch(make):
    """kaiming_uniform_(a=sqrt(5)) and the bias bound: both U(+-1/sqrt(fan_in)), fan_in from
    weight.shape[1:] (PyTorch's rule, ConvTranspose2d's quirk included)."""
    torch = _torch()
    fastdl.manual_seed(3)
    ours, theirs = make(nn), make(torch.nn)
    bound = 1 / math.sqrt(math.prod(ours.weight.shape[1:]))
    for name, p in ours.named_parameters():
        t = dict(theirs.named_parameters())[name].detach().numpy()
        assert p.shape == t.shape and p.dtype == np.float32
        assert np.abs(p.data).max() <= bound and np.abs(t).max() <= bound
        if p.size > 1000:  # uniform on [-bound, bound]: extremes near it, std bound / sqrt(3)
            assert np.abs(p.data).max() > 0.99 * bound
            assert abs(p.data.std() - bound / math.sqrt(3)) < 0.05 * bound


def test_conv_init_is_seeded():
    fastdl.manual_seed(7)
    a = nn.Conv2d(3, 4, 3).state_dict()
    fastdl.manual_seed(7)
    b = nn.Conv2d(3, 4, 3).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_conv_module_attributes():
    m = nn.Conv2d(4, 8, 3, stride=(2, 1), padding=1, groups=2, bias=False)
    assert (m.kernel_size, m.stride, m.padding, m.dilation, m.groups) == ((3, 3), (2, 1), (1, 1), (1, 1), 2)
    assert m.bias is None and list(m.state_dict()) == ["weight"] and m.weight.shape == (8, 2, 3, 3)
    assert repr(m) == "Conv2d(4, 8, kernel_size=(3, 3), stride=(2, 1), padding=(1, 1), groups=2, bias=False)"
    t = nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1)
    assert t.weight.shape == (4, 2, 3, 3) and t.bias.shape == (2,) and t.output_padding == (1, 1)
    assert t(np.ones((1, 4, 5, 5), np.float32)).shape == (1, 2, 10, 10)


# ---- pooling ------------------------------------------------------------------------------------------------

POOL_CASES = [  # (kind, args, kwargs, H, W)
    ("MaxPool2d", (2,), {}, 6, 7),
    ("MaxPool2d", (3,), dict(stride=2, padding=1), 7, 5),
    ("MaxPool2d", ((2, 3),), dict(stride=(1, 2)), 5, 8),
    ("AvgPool2d", (2,), {}, 6, 7),
    ("AvgPool2d", (3,), dict(stride=2, padding=1), 7, 5),
    ("AdaptiveAvgPool2d", (1,), {}, 5, 7),
    ("AdaptiveAvgPool2d", ((3, 2),), {}, 7, 5),
    ("AdaptiveAvgPool2d", ((None, 2),), {}, 3, 5),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: f"{c[0]}{c[1]}{c[2]}")
def test_pool_matches_pytorch(case, dtype, rng):
    torch = _torch()
    kind, args, kwargs, h, w = case
    theirs, ours = getattr(torch.nn, kind)(*args, **kwargs), getattr(nn, kind)(*args, **kwargs)
    assert list(ours.state_dict()) == []
    x = rng.standard_normal((2, 3, h, w)).astype(dtype)
    _compare(ours, theirs, x, rng, dtype)


def test_max_pool_return_indices_match_pytorch(rng):
    torch = _torch()
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    y, idx = nn.MaxPool2d(3, 2, 1, return_indices=True)(Tensor(x, requires_grad=True))
    ty, tidx = torch.nn.MaxPool2d(3, 2, 1, return_indices=True)(torch.from_numpy(x))
    np.testing.assert_array_equal(idx.numpy(), tidx.numpy())
    assert idx.dtype == np.int64 and not idx.requires_grad and y.requires_grad
    np.testing.assert_array_equal(y.numpy(), ty.numpy())
    y.sum().backward()
    with fastdl.no_grad():
        y2, idx2 = F.max_pool2d(x, 2, return_indices=True)
    assert not y2.requires_grad and y2.shape == idx2.shape == (2, 3, 3, 3)


POOL_OPTION_CASES = [  # PyTorch's options (issue 9): ceil_mode, dilation, count_include_pad, divisor_override
    ("MaxPool2d", (2,), dict(ceil_mode=True), 7, 9),
    ("MaxPool2d", (3,), dict(stride=2, padding=1, dilation=2), 9, 13),
    ("MaxPool2d", ((2, 3),), dict(stride=(2, 1), padding=(1, 1), dilation=(3, 2), ceil_mode=True), 13, 5),
    ("AvgPool2d", (2,), dict(ceil_mode=True), 7, 9),
    ("AvgPool2d", (3,), dict(stride=2, padding=1, ceil_mode=True, count_include_pad=False), 9, 13),
    ("AvgPool2d", (3,), dict(stride=2, padding=1, count_include_pad=False), 5, 7),
    ("AvgPool2d", ((3, 2),), dict(stride=(2, 3), padding=(1, 1), ceil_mode=True, divisor_override=4), 13, 5),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_OPTION_CASES, ids=lambda c: f"{c[0]}{c[1]}{c[2]}")
@pytest.mark.parametrize("batch", [1, 2])
def test_pool_options_match_pytorch(case, batch, dtype, rng):
    torch = _torch()
    kind, args, kwargs, h, w = case
    theirs, ours = getattr(torch.nn, kind)(*args, **kwargs), getattr(nn, kind)(*args, **kwargs)
    x = rng.standard_normal((batch, 3, h, w)).astype(dtype)
    _compare(ours, theirs, x, rng, dtype)


def test_pool_options_attributes_and_repr():
    m = nn.MaxPool2d(3, 2, 1, dilation=2, ceil_mode=True)
    assert (m.dilation, m.ceil_mode) == ((2, 2), True)
    assert repr(m) == ("MaxPool2d(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), dilation=(2, 2), "
                       "ceil_mode=True)")
    assert repr(nn.MaxPool2d(2)).endswith("dilation=(1, 1), ceil_mode=False)")
    a = nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False, divisor_override=5)
    assert (a.ceil_mode, a.count_include_pad, a.divisor_override) == (True, False, 5)
    # PyTorch's AvgPool2d shows kernel_size, stride and padding only
    assert repr(a) == "AvgPool2d(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))"
    y, idx = nn.MaxPool2d(2, ceil_mode=True, return_indices=True)(np.ones((1, 1, 5, 5), np.float32))
    assert y.shape == idx.shape == (1, 1, 3, 3)


def test_pool_options_gradcheck(rng):
    x = rng.permutation(2 * 7 * 9).reshape(1, 2, 7, 9) * 0.5 + rng.random((1, 2, 7, 9)) * 0.01
    for layer in (nn.MaxPool2d(3, 2, 1, dilation=2, ceil_mode=True),
                  nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
                  nn.AvgPool2d(2, ceil_mode=True, divisor_override=3)):
        def f(x, layer=layer):
            return layer(Tensor(x)).numpy()

        def b(g, x, layer=layer):
            xt = Tensor(x, requires_grad=True)
            layer(xt).backward(g)
            return xt.grad

        gradcheck(f, b, [x], wrt=[0], rng=rng)


# ---- BatchNorm2d ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts", [dict(), dict(momentum=None), dict(affine=False), dict(momentum=0.3, eps=1e-3),
                                  dict(track_running_stats=False)], ids=str)
def test_batchnorm2d_matches_pytorch_train_and_eval(opts, dtype, rng):
    torch = _torch()
    theirs, ours = torch.nn.BatchNorm2d(3, **opts), nn.BatchNorm2d(3, **opts)
    with torch.no_grad():  # non-trivial affine parameters
        for p in theirs.parameters():
            p.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, p.shape)))
    _load_from_torch(ours, theirs, dtype)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for step in range(3):  # running statistics blend over steps
        x = (rng.standard_normal((4, 3, 5, 3)) * 2 + step).astype(dtype)
        _compare(ours, theirs, x, rng, dtype)
    for name, buf in theirs.named_buffers():
        got = ours.state_dict()[name]
        np.testing.assert_allclose(got, buf.numpy(), **_tol(dtype), err_msg=name)
        assert got.dtype == (np.int64 if name == "num_batches_tracked" else dtype)
    ours.eval()
    theirs.eval()
    x = rng.standard_normal((2, 3, 4, 4)).astype(dtype)
    _compare(ours, theirs, x, rng, dtype)
    if ours.track_running_stats:
        assert int(ours.num_batches_tracked) == 3  # eval steps do not count


def test_batchnorm_pytorch_state_dict_eval_output(rng):
    """A trained PyTorch BatchNorm2d's state (running stats included) loads and gives its eval output."""
    torch = _torch()
    theirs = torch.nn.BatchNorm2d(4)
    for _ in range(5):
        theirs(torch.randn(8, 4, 3, 3) * 3 + 1)
    theirs.eval()
    ours = nn.BatchNorm2d(4).eval()
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    assert int(ours.num_batches_tracked) == 5
    x = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    np.testing.assert_allclose(ours(x).numpy(), theirs(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)


def test_batchnorm1d_matches_pytorch(rng):
    torch = _torch()
    for shape in [(5, 3), (4, 3, 6)]:
        theirs, ours = torch.nn.BatchNorm1d(3), nn.BatchNorm1d(3)
        _load_from_torch(ours, theirs, np.float64)
        _compare(ours, theirs, rng.standard_normal(shape), rng, np.float64)


def test_functional_batch_norm(rng):
    torch = _torch()
    x = rng.standard_normal((6, 2, 3)).astype(np.float64)
    b = rng.standard_normal(2)
    rm, rv = np.zeros(2), np.ones(2)
    trm, trv = torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    y = F.batch_norm(x, rm, rv, None, b, training=True, momentum=0.2)
    ty = torch.nn.functional.batch_norm(torch.from_numpy(x), trm, trv, None, torch.from_numpy(b),
                                        training=True, momentum=0.2)
    np.testing.assert_allclose(y.numpy(), ty.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rm, trm.numpy(), rtol=1e-12)
    np.testing.assert_allclose(rv, trv.numpy(), rtol=1e-12)
    y = F.batch_norm(x, rm, rv)  # eval: the running statistics
    ty = torch.nn.functional.batch_norm(torch.from_numpy(x), trm, trv)
    np.testing.assert_allclose(y.numpy(), ty.numpy(), rtol=1e-10, atol=1e-12)


# ---- a small network, end to end ------------------------------------------------------------------------------

def _net(dtype):
    fastdl.manual_seed(11)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.ConvTranspose2d(4, 3, 2, stride=2), nn.AvgPool2d(2), nn.Conv2d(3, 3, 1),
        nn.AdaptiveAvgPool2d((2, 1)), nn.Flatten()).to(dtype)


def test_network_gradcheck_float64(rng):
    """Finite differences through every new module at once (x and the first conv's weight)."""
    net = _net(np.float64)
    x0 = rng.standard_normal((2, 2, 6, 4))

    def forward(x, w):
        net[0].weight.data[...] = w
        with fastdl.no_grad():
            return net(x).numpy()

    def backward(dy, x, w):
        net[0].weight.data[...] = w
        net.zero_grad()
        xt = Tensor(x, requires_grad=True)
        net(xt).backward(dy)
        return xt.grad, net[0].weight.grad

    gradcheck(forward, backward, [x0, net[0].weight.data.copy()], [0, 1], rng, max_elems=10)


def test_network_matches_pytorch(rng):
    torch = _torch()
    tn = torch.nn
    theirs = tn.Sequential(
        tn.Conv2d(2, 4, 3, padding=1), tn.BatchNorm2d(4), tn.ReLU(), tn.MaxPool2d(2),
        tn.ConvTranspose2d(4, 3, 2, stride=2), tn.AvgPool2d(2), tn.Conv2d(3, 3, 1),
        tn.AdaptiveAvgPool2d((2, 1)), tn.Flatten())
    ours = _net(np.float32)
    _load_from_torch(ours, theirs, np.float32)
    _compare(ours, theirs, rng.standard_normal((3, 2, 6, 4)).astype(np.float32), rng, np.float32)


def test_noncontiguous_and_array_inputs(rng):
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32).transpose(0, 1, 3, 2)  # a view
    conv = nn.Conv2d(3, 2, 3)
    want = conv(np.ascontiguousarray(x)).numpy()
    np.testing.assert_array_equal(conv(x).numpy(), want)
    np.testing.assert_array_equal(F.conv2d(x, conv.weight.data, conv.bias.data).numpy(), want)
    np.testing.assert_array_equal(nn.MaxPool2d(2)(x).numpy(), nn.MaxPool2d(2)(x.copy()).numpy())


# ---- bad arguments ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, exc, words", [
    (lambda: nn.Conv2d(3, 4, 3, groups=2), ValueError, "divisible by groups"),
    (lambda: nn.Conv2d(3, 4, 0), ValueError, "kernel_size"),
    (lambda: nn.Conv2d(3, 4, 2.5), TypeError, "kernel_size"),
    (lambda: nn.Conv2d(3, 4, 3, stride=2, padding="same"), ValueError, "stride 1"),
    (lambda: nn.Conv2d(3, 4, 3, padding="full"), ValueError, "padding"),
    (lambda: nn.Conv2d(3, 4, 3, padding_mode="mirror"), ValueError, "padding_mode must be one of"),
    (lambda: nn.ConvTranspose2d(3, 4, 3, padding_mode="reflect"), ValueError, "padding_mode must be one of"),
    (lambda: nn.Conv2d(0, 4, 3), ValueError, "in_channels"),
    (lambda: nn.ConvTranspose2d(3, 4, 3, stride=2, output_padding=2), ValueError, "output_padding"),
    (lambda: nn.ConvTranspose2d(4, 3, 3, groups=2), ValueError, "divisible by groups"),
    (lambda: nn.ConvTranspose2d(3, 4, 3, groups=2), ValueError, "divisible by groups"),
    (lambda: nn.ConvTranspose2d(4, 4, 3, dilation=0), ValueError, "dilation"),
    (lambda: nn.ConvTranspose2d(4, 4, 3, stride=2, dilation=3, output_padding=3), ValueError,
     "output_padding"),
    (lambda: nn.MaxPool2d(2, padding=2), ValueError, "padding"),
    (lambda: nn.MaxPool2d(2, dilation=0), ValueError, "dilation"),
    (lambda: nn.MaxPool2d(2, ceil_mode="yes"), TypeError, "ceil_mode"),
    (lambda: nn.AvgPool2d(2, count_include_pad=None), TypeError, "count_include_pad"),
    (lambda: nn.AvgPool2d(2, divisor_override=0), ValueError, "divisor_override"),
    (lambda: nn.AvgPool2d(2, divisor_override=-2), ValueError, "divisor_override"),
    (lambda: nn.AvgPool2d(2, divisor_override=1.5), TypeError, "divisor_override"),
    (lambda: nn.AdaptiveAvgPool2d((1, 2, 3)), TypeError, "output_size"),
    (lambda: nn.AdaptiveAvgPool2d(0), ValueError, "output_size"),
    (lambda: nn.BatchNorm2d(0), ValueError, "num_features"),
    (lambda: nn.BatchNorm2d(3, momentum=2.0), ValueError, "momentum"),
    (lambda: nn.BatchNorm2d(3, eps=0), ValueError, "eps"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_constructor_arguments(make, exc, words):
    with pytest.raises(exc, match=words):
        make()


def test_bad_inputs(rng):
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    with pytest.raises(ValueError, match="4D"):
        nn.BatchNorm2d(3)(x[0])
    with pytest.raises(ValueError, match="num_features"):
        nn.BatchNorm2d(4)(x)
    with pytest.raises(ValueError):  # 3 input channels, the weight expects 4
        nn.Conv2d(4, 2, 3)(x)
    with pytest.raises(ValueError):  # a 3x3 kernel over a 2x2 image, no padding
        nn.Conv2d(3, 2, 3)(x[:, :, :2, :2])
    with pytest.raises(TypeError):
        nn.Conv2d(3, 2, 3)(x.astype(np.complex64))
    with pytest.raises(ValueError, match="running"):  # eval mode without running statistics
        F.batch_norm(x, None, None, training=False)


# ---- the same modules on the GPU (skipped without CuPy and a device) ---------------------------------------

@pytest.mark.gpu
def test_modules_on_cuda_match_cpu(rng):
    if not fastdl.cuda_available():
        pytest.skip("needs a CUDA GPU and fastdl built with CUDA")
    net_cpu = _net(np.float32)
    net_gpu = _net(np.float32).to("cuda")
    assert net_gpu[1].running_mean.__class__.__module__.startswith("cupy")
    x = rng.standard_normal((3, 2, 6, 4)).astype(np.float32)
    outs = []
    for net, xt in ((net_cpu, Tensor(x, requires_grad=True)),
                    (net_gpu, Tensor(x, requires_grad=True).cuda())):
        y = net(xt)
        y.sum().backward()
        outs.append((y.numpy(), [p.grad for p in net.parameters()], net[1].running_var))
    (y0, g0, rv0), (y1, g1, rv1) = outs
    np.testing.assert_allclose(y1, y0, rtol=1e-4, atol=1e-5)
    for a, b in zip(g0, g1):
        np.testing.assert_allclose(b.get(), a, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(rv1.get(), rv0, rtol=1e-5)
    assert int(net_gpu[1].num_batches_tracked) == 1


def test_first_layer_skips_input_gradient(rng, monkeypatch):
    """An input that needs no gradient costs no backward-data pass (PyTorch's output_mask)."""
    from fastdl import ops

    masks = []
    real = ops.conv2d_backward

    def spy(*args, **kw):
        masks.append(tuple(kw["output_mask"]))
        return real(*args, **kw)

    monkeypatch.setattr(ops, "conv2d_backward", spy)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    conv(Tensor(x)).sum().backward()
    xt = Tensor(x, requires_grad=True)
    conv(xt).sum().backward()
    assert masks == [(False, True, True), (True, True, True)]
    want = real(np.ones((2, 3, 5, 5), np.float32), x, conv.weight.data, padding=1)[0]
    np.testing.assert_allclose(xt.grad, want, rtol=1e-6)
