"""matmul and linear, forward and backward, against the float64 NumPy reference."""

import numpy as np
import pytest

import fastdl
from fastdl import ops

import reference as ref
from helpers import assert_close, check_op, gradcheck

DTYPES = [np.float32, np.float64]

# (M, K, N): ones, primes, tile residues, and sizes past every cache block.
SHAPES = [(1, 1, 1), (1, 7, 3), (3, 1, 17), (7, 17, 3), (17, 3, 129), (13, 129, 65),
          (129, 65, 1), (64, 784, 256), (100, 300, 50), (1031, 17, 33), (33, 1025, 7),
          (5, 600, 1100)]


def _np_matmul_bwd(dy, a, b):
    da = dy @ np.swapaxes(b, -1, -2)
    db = np.swapaxes(a, -1, -2) @ dy
    if a.ndim == 2 and da.ndim == 3:
        da = da.sum(0)
    if b.ndim == 2 and db.ndim == 3:
        db = db.sum(0)
    return da, db


def _np_linear(x, w, b=None):
    y = x @ w.T
    return y if b is None else y + b


def _np_linear_bwd(dy, x, w):
    dy2, x2 = dy.reshape(-1, w.shape[0]), x.reshape(-1, w.shape[1])
    return dy @ w, dy2.T @ x2, dy2.sum(0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_matmul(rng, dtype, m, k, n):
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    dy = rng.standard_normal((m, n))
    check_op(ops.matmul, ref.matmul, [a, b], dtype, baseline=np.matmul)
    check_op(ops.matmul_backward, ref.matmul_backward, [dy, a, b], dtype,
             baseline=_np_matmul_bwd, names=["da", "db"])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape_a,shape_b", [
    ((4, 7, 5), (4, 5, 3)), ((1, 1, 1), (1, 1, 1)), ((3, 17, 33), (3, 33, 129)),
    ((64, 128, 64), (64, 64, 128)),       # attention-sized
    ((5, 13, 9), (9, 11)), ((9, 11), (5, 11, 6)),  # a 2-D operand shared by the batch
])
def test_matmul_batched(rng, dtype, shape_a, shape_b):
    a, b = rng.standard_normal(shape_a), rng.standard_normal(shape_b)
    dy = rng.standard_normal(np.broadcast_shapes(shape_a[:-2], shape_b[:-2]) + (shape_a[-2], shape_b[-1]))
    check_op(ops.matmul, ref.matmul, [a, b], dtype, baseline=np.matmul)
    check_op(ops.matmul_backward, ref.matmul_backward, [dy, a, b], dtype,
             baseline=_np_matmul_bwd, names=["da", "db"])


def _views(rng, shape, dtype):
    """Non-contiguous arrays with the given shape: slices, transposes, reversed, Fortran order."""
    def randn(s):
        return rng.standard_normal(s).astype(dtype)
    yield "sliced", randn((shape[0] * 2 + 1, shape[1] * 3 + 2))[1::2, 2::3][: shape[0], : shape[1]]
    yield "transposed", randn(shape[::-1]).T
    yield "reversed", randn(shape)[::-1, ::-1]
    yield "fortran", np.asfortranarray(randn(shape))


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_noncontiguous(rng, dtype):
    m, k, n = 37, 45, 29
    for (na, a), (nb, b) in zip(_views(rng, (m, k), dtype), _views(rng, (k, n), dtype)):
        assert not a.flags.c_contiguous and not b.flags.c_contiguous
        assert_close(ops.matmul(a, b), ref.matmul(a, b), dtype, a @ b, name=f"{na} @ {nb}")
        dy = next(_views(rng, (m, n), dtype))[1]
        da, db = ops.matmul_backward(dy, a, b)
        rda, rdb = ref.matmul_backward(dy, a, b)
        assert_close(da, rda, dtype, dy @ b.T, name=f"da {na}")
        assert_close(db, rdb, dtype, a.T @ dy, name=f"db {nb}")


