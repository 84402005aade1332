"""Type stubs for fastdl._cuda, the compiled CUDA kernels (float32 CuPy arrays).

Arrays are any object exposing ``__cuda_array_interface__`` (CuPy arrays). Every kernel runs
asynchronously on ``stream`` (a ``cudaStream_t`` as an int; fastdl.ops passes CuPy's current
stream); those returning None write their first argument in place; those returning a Python
float (the loss forwards, clip_grad_norm_) synchronise the stream.
"""

from collections.abc import Iterable
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

# ---- activations, softmax, losses, dropout, element-wise (same contract as fastdl._core) ----

def relu_forward(out: _CudaArray, x: _CudaArray, *, stream: int = 0) -> None: ...
def sigmoid_forward(out: _CudaArray, x: _CudaArray, *, stream: int = 0) -> None: ...
def tanh_forward(out: _CudaArray, x: _CudaArray, *, stream: int = 0) -> None: ...
def relu_forward_reference(out: _CudaArray, x: _CudaArray, *, stream: int = 0) -> None: ...
def sigmoid_forward_reference(out: _CudaArray, x: _CudaArray, *, stream: int = 0) -> None: ...
def tanh_forward_reference(out: _CudaArray, x: _CudaArray, *, stream: int = 0) -> None: ...
def relu_backward(out: _CudaArray, dy: _CudaArray, y: _CudaArray, *, stream: int = 0) -> None: ...
def sigmoid_backward(out: _CudaArray, dy: _CudaArray, y: _CudaArray, *, stream: int = 0) -> None: ...
def tanh_backward(out: _CudaArray, dy: _CudaArray, y: _CudaArray, *, stream: int = 0) -> None: ...
def softmax_forward(out: _CudaArray, x: _CudaArray, *, log: bool = False, stream: int = 0) -> None:
    """softmax (log_softmax with log=True) along the last axis; an all -inf row gives zeros
    (log: -inf)."""
def softmax_forward_reference(out: _CudaArray, x: _CudaArray, *, log: bool = False, stream: int = 0) -> None: ...
def softmax_backward(
    out: _CudaArray, dy: _CudaArray, y: _CudaArray, *, log: bool = False, stream: int = 0
) -> None: ...
def cross_entropy_forward(
    probs: _CudaArray, logits: _CudaArray, target: _CudaArray, *, stream: int = 0
) -> float:
    """Fills probs = softmax(logits), returns the mean loss (synchronises); target int64 (N,)."""
def cross_entropy_backward(
    out: _CudaArray, probs: _CudaArray, target: _CudaArray, *, stream: int = 0
) -> None: ...
def mse_forward(pred: _CudaArray, target: _CudaArray, *, stream: int = 0) -> float: ...
def mse_backward(out: _CudaArray, pred: _CudaArray, target: _CudaArray, *, stream: int = 0) -> None: ...
def bce_with_logits_forward(logits: _CudaArray, target: _CudaArray, *, stream: int = 0) -> float: ...
def bce_with_logits_backward(
    out: _CudaArray, logits: _CudaArray, target: _CudaArray, *, stream: int = 0
) -> None: ...
def dropout_forward(
    out: _CudaArray, mask: _CudaArray, x: _CudaArray, p: float, seed: int, *, stream: int = 0
) -> None:
    """Inverted dropout; mask (uint8) bit-identical to the CPU kernel's for the same seed."""
def dropout_forward_reference(
    out: _CudaArray, mask: _CudaArray, x: _CudaArray, p: float, seed: int, *, stream: int = 0
) -> None: ...
def dropout_backward(
    out: _CudaArray, dy: _CudaArray, mask: _CudaArray, p: float, *, stream: int = 0
) -> None: ...
def bias_add(out: _CudaArray, x: _CudaArray, b: _CudaArray, axis: int = 1, *, stream: int = 0) -> None: ...

# ---- optimizers and gradient clipping (float32, in place) ----

def sgd_step_(
    p: _CudaArray, g: _CudaArray, buf: Optional[_CudaArray], lr: float, momentum: float = 0.0,
    weight_decay: float = 0.0, nesterov: bool = False, dampening: float = 0.0, *,
    maximize: bool = False, first_step: bool = False, stream: int = 0,
) -> None: ...
def adam_step_(
    p: _CudaArray, g: _CudaArray, m: _CudaArray, v: _CudaArray, step: float, lr: float,
    beta1: float, beta2: float, eps: float, weight_decay: float = 0.0, decoupled: bool = False, *,
    amsgrad: bool = False, max_v: Optional[_CudaArray] = None, maximize: bool = False,
    stream: int = 0,
) -> None: ...
def rmsprop_step_(
    p: _CudaArray, g: _CudaArray, square_avg: _CudaArray, lr: float, alpha: float = 0.99,
    eps: float = 1e-8, weight_decay: float = 0.0, momentum: float = 0.0,
    buf: Optional[_CudaArray] = None, centered: bool = False,
    grad_avg: Optional[_CudaArray] = None, *, maximize: bool = False, stream: int = 0,
) -> None: ...
def adagrad_step_(
    p: _CudaArray, g: _CudaArray, sum_sq: _CudaArray, lr: float, eps: float = 1e-10,
    weight_decay: float = 0.0, *, maximize: bool = False, stream: int = 0,
) -> None: ...
def clip_grad_norm_(
    grads: Iterable[Optional[_CudaArray]], max_norm: float, norm_type: float = 2.0,
    error_if_nonfinite: bool = False, *, stream: int = 0,
) -> float:
    """Scales the float32 CUDA arrays in place; returns the total norm (deterministic)."""
