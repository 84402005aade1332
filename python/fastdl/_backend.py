"""Which array library and which compiled extension an op runs on.

This is the one place that imports the compiled modules: ``_core`` (CPU, always built) and
``_cuda`` (built when a CUDA compiler was found). CuPy is imported lazily, only when a CUDA
array is seen or asked for, so ``import fastdl`` never needs a GPU.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType

import numpy as np

from . import _core

__all__ = ["Backend", "backend_for", "cuda_extension", "cupy", "is_cuda_array"]

CUDA_BUILD_HINT = (
    "fastdl was built without CUDA support (fastdl._cuda is missing). Rebuild with the CUDA "
    "toolkit on PATH, e.g. `pip install . -Ccmake.define.FASTDL_CUDA=ON`, and install CuPy "
    "(`pip install cupy-cuda13x`)."
)


@functools.lru_cache(maxsize=None)
def cuda_extension() -> ModuleType | None:
    """fastdl._cuda, or None when this build has no CUDA extension."""
    try:
        return importlib.import_module("fastdl._cuda")
    except ImportError:
        return None


@functools.lru_cache(maxsize=None)
def cupy() -> ModuleType | None:
    """The cupy module, or None when it is not installed or cannot load."""
    try:
        return importlib.import_module("cupy")
    except Exception:  # CuPy raises assorted errors when its CUDA libraries are missing
        return None


def is_cuda_array(x) -> bool:
    return hasattr(x, "__cuda_array_interface__")


class Backend:
    """An array namespace (``xp``) with the extension whose kernels operate on it.

    ``call`` invokes a kernel by name; on the GPU it passes CuPy's current stream so kernels are
    ordered with the surrounding CuPy work. ``empty(shape, dtype)`` allocates an op's output: on
    the CPU from fastdl's output cache (no page faults for a size seen before), on the GPU from
    CuPy's memory pool.
    """

    def __init__(self, xp: ModuleType, ext: ModuleType, device: str):
        self.xp = xp
        self.ext = ext
        self.device = device
        self.empty = ext.empty if device == "cpu" else xp.empty

    def call(self, name: str, *args, **kwargs):
        if self.device == "cuda":
            kwargs["stream"] = self.xp.cuda.get_current_stream().ptr
        return getattr(self.ext, name)(*args, **kwargs)


CPU = Backend(np, _core, "cpu")


def backend_for(op: str, *arrays) -> Backend:
    """The backend of the given arrays; all on the CPU or all on the GPU, else TypeError."""
    on_gpu = [is_cuda_array(a) for a in arrays if a is not None]
    if not any(on_gpu):
        return CPU
    if not all(on_gpu):
        raise TypeError(f"{op}: inputs mix CPU (NumPy) and GPU (CuPy) arrays; move them to one device")
    ext = cuda_extension()
    if ext is None:
        raise RuntimeError(f"{op}: got a CUDA array, but {CUDA_BUILD_HINT}")
    cp = cupy()
    if cp is None:
        raise RuntimeError(f"{op}: got a CUDA array, but CuPy could not be imported")
    return Backend(cp, ext, "cuda")
