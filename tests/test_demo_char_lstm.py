"""The char_lstm demo end to end with tiny settings (a few seconds): the corpus is deterministic
and chunked right, the loss falls, the same model trained in PyTorch from the same weights and
batches gives the same losses, the sample and the PNG come out, and the command line runs it.
The full run's target (loss < 2 nats/char in the default steps) is checked outside the suite."""

import math

import numpy as np
import pytest

from fastdl.demos import DEMOS, char_lstm

TINY = dict(hidden=24, embed=8, batch=4, seq=12, sample_length=40, progress=False)


def _quiet(*args):
    pass


def test_corpus_is_deterministic_and_chunked():
    text = char_lstm.load_text()
    assert text == char_lstm.load_text()
    assert len(text) > 100_000 and set(text) <= set(chr(c) for c in range(32, 127)) | {"\n"}
    corpus = char_lstm.Corpus(text, batch=5, seq=7)
    assert corpus.vocab_size == len(set(text)) and 60 <= corpus.vocab_size <= 97
    x, y = corpus.chunk(0)
    assert x.shape == y.shape == (7, 5) and x.dtype == np.int64
    np.testing.assert_array_equal(x[1:], y[:-1])  # targets are the next characters
    x1, _ = corpus.chunk(1)
    np.testing.assert_array_equal(x1[0], y[-1])  # chunk 1 continues chunk 0 in every stream
    assert corpus.decode(x[:, 0]) == text[:7]
    np.testing.assert_array_equal(corpus.chunk(corpus.steps_per_epoch)[0], x)  # wraps around
    with pytest.raises(ValueError, match="too short"):
        char_lstm.Corpus("abc" * 10, batch=4, seq=12)


def test_char_lstm_runs_learns_and_matches_pytorch(tmp_path):
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    r = char_lstm.run(steps=40, torch_steps=6, out=str(tmp_path), log=_quiet, **TINY)
    torch.set_num_threads(threads)
    losses = r["losses"]
    assert len(losses) == len(r["step_times"]) == 40
    v = r["corpus"].vocab_size
    assert abs(losses[0] - math.log(v)) < 0.3  # starts near uniform
    assert np.mean(losses[-5:]) < losses[0] - 0.8  # and falls
    assert np.isfinite(r["val_loss"]) and r["val_loss"] < losses[0]
    assert r["sample"].startswith("The ") and len(r["sample"]) == 44
    np.testing.assert_allclose(r["torch"]["losses"], losses[:6], rtol=2e-3)
    assert r["speedup"] > 0
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert r["png"] is None
    else:
        png = tmp_path / "char_lstm.png"
        assert r["png"] == str(png) and png.stat().st_size > 0


def test_char_lstm_two_layers_without_torch(tmp_path):
    r = char_lstm.run(steps=3, layers=2, compare_torch=False, out=str(tmp_path / "c.png"),
                      log=_quiet, **TINY)
    assert r["torch"] is None and len(r["losses"]) == 3
    assert r["model"].lstm.num_layers == 2
    assert char_lstm.loss_curve([4.0, 3.0, 2.0, 1.0], points=2) == [(2, 3.5), (4, 1.5)]


def test_cli_lists_and_runs_char_lstm(capsys, tmp_path, monkeypatch):
    from fastdl.__main__ import main

    assert "char_lstm" in DEMOS
    assert main(["demo", "--list"]) == 0
    assert "char_lstm" in capsys.readouterr().out
    assert main(["demo", "mlp_digits", "--steps", "3"]) == 2
    assert "--steps" in capsys.readouterr().err
    assert main(["demo", "char_lstm", "--steps", "0"]) == 2
    monkeypatch.setattr(char_lstm, "HIDDEN", 16)  # the CLI's defaults, made small
    monkeypatch.setattr(char_lstm, "EMBED", 8)
    monkeypatch.setattr(char_lstm, "run", _small_run(char_lstm.run))
    assert main(["demo", "char_lstm", "--steps", "2", "--no-torch", "--no-progress",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "loss (nats/char" in out and "sample (temperature" in out


def _small_run(run):
    import inspect

    def small(**kw):
        return run(hidden=16, embed=8, batch=4, seq=8, sample_length=10, **kw)

    small.__signature__ = inspect.signature(run)
    return small
