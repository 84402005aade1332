"""Embedding lookup and its gradient w.r.t. the table.

    embedding(indices, weight) = weight[indices]          shape indices.shape + (D,)
    embedding_backward(dy, indices, num_embeddings, padding_idx=None) -> dweight (V, D):
        zeros, then dweight[indices[...]] += dy[...] (repeated indices accumulate, in index
        order); the row padding_idx stays zero (PyTorch's rule; negative counts from the end)

indices: any integer array of any shape, 0-d and empty included (converted to int64, flattened;
bool and float indices are a TypeError), each in [0, V) (ValueError naming indices, the flat
position, the value and V). weight follows the one dtype rule of ops/_util.py (float32 unless
float64; output dtype = weight's). The CPU backward is bitwise the same for any thread count; on
the GPU (CuPy arrays, float32) it is deterministic too, and a bad index is found on the device
(one synchronisation per call). Kernels: csrc/cpu/embedding.cpp, csrc/cuda/embedding.cu.
"""

from __future__ import annotations

import operator

import numpy as np

from .._backend import is_cuda_array
from ._util import check_ndim, prepare, require, shape_str
from .activation import _contig, _kernel

__all__ = ["embedding", "embedding_backward"]


def _indices(op: str, be, indices):
    """(indices' shape, the indices as a flat C-contiguous int64 array on be's device)."""
    if is_cuda_array(indices) != (be.device == "cuda") and (
            is_cuda_array(indices) or isinstance(indices, np.ndarray)):
        where = "a GPU (CuPy)" if is_cuda_array(indices) else "a CPU (NumPy)"
        raise TypeError(f"{op}: indices is {where} array but the table is on the "
                        f"{be.device.upper()}; move them to one device")
    try:
        idx = be.xp.asarray(indices)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{op}: indices must be an integer array, got "
                        f"{type(indices).__name__} ({e})") from None
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{op}: indices must hold integers (any integer dtype, converted to "
                        f"int64), got dtype {idx.dtype}")
    flat = be.xp.ascontiguousarray(idx.reshape(-1).astype(np.int64, copy=False))
    return tuple(int(s) for s in idx.shape), flat


def _padding_idx(op: str, padding_idx, v: int) -> int:
    """-1 for None; a row in [0, V) for an int in [-V, V) (negative counts from the end)."""
    if padding_idx is None:
        return -1
    try:
        p = operator.index(padding_idx)
    except TypeError:
        raise TypeError(f"{op}: padding_idx must be an int or None, got "
                        f"{type(padding_idx).__name__}") from None
    if not -v <= p < v:
        raise ValueError(f"{op}: padding_idx must be within [-{v}, {v}) (num_embeddings = {v}), "
                         f"got {p}")
    return p + v if p < 0 else p


def embedding(indices, weight):
    """weight[indices]: rows of the (V, D) table, shape indices.shape + (D,)."""
    op = "embedding"
    require(op, weight=weight)
    be, dtype, weight = prepare(op, weight=weight)
    check_ndim(op, "weight", weight, (2,))
    shape, flat = _indices(op, be, indices)
    d = int(weight.shape[1])
    y = be.empty((flat.size, d), dtype)
    _kernel(be, op, "embedding_forward")(y, flat, _contig(be, weight))
    return y.reshape(shape + (d,))


def embedding_backward(dy, indices, num_embeddings, padding_idx=None):
    """Gradient w.r.t. the (num_embeddings, D) table: dy (indices.shape + (D,)) summed into
    the rows the forward read; row padding_idx (None: none) is left zero."""
    op = "embedding_backward"
    require(op, dy=dy)
    be, dtype, dy = prepare(op, dy=dy)
    shape, flat = _indices(op, be, indices)
    try:
        v = operator.index(num_embeddings)
    except TypeError:
        raise TypeError(f"{op}: num_embeddings must be an int, got "
                        f"{type(num_embeddings).__name__}") from None
    if v < 0:
        raise ValueError(f"{op}: num_embeddings must be >= 0, got {v}")
    if dy.ndim != len(shape) + 1 or tuple(dy.shape[:-1]) != shape:
        want = "(" + "".join(f"{s}, " for s in shape) + "D)"
        raise ValueError(f"{op}: dy must have shape indices.shape + (D,) = {want}, got "
                         f"{shape_str(dy.shape)}")
    pad = _padding_idx(op, padding_idx, v)
    d = int(dy.shape[-1])
    dweight = be.empty((v, d), dtype)
    _kernel(be, op, "embedding_backward")(dweight, _contig(be, dy).reshape(flat.size, d), flat, pad)
    return dweight
