"""fastdl.data.DataLoader: batching, shuffling with a seed, drop_last, errors."""

import numpy as np
import pytest

import fastdl
from fastdl.data import DataLoader


def test_batches_in_order():
    x = np.arange(10).reshape(10, 1)
    y = np.arange(10) * 2
    dl = DataLoader(x, y, batch_size=4)
    batches = list(dl)
    assert len(dl) == 3 and len(batches) == 3
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    for xb, yb in batches:
        np.testing.assert_array_equal(xb[:, 0] * 2, yb)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches])[:, 0], np.arange(10))


def test_single_array_still_yields_tuples():
    dl = DataLoader(np.arange(5), batch_size=2)
    first = next(iter(dl))
    assert isinstance(first, tuple) and len(first) == 1
    for (xb,) in dl:
        assert xb.ndim == 1


def test_drop_last():
    dl = DataLoader(np.arange(10), batch_size=4, drop_last=True)
    assert len(dl) == 2 and [len(b[0]) for b in dl] == [4, 4]
    dl = DataLoader(np.arange(8), batch_size=4, drop_last=True)
    assert len(dl) == 2
    assert len(DataLoader(np.arange(3), batch_size=4, drop_last=True)) == 0
    assert list(DataLoader(np.arange(3), batch_size=4, drop_last=True)) == []


def test_shuffle_is_a_permutation_and_pairs_stay_aligned():
    x = np.arange(23)
    dl = DataLoader(x, x * 10, batch_size=5, shuffle=True, seed=0)
    epoch1 = list(dl)
    seen = np.concatenate([b[0] for b in epoch1])
    assert sorted(seen.tolist()) == list(range(23)) and not np.array_equal(seen, x)
    for xb, yb in epoch1:
        np.testing.assert_array_equal(xb * 10, yb)
    epoch2 = np.concatenate([b[0] for b in dl])
    assert not np.array_equal(seen, epoch2)  # a new order every epoch


def test_shuffle_is_deterministic_from_seed():
    def epochs(seed, n=3):
        dl = DataLoader(np.arange(50), batch_size=8, shuffle=True, seed=seed)
        return [np.concatenate([b[0] for b in dl]) for _ in range(n)]

    a, b, c = epochs(7), epochs(7), epochs(8)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])
    fastdl.manual_seed(5)
    d = DataLoader(np.arange(50), batch_size=8, shuffle=True)
    fastdl.manual_seed(5)
    e = DataLoader(np.arange(50), batch_size=8, shuffle=True)
    np.testing.assert_array_equal(next(iter(d))[0], next(iter(e))[0])  # seed=None: fastdl's generator


def test_accepts_tensors_and_lists():
    t = fastdl.tensor(np.ones((6, 2), np.float32))
    xb, yb = next(iter(DataLoader(t, [0, 1, 2, 3, 4, 5], batch_size=4)))
    assert isinstance(xb, np.ndarray) and xb.shape == (4, 2) and yb.tolist() == [0, 1, 2, 3]


def test_errors():
    with pytest.raises(ValueError, match="same length"):
        DataLoader(np.arange(5), np.arange(6), batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(np.arange(5), batch_size=0)
    with pytest.raises(TypeError, match="batch_size"):
        DataLoader(np.arange(5), batch_size=2.5)
    with pytest.raises(TypeError):
        DataLoader(np.arange(5))  # batch_size is required
    with pytest.raises(ValueError, match="at least one"):
        DataLoader(batch_size=2)
    with pytest.raises(ValueError, match="0-d"):
        DataLoader(np.float32(1), batch_size=2)
