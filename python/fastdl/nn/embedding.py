"""Embedding(num_embeddings, embedding_dim, padding_idx=None): a lookup table, PyTorch's
arguments, names and initialisation.

    parameter  weight (V, D) ~ N(0, 1), the padding_idx row zeroed
    forward    indices (any shape, integers) -> indices.shape + (D,)

padding_idx (negative counts from the end, as PyTorch): that row starts at zero and its gradient
stays zero, so it is never trained. max_norm, scale_grad_by_freq and sparse are not supported.
"""

from __future__ import annotations

import numpy as np

from .. import _random
from . import functional as F
from .layers import _check_int
from .module import Module, Parameter

__all__ = ["Embedding"]


class Embedding(Module):
    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx=None, max_norm=None,
                 norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False,
                 _weight=None, _freeze: bool = False, device=None, dtype=None):
        F._only("Embedding", max_norm=(max_norm, None),
                scale_grad_by_freq=(bool(scale_grad_by_freq), False), sparse=(bool(sparse), False))
        self.num_embeddings = _check_int("Embedding", "num_embeddings", num_embeddings)
        self.embedding_dim = _check_int("Embedding", "embedding_dim", embedding_dim)
        self.padding_idx = F._padding_idx("Embedding", padding_idx, self.num_embeddings)
        dtype = np.dtype(np.float32 if dtype is None else dtype)
        shape = (self.num_embeddings, self.embedding_dim)
        if _weight is None:
            self.weight = Parameter(np.empty(shape, dtype), requires_grad=not _freeze)
            self.reset_parameters()
        else:
            w = np.array(_weight.data if hasattr(_weight, "data") else _weight, dtype=dtype)
            if w.shape != shape:
                raise ValueError(f"Embedding: _weight must have shape {shape}, got {w.shape}")
            self.weight = Parameter(w, requires_grad=not _freeze)
        if device is not None:
            self.to(device)

    def reset_parameters(self) -> None:
        self.weight.data[...] = _random.generator().standard_normal(self.weight.shape)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    @classmethod
    def from_pretrained(cls, embeddings, freeze: bool = True, padding_idx=None, **kwargs):
        """An Embedding holding a copy of the 2-D array `embeddings` (frozen by default)."""
        w = np.asarray(embeddings.data if hasattr(embeddings, "data") else embeddings)
        if w.ndim != 2:
            raise ValueError(f"Embedding.from_pretrained: embeddings must be 2-D, got shape "
                             f"{w.shape}")
        return cls(w.shape[0], w.shape[1], padding_idx=padding_idx, _weight=w, _freeze=freeze,
                   dtype=kwargs.pop("dtype", w.dtype if w.dtype.kind == "f" else None), **kwargs)

    def forward(self, input):
        return F.embedding(input, self.weight, self.padding_idx)

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s if self.padding_idx is None else s + f", padding_idx={self.padding_idx}"
