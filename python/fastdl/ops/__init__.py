"""Functional ops: arrays in, arrays out. Each ``*_backward`` returns gradients in argument order.

NumPy arrays run on the CPU kernels (fastdl._core), CuPy arrays on the CUDA kernels
(fastdl._cuda). See DESIGN.md section 3 for the contract.
"""

from .dense import linear, linear_backward, matmul, matmul_backward

__all__ = ["matmul", "matmul_backward", "linear", "linear_backward"]
