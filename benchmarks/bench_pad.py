"""pad2d forward and backward (Conv2d's padding_mode): fastdl against NumPy's np.pad and
PyTorch's F.pad, reflect / replicate / circular by 1 cell on every side of an
(8, 32, 56, 56) float32 image.

Napkin math: the forward reads n and writes ~n (1 + 4/56) floats (8 bytes an element), the
backward reads the padded gradient and writes n (the border folds are a few percent more):
memory-bound, GB/s and the copy roof in extra_info. Checked against np.pad after timing.
"""

import numpy as np
import pytest

from fastdl import ops

from benchutil import record_roof

SHAPE = (8, 32, 56, 56)
NUMPY = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


@pytest.mark.parametrize("mode", list(NUMPY))
@pytest.mark.parametrize("what", ["forward", "backward"])
def test_pad(benchmark, lib, mode, what):
    benchmark.group = f"pad {what} {mode} {'x'.join(map(str, SHAPE))}"
    rng = np.random.default_rng(0)
    x = rng.standard_normal(SHAPE, dtype=np.float32)
    want = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode=NUMPY[mode])
    if what == "forward":
        if lib == "fastdl":
            fn = lambda: ops.pad2d(x, 1, mode)  # noqa: E731
        elif lib == "numpy":
            fn = lambda: np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode=NUMPY[mode])  # noqa: E731
        else:
            import torch
            xt = torch.from_numpy(x)
            fn = lambda: torch.nn.functional.pad(xt, (1, 1, 1, 1), mode=mode).numpy()  # noqa: E731
        got = benchmark(fn)
        record_roof(benchmark, 4 * (x.size + want.size))
        np.testing.assert_array_equal(got, want)
        return
    if lib == "numpy":
        pytest.skip("NumPy has no pad backward")
    dy = rng.standard_normal(want.shape, dtype=np.float32)
    if lib == "fastdl":
        fn = lambda: ops.pad2d_backward(dy, SHAPE, 1, mode)  # noqa: E731
    else:
        import torch
        xt = torch.from_numpy(x).requires_grad_()
        yt = torch.nn.functional.pad(xt, (1, 1, 1, 1), mode=mode)
        dyt = torch.from_numpy(dy)
        fn = lambda: torch.autograd.grad(yt, xt, dyt, retain_graph=True)[0].numpy()  # noqa: E731
    got = benchmark(fn)
    record_roof(benchmark, 4 * (x.size + dy.size))
    # <pad(x), dy> == <x, pad_backward(dy)>: the adjoint, in float64
    lhs, rhs = np.sum(want.astype(np.float64) * dy), np.sum(x.astype(np.float64) * got)
    assert abs(lhs - rhs) <= 1e-4 * np.abs(want * dy).sum()
