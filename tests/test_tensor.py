"""The autograd Tensor: every Function's gradient against float64 finite differences, and the
engine's semantics (broadcast reduction, accumulation, no_grad, freed graphs, detach, dtypes)."""

import numpy as np
import pytest

import fastdl
from fastdl import Tensor, no_grad
from fastdl.functions import Dropout
from fastdl.tensor import Function

from helpers import gradcheck


def tgrad(fn, inputs, rng, wrt=None, **kw):
    """Finite-difference check of fn(*Tensors) -> Tensor through the autograd engine."""
    wrt = list(range(len(inputs))) if wrt is None else wrt

    def forward(*xs):
        return fn(*[Tensor(x) for x in xs]).data

    def backward(g, *xs):
        ts = [Tensor(x, requires_grad=i in wrt) for i, x in enumerate(xs)]
        fn(*ts).backward(g)
        return tuple(ts[i].grad for i in wrt)

    gradcheck(forward, backward, inputs, wrt, rng, **kw)


def randn(rng, *shape):
    return rng.standard_normal(shape)


# ---- every Function against finite differences (float64) -------------------------------------------

@pytest.mark.parametrize("sa,sb", [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)),
                                   ((2, 3, 4), (3, 1)), ((), (2, 3)), ((5,), ())])
def test_add_mul_broadcast(rng, sa, sb):
    a, b = randn(rng, *sa), randn(rng, *sb)
    tgrad(lambda x, y: x + y, [a, b], rng)
    tgrad(lambda x, y: x * y, [a, b], rng)
    tgrad(lambda x, y: x - y, [a, b], rng)
    tgrad(lambda x, y: x / (y * y + 1.0), [a, b], rng)


def test_scalar_and_array_operands(rng):
    a = randn(rng, 3, 4)
    c = randn(rng, 4)
    for fn in [lambda x: x + 2, lambda x: 2 + x, lambda x: x - 3, lambda x: 3 - x,
               lambda x: x * 1.5, lambda x: 1.5 * x, lambda x: x / 4, lambda x: 1 / (x * x + 1),
               lambda x: -x, lambda x: x + c, lambda x: c * x, lambda x: c - x, lambda x: x ** 2,
               lambda x: (x * x + 1) ** 0.5, lambda x: (x * x + 1) ** -1.5, lambda x: 2 ** x,
               lambda x: (x * x + 1) ** Tensor(np.full(4, 1.3))]:
        tgrad(fn, [a], rng)


def test_ndarray_on_the_left_keeps_the_graph(rng):
    a, c = randn(rng, 3), randn(rng, 3)
    x = Tensor(a, requires_grad=True)
    for y in (c + x, c * x, c - x, c / (x * x + 1), c @ x):
        assert isinstance(y, Tensor) and y.requires_grad
    tgrad(lambda t: c * t + c / (t * t + 1) - c, [a], rng)
    assert float(Tensor(np.array([2.5]))) == 2.5 and int(Tensor(np.array(3))) == 3
    assert not Tensor(np.array([0.0])) and Tensor(np.array(1.0))


def test_exp_log(rng):
    a = randn(rng, 4, 5)
    tgrad(lambda x: x.exp(), [a], rng)
    tgrad(lambda x: (x * x + 0.5).log(), [a], rng)


@pytest.mark.parametrize("axis,keepdims", [(None, False), (0, False), (1, True), (-1, False),
                                           ((0, 2), False), ((0, 2), True)])
def test_sum_mean(rng, axis, keepdims):
    a = randn(rng, 3, 4, 2)
    tgrad(lambda x: x.sum(axis=axis, keepdims=keepdims), [a], rng)
    tgrad(lambda x: x.mean(axis=axis, keepdims=keepdims), [a], rng)
    got = Tensor(a).mean(axis=axis, keepdims=keepdims).data
    np.testing.assert_allclose(got, a.mean(axis=axis, keepdims=keepdims), rtol=1e-12)


