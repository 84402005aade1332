"""Type stubs for fastdl._cuda, the compiled CUDA kernels (float32 CuPy arrays).

Arrays are any object exposing ``__cuda_array_interface__`` (CuPy arrays). Every function runs
asynchronously on ``stream`` (a ``cudaStream_t`` as an int; fastdl.ops passes CuPy's current
stream) and writes its first argument in place.
"""

from typing import Any, Optional, Protocol

class _CudaArray(Protocol):
    @property
    def __cuda_array_interface__(self) -> dict[str, Any]: ...

def device_count() -> int:
    """Number of visible CUDA devices; 0 when there is no driver or GPU (never raises)."""

def gemm(
    out: _CudaArray,
    a: _CudaArray,
    b: _CudaArray,
    *,
    alpha: float = 1.0,
    beta: float = 0.0,
    bias: Optional[_CudaArray] = None,
    bias_axis: int = 1,
    relu: bool = False,
    tf32: bool = False,
    stream: int = 0,
) -> None:
    """out = act(alpha * a @ b + beta * out + bias); a (B?, M, K), b (B?, K, N) strided views."""

def gemm_reference(
    out: _CudaArray,
    a: _CudaArray,
    b: _CudaArray,
    *,
    alpha: float = 1.0,
    beta: float = 0.0,
    bias: Optional[_CudaArray] = None,
    bias_axis: int = 1,
    relu: bool = False,
    stream: int = 0,
) -> None:
    """One thread per output element, same contract as gemm (fp32 only): the test oracle."""

def sum_rows(out: _CudaArray, x: _CudaArray, *, stream: int = 0) -> None:
    """out (N,) = x (M, N) summed over its rows; x C-contiguous."""
