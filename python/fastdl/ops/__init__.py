"""Functional ops: arrays in, arrays out. Each ``*_backward`` returns gradients in argument order.

NumPy arrays run on the CPU kernels (fastdl._core), CuPy arrays on the CUDA kernels
(fastdl._cuda). See DESIGN.md section 3 for the contract.
"""

from .dense import *  # noqa: F401,F403
from .dense import __all__ as _dense
from .optim import *  # noqa: F401,F403
from .optim import __all__ as _optim

__all__ = [*_dense, *_optim]
