"""fastdl.nn: Module bookkeeping, state dicts (and their round trip through save/load), layers,
losses, and parity with PyTorch modules given the same weights (when torch is importable)."""

import copy
import math

import numpy as np
import pytest

import fastdl
from fastdl import Tensor, nn
from fastdl.nn import functional as F


def mlp(*sizes, dropout=0.0):
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers += [nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
    return nn.Sequential(*layers)


# ---- Module bookkeeping ---------------------------------------------------------------------------------

def test_parameter_names_and_order():
    class Net(nn.Module):
        def __init__(self):
            self.body = mlp(3, 4, 2)
            self.scale = nn.Parameter(np.ones(2, np.float32))
            self.head = nn.Linear(2, 1, bias=False)

        def forward(self, x):
            return self.head(self.body(x) * self.scale)

    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["scale", "body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias", "head.weight"]
    assert list(net.state_dict()) == names
    assert len(list(net.parameters())) == 6
    assert [n for n, _ in net.named_modules()][:3] == ["", "body", "body.0"]
    assert net(np.ones((5, 3), np.float32)).shape == (5, 1)


def test_shared_parameter_counted_once():
    lin = nn.Linear(3, 3)
    seq = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(seq.parameters())) == 2 and list(seq.state_dict()) == ["0.weight", "0.bias"]


