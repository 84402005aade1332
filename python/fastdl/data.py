"""Mini-batches from arrays: ``DataLoader(*arrays, batch_size, shuffle=False, seed=None,
drop_last=False)``.

    for xb, yb in DataLoader(x, y, batch_size=64, shuffle=True, seed=0):
        ...

Every iteration yields a tuple with one mini-batch per array (a tuple even for a single array:
``for (xb,) in DataLoader(x, batch_size=32)``), sliced along the first axis, as arrays of the
same kind (NumPy or CuPy; Tensors are read through ``.data``). Without shuffling the batches are
views; with it, copies in a new random order every epoch. The orders come from one generator
made from ``seed`` when the loader is built (or from a seed drawn from fastdl's generator when
seed is None), so a given seed gives the same sequence of epochs in every run.
"""

from __future__ import annotations

import numpy as np

from . import _backend, _random
from .tensor import Tensor

__all__ = ["DataLoader"]


class DataLoader:
    def __init__(self, *arrays, batch_size: int, shuffle: bool = False, seed=None,
                 drop_last: bool = False):
        if not arrays:
            raise ValueError("DataLoader: give at least one array")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise TypeError(f"DataLoader: batch_size must be an int, got {type(batch_size).__name__}")
        if batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        data = []
        for i, a in enumerate(arrays):
            a = a.data if isinstance(a, Tensor) else a
            if not (isinstance(a, np.ndarray) or _backend.is_cuda_array(a)):
                try:
                    a = np.asarray(a)
                except (TypeError, ValueError) as e:
                    raise TypeError(f"DataLoader: array {i} is not array-like ({e})") from None
            if a.ndim == 0:
                raise ValueError(f"DataLoader: array {i} is 0-d; arrays need a first (sample) axis")
            data.append(a)
        lengths = [len(a) for a in data]
        if len(set(lengths)) != 1:
            raise ValueError(f"DataLoader: arrays must have the same length along axis 0, got {lengths}")
        self.arrays = tuple(data)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = _random.next_seed() if seed is None else seed
        self._rng = np.random.default_rng(self.seed)

    @property
    def num_samples(self) -> int:
        return len(self.arrays[0])

    def __len__(self) -> int:
        """Batches per epoch."""
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self):
        n, b = self.num_samples, self.batch_size
        stop = n - n % b if self.drop_last else n
        if not self.shuffle:
            for i in range(0, stop, b):
                yield tuple(a[i:i + b] for a in self.arrays)
            return
        order = self._rng.permutation(n)
        for i in range(0, stop, b):
            idx, idx_gpu, batch = order[i:i + b], None, []
            for a in self.arrays:
                if _backend.is_cuda_array(a):
                    if idx_gpu is None:
                        idx_gpu = _backend.cupy().asarray(idx)
                    batch.append(a[idx_gpu])
                else:
                    batch.append(a[idx])
            yield tuple(batch)

    def __repr__(self):
        return (f"DataLoader({len(self.arrays)} array(s) of {self.num_samples} samples, "
                f"batch_size={self.batch_size}, shuffle={self.shuffle}, drop_last={self.drop_last})")
