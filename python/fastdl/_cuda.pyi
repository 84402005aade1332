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

# ---- conv, pool, norm (the pinned extension API of fastdl._core; float32 only) --------------

def conv2d_forward(
    y: _CudaArray, x: _CudaArray, w: _CudaArray, b: Optional[_CudaArray], stride_h: int,
    stride_w: int, pad_h: int, pad_w: int, dil_h: int, dil_w: int, groups: int, *,
    stream: int = 0,
) -> None:
    """y (N, K, OH, OW) = conv2d(x (N, C, H, W), w (K, C/groups, R, S)) + b (b may be None)."""
def conv2d_forward_reference(
    y: _CudaArray, x: _CudaArray, w: _CudaArray, b: Optional[_CudaArray], stride_h: int,
    stride_w: int, pad_h: int, pad_w: int, dil_h: int, dil_w: int, groups: int, *,
    stream: int = 0,
) -> None: ...
def conv2d_backward_data(
    dx: _CudaArray, dy: _CudaArray, w: _CudaArray, stride_h: int, stride_w: int, pad_h: int,
    pad_w: int, dil_h: int, dil_w: int, groups: int, *, stream: int = 0,
) -> None:
    """dx (N, C, H, W), fully written; H, W from dx (may exceed the smallest input)."""
def conv2d_backward_data_reference(
    dx: _CudaArray, dy: _CudaArray, w: _CudaArray, stride_h: int, stride_w: int, pad_h: int,
    pad_w: int, dil_h: int, dil_w: int, groups: int, *, stream: int = 0,
) -> None: ...
def conv2d_backward_weight(
    dw: _CudaArray, db: Optional[_CudaArray], dy: _CudaArray, x: _CudaArray, stride_h: int,
    stride_w: int, pad_h: int, pad_w: int, dil_h: int, dil_w: int, groups: int, *,
    stream: int = 0,
) -> None:
    """dw = sum over n, oh, ow of dy * x-window; db = dy summed per channel (None: skipped)."""
def conv2d_backward_weight_reference(
    dw: _CudaArray, db: Optional[_CudaArray], dy: _CudaArray, x: _CudaArray, stride_h: int,
    stride_w: int, pad_h: int, pad_w: int, dil_h: int, dil_w: int, groups: int, *,
    stream: int = 0,
) -> None: ...
def max_pool2d_forward(
    y: _CudaArray, argmax: _CudaArray, x: _CudaArray, kernel_h: int, kernel_w: int,
    stride_h: int, stride_w: int, pad_h: int, pad_w: int, dilation_h: int = 1,
    dilation_w: int = 1, ceil_mode: bool = False, *, stream: int = 0,
) -> None:
    """y = window max (a NaN is the max); argmax int64 = its flat index ih * W + iw."""
def max_pool2d_backward(dx: _CudaArray, dy: _CudaArray, argmax: _CudaArray, *, stream: int = 0) -> None:
    """dx = 0, then dx[plane][argmax] += dy; argmax values checked on the device (synchronises)."""
def avg_pool2d_forward(
    y: _CudaArray, x: _CudaArray, kernel_h: int, kernel_w: int, stride_h: int, stride_w: int,
    pad_h: int, pad_w: int, ceil_mode: bool = False, count_include_pad: bool = True,
    divisor_override: int | None = None, *, stream: int = 0,
) -> None: ...
def avg_pool2d_backward(
    dx: _CudaArray, dy: _CudaArray, kernel_h: int, kernel_w: int, stride_h: int, stride_w: int,
    pad_h: int, pad_w: int, ceil_mode: bool = False, count_include_pad: bool = True,
    divisor_override: int | None = None, *, stream: int = 0,
) -> None: ...
def adaptive_avg_pool2d_forward(y: _CudaArray, x: _CudaArray, *, stream: int = 0) -> None: ...
def adaptive_avg_pool2d_backward(dx: _CudaArray, dy: _CudaArray, *, stream: int = 0) -> None: ...
def batch_norm_forward(
    y: _CudaArray, save_mean: _CudaArray, save_invstd: _CudaArray, x: _CudaArray,
    weight: Optional[_CudaArray], bias: Optional[_CudaArray],
    running_mean: Optional[_CudaArray], running_var: Optional[_CudaArray], training: bool,
    momentum: float, eps: float, *, stream: int = 0,
) -> None:
    """x (N, C, L); training: batch statistics (running stats updated in place), eval: the
    running statistics; save_mean / save_invstd receive the statistics used."""
