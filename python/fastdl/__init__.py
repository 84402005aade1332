"""fastdl: hand-written C++ (SIMD + OpenMP) and CUDA kernels for deep learning, every one with its
backward pass, under a thin NumPy/CuPy Python layer.

    import fastdl
    y = fastdl.ops.linear(x, w, b)
    dx, dw, db = fastdl.ops.linear_backward(dy, x, w)

    model = fastdl.nn.Sequential(fastdl.nn.Linear(64, 128), fastdl.nn.ReLU(), fastdl.nn.Linear(128, 10))
    opt = fastdl.optim.Adam(model.parameters(), lr=1e-3)
    loss = fastdl.nn.CrossEntropyLoss()(model(fastdl.tensor(x)), y)
    opt.zero_grad(); loss.backward(); opt.step()
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _dist_version

from . import _backend, _core, backends, ops
from ._random import manual_seed
from ._serialize import load, save
from .tensor import Tensor, enable_grad, is_grad_enabled, no_grad, tensor
from . import data, nn, optim  # noqa: E402  (they build on Tensor)

try:
    __version__ = _dist_version("fastdl")
except PackageNotFoundError:  # running from a source tree
    __version__ = getattr(_core, "__version__", "0+unknown")

# Read FASTDL_CPU_ISA now, so a bad value fails the import with a clear message instead of the
# first kernel call.
_core.cpu_isa()

__all__ = ["__version__", "info", "set_num_threads", "get_num_threads", "cuda_available", "ops",
           "manual_seed", "Tensor", "tensor", "no_grad", "enable_grad", "is_grad_enabled",
           "save", "load", "nn", "optim", "data"]


def set_num_threads(n: int) -> None:
    """Set how many threads fastdl's CPU kernels use (default: OMP_NUM_THREADS or all cores)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """How many threads fastdl's CPU kernels use."""
    return _core.get_num_threads()


def cuda_available() -> bool:
    """True when the CUDA extension was built, CuPy imports and a GPU is visible."""
    ext, cp = _backend.cuda_extension(), _backend.cupy()
    if ext is None or cp is None:
        return False
    try:
        return ext.device_count() > 0
    except Exception:
        return False


def info() -> dict:
    """Build and runtime facts: version, CPU ISA in use and supported, threads, CUDA."""
    ext = _backend.cuda_extension()
    return {
        "version": __version__,
        "cpu_isa": _core.cpu_isa(),
        "cpu_isa_supported": _core.cpu_isa_supported(),
        "num_threads": get_num_threads(),
        "cuda_built": ext is not None,
        "cuda_available": cuda_available(),
    }
