"""Fused optimizer steps and gradient-norm clipping, in place on NumPy arrays.

Each step reads the gradient ``g`` once and updates the parameter ``p`` and its state buffers in
one pass (one C++ kernel, SIMD + OpenMP), with PyTorch's update rules exactly: epsilon after the
square root, Adam's bias corrections in float64, AdamW's decoupled decay. The equations are in
``csrc/cpu/optim.cpp``. Shapes: every buffer has ``p``'s shape.

Arguments updated in place (``p`` and the state buffers) must be writable C-contiguous arrays of
one float dtype (float32 or float64) and ``p``'s shape: ``TypeError`` for a wrong type, dtype or
layout (a copy would be updated instead of the caller's array), ``ValueError`` for a wrong shape.
``g`` is only read: anything ``numpy.asarray`` accepts, converted to ``p``'s dtype if needed.
Invalid hyper-parameters raise ``ValueError`` as PyTorch's optimizers do (``lr < 0``, ``eps < 0``,
betas outside [0, 1) ...). Every step returns None.
On the GPU (CuPy arrays) the same functions run fastdl._cuda's fused kernels, float32 only, on
CuPy's current stream; ``clip_grad_norm_`` copies the norm back (a synchronisation).

The optimizer classes (``fastdl.optim``) own the state and the step count; these functions are
their arithmetic. Options PyTorch's optimizers have beyond DESIGN.md's arguments are keywords
with PyTorch's names: ``dampening`` and ``maximize`` (SGD), ``amsgrad`` and ``maximize`` (Adam),
``centered``/``grad_avg`` and ``maximize`` (RMSprop), ``maximize`` (Adagrad).
"""

from __future__ import annotations

import functools

from .._backend import backend_for, cupy, is_cuda_array

__all__ = ["sgd_step_", "adam_step_", "rmsprop_step_", "adagrad_step_", "clip_grad_norm_"]


def _ext(op: str, *arrays):
    """The kernel `op` for these arrays: fastdl._core's for NumPy arrays, fastdl._cuda's (on
    CuPy's current stream) for CuPy arrays."""
    be = backend_for(op, *arrays)
    if be.device == "cuda" and not hasattr(be.ext, op):
        raise NotImplementedError(f"{op}: no CUDA kernel yet; move the arrays to the CPU")
    return functools.partial(be.call, op)


def _grad(g, p):
    """On the GPU, g as a C-contiguous array of p's dtype (the CUDA kernels read it flat; the CPU
    binding converts for itself)."""
    if is_cuda_array(g) and is_cuda_array(p):
        g = cupy().ascontiguousarray(g, dtype=p.dtype)
    return g


def sgd_step_(p, g, buf, lr, momentum=0.0, weight_decay=0.0, nesterov=False, dampening=0.0, *,
              maximize=False, first_step=False) -> None:
    """One SGD step in place (PyTorch's ``torch.optim.SGD``)::

        d = g + weight_decay * p              (d = -g + ... with maximize)
        if momentum:
            buf = d                                    if first_step
            buf = momentum * buf + (1 - dampening) * d otherwise
            d = d + momentum * buf if nesterov else buf
        p -= lr * d

    ``buf`` may be None when ``momentum == 0``. PyTorch starts the momentum buffer as a copy of the
    first step's ``d``; pass ``first_step=True`` on that step (``buf``'s contents are then only
    written, so it may be uninitialised). ``nesterov`` needs ``momentum > 0`` and
    ``dampening == 0`` (ValueError otherwise, as in PyTorch).
    """
    _ext("sgd_step_", p, g, buf)(
        p, _grad(g, p), buf, lr, momentum, weight_decay, nesterov, dampening, maximize=maximize,
        first_step=first_step)


