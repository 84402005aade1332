"""End to end: the digits MLP must reach a stated test accuracy within a few epochs (about a
second of training), through the public API only; and the demo command line around it."""

import os
import subprocess
import sys

import numpy as np
import pytest

import fastdl


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    from fastdl.demos import mlp_digits

    return mlp_digits, mlp_digits.load_data(seed=0)


def test_digits_mlp_reaches_95_percent_in_12_epochs(digits):
    mlp_digits, data = digits
    fastdl.manual_seed(0)
    model = mlp_digits.build_model()
    result = mlp_digits.train(model, data, epochs=12, seed=0, show_progress=False, log=None)
    assert result["test_accuracy"] >= 0.95, result["test_accuracy"]
    assert len(result["epoch_times"]) == 12


def test_training_is_repeatable(digits):
    mlp_digits, data = digits
    small = tuple(a[:256] for a in data)
    outs = []
    for _ in range(2):
        fastdl.manual_seed(1)
        model = mlp_digits.build_model()
        mlp_digits.train(model, small, epochs=2, seed=3, show_progress=False, log=None)
        outs.append(model(data[2]).numpy())
    np.testing.assert_array_equal(outs[0], outs[1])


def test_demo_command_line(digits):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    r = subprocess.run([sys.executable, "-m", "fastdl", "demo", "--epochs", "1", "--no-torch",
                        "--no-progress"], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    assert "test accuracy" in r.stdout and "epoch   1/1" in r.stdout


def test_demo_rejects_bad_arguments(capsys):
    from fastdl.__main__ import main

    with pytest.raises(SystemExit):
        main(["demo", "nope"])
    assert "invalid choice" in capsys.readouterr().err
    assert main(["demo", "--epochs", "0"]) == 2


def test_missing_sklearn_message(monkeypatch):
    from fastdl import demos

    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(ImportError, match=r'pip install "fastdl\[demo\]"'):
        demos.require_sklearn()