def test_matmul_batched_noncontiguous(rng):
    a = rng.standard_normal((6, 20, 9)).astype(np.float32).transpose(0, 2, 1)  # (6, 9, 20)
    b = rng.standard_normal((20, 6, 11)).astype(np.float32).transpose(1, 0, 2)  # (6, 20, 11)
    assert_close(ops.matmul(a, b), ref.matmul(a, b), np.float32, a @ b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_small_integers_exact(rng, dtype):
    # Products and sums of small integers are exact in any order: the result must be too.
    for m, k, n in [(1, 1, 1), (13, 300, 37), (64, 784, 256), (130, 70, 1030)]:
        a = rng.integers(-4, 5, (m, k)).astype(dtype)
        b = rng.integers(-4, 5, (k, n)).astype(dtype)
        np.testing.assert_array_equal(ops.matmul(a, b), a @ b)
        dy = rng.integers(-3, 4, (m, n)).astype(dtype)
        da, db = ops.matmul_backward(dy, a, b)
        np.testing.assert_array_equal(da, dy @ b.T)
        np.testing.assert_array_equal(db, a.T @ dy)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,i,o", [(1, 1, 1), (3, 7, 17), (64, 784, 256), (129, 33, 10),
                                   (256, 1024, 1024), (1000, 3, 5)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear(rng, dtype, n, i, o, bias):
    x, w = rng.standard_normal((n, i)), rng.standard_normal((o, i))
    b = rng.standard_normal(o) if bias else None
    dy = rng.standard_normal((n, o))
    check_op(ops.linear, ref.linear, [x, w, b], dtype, baseline=_np_linear)
    check_op(ops.linear_backward, ref.linear_backward, [dy, x, w], dtype,
             baseline=_np_linear_bwd, names=["dx", "dw", "db"])


def test_linear_leading_dims_and_views(rng):
    x = rng.standard_normal((2, 3, 5, 9)).astype(np.float32)
    w = rng.standard_normal((9, 7)).astype(np.float32).T  # (7, 9), a transposed view
    b = rng.standard_normal(14).astype(np.float32)[::2]  # strided bias
    assert_close(ops.linear(x, w, b), ref.linear(x, w, b), np.float32, x @ w.T + b)
    dy = rng.standard_normal((2, 3, 5, 7)).astype(np.float32)
    for got, want, name in zip(ops.linear_backward(dy, x, w), ref.linear_backward(dy, x, w),
                               ["dx", "dw", "db"]):
        assert_close(got, want, np.float32, name=name, ulps=64)
    x1 = rng.standard_normal(9).astype(np.float32)  # a single sample, no batch axis
    assert ops.linear(x1, w, b).shape == (7,)


def test_matmul_gradcheck(rng):
    for sa, sb in [((3, 4), (4, 5)), ((2, 3, 4), (2, 4, 2)), ((2, 3, 4), (4, 2)), ((3, 4), (2, 4, 2))]:
        a, b = rng.standard_normal(sa), rng.standard_normal(sb)
        gradcheck(ops.matmul, ops.matmul_backward, [a, b], wrt=[0, 1], rng=rng)


def test_linear_gradcheck(rng):
    x, w, b = rng.standard_normal((5, 4)), rng.standard_normal((3, 4)), rng.standard_normal(3)
    gradcheck(ops.linear, lambda dy, x, w, b: ops.linear_backward(dy, x, w), [x, w, b],
              wrt=[0, 1, 2], rng=rng)


def test_dtype_policy(rng):
    a32 = rng.standard_normal((4, 5)).astype(np.float32)
    b64 = rng.standard_normal((5, 3))
    assert ops.matmul(a32, a32.T).dtype == np.float32
    assert ops.matmul(a32, b64).dtype == np.float64  # promoted, like NumPy
    ai = rng.integers(-3, 4, (4, 5))
    got = ops.matmul(ai, ai.T)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, (ai @ ai.T).astype(np.float32))
    assert ops.matmul([[1, 2]], [[3], [4]]).tolist() == [[11.0]]  # lists are accepted
    half = a32.astype(np.float16)
    assert ops.linear(half, half).dtype == np.float32


def test_empty_shapes():
    z = ops.matmul(np.ones((0, 3), np.float32), np.ones((3, 4), np.float32))
    assert z.shape == (0, 4)
    z = ops.matmul(np.ones((2, 0), np.float32), np.ones((0, 4), np.float32))
    np.testing.assert_array_equal(z, np.zeros((2, 4), np.float32))  # an empty sum is 0
    dx, dw, db = ops.linear_backward(np.ones((0, 4)), np.ones((0, 3)), np.ones((4, 3)))
    assert dx.shape == (0, 3)
    np.testing.assert_array_equal(dw, 0)
    np.testing.assert_array_equal(db, 0)
    assert ops.linear(np.ones((5, 3)), np.ones((0, 3))).shape == (5, 0)