def test_train_eval_and_zero_grad():
    m = mlp(3, 4, 2, dropout=0.5)
    assert m.training and m[2].training
    m.eval()
    assert not m.training and not m[2].training
    m.train()
    assert m[2].training
    m(np.ones((2, 3), np.float32)).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad(set_to_none=False)
    assert all(np.all(p.grad == 0) for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_sequential_container():
    m = mlp(3, 4, 5, 2)
    assert len(m) == 5 and isinstance(m[-1], nn.Linear) and len(list(m)) == 5
    assert isinstance(m[1:3], nn.Sequential) and len(m[1:3]) == 2
    with pytest.raises(IndexError):
        m[5]
    assert "(0): Linear(in_features=3, out_features=4, bias=True)" in repr(m)


def test_to_dtype_keeps_parameter_objects():
    m = mlp(3, 4, 2)
    ps = list(m.parameters())
    m.double()
    assert list(m.parameters()) == ps and all(p.dtype == np.float64 for p in ps)
    assert m(np.ones((2, 3))).dtype == np.float64
    m.to(np.float32)
    assert all(p.dtype == np.float32 for p in ps)
    with pytest.raises(ValueError):
        m.to("tpu")


# ---- Linear ----------------------------------------------------------------------------------------------

def test_linear_default_init_and_seed():
    fastdl.manual_seed(0)
    a = nn.Linear(50, 30)
    fastdl.manual_seed(0)
    b = nn.Linear(50, 30)
    c = nn.Linear(50, 30)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    assert not np.array_equal(b.weight.data, c.weight.data)
    bound = 1 / math.sqrt(50)
    for p in (a.weight, a.bias):
        assert p.dtype == np.float32 and p.requires_grad and p.data.flags.c_contiguous
        assert np.abs(p.data).max() <= bound and np.abs(p.data).max() > 0.9 * bound
    assert a.weight.shape == (30, 50) and a.bias.shape == (30,)
    # U(-b, b) has variance b^2 / 3
    assert abs(a.weight.data.var() - bound**2 / 3) < 0.1 * bound**2 / 3
    assert nn.Linear(2, 3, bias=False).bias is None
    assert nn.Linear(2, 3, dtype=np.float64).weight.dtype == np.float64


def test_linear_bad_arguments():
    with pytest.raises(TypeError):
        nn.Linear(2.5, 3)
    with pytest.raises(ValueError):
        nn.Linear(-1, 3)
    with pytest.raises(ValueError, match="in_features"):
        nn.Linear(3, 2)(np.ones((4, 5), np.float32))


# ---- state dicts ----------------------------------------------------------------------------------------

def test_state_dict_round_trip_through_save_load(tmp_path, rng):
    fastdl.manual_seed(1)
    m = mlp(4, 8, 3)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    want = m(x).numpy().copy()
    path = tmp_path / "model.npz"
    fastdl.save(m.state_dict(), path)
    loaded = fastdl.load(path)
    assert list(loaded) == list(m.state_dict())
    assert all(isinstance(v, np.ndarray) for v in loaded.values())
    fresh = mlp(4, 8, 3)
    assert not np.allclose(fresh(x).numpy(), want)
    fresh.load_state_dict(loaded)
    np.testing.assert_array_equal(fresh(x).numpy(), want)


def test_state_dict_is_live_and_load_copies_in_place():
    m = nn.Linear(2, 2)
    sd = m.state_dict()
    assert sd["weight"] is m.weight.data
    w = m.weight.data
    m.load_state_dict({"weight": np.zeros((2, 2)), "bias": [1.0, 2.0]})
    assert m.weight.data is w and w.dtype == np.float32 and np.all(w == 0)
    np.testing.assert_array_equal(m.bias.data, [1, 2])
    snap = copy.deepcopy(m.state_dict())
    m.weight.data += 1
    assert np.all(snap["weight"] == 0)


def test_load_state_dict_errors():
    m = mlp(3, 4, 2)
    sd = {k: v.copy() for k, v in m.state_dict().items()}
    missing = dict(sd)
    del missing["2.bias"]
    with pytest.raises(nn.StateDictError, match=r"Missing key\(s\): '2.bias'"):
        m.load_state_dict(missing)
    with pytest.raises(ValueError):  # also a ValueError ...
        m.load_state_dict(missing)
    with pytest.raises(RuntimeError):  # ... and a RuntimeError, like PyTorch's
        m.load_state_dict(missing)
    extra = dict(sd, **{"3.weight": np.ones(2)})
    with pytest.raises(nn.StateDictError, match=r"Unexpected key\(s\): '3.weight'"):
        m.load_state_dict(extra)
    bad = dict(sd, **{"0.weight": np.ones((4, 4))})
    with pytest.raises(nn.StateDictError, match=r"size mismatch for 0.weight.*\(4, 4\).*\(4, 3\)"):
        m.load_state_dict(bad)
    with pytest.raises(nn.StateDictError, match="size mismatch"):
        m.load_state_dict(bad, strict=False)  # shapes are checked even when not strict
    before = m[0].bias.data.copy()
    res = m.load_state_dict(dict(missing, **{"zzz": np.ones(1)}), strict=False)
    assert res.missing_keys == ["2.bias"] and res.unexpected_keys == ["zzz"]
    np.testing.assert_array_equal(m[0].bias.data, before)


def test_save_load_nested_and_errors(tmp_path):
    obj = {"a": {"b": np.arange(3), "c": 1.5, "d": {}}, "lst": [{"x": 1}, {"x": 2}],
           "t": fastdl.tensor([1.0, 2.0]), "s": "hello", "flags": (True, False)}
    p = tmp_path / "x.npz"
    fastdl.save(obj, str(p))
    got = fastdl.load(p)
    np.testing.assert_array_equal(got["a"]["b"], [0, 1, 2])
    assert got["a"]["c"] == 1.5 and got["a"]["d"] == {} and got["s"] == "hello"
    assert [int(g["x"]) for g in got["lst"]] == [1, 2]
    assert got["t"].dtype == np.float32 and got["flags"].tolist() == [True, False]
    with pytest.raises(TypeError):
        fastdl.save([1, 2], p)
    with pytest.raises(TypeError):
        fastdl.save({"f": print}, p)
    with pytest.raises(TypeError):
        fastdl.save({"o": np.array([object()])}, p)
    with pytest.raises(ValueError, match="/"):
        fastdl.save({"a/b": 1}, p)


# ---- activations, Flatten, Dropout, losses --------------------------------------------------------------

def test_activation_modules(rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_allclose(nn.ReLU()(x).numpy(), np.maximum(x, 0))
    np.testing.assert_allclose(nn.Sigmoid()(x).numpy(), 1 / (1 + np.exp(-x)), rtol=1e-5)
    np.testing.assert_allclose(nn.Tanh()(x).numpy(), np.tanh(x), rtol=1e-5, atol=1e-6)
    s = nn.Softmax(dim=0)(x).numpy()
    np.testing.assert_allclose(s.sum(0), 1, rtol=1e-5)
    np.testing.assert_allclose(nn.Softmax()(x).numpy().sum(1), 1, rtol=1e-5)
    np.testing.assert_allclose(np.exp(nn.LogSoftmax(1)(x).numpy()).sum(1), 1, rtol=1e-5)


def test_flatten(rng):
    x = Tensor(rng.standard_normal((2, 3, 4, 5)), requires_grad=True)
    assert nn.Flatten()(x).shape == (2, 60)
    assert nn.Flatten(0, 1)(x).shape == (6, 4, 5)
    assert nn.Flatten(2)(x).shape == (2, 3, 20)
    nn.Flatten()(x).sum().backward()
    assert x.grad.shape == (2, 3, 4, 5)


def test_dropout_module(rng):
    x = np.ones((200, 50), np.float32)
    d = nn.Dropout(0.25)
    fastdl.manual_seed(3)
    y1 = d(x).numpy()
    fastdl.manual_seed(3)
    y2 = d(x).numpy()
    np.testing.assert_array_equal(y1, y2)  # the seed comes from fastdl's generator
    assert not np.array_equal(y1, d(x).numpy())  # fresh mask per call
    kept = y1 != 0
    assert abs(kept.mean() - 0.75) < 0.02
    np.testing.assert_allclose(y1[kept], 1 / 0.75, rtol=1e-6)
    d.eval()
    t = Tensor(x)
    assert d(t) is t
    assert nn.Dropout(1.0)(x).numpy().sum() == 0
    for bad in (-0.1, 1.5, "a"):
        with pytest.raises(ValueError):
            nn.Dropout(bad)


def test_loss_modules_and_targets(rng):
    logits = rng.standard_normal((6, 4)).astype(np.float32)
    target = rng.integers(0, 4, 6)
    a = nn.CrossEntropyLoss()(logits, target).item()
    b = nn.CrossEntropyLoss()(Tensor(logits), Tensor(target)).item()
    assert a == b
    assert np.isclose(nn.CrossEntropyLoss(reduction="sum")(logits, target).item(), 6 * a, rtol=1e-6)
    pred, tgt = rng.standard_normal((3, 2)).astype(np.float32), rng.random((3, 2)).astype(np.float32)
    assert np.isclose(nn.MSELoss()(pred, tgt).item(), ((pred - tgt) ** 2).mean(), rtol=1e-5)
    assert nn.BCEWithLogitsLoss()(pred, tgt).dtype == np.float32
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="none")
    with pytest.raises(ValueError, match="shape"):
        nn.MSELoss()(pred, tgt[:2])
    with pytest.raises(ValueError, match="shape"):
        nn.CrossEntropyLoss()(logits, target[:3])
    with pytest.raises(ValueError):
        nn.CrossEntropyLoss()(logits[0], target[:1])
    with pytest.raises(TypeError, match="int64"):
        nn.CrossEntropyLoss()(logits, np.array(["a"] * 6))


# ---- parity with PyTorch --------------------------------------------------------------------------------

def _to_numpy_state(tmod):
    return {k: v.detach().numpy() for k, v in tmod.state_dict().items()}


@pytest.mark.parametrize("act", ["ReLU", "Tanh", "Sigmoid"])
def test_pytorch_state_dict_loads_and_matches(rng, act):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(8, 16), getattr(torch.nn, act)(), torch.nn.Linear(16, 5))
    fm = nn.Sequential(nn.Linear(8, 16), getattr(nn, act)(), nn.Linear(16, 5))
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


