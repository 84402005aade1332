"""The CNN demos (cnn_digits, segmentation) end to end with tiny settings (a few seconds): they
run, return sane results, train exactly as the same model in PyTorch does from the same weights
and batches, and the command line lists and runs them. The accuracy targets themselves
(98.5% digits accuracy, 0.80 mean IoU) take the full runs and are checked outside the suite."""

import numpy as np
import pytest

import fastdl
from fastdl.demos import DEMOS, segmentation


def _quiet(*args):
    pass


def test_cnn_digits_runs_and_matches_pytorch():
    pytest.importorskip("sklearn")
    from fastdl.demos import cnn_digits

    torch = pytest.importorskip("torch")
    torch_threads = torch.get_num_threads()
    r = cnn_digits.run(epochs=2, n_train=96, progress=False, log=_quiet)
    torch.set_num_threads(torch_threads)
    assert set(r) >= {"epoch_times", "losses", "test_accuracy", "model", "torch", "speedup"}
    assert len(r["epoch_times"]) == 2 and 0.0 <= r["test_accuracy"] <= 1.0
    assert r["test_accuracy"] > 0.3  # 10 classes: well above chance after 6 steps
    t = r["torch"]
    # same weights, same batches, same arithmetic up to float32 rounding
    np.testing.assert_allclose(r["losses"], t["losses"], rtol=2e-3)
    assert abs(r["test_accuracy"] - t["test_accuracy"]) <= 0.02
    assert r["model"](np.zeros((1, 1, 8, 8), np.float32)).shape == (1, 10)


def test_cnn_digits_split_and_shapes():
    pytest.importorskip("sklearn")
    from fastdl.demos import cnn_digits

    x_tr, y_tr, x_te, y_te = cnn_digits.load_data(seed=0)
    assert x_tr.shape == (1437, 1, 8, 8) and x_te.shape == (360, 1, 8, 8)
    assert x_tr.dtype == np.float32 and y_tr.dtype == np.int64
    assert abs(float(x_tr.mean())) < 1e-5 and abs(float(x_tr.std()) - 1) < 1e-4
    assert np.array_equal(np.bincount(y_te), np.bincount(cnn_digits.load_data(seed=0)[3]))


def test_shapes_dataset():
    x, y = segmentation.make_shapes(40, seed=5)
    x2, y2 = segmentation.make_shapes(40, seed=5)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)  # seeded
    assert x.shape == (40, 1, 32, 32) and x.dtype == np.float32
    assert y.shape == (40, 32, 32) and y.dtype == np.int64
    assert set(np.unique(y)) == {0, 1, 2, 3}
    assert not np.array_equal(segmentation.make_shapes(40, seed=6)[1], y)
    for k in (1, 2, 3):  # shapes differ from the background in brightness
        inside = np.abs(x[:, 0][y == k] - np.median(x[:, 0][y == 0]))
        assert inside.mean() > 0.2
    x_tr, y_tr, x_te, y_te = segmentation.load_data(0, 20, 10)
    assert len(x_tr) == 20 and len(x_te) == 10 and not np.array_equal(x_tr[:10], x_te)


def test_confusion_and_iou():
    truth = np.array([[0, 0, 1, 1], [2, 2, 3, 3]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 3, 3]])
    conf = segmentation.confusion(pred, truth)
    assert conf.sum() == 8 and conf[0, 1] == 1 and conf[2, 0] == 1
    iou = segmentation.iou(conf)
    np.testing.assert_allclose(iou, [1 / 3, 2 / 3, 1 / 2, 1.0])


def test_segmentation_runs_and_matches_pytorch(tmp_path):
    torch = pytest.importorskip("torch")
    torch_threads = torch.get_num_threads()
    r = segmentation.run(epochs=1, n_train=64, n_test=16, progress=False, out=str(tmp_path),
                         log=_quiet)
    torch.set_num_threads(torch_threads)
    assert set(r) >= {"epoch_times", "losses", "mean_iou", "iou", "pixel_accuracy", "pred", "torch"}
    assert list(r["iou"]) == list(segmentation.CLASSES) and 0.0 <= r["mean_iou"] <= 1.0
    assert r["pred"].shape == (16, 32, 32)
    np.testing.assert_allclose(r["losses"], r["torch"]["losses"], rtol=2e-3)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert r["png"] is None
    else:
        assert r["png"] == str(tmp_path / "segmentation.png") and (tmp_path / "segmentation.png").stat().st_size > 0


def test_segmentation_model_shapes_and_state_dict():
    torch = pytest.importorskip("torch")
    fastdl.manual_seed(0)
    ours = segmentation.build_model(width=4)
    theirs = segmentation.build_torch_model(width=4)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 1, 16, 12)).astype(np.float32)
    theirs.train()
    want = theirs(torch.from_numpy(x)).detach().numpy()
    got = ours(x).numpy()
    assert got.shape == (2, 4, 16, 12)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_demo_list_and_out_flag(capsys, tmp_path):
    from fastdl.__main__ import main

    assert main(["demo", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("mlp_digits", "cnn_digits", "segmentation"))
    assert {"cnn_digits", "segmentation"} <= set(DEMOS)
    assert main(["demo", "mlp_digits", "--out", str(tmp_path)]) == 2
    assert "--out" in capsys.readouterr().err
