"""Process-wide switches for the compute backends, under PyTorch's names.

    import fastdl
    fastdl.backends.cuda.matmul.allow_tf32 = True   # GPU matmul/linear on TF32 tensor cores

``allow_tf32`` (default False: exact float32) lets the CUDA GEMM round its inputs to TF32
(10-bit mantissa, float32 accumulation), about 1e-3 relative error for a large speedup on
Ampere and newer GPUs. It is read at each call, so it can be flipped at any time. CPU ops ignore
it. Unknown attribute names raise AttributeError rather than silently doing nothing.
"""

from __future__ import annotations

__all__ = ["cuda"]


class _MatmulSettings:
    """``fastdl.backends.cuda.matmul``: how float32 matrix products may run on the GPU."""

    __slots__ = ("_allow_tf32",)

    def __init__(self) -> None:
        self._allow_tf32 = False

    @property
    def allow_tf32(self) -> bool:
        return self._allow_tf32

    @allow_tf32.setter
    def allow_tf32(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"allow_tf32 must be a bool, got {type(value).__name__}")
        self._allow_tf32 = value

    def __repr__(self) -> str:
        return f"fastdl.backends.cuda.matmul(allow_tf32={self._allow_tf32})"


class _CudaSettings:
    """``fastdl.backends.cuda``."""

    __slots__ = ("matmul",)

    def __init__(self) -> None:
        self.matmul = _MatmulSettings()

    def __repr__(self) -> str:
        return f"fastdl.backends.cuda(matmul={self.matmul!r})"


cuda = _CudaSettings()