def test_pytorch_losses_match(rng):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    x = rng.standard_normal((5, 3)) * 3
    t = rng.random((5, 3))
    for ours, theirs in [(F.mse_loss, tf.mse_loss),
                         (F.binary_cross_entropy_with_logits, tf.binary_cross_entropy_with_logits)]:
        fx = Tensor(x, requires_grad=True)
        ours(fx, t).backward()
        tx = torch.tensor(x, requires_grad=True)
        tl = theirs(tx, torch.tensor(t))
        tl.backward()
        np.testing.assert_allclose(ours(x, t).item(), tl.item(), rtol=1e-10)
        np.testing.assert_allclose(fx.grad, tx.grad.numpy(), rtol=1e-10)


def test_linear_init_distribution_matches_pytorch():
    torch = pytest.importorskip("torch")
    ours = nn.Linear(400, 300)
    theirs = torch.nn.Linear(400, 300)
    for a, b in [(ours.weight.data, theirs.weight.detach().numpy()), (ours.bias.data, theirs.bias.detach().numpy())]:
        assert abs(np.abs(a).max() - np.abs(b).max()) < 1e-3
        assert abs(a.std() - b.std()) < 0.05 * b.std()


# ---- buffers ---------------------------------------------------------------------------------------------

def test_buffers_saved_moved_and_validated():
    class Stats(nn.Module):
        def __init__(self):
            self.lin = nn.Linear(2, 2)
            self.register_buffer("mean", np.zeros(2, np.float32))
            self.register_buffer("count", np.zeros((), np.int64))
            self.register_buffer("scratch", np.ones(3, np.float32), persistent=False)
            self.register_buffer("unused", None)

    m = Stats()
    assert list(m.state_dict()) == ["mean", "count", "lin.weight", "lin.bias"]  # PyTorch's order
    assert [n for n, _ in m.named_buffers()] == ["mean", "count", "scratch"]
    m.count += 1  # in place: the state dict holds the live array
    assert int(m.state_dict()["count"]) == 1
    m.double()
    assert m.mean.dtype == np.float64 and m.scratch.dtype == np.float64 and m.count.dtype == np.int64
    sd = {k: np.array(v) for k, v in m.state_dict().items()}
    sd["mean"][:] = 5
    sd["count"] = np.array(7)
    m2 = Stats().double()
    m2.load_state_dict(sd)
    assert np.all(m2.mean == 5) and int(m2.count) == 7 and m2.count.dtype == np.int64
    m.register_buffer("mean", Tensor(np.ones(2)))  # a Tensor's array; still one buffer
    assert isinstance(m.mean, np.ndarray) and [n for n, _ in m.named_buffers()].count("mean") == 1
    with pytest.raises(ValueError, match="'.'"):
        m.register_buffer("a.b", np.zeros(1))
    with pytest.raises(ValueError, match="not a buffer"):
        m.register_buffer("lin", np.zeros(1))
    with pytest.raises(TypeError, match="array"):
        m.register_buffer("x", [1.0, 2.0])