def test_inputs_not_modified(rng):
    a = rng.standard_normal((9, 8)).astype(np.float32)
    b = rng.standard_normal((8, 7)).astype(np.float32)
    dy = rng.standard_normal((9, 7)).astype(np.float32)
    copies = [x.copy() for x in (a, b, dy)]
    ops.matmul(a, b)
    ops.matmul_backward(dy, a, b)
    ops.linear_backward(dy, a, b.T)
    for x, c in zip((a, b, dy), copies):
        np.testing.assert_array_equal(x, c)


@pytest.mark.parametrize("op", ["matmul", "linear"])
def test_deterministic_across_runs_and_threads(rng, op):
    a = rng.standard_normal((300, 517)).astype(np.float32)
    b = rng.standard_normal((517, 263)).astype(np.float32)
    f = (lambda: ops.matmul(a, b)) if op == "matmul" else (lambda: ops.linear(a, b.T, b[0]))
    first = f()
    np.testing.assert_array_equal(f(), first)
    for n in (1, 3):
        fastdl.set_num_threads(n)
        np.testing.assert_array_equal(f(), first)


# ---- the one-call fast path (fastdl._core.matmul / linear / *_backward) ----------------------

class _Sub(np.ndarray):
    """An ndarray subclass: the fast path declines it, so the op runs its Python path."""


def _slow(*arrays):
    return [None if a is None else a.view(_Sub) for a in arrays]


def _fast_cases(rng):
    """(op, args, fast) over the layouts the fast path takes or must decline (fast=False)."""
    def r(*s):
        return rng.standard_normal(s).astype(np.float32)
    a, b, dy = r(37, 45), r(45, 29), r(37, 29)
    yield "matmul", (a, b), True
    yield "matmul", (r(45, 37).T, r(29, 45).T[::-1]), True  # transposed, reversed views
    yield "matmul", (a.astype(np.float64), b.astype(np.float64)), True
    yield "matmul", (r(4, 7, 5), r(4, 5, 3)), True
    yield "matmul", (r(4, 7, 5), r(5, 3)), True  # batch folded into rows
    yield "matmul", (r(7, 4, 5).transpose(1, 0, 2), r(5, 3)), False  # rows not foldable
    yield "matmul", (r(9, 11), r(5, 11, 6)), True
    yield "matmul", (a, b.astype(np.float64)), False  # mixed dtypes convert in Python
    yield "matmul", (a.astype(np.float16), b), False
    yield "matmul", (a, r(44, 29)), False  # shapes do not chain: Python raises
    yield "matmul", (r(0, 45), b), False
    yield "matmul_backward", (dy, a, b), True
    yield "matmul_backward", (dy.T.copy().T, r(45, 37).T, b[::-1]), True
    yield "matmul_backward", (r(4, 7, 3), r(4, 7, 5), r(4, 5, 3)), True
    yield "matmul_backward", (r(4, 7, 3), r(4, 7, 5), r(5, 3)), True
    yield "matmul_backward", (r(4, 7, 3)[:, ::-1], r(4, 7, 5), r(5, 3)), False  # dy not foldable
    yield "matmul_backward", (r(5, 9, 6), r(9, 11), r(5, 11, 6)), False  # batch concatenated
    yield "matmul_backward", (r(37, 28), a, b), False
    x, w, bias, dyl = r(13, 45), r(29, 45), r(29), r(13, 29)
    yield "linear", (x, w, bias), True
    yield "linear", (x, w, None), True
    yield "linear", (r(45, 13).T, r(45, 29).T, bias), True
    yield "linear", (r(2, 3, 45), w, bias), True
    yield "linear", (r(45), w, bias), True
    yield "linear", (r(3, 2, 45).transpose(1, 0, 2), w, bias), False  # leading axes not foldable
    yield "linear", (x, w, r(58)[::2]), False  # strided bias: copied in Python
    yield "linear", (x, w, r(28)), False
    yield "linear_backward", (dyl, x, w), True
    yield "linear_backward", (r(2, 3, 29), r(2, 3, 45), w), True
    yield "linear_backward", (r(29), r(45), w), True
    yield "linear_backward", (r(29, 13).T, x, w), False  # dy not C-contiguous: copied in Python
    yield "linear_backward", (dyl, x[:, :44], w), False


