"""The transformer demo end to end with tiny settings (a few seconds): the data is seeded and
right, the held-out accuracy rises, the same model trained in PyTorch from the same weights and
batches gives the same losses, and the command line lists and runs it. The full run's target
(>= 99% token accuracy in the default steps) is checked outside the suite."""

import numpy as np
import pytest

from fastdl.demos import DEMOS
from fastdl.demos import transformer as demo

TINY = dict(length=6, batch=32, d_model=16, nhead=2, eval_size=200, progress=False, lr=1e-2)


def _quiet(*args):
    pass


def test_batches_are_seeded_sorted_and_reversed():
    x, y = demo.make_batch(np.random.default_rng(1), 5, 9, "sort")
    x2, y2 = demo.make_batch(np.random.default_rng(1), 5, 9, "sort")
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert x.shape == y.shape == (5, 9) and x.dtype == y.dtype == np.int64
    assert x.min() >= 0 and x.max() <= 9
    assert np.all(np.diff(y, axis=1) >= 0) and np.array_equal(np.sort(x, 1), y)
    xr, yr = demo.make_batch(np.random.default_rng(1), 5, 9, "reverse")
    assert np.array_equal(yr, xr[:, ::-1])
    assert demo.lr_at(0, 100, 1.0, 10) == pytest.approx(0.1)
    assert demo.lr_at(10, 100, 1.0, 10) == pytest.approx(1.0)
    assert demo.lr_at(99, 100, 1.0, 10) < 0.01


@pytest.mark.parametrize("task", ["reverse", "sort"])
def test_transformer_demo_learns_and_matches_pytorch(task):
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    r = demo.run(steps=60, torch_steps=4, task=task, log=_quiet, **TINY)
    torch.set_num_threads(threads)
    losses = r["losses"]
    assert len(losses) == len(r["step_times"]) == 60
    assert abs(losses[0] - np.log(10)) < 0.5  # starts near uniform over the digits
    assert np.mean(losses[-5:]) < losses[0] - 0.5  # and falls
    assert r["curve"][-1][1] > 0.25 and r["token_accuracy"] > 0.25  # chance is 0.1
    assert r["curve"][-1][1] > r["curve"][0][1] - 0.05
    np.testing.assert_allclose(r["torch"]["losses"], losses[:4], rtol=2e-3)
    assert r["speedup"] > 0
    out = r["model"](np.zeros((2, 6), np.int64))
    assert out.shape == (2, 6, 10)


def test_transformer_demo_cli(capsys):
    from fastdl.__main__ import main

    assert "transformer" in DEMOS
    assert main(["demo", "--list"]) == 0
    assert "transformer" in capsys.readouterr().out
    assert main(["demo", "transformer", "--steps", "3", "--no-torch", "--no-progress"]) == 0
    assert "token accuracy" in capsys.readouterr().out
    with pytest.raises(ValueError, match="task must be one of"):
        demo.run(steps=1, task="copy", log=_quiet)
