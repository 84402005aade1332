"""Python overhead per op: a tiny Linear (x 4x8, weight 8x8) where the arithmetic is ~0.5 kFLOP,
so the time is almost all framework: argument checks, graph recording, backward bookkeeping.

Groups: forward under no_grad; forward + backward (y.backward(g) straight into the Linear);
one whole training step of a tiny 8-16-4 MLP (zero_grad, forward, cross-entropy, backward,
Adam step). NumPy is the floor (the same products written by hand, no autograd); PyTorch's
autograd the yardstick. Gradients are checked against NumPy after timing.
"""

import numpy as np
import pytest

import fastdl
from fastdl import nn, optim

N, IN, OUT = 4, 8, 8


def _data(rng):
    x = rng.standard_normal((N, IN), dtype=np.float32)
    w = rng.standard_normal((OUT, IN), dtype=np.float32)
    b = rng.standard_normal(OUT, dtype=np.float32)
    g = rng.standard_normal((N, OUT), dtype=np.float32)
    return x, w, b, g


def _linear_impl(lib, x, w, b, g):
    """(forward, forward+backward, grads) closures for one library."""
    if lib == "numpy":
        def fwd():
            return x @ w.T + b

        def fwd_bwd():
            y = x @ w.T + b
            return y, (g @ w, g.T @ x, g.sum(0))

        return fwd, fwd_bwd, lambda: fwd_bwd()[1][1:]
    if lib == "fastdl":
        lin = nn.Linear(IN, OUT)
        lin.load_state_dict({"weight": w, "bias": b})

        def fwd():
            with fastdl.no_grad():
                return lin(x)

        def fwd_bwd():
            lin.zero_grad()
            lin(x).backward(g)

        return fwd, fwd_bwd, lambda: (fwd_bwd(), (lin.weight.grad, lin.bias.grad))[1]
    import torch

    lin = torch.nn.Linear(IN, OUT)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w))
        lin.bias.copy_(torch.from_numpy(b))
    tx, tg = torch.from_numpy(x), torch.from_numpy(g)

    def fwd():
        with torch.no_grad():
            return lin(tx)

    def fwd_bwd():
        lin.zero_grad()
        lin(tx).backward(tg)

    return fwd, fwd_bwd, lambda: (fwd_bwd(), (lin.weight.grad.numpy(), lin.bias.grad.numpy()))[1]


@pytest.mark.parametrize("direction", ["forward", "forward+backward"])
def test_tiny_linear(benchmark, lib, rng, direction):
    benchmark.group = f"overhead: Linear {N}x{IN}->{OUT} {direction}"
    x, w, b, g = _data(rng)
    fwd, fwd_bwd, grads = _linear_impl(lib, x, w, b, g)
    benchmark(fwd if direction == "forward" else fwd_bwd)
    dw, db = grads()
    np.testing.assert_allclose(dw, g.T @ x, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(db, g.sum(0), rtol=1e-4, atol=1e-5)


def test_tiny_training_step(benchmark, lib, rng):
    benchmark.group = "overhead: training step, MLP 8-16-4, batch 4 (Adam)"
    if lib == "numpy":
        pytest.skip("no NumPy baseline for a whole training step")
    x = rng.standard_normal((N, IN), dtype=np.float32)
    y = rng.integers(0, 4, N)
    if lib == "fastdl":
        model = nn.Sequential(nn.Linear(IN, 16), nn.ReLU(), nn.Linear(16, 4))
        opt = optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = nn.CrossEntropyLoss()
        xb, yb = x, y
    else:
        import torch

        model = torch.nn.Sequential(torch.nn.Linear(IN, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = torch.nn.CrossEntropyLoss()
        xb, yb = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        return loss

    first = float(step().item())
    benchmark(step)
    assert float(step().item()) < first  # it trains
