"""2-D padding (ops.pad2d / pad2d_backward, F.pad): against numpy.pad (the forward's definition),
the adjoint identity <pad(x), dy> = <x, pad_backward(dy)> with an explicit index-map reference,
float64 finite differences, PyTorch's F.pad, and bad input."""

import numpy as np
import pytest

from fastdl import Tensor, ops
from fastdl.nn import functional as F

from helpers import assert_close, gradcheck

MODES = ["constant", "reflect", "replicate", "circular"]
NUMPY = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
# (shape, (left, right, top, bottom)): odd sizes, batch 1, one-sided and asymmetric padding,
# padding up to the limits (reflect: size - 1; circular: size)
CASES = [((1, 2, 5, 7), (1, 1, 1, 1)), ((2, 3, 7, 5), (2, 0, 1, 3)), ((1, 1, 3, 9), (0, 4, 2, 0)),
         ((2, 1, 4, 4), (3, 3, 3, 3)), ((1, 2, 1, 6), (5, 2, 0, 0)), ((1, 1, 13, 2), (1, 1, 5, 4))]


def _allowed(shape, pad, mode):
    h, w = shape[2:]
    lim = {"reflect": lambda p, n: p < n, "circular": lambda p, n: p <= n}.get(mode, lambda p, n: True)
    return all(lim(p, w) for p in pad[:2]) and all(lim(p, h) for p in pad[2:])


def _cases():
    for shape, pad in CASES:
        for mode in MODES:
            if _allowed(shape, pad, mode):
                yield pytest.param(shape, pad, mode, id=f"{shape}-{pad}-{mode}")


def _index_map(n, lo, hi, mode):
    """Source index (or -1 for a zero) of every padded position along one axis."""
    src = []
    for j in range(-lo, n + hi):
        if 0 <= j < n:
            src.append(j)
        elif mode == "constant":
            src.append(-1)
        elif mode == "reflect":
            src.append(-j if j < 0 else 2 * (n - 1) - j)
        elif mode == "replicate":
            src.append(min(max(j, 0), n - 1))
        else:
            src.append(j % n)
    return src


def _ref_backward(dy, shape, pad, mode):
    """dx[i, j] = sum of dy over the padded cells whose source is (i, j)."""
    left, right, top, bottom = pad
    rows, cols = _index_map(shape[2], top, bottom, mode), _index_map(shape[3], left, right, mode)
    dx = np.zeros(shape)
    for a, r in enumerate(rows):
        for b, c in enumerate(cols):
            if r >= 0 and c >= 0:
                dx[:, :, r, c] += dy[:, :, a, b]
    return dx


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,pad,mode", list(_cases()))
def test_against_numpy_pad(rng, shape, pad, mode, dtype):
    left, right, top, bottom = pad
    x = rng.standard_normal(shape)
    y = ops.pad2d(x.astype(dtype), pad, mode)
    want = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), mode=NUMPY[mode])
    assert y.dtype == dtype and y.flags.c_contiguous
    np.testing.assert_array_equal(y, want.astype(dtype))
    dy = rng.standard_normal(want.shape)
    dx = ops.pad2d_backward(dy.astype(dtype), shape, pad, mode)
    assert_close(dx, _ref_backward(dy, shape, pad, mode), dtype)
    # the adjoint identity, in float64
    dx64 = ops.pad2d_backward(dy, shape, pad, mode)
    assert abs(np.sum(want * dy) - np.sum(x * dx64)) < 1e-10 * max(1.0, np.abs(want * dy).sum())


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck(rng, mode):
    x = rng.standard_normal((1, 2, 4, 5))
    pad = (2, 1, 3, 0)
    gradcheck(lambda x: ops.pad2d(x, pad, mode), lambda g, x: ops.pad2d_backward(g, x.shape, pad, mode),
              [x], wrt=[0], rng=rng)


@pytest.mark.parametrize("mode", MODES)
def test_functional_against_torch(rng, mode):
    torch = pytest.importorskip("torch")
    for shape, pad in CASES:
        if not _allowed(shape, pad, mode):
            continue
        x = rng.standard_normal(shape)
        xt = torch.tensor(x, requires_grad=True)
        yt = torch.nn.functional.pad(xt, pad, mode=mode)
        xf = Tensor(x, requires_grad=True)
        yf = F.pad(xf, pad, mode=mode)
        np.testing.assert_array_equal(yf.numpy(), yt.detach().numpy())
        dy = rng.standard_normal(yt.shape)
        yt.backward(torch.tensor(dy))
        yf.backward(dy)
        np.testing.assert_allclose(xf.grad, xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    # (left, right) pads the last axis only; an unbatched (C, H, W) input stays 3-D
    x3 = rng.standard_normal((2, 3, 4))
    np.testing.assert_array_equal(F.pad(x3, (1, 2), mode=mode if mode != "reflect" else "reflect").numpy(),
                                  torch.nn.functional.pad(torch.tensor(x3), (1, 2), mode=mode).numpy())


def test_noncontiguous_and_int_input(rng):
    base = rng.standard_normal((2, 3, 8, 10)).astype(np.float32)
    view = base[:, :, ::2, 1::3]
    np.testing.assert_array_equal(ops.pad2d(view, 1, "reflect"),
                                  np.pad(view, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect"))
    xi = rng.integers(-5, 5, (1, 1, 3, 3))
    y = ops.pad2d(xi, (1, 0, 0, 1), "replicate")
    assert y.dtype == np.float32 and y.shape == (1, 1, 4, 4)


BAD = [
    (lambda: ops.pad2d(np.ones((1, 1, 3, 3)), 3, "reflect"), ValueError,
     "reflect padding must be smaller than the input size along W (3), got (3, 3)"),
    (lambda: ops.pad2d(np.ones((1, 1, 3, 5)), (1, 1, 4, 0), "circular"), ValueError,
     "circular padding must be at most the input size along H (3)"),
    (lambda: ops.pad2d(np.ones((1, 1, 3, 3)), 1, "mirror"), ValueError, "mode must be one of"),
    (lambda: ops.pad2d(np.ones((1, 1, 3, 3)), -1), ValueError, "padding must be >= 0"),
    (lambda: ops.pad2d(np.ones((1, 1, 3, 3)), (1, 2)), ValueError, "padding must be an int or (left, right, top, bottom)"),
    (lambda: ops.pad2d(np.ones((1, 1, 3, 3)), 1.5), TypeError, "padding must hold ints"),
    (lambda: ops.pad2d(np.ones((3, 3)), 1), ValueError, "x must be 4-D (N, C, H, W) or 3-D"),
    (lambda: ops.pad2d(None, 1), TypeError, "pad2d: x must be an array, got None"),
    (lambda: ops.pad2d_backward(np.ones((1, 1, 4, 4)), (1, 1, 3, 3), 1), ValueError,
     "dy must have shape (1, 1, 5, 5) for input_shape (1, 1, 3, 3)"),
    (lambda: ops.pad2d_backward(np.ones((1, 1, 4, 4)), "abc", 1), TypeError, "input_shape must be a tuple of ints"),
    (lambda: F.pad(np.ones((1, 1, 3, 3)), (1, 1), value=2.0), ValueError, "value=2.0 is not supported"),
    (lambda: F.pad(np.ones((1, 1, 3, 3)), (1, 1, 1)), ValueError, "pad must be (left, right)"),
]


@pytest.mark.parametrize("call,exc,msg", BAD, ids=[m for _, _, m in BAD])
def test_bad_input(call, exc, msg):
    with pytest.raises(exc) as info:
        call()
    assert msg in str(info.value)
