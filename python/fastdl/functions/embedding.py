"""Autograd Function of the embedding family: a table lookup (fastdl.ops.embedding kernels,
both devices).

    Embedding(weight, indices=idx, padding_idx=p)   weight (V, D), idx any integer array ->
                                                    weight[idx] of shape idx.shape + (D,)

The indices are an option, not a parent (they have no gradient). The backward is
ops.embedding_backward: dweight (V, D), zero but for the rows looked up, repeated indices
accumulating; the padding_idx row (None: none) stays zero, PyTorch's rule.
"""

from __future__ import annotations

from .. import ops
from ..tensor import Function

__all__ = ["Embedding"]


class Embedding(Function):
    def forward(self, weight, indices, padding_idx=None):
        self.indices, self.padding_idx, self.num_embeddings = indices, padding_idx, weight.shape[0]
        return ops.embedding(indices, weight)

    def backward(self, g):
        return ops.embedding_backward(g, self.indices, self.num_embeddings, self.padding_idx)