def adam_step_(p, g, m, v, step, lr, beta1, beta2, eps, weight_decay=0.0, decoupled=False, *,
               amsgrad=False, max_v=None, maximize=False) -> None:
    """One Adam (``decoupled=False``) or AdamW (``decoupled=True``) step in place::

        d = g                                  (-g with maximize)
        AdamW: p *= 1 - lr * weight_decay;     Adam: d += weight_decay * p
        m = lerp(m, d, 1 - beta1)              (m + (1 - beta1) * (d - m))
        v = beta2 * v + (1 - beta2) * d * d
        v_hat = max_v = max(max_v, v) with amsgrad, else v
        p -= lr / (1 - beta1**step) * m / (sqrt(v_hat) / sqrt(1 - beta2**step) + eps)

    ``step`` is the 1-based step count (the caller increments it before the call, as PyTorch
    does); the bias corrections are computed in float64. ``amsgrad=True`` needs ``max_v`` (zeros
    at the start, like ``m`` and ``v``).
    """
    _ext("adam_step_", p, g, m, v, max_v)(
        p, _grad(g, p), m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled, amsgrad=amsgrad,
        max_v=max_v, maximize=maximize)


def rmsprop_step_(p, g, square_avg, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                  buf=None, centered=False, grad_avg=None, *, maximize=False) -> None:
    """One RMSprop step in place (PyTorch's ``torch.optim.RMSprop``)::

        d = g + weight_decay * p              (d = -g + ... with maximize)
        square_avg = alpha * square_avg + (1 - alpha) * d * d
        centered: grad_avg = lerp(grad_avg, d, 1 - alpha)
                  avg = sqrt(square_avg - grad_avg**2) + eps
        else:     avg = sqrt(square_avg) + eps
        momentum > 0: buf = momentum * buf + d / avg; p -= lr * buf
        else:         p -= lr * d / avg

    ``buf`` is needed when ``momentum > 0`` and ``grad_avg`` when ``centered``; all state starts
    at zero, as in PyTorch.
    """
    _ext("rmsprop_step_", p, g, square_avg, buf, grad_avg)(
        p, _grad(g, p), square_avg, lr, alpha, eps, weight_decay, momentum, buf, centered, grad_avg,
        maximize=maximize)


def adagrad_step_(p, g, sum_sq, lr, eps=1e-10, weight_decay=0.0, *, maximize=False) -> None:
    """One Adagrad step in place (PyTorch's ``torch.optim.Adagrad``)::

        d = g + weight_decay * p              (d = -g + ... with maximize)
        sum_sq += d * d
        p -= lr * d / (sqrt(sum_sq) + eps)

    PyTorch's ``lr_decay`` is the caller's: pass ``lr = lr0 / (1 + (step - 1) * lr_decay)``
    (step 1-based). ``initial_accumulator_value`` is how the caller fills ``sum_sq`` at the start.
    """
    _ext("adagrad_step_", p, g, sum_sq)(
        p, _grad(g, p), sum_sq, lr, eps, weight_decay, maximize=maximize)


def clip_grad_norm_(grads, max_norm, norm_type=2.0, error_if_nonfinite=False) -> float:
    """Scale ``grads`` in place so their total norm is at most ``max_norm``; return the total norm.

    PyTorch's ``torch.nn.utils.clip_grad_norm_`` on arrays: ``grads`` is a list of arrays (or
    one array; None entries are skipped), each a writable C-contiguous float32/float64 array (the
    list may mix them). ``total = (sum |x|**norm_type)**(1/norm_type)`` over all of them together,
    accumulated in float64 (``norm_type=inf``: max |x|); then with
    ``coef = max_norm / (total + 1e-6)`` every array is multiplied by ``coef`` unless
    ``coef >= 1``. As in PyTorch, a NaN total makes the gradients NaN and an infinite one zeroes
    them, unless ``error_if_nonfinite=True`` (RuntimeError). Returns the total norm before
    clipping as a Python float (0.0 for an empty list).
    """
    if is_cuda_array(grads) or hasattr(grads, "__array_interface__"):
        grads = [grads]
    else:
        grads = list(grads)
    return _ext("clip_grad_norm_", *grads)(grads, float(max_norm), float(norm_type), bool(error_if_nonfinite))
