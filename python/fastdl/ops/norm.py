"""Normalisation: batch_norm (over channels) and layer_norm (over trailing axes), forward and
backward.

    batch_norm(x, weight, bias, running_mean, running_var, training=True, momentum=0.1,
               eps=1e-5) -> (y, save_mean, save_invstd)
        x (N, C) or (N, C, *); statistics over every axis but 1.
        training: mean and biased variance of the batch; running_mean / running_var, when
            given, become (1 - momentum) * old + momentum * batch (variance unbiased), in place.
        eval (training=False): normalise with running_mean / running_var (required).
        y = (x - mean) * invstd * weight + bias, invstd = 1 / sqrt(var + eps); save_mean and
        save_invstd (C,) are the statistics used. weight / bias may be None (1 and 0).
    batch_norm_backward(dy, x, weight, save_mean, save_invstd, training=True)
        -> (dx, dweight, dbias); dweight = sum(dy * xhat), dbias = sum(dy) over every axis but 1,
        returned even when weight / bias were None. training:
        dx = weight * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)); eval: weight * invstd * dy.

Dtypes (the rule in ops/_util.py): batch_norm computes in x's dtype (float32 or float64; other
x dtypes become float32), batch_norm_backward in dy's and x's (float64 if either is); weight,
bias, save_mean and save_invstd of another dtype are converted to it, so a float64 weight never
widens a float32 x. running_mean / running_var are updated in place, so they must already be
C-contiguous (C,) arrays of that dtype on x's device (TypeError otherwise; DESIGN section 2),
and come both or neither (ValueError: one updated without the other is a silent trap). The
statistics are computed in one pass over x (exact two-pass moments per cache-resident run,
merged in double), accurate for inputs with a large mean. Kernels: csrc/cpu/norm*.cpp, csrc/cuda/norm.cu.

    layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5) -> (y, mean, rstd)
        normalises over the trailing axes normalized_shape (an int or a tuple, equal to
        x.shape[-len(normalized_shape):]); mean and rstd = 1 / sqrt(biased var + eps) have shape
        x.shape[:x.ndim - len(normalized_shape)]; weight / bias of normalized_shape or None.
    layer_norm_backward(dy, x, normalized_shape, weight, mean, rstd) -> (dx, dweight, dbias)
        dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * weight; dweight = sum(dy *
        xhat), dbias = sum(dy) over the leading axes, of normalized_shape, returned even when
        weight / bias were None.
layer_norm computes in x's dtype (weight and bias follow it), its backward in dy's and x's. An
empty normalized_shape (D = 0 elements a row) is undefined: ValueError; zero rows give empty
outputs.
"""

from __future__ import annotations

import math
import numbers

from ._util import check_shape, prepare, require, shape_str
from .activation import _contig, _kernel

__all__ = ["batch_norm", "batch_norm_backward", "layer_norm", "layer_norm_backward"]


def _flag(op: str, name: str, v) -> bool:
    if not isinstance(v, (bool, numbers.Integral)) and type(v).__name__ != "bool_":
        raise TypeError(f"{op}: {name} must be a bool, got {type(v).__name__}")
    return bool(v)