def batch_norm_backward(
    dx: _CudaArray, dweight: _CudaArray, dbias: _CudaArray, dy: _CudaArray, x: _CudaArray,
    weight: Optional[_CudaArray], save_mean: _CudaArray, save_invstd: _CudaArray,
    training: bool, *, stream: int = 0,
) -> None: ...

# ---- embedding (indices int64 (M,), weight / dweight (V, D), y / dy (M, D) float32) -----------
def embedding_forward(y: _CudaArray, indices: _CudaArray, weight: _CudaArray, *, stream: int = 0) -> None:
    """y = weight[indices]; a bad index raises ValueError after one synchronisation."""
def embedding_backward(
    dweight: _CudaArray, dy: _CudaArray, indices: _CudaArray, padding_idx: int, *, stream: int = 0
) -> None:
    """dweight = 0, then dweight[indices[m]] += dy[m] in index order (deterministic); row
    padding_idx (-1: none) stays zero."""

# ---- rnn (x (N, I) / (T, N, I), h (N, H), gates (N, 4H) / (T, N, 4H); None for optional arrays;
# all enqueued on `stream`, no synchronisation) ------------------------------------------------
def rnn_cell_forward(
    h_new: _CudaArray, x: _CudaArray, h: _CudaArray, w_ih: _CudaArray, w_hh: _CudaArray,
    b_ih: Optional[_CudaArray], b_hh: Optional[_CudaArray], *, stream: int = 0,
) -> None:
    """h_new = tanh(x w_ih^T + b_ih + h w_hh^T + b_hh)."""
def rnn_cell_backward(
    dx: _CudaArray, dh: _CudaArray, dw_ih: _CudaArray, dw_hh: _CudaArray, db: _CudaArray,
    dh_new: _CudaArray, x: _CudaArray, h: _CudaArray, w_ih: _CudaArray, w_hh: _CudaArray,
    h_new: _CudaArray, *, stream: int = 0,
) -> None: ...
def lstm_cell_forward(
    h_new: _CudaArray, c_new: _CudaArray, gates: _CudaArray, x: _CudaArray, h: _CudaArray,
    c: _CudaArray, w_ih: _CudaArray, w_hh: _CudaArray, b_ih: Optional[_CudaArray],
    b_hh: Optional[_CudaArray], *, stream: int = 0,
) -> None:
    """One LSTM step; gates receives the activated i | f | g | o."""
def lstm_cell_backward(
    dx: _CudaArray, dh: _CudaArray, dc: _CudaArray, dw_ih: _CudaArray, dw_hh: _CudaArray,
    db: _CudaArray, dh_new: Optional[_CudaArray], dc_new: Optional[_CudaArray], x: _CudaArray,
    h: _CudaArray, c: _CudaArray, w_ih: _CudaArray, w_hh: _CudaArray, gates: _CudaArray,
    c_new: _CudaArray, *, stream: int = 0,
) -> None: ...
def lstm_forward(
    y: _CudaArray, h_n: _CudaArray, c_n: _CudaArray, gates: Optional[_CudaArray],
    cells: Optional[_CudaArray], x: _CudaArray, h0: _CudaArray, c0: _CudaArray,
    w_ih: _CudaArray, w_hh: _CudaArray, b_ih: Optional[_CudaArray], b_hh: Optional[_CudaArray],
    *, stream: int = 0,
) -> None:
    """The whole sequence; gates and cells both None for inference."""
def lstm_backward(
    dx: _CudaArray, dh0: _CudaArray, dc0: _CudaArray, dw_ih: _CudaArray, dw_hh: _CudaArray,
    db: _CudaArray, dy: Optional[_CudaArray], dh_n: Optional[_CudaArray],
    dc_n: Optional[_CudaArray], x: _CudaArray, h0: _CudaArray, c0: _CudaArray,
    w_ih: _CudaArray, w_hh: _CudaArray, y: _CudaArray, gates: _CudaArray, cells: _CudaArray,
    *, stream: int = 0,
) -> None:
    """Backpropagation through time; dy, dh_n, dc_n None count as zero."""