def test_reshape_transpose(rng):
    a = randn(rng, 2, 3, 4)
    tgrad(lambda x: x.reshape(6, 4) * np.arange(4.0), [a], rng)
    tgrad(lambda x: x.reshape((4, -1)), [a], rng)
    tgrad(lambda x: x.transpose(2, 0, 1), [a], rng)
    tgrad(lambda x: x.transpose((1, 2, 0)), [a], rng)
    tgrad(lambda x: x.transpose(0, 2), [a], rng)  # PyTorch's swap of two dims
    tgrad(lambda x: x.T, [a], rng)
    tgrad(lambda x: x.permute(2, 1, 0), [a], rng)
    tgrad(lambda x: x.flatten(1), [a], rng)
    assert Tensor(a).transpose(0, 2).shape == (4, 3, 2)
    assert Tensor(a[0]).transpose(0, 1).shape == (4, 3)  # 2-D: (0, 1) transposes, as in PyTorch
    assert Tensor(a).T.shape == (4, 3, 2)


@pytest.mark.parametrize("idx", [1, (slice(None), 2), (Ellipsis, slice(1, 3)), (0, slice(None, None, -1)),
                                 np.array([0, 2, 0, 0]), (np.array([1, 1, 0]), np.array([3, 3, 2])),
                                 (slice(None), None, 1)])
def test_getitem(rng, idx):
    a = randn(rng, 3, 4)
    tgrad(lambda x: x[idx], [a], rng)


def test_getitem_repeated_indices_accumulate():
    x = Tensor(np.zeros(3), requires_grad=True)
    x[np.array([0, 0, 2, 0])].sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 0.0, 1.0])


@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)), ((2, 3, 4), (4, 5)),
                                   ((3, 4), (2, 4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,))])
def test_matmul(rng, sa, sb):
    tgrad(lambda x, y: x @ y, [randn(rng, *sa), randn(rng, *sb)], rng)


def test_matmul_with_array_operands(rng):
    a, b = randn(rng, 3, 4), randn(rng, 4, 2)
    tgrad(lambda x: x @ b, [a], rng)
    tgrad(lambda y: a @ y, [b], rng)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("xshape", [(5, 3), (2, 5, 3)])
def test_linear(rng, bias, xshape):
    F = fastdl.nn.functional
    args = [randn(rng, *xshape), randn(rng, 4, 3)] + ([randn(rng, 4)] if bias else [])
    tgrad(lambda *t: F.linear(*t), args, rng)
    tgrad(lambda *t: F.linear(*t), args, rng, wrt=[1] + ([2] if bias else []))  # input needs no grad


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "exp"])
def test_activations(rng, name):
    a = randn(rng, 4, 6) * 2
    tgrad(lambda x: getattr(x, name)(), [a], rng)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax(rng, name, axis):
    a = randn(rng, 3, 5, 2) if axis == 1 else randn(rng, 4, 6)
    tgrad(lambda x: getattr(x, name)(axis), [a], rng)
    y = getattr(Tensor(a), name)(axis).data
    ref = np.exp(a - a.max(axis, keepdims=True))
    ref /= ref.sum(axis, keepdims=True)
    np.testing.assert_allclose(y, ref if name == "softmax" else np.log(ref), rtol=1e-10, atol=1e-12)


def test_losses(rng):
    F = fastdl.nn.functional
    logits, target = randn(rng, 6, 4) * 3, rng.integers(0, 4, 6)
    tgrad(lambda x: F.cross_entropy(x, target), [logits], rng)
    tgrad(lambda x: F.cross_entropy(x, target, reduction="sum"), [logits], rng)
    probs = rng.dirichlet(np.ones(4), 6)
    tgrad(lambda x, p: F.cross_entropy(x, p), [logits, probs], rng)
    pred, tgt = randn(rng, 5, 3), randn(rng, 5, 3)
    tgrad(lambda x, t: F.mse_loss(x, t), [pred, tgt], rng)
    tgt01 = rng.random((5, 3))
    tgrad(lambda x, t: F.binary_cross_entropy_with_logits(x, t), [pred * 4, tgt01], rng)


def test_loss_values(rng):
    F = fastdl.nn.functional
    logits, target = randn(rng, 6, 4), rng.integers(0, 4, 6)
    ls = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    np.testing.assert_allclose(F.cross_entropy(logits, target).item(), -ls[np.arange(6), target].mean(), rtol=1e-12)
    p, t = randn(rng, 4, 2), randn(rng, 4, 2)
    np.testing.assert_allclose(F.mse_loss(p, t).item(), ((p - t) ** 2).mean(), rtol=1e-12)
    t01 = rng.random((4, 2))
    bce = -(t01 * np.log(1 / (1 + np.exp(-p))) + (1 - t01) * np.log(1 - 1 / (1 + np.exp(-p)))).mean()
    np.testing.assert_allclose(F.binary_cross_entropy_with_logits(p, t01).item(), bce, rtol=1e-10)


