"""nn.LayerNorm and nn.GELU (with F.layer_norm, F.gelu and their autograd Functions): PyTorch's
names, defaults and initialisation, a torch state dict loading and computing the same outputs
and gradients, float64 finite differences through the autograd engine, bad arguments."""

import numpy as np
import pytest

from fastdl import Tensor, nn
from fastdl.nn import functional as F

from helpers import gradcheck


def _to_numpy_state(tmod):
    return {k: v.detach().numpy() for k, v in tmod.state_dict().items()}


def test_layer_norm_module_defaults():
    m = nn.LayerNorm(5)
    assert m.normalized_shape == (5,) and m.eps == 1e-5 and m.elementwise_affine
    assert [n for n, _ in m.named_parameters()] == ["weight", "bias"]
    np.testing.assert_array_equal(m.weight.data, np.ones(5, np.float32))
    np.testing.assert_array_equal(m.bias.data, np.zeros(5, np.float32))
    assert list(nn.LayerNorm((2, 3), bias=False).state_dict()) == ["weight"]
    assert nn.LayerNorm((2, 3)).weight.shape == (2, 3)
    assert list(nn.LayerNorm(4, elementwise_affine=False).parameters()) == []
    assert nn.LayerNorm(4, dtype=np.float64).weight.dtype == np.float64
    assert "eps=1e-05" in repr(nn.LayerNorm(4)) and "tanh" in repr(nn.GELU("tanh"))


@pytest.mark.parametrize("affine,bias", [(True, True), (True, False), (False, False)])
@pytest.mark.parametrize("shape,ns", [((4, 6, 8), 8), ((3, 5, 2, 7), (2, 7))], ids=str)
def test_layer_norm_matches_torch_state_dict(rng, shape, ns, affine, bias):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tm = torch.nn.LayerNorm(ns, eps=1e-4, elementwise_affine=affine, bias=bias)
    with torch.no_grad():
        for p in tm.parameters():
            p.copy_(torch.randn_like(p))
    fm = nn.LayerNorm(ns, eps=1e-4, elementwise_affine=affine, bias=bias)
    fm.load_state_dict(_to_numpy_state(tm))
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_()
    yt = tm(xt)
    yt.backward(torch.from_numpy(dy))
    xf = Tensor(x, requires_grad=True)
    yf = fm(xf)
    (yf * Tensor(dy)).sum().backward()
    np.testing.assert_allclose(yf.data, yt.detach().numpy(), rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(xf.grad, xt.grad.numpy(), rtol=1e-4, atol=1e-4)
    for (name, p), (tname, tp) in zip(fm.named_parameters(), tm.named_parameters()):
        assert name == tname
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_module_matches_torch(rng, approximate):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(approximate),
                             torch.nn.LayerNorm(16), torch.nn.Linear(16, 5))
    fm = nn.Sequential(nn.Linear(8, 16), nn.GELU(approximate), nn.LayerNorm(16), nn.Linear(16, 5))
    fm.load_state_dict(_to_numpy_state(tm))
    x = rng.standard_normal((7, 8)).astype(np.float32)
    y = rng.integers(0, 5, 7)
    tl = torch.nn.functional.cross_entropy(tm(torch.from_numpy(x)), torch.from_numpy(y))
    tl.backward()
    fl = nn.CrossEntropyLoss()(fm(x), y)
    fl.backward()
    np.testing.assert_allclose(fl.item(), tl.item(), rtol=1e-5)
    for (name, p), (tname, tp) in zip(fm.named_parameters(), tm.named_parameters()):
        assert name == tname
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)


def test_functional_gradcheck(rng):
    """float64 finite differences through F.layer_norm / F.gelu and the autograd engine."""
    def through(fn):
        def fwd(*arrays):
            return fn(*[Tensor(a) for a in arrays]).data

        def bwd(g, *arrays):
            ts = [Tensor(a, requires_grad=True) for a in arrays]
            (fn(*ts) * Tensor(g)).sum().backward()
            return tuple(t.grad for t in ts)
        return fwd, bwd

    x = rng.standard_normal((3, 4, 5))
    w, b = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    fwd, bwd = through(lambda x, w, b: F.layer_norm(x, (4, 5), w, b, eps=1e-3))
    gradcheck(fwd, bwd, [x, w, b], [0, 1, 2], rng)
    fwd, bwd = through(lambda x, b: F.layer_norm(x, 5, None, b))  # bias without weight
    gradcheck(fwd, bwd, [x, rng.standard_normal(5)], [0, 1], rng)
    for approximate in ("none", "tanh"):
        fwd, bwd = through(lambda x: F.gelu(x, approximate))
        gradcheck(fwd, bwd, [x * 2], [0], rng)


def test_layer_norm_float64_module(rng):
    m = nn.LayerNorm(6).double()
    y = m(rng.standard_normal((2, 6)))
    assert y.dtype == np.float64
    y.sum().backward()
    assert m.weight.grad.dtype == np.float64 and m.weight.grad.shape == (6,)


def test_bad_arguments():
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh', got 'fast'"):
        nn.GELU("fast")
    with pytest.raises(ValueError, match="approximate must be"):
        F.gelu(np.ones(3), "erf")
    with pytest.raises(TypeError, match="normalized_shape must be an int"):
        nn.LayerNorm(2.5)
    with pytest.raises(ValueError, match="normalized_shape"):
        nn.LayerNorm(0)
    with pytest.raises(ValueError, match="eps"):
        nn.LayerNorm(3, eps=-1.0)
    with pytest.raises(ValueError, match=r"normalized_shape \(4,\) must equal the trailing axes"):
        nn.LayerNorm(4)(np.ones((2, 5), np.float32))
    m = nn.LayerNorm(4)
    with pytest.raises(Exception, match="weight"):
        m.load_state_dict({"weight": np.ones(5, np.float32), "bias": np.zeros(4, np.float32)})
