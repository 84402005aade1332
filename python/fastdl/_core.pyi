"""Type stubs for fastdl._core, the compiled CPU kernels. Use fastdl.ops rather than this module."""

from typing import Literal

import numpy as np
import numpy.typing as npt

_Isa = Literal["generic", "avx2", "avx512"]
_Float = np.float32 | np.float64

__version__: str

def cpu_isa() -> _Isa: ...
def cpu_isa_supported() -> _Isa: ...
def get_num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
def gemm_blocking(dtype: np.dtype, isa: _Isa | None = None) -> dict[str, int]: ...
def gemm(
    out: npt.NDArray[_Float],
    a: npt.NDArray[_Float],
    b: npt.NDArray[_Float],
    *,
    alpha: float = 1.0,
    beta: float = 0.0,
    bias: npt.NDArray[_Float] | None = None,
    bias_axis: int = 1,
    relu: bool = False,
    isa: _Isa | None = None,
) -> None: ...
def gemm_reference(
    out: npt.NDArray[_Float],
    a: npt.NDArray[_Float],
    b: npt.NDArray[_Float],
    *,
    alpha: float = 1.0,
    beta: float = 0.0,
    bias: npt.NDArray[_Float] | None = None,
    bias_axis: int = 1,
    relu: bool = False,
) -> None: ...
def sum_rows(out: npt.NDArray[_Float], x: npt.NDArray[_Float]) -> None: ...
def sum_rows_reference(out: npt.NDArray[_Float], x: npt.NDArray[_Float]) -> None: ...