def test_fast_path_matches_python_path_bitwise(rng):
    for i, (op, args, fast) in enumerate(_fast_cases(rng)):
        got = getattr(fastdl._core, op)(*args)
        assert (got is not None) == fast, f"case {i}: {op}"
        if got is None:
            continue
        want = getattr(ops, op)(*_slow(*args))
        for g, w in zip(got if isinstance(got, tuple) else [got], want if isinstance(want, tuple) else [want]):
            assert type(g) is np.ndarray and g.dtype == args[1].dtype and g.flags.c_contiguous
            np.testing.assert_array_equal(g, w, err_msg=f"case {i}: {op}")


# ---- bad input ---------------------------------------------------------------------------------

BAD = [
    (lambda: ops.matmul(np.ones((2, 3)), np.ones((4, 5))), ValueError, "a.shape[-1]=3 but b.shape[-2]=4"),
    (lambda: ops.matmul(np.ones(3), np.ones((3, 2))), ValueError, "a must be 2-D or 3-D, got shape (3,)"),
    (lambda: ops.matmul(np.ones((2, 3, 4, 5)), np.ones((5, 2))), ValueError, "got shape (2, 3, 4, 5)"),
    (lambda: ops.matmul(np.ones((2, 3, 4)), np.ones((3, 4, 5))), ValueError, "batch sizes differ"),
    (lambda: ops.matmul(np.ones((2, 3), complex), np.ones((3, 2))), TypeError, "complex128"),
    (lambda: ops.matmul(np.array([["a"]]), np.ones((1, 1))), TypeError, "a must have a real numeric dtype"),
    (lambda: ops.matmul(object(), np.ones((1, 1))), TypeError, "matmul: a"),
    (lambda: ops.matmul_backward(np.ones((2, 2)), np.ones((2, 3)), np.ones((3, 4))), ValueError,
     "dy must have shape (2, 4), got (2, 2)"),
    (lambda: ops.linear(np.ones((2, 3)), np.ones((4, 5))), ValueError, "in_features=5"),
    (lambda: ops.linear(np.array(1.0, np.float32), np.ones((4, 1), np.float32)), ValueError,
     "x () must end in in_features=1"),
    (lambda: ops.linear_backward(np.array(1.0), np.array(1.0), np.ones((1, 1))), ValueError,
     "x () must end in in_features=1"),
    (lambda: ops.linear(np.ones((2, 3)), np.ones(3)), ValueError, "w must be 2-D, got shape (3,)"),
    (lambda: ops.linear(np.ones((2, 3)), np.ones((4, 3)), np.ones(3)), ValueError,
     "b must have shape (4,), got (3,)"),
    (lambda: ops.linear_backward(np.ones((2, 5)), np.ones((2, 3)), np.ones((4, 3))), ValueError,
     "dy must have shape (2, 4), got (2, 5)"),
    (lambda: fastdl.set_num_threads(0), ValueError, "n must be >= 1"),
    (lambda: fastdl.set_num_threads(1.5), TypeError, "n must be an int"),
]


@pytest.mark.parametrize("call,exc,msg", BAD, ids=[m for _, _, m in BAD])
def test_bad_input(call, exc, msg):
    with pytest.raises(exc) as info:
        call()
    assert msg in str(info.value)


def test_core_rejects_bad_direct_calls():
    core = fastdl._core
    out = np.empty((2, 2), np.float32)
    with pytest.raises(TypeError, match="expected dtype float32"):
        core.gemm(out, np.ones((2, 2)), np.ones((2, 2), np.float32))
    with pytest.raises(TypeError, match="C-contiguous"):
        core.gemm(np.empty((2, 2), np.float32).T, np.ones((2, 2), np.float32), np.ones((2, 2), np.float32))
    with pytest.raises(ValueError, match="read-only"):
        ro = np.empty((2, 2), np.float32)
        ro.flags.writeable = False
        core.gemm(ro, np.ones((2, 2), np.float32), np.ones((2, 2), np.float32))
    with pytest.raises(ValueError, match="b: expected 2 rows"):
        core.gemm(out, np.ones((2, 2), np.float32), np.ones((3, 2), np.float32))
    with pytest.raises(TypeError, match="float32 or float64"):
        core.gemm(np.empty((1, 1), np.int32), np.ones((1, 1), np.int32), np.ones((1, 1), np.int32))
    with pytest.raises(ValueError, match="unknown CPU ISA"):
        core.gemm(out, np.ones((2, 2), np.float32), np.ones((2, 2), np.float32), isa="sse9")