def test_dropout_function(rng):
    a = randn(rng, 8, 16)
    tgrad(lambda x: Dropout.apply(x, p=0.3, seed=1234), [a], rng)
    y = Dropout.apply(Tensor(a), p=0.5, seed=7).data
    kept = y != 0
    np.testing.assert_allclose(y[kept], 2 * a[kept], rtol=1e-12)
    assert 0.3 < kept.mean() < 0.7


# ---- engine semantics ----------------------------------------------------------------------------------

def test_accumulates_across_uses_and_calls():
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    (x * x + x).sum().backward()  # d/dx = 2x + 1
    np.testing.assert_array_equal(x.grad, [3.0, 5.0, 7.0])
    (x + x).sum().backward()  # accumulates: += 2
    np.testing.assert_array_equal(x.grad, [5.0, 7.0, 9.0])


def test_diamond_graph(rng):
    a = randn(rng, 3, 3)
    tgrad(lambda x: ((x.relu() + x.tanh()) * x.sigmoid()).sum(0) @ (x * 2), [a], rng)


def test_leaf_grads_are_owned_contiguous_arrays():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    y = Tensor(np.ones((2, 3)), requires_grad=True)
    (x + y).transpose().sum().backward(None)
    assert x.grad is not y.grad and not np.shares_memory(x.grad, y.grad)
    assert x.grad.flags.c_contiguous and x.grad.shape == (2, 3)
    g = np.ones((2, 3))
    z = x * 1.0
    x.grad = None
    (z + 0).backward(g)
    assert not np.shares_memory(x.grad, g)


def test_grad_has_tensor_shape_and_dtype():
    w = Tensor(np.ones((1, 3), np.float32), requires_grad=True)
    (w * np.ones((4, 3), np.float64)).sum().backward()  # float64 operand promotes the result
    assert w.grad.dtype == np.float32 and w.grad.shape == (1, 3)
    np.testing.assert_array_equal(w.grad, [[4, 4, 4]])


def test_requires_grad_propagation():
    a = Tensor(np.ones(3), requires_grad=True)
    b = Tensor(np.ones(3))
    assert (a * b).requires_grad and not (b * 2).requires_grad
    assert (a * b).grad_fn is not None and (b * 2).grad_fn is None
    assert a.is_leaf and not (a + 1).is_leaf


def test_no_grad_context_and_decorator():
    a = Tensor(np.ones(3), requires_grad=True)
    with no_grad():
        assert not (a * 2).requires_grad
        assert not fastdl.is_grad_enabled()
        with fastdl.enable_grad():
            assert (a * 2).requires_grad
    assert fastdl.is_grad_enabled()

    @no_grad()
    def f(t):
        return t * 3

    assert not f(a).requires_grad
    assert (a * 2).requires_grad


def test_graph_is_freed():
    x = Tensor(np.ones(3), requires_grad=True)
    y = (x * 2).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()
    z = x * 3
    l1, l2 = z.sum(), (z * z).sum()
    l1.backward()
    with pytest.raises(RuntimeError, match="second time"):
        l2.backward()  # shares z's freed Function
    assert y.grad_fn is not None and y.grad_fn.freed


def test_detach():
    x = Tensor(np.ones(3), requires_grad=True)
    d = (x * 2).detach()
    assert not d.requires_grad and d.grad_fn is None
    (x * d).sum().backward()
    np.testing.assert_array_equal(x.grad, [2, 2, 2])


def test_deep_graph_has_no_recursion_limit():
    x = Tensor(np.ones(2), requires_grad=True)
    y = x
    for _ in range(5000):
        y = y + 1
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [1, 1])


def test_backward_errors():
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(np.ones(3)).sum().backward()
    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="one-element"):
        (x * 2).backward()
    with pytest.raises(ValueError, match="shape"):
        (x * 2).backward(np.ones(4))
    with pytest.raises(TypeError, match="floating"):
        Tensor(np.arange(3), requires_grad=True)