def _real(op: str, name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{op}: {name} must be a real number, got {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"{op}: {name} must be finite, got {v}")
    return v


def _ncl(op: str, x):
    """(N, C, L) of x (N, C, *)."""
    if x.ndim < 2:
        raise ValueError(f"{op}: x must be (N, C) or (N, C, *), got shape {shape_str(x.shape)}")
    return x.shape[0], x.shape[1], math.prod(x.shape[2:])


def _channels(op: str, c: int, **vectors):
    for name, v in vectors.items():
        if v is not None:
            check_shape(op, name, v, (c,))


def _running(op: str, name: str, a, be, dtype, x_dtype, c: int):
    """A running statistic updated in place: exactly the right array already (TypeError if not)."""
    if a is None:
        return None
    if not isinstance(a, be.xp.ndarray):
        raise TypeError(f"{op}: {name} is updated in place and must be a {be.xp.__name__} array "
                        f"on x's device, got {type(a).__name__}")
    if a.dtype != dtype:
        # Name x: a float64 input to a float32 model lands here, and the buffer is not the culprit.
        x_is = f"x is {x_dtype}" + ("" if x_dtype == dtype else f", computed as {dtype}")
        raise TypeError(f"{op}: {name} is updated in place and must have dtype {dtype}, got "
                        f"{a.dtype} (the op computes in x's dtype; {x_is}): convert x or the "
                        f"running statistics")
    if not a.flags.c_contiguous:
        raise TypeError(f"{op}: {name} is updated in place and must be C-contiguous")
    if not a.flags.writeable:
        raise ValueError(f"{op}: {name} is updated in place but is read-only")
    check_shape(op, name, a, (c,))
    return a


def batch_norm(x, weight, bias, running_mean, running_var, training=True, momentum=0.1, eps=1e-5):
    """Batch normalisation over every axis but 1; returns (y, save_mean, save_invstd)."""
    op = "batch_norm"
    training = _flag(op, "training", training)
    momentum = _real(op, "momentum", momentum)
    eps = _real(op, "eps", eps)
    if eps < 0:
        raise ValueError(f"{op}: eps must be >= 0, got {eps}")
    require(op, x=x)
    x_given = getattr(x, "dtype", None)  # for messages: the dtype before conversion
    # x decides the dtype (the running statistics are x's dtype); weight and bias follow it.
    be, dtype, x, weight, bias = prepare(op, dtype_from=("x",), x=x, weight=weight, bias=bias)
    x_dtype = dtype if x_given is None else x_given
    n, c, l = _ncl(op, x)
    _channels(op, c, weight=weight, bias=bias)
    if (running_mean is None) != (running_var is None):
        given = "running_mean" if running_var is None else "running_var"
        raise ValueError(f"{op}: running_mean and running_var must either both be None or "
                         f"neither be None, got only {given}")
    running_mean = _running(op, "running_mean", running_mean, be, dtype, x_dtype, c)
    running_var = _running(op, "running_var", running_var, be, dtype, x_dtype, c)
    if training:
        if n * l == 0:
            raise ValueError(f"{op}: the batch statistics of an empty input (shape "
                             f"{shape_str(x.shape)}) are undefined in training mode")
        if n * l == 1:
            raise ValueError(f"{op}: Expected more than 1 value per channel when training, got "
                             f"input of shape {shape_str(x.shape)}")
    elif running_mean is None or running_var is None:
        raise ValueError(f"{op}: eval mode (training=False) needs running_mean and running_var")
    x3 = _contig(be, x).reshape(n, c, l)
    y = be.empty((n, c, l), dtype)
    save_mean = be.empty((c,), dtype)
    save_invstd = be.empty((c,), dtype)
    _kernel(be, op, "batch_norm_forward")(
        y, save_mean, save_invstd, x3, None if weight is None else _contig(be, weight),
        None if bias is None else _contig(be, bias), running_mean, running_var, training,
        momentum, eps)
    return y.reshape(x.shape), save_mean, save_invstd


def batch_norm_backward(dy, x, weight, save_mean, save_invstd, training=True):
    """Gradients of batch_norm: (dx, dweight, dbias)."""
    op = "batch_norm_backward"
    training = _flag(op, "training", training)
    require(op, dy=dy, x=x)
    be, dtype, dy, x, weight, save_mean, save_invstd = prepare(
        op, dtype_from=("dy", "x"), dy=dy, x=x, weight=weight, save_mean=save_mean,
        save_invstd=save_invstd)
    n, c, l = _ncl(op, x)
    check_shape(op, "dy", dy, x.shape)
    if save_mean is None or save_invstd is None:
        raise TypeError(f"{op}: save_mean and save_invstd must be the arrays batch_norm returned, got None")
    _channels(op, c, weight=weight, save_mean=save_mean, save_invstd=save_invstd)
    dx = be.empty((n, c, l), dtype)
    dweight = be.empty((c,), dtype)
    dbias = be.empty((c,), dtype)
    _kernel(be, op, "batch_norm_backward")(
        dx, dweight, dbias, _contig(be, dy).reshape(n, c, l), _contig(be, x).reshape(n, c, l),
        None if weight is None else _contig(be, weight), _contig(be, save_mean),
        _contig(be, save_invstd), training)
    return dx.reshape(x.shape), dweight, dbias


# ---- layer_norm ---------------------------------------------------------------------------------

def _normalized_shape(op: str, normalized_shape) -> tuple:
    ns = (normalized_shape,) if isinstance(normalized_shape, numbers.Integral) else normalized_shape
    try:
        ns = tuple(ns)
    except TypeError:
        raise TypeError(f"{op}: normalized_shape must be an int or a tuple of ints, got "
                        f"{type(normalized_shape).__name__}") from None
    if any(isinstance(n, bool) or not isinstance(n, numbers.Integral) for n in ns):
        raise TypeError(f"{op}: normalized_shape must be an int or a tuple of ints, got {normalized_shape!r}")
    ns = tuple(int(n) for n in ns)
    if any(n < 0 for n in ns):
        raise ValueError(f"{op}: normalized_shape must not be negative, got {ns}")
    return ns


def _rows(op: str, x, ns: tuple):
    """(M, D) of x normalised over its trailing axes ns; ValueError when they do not match."""
    k = len(ns)
    if k == 0 or x.ndim < k or tuple(x.shape[x.ndim - k:]) != ns:
        raise ValueError(f"{op}: normalized_shape {ns} must equal the trailing axes of x, got x of "
                         f"shape {shape_str(x.shape)}")
    d = math.prod(ns)
    if d == 0:
        raise ValueError(f"{op}: the statistics over normalized_shape {ns} (0 elements a row) are undefined")
    return math.prod(x.shape[:x.ndim - k]), d


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Layer normalisation over the trailing normalized_shape axes; returns (y, mean, rstd)."""
    op = "layer_norm"
    eps = _real(op, "eps", eps)
    if eps < 0:
        raise ValueError(f"{op}: eps must be >= 0, got {eps}")
    ns = _normalized_shape(op, normalized_shape)
    require(op, x=x)
    be, dtype, x, weight, bias = prepare(op, dtype_from=("x",), x=x, weight=weight, bias=bias)
    m, d = _rows(op, x, ns)
    for name, v in (("weight", weight), ("bias", bias)):
        if v is not None:
            check_shape(op, name, v, ns)
    lead = x.shape[:x.ndim - len(ns)]
    y = be.empty((m, d), dtype)
    mean = be.empty((m,), dtype)
    rstd = be.empty((m,), dtype)
    _kernel(be, op, "layer_norm_forward")(
        y, mean, rstd, _contig(be, x).reshape(m, d),
        None if weight is None else _contig(be, weight).reshape(d),
        None if bias is None else _contig(be, bias).reshape(d), eps)
    return y.reshape(x.shape), mean.reshape(lead), rstd.reshape(lead)


def layer_norm_backward(dy, x, normalized_shape, weight, mean, rstd):
    """Gradients of layer_norm: (dx, dweight, dbias), dweight and dbias of normalized_shape."""
    op = "layer_norm_backward"
    ns = _normalized_shape(op, normalized_shape)
    require(op, dy=dy, x=x)
    if mean is None or rstd is None:
        raise TypeError(f"{op}: mean and rstd must be the arrays layer_norm returned, got None")
    be, dtype, dy, x, weight, mean, rstd = prepare(
        op, dtype_from=("dy", "x"), dy=dy, x=x, weight=weight, mean=mean, rstd=rstd)
    m, d = _rows(op, x, ns)
    check_shape(op, "dy", dy, x.shape)
    if weight is not None:
        check_shape(op, "weight", weight, ns)
    lead = x.shape[:x.ndim - len(ns)]
    check_shape(op, "mean", mean, lead)
    check_shape(op, "rstd", rstd, lead)
    dx = be.empty((m, d), dtype)
    dweight = be.empty((d,), dtype)
    dbias = be.empty((d,), dtype)
    _kernel(be, op, "layer_norm_backward")(
        dx, dweight, dbias, _contig(be, dy).reshape(m, d), _contig(be, x).reshape(m, d),
        None if weight is None else _contig(be, weight).reshape(d),
        _contig(be, mean).reshape(m), _contig(be, rstd).reshape(m))
    return dx.reshape(x.shape), dweight.reshape(ns), dbias.reshape(ns)