def test_backward_with_explicit_grad(rng):
    x = Tensor(randn(rng, 3, 2), requires_grad=True)
    g = randn(rng, 3, 2)
    (x * 3).backward(g)
    np.testing.assert_allclose(x.grad, 3 * g)
    leaf = Tensor(randn(rng, 2), requires_grad=True)
    leaf.backward(np.array([1.0, 2.0]))
    np.testing.assert_array_equal(leaf.grad, [1.0, 2.0])


def test_bad_function_gradient_shape_is_caught():
    class Bad(Function):
        def forward(self, x):
            return x * 2

        def backward(self, g):
            return g[:1]

    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(AssertionError, match="shape"):
        Bad.apply(x).sum().backward()


# ---- construction and conversions -----------------------------------------------------------------------

def test_tensor_dtypes():
    assert fastdl.tensor([1.0, 2.0]).dtype == np.float32
    assert fastdl.tensor(3.5).dtype == np.float32
    assert fastdl.tensor([1, 2]).dtype == np.int64
    assert fastdl.tensor(7).dtype == np.int64
    assert fastdl.tensor([True]).dtype == np.bool_
    assert fastdl.tensor([1, 2], dtype=np.float64).dtype == np.float64
    for dt in (np.float64, np.float16, np.int32, np.uint8):
        assert fastdl.tensor(np.zeros(2, dt)).dtype == dt
    a = np.zeros(3, np.float32)
    assert fastdl.Tensor(a).data is a            # Tensor shares an ndarray
    assert fastdl.tensor(fastdl.Tensor(a)).data is not a  # tensor(Tensor) copies
    with pytest.raises(TypeError):
        fastdl.tensor("abc")
    with pytest.raises(TypeError):
        fastdl.tensor({"a": 1})


def test_scalars_keep_tensor_dtype():
    x = fastdl.tensor([1.0, 2.0], requires_grad=True)
    for y in (x + 1, 2 * x, x / 3, x - 1.5, x ** 2, 1 - x, -x, x.mean()):
        assert y.dtype == np.float32, y


def test_accessors(rng):
    a = randn(rng, 3, 2).astype(np.float32)
    t = Tensor(a, requires_grad=True)
    assert t.shape == (3, 2) and t.ndim == 2 and len(t) == 3 and t.device == "cpu"
    assert t.numpy() is a and np.asarray(t) is a
    assert Tensor(np.array([2.5])).item() == 2.5
    with pytest.raises(ValueError):
        t.item()
    with pytest.raises(TypeError):
        len(Tensor(np.float32(1)))
    assert "requires_grad=True" in repr(t) and "grad_fn=<Mul>" in repr(t * 2)
    assert "dtype=float64" in repr(Tensor(np.ones(2)))
    assert t.cpu() is t and t.to("cpu") is t
    assert t.double().dtype == np.float64 and t.double().requires_grad
    assert Tensor(np.array([[1.0, 3.0], [4.0, 2.0]])).argmax(1).numpy().tolist() == [1, 0]


def test_cast_gradient():
    x = Tensor(np.ones(3, np.float32), requires_grad=True)
    (x.double() * 2).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, [2, 2, 2])


def test_cuda_unavailable_message():
    if fastdl.cuda_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(RuntimeError, match="cuda"):
        Tensor(np.ones(2)).cuda()


def test_mean_of_nothing_raises():
    with pytest.raises(ValueError, match="no elements"):
        Tensor(np.ones((0, 3))).mean()


@pytest.mark.gpu
def test_gpu_roundtrip_and_grad(rng):
    if not fastdl.cuda_available():
        pytest.skip("no CUDA device")
    a = randn(rng, 4, 3).astype(np.float32)
    w = randn(rng, 5, 3).astype(np.float32)
    x = Tensor(a, requires_grad=True)
    wt = Tensor(w).cuda().requires_grad_()
    y = fastdl.nn.functional.linear(x.cuda(), wt).relu().sum()
    assert y.device == "cuda"
    y.backward()
    assert x.grad.shape == (4, 3) and isinstance(x.grad, np.ndarray)
    ref = (np.maximum(a @ w.T, 0) > 0).astype(np.float32) @ w
    np.testing.assert_allclose(x.grad, ref, rtol=1e-4, atol=1e-5)
