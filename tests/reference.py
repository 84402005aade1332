"""NumPy reference implementations: forward and analytic backward of every op, in float64.

These are the oracles the kernels are tested against. They are written for clarity, not speed,
and never call fastdl. Each ``*_backward`` returns gradients in the op's argument order, like
fastdl.ops.
"""

from __future__ import annotations

import numpy as np


# The dtype the references compute in. float64 by default; tests/helpers.check_op raises it to
# long double (64-bit mantissa on x86-64) while checking a float64 kernel, so that the oracle is
# more precise than the float64 result it judges (a float64 oracle differs from a float64 kernel
# by their two rounding errors, and a sum of 1000 terms summed in another order exceeds a few
# ulps on some machines).
REF_DTYPE = np.float64


def f64(*xs):
    out = tuple(None if x is None else np.asarray(x, dtype=REF_DTYPE) for x in xs)
    return out if len(out) > 1 else out[0]


# ---- dense ------------------------------------------------------------------------------------

def matmul(a, b):
    a, b = f64(a, b)
    return a @ b


def matmul_backward(dy, a, b):
    dy, a, b = f64(dy, a, b)
    da = dy @ np.swapaxes(b, -1, -2)
    db = np.swapaxes(a, -1, -2) @ dy
    # A 2-D operand broadcast over the batch gets the sum of its per-batch gradients.
    if a.ndim == 2 and da.ndim == 3:
        da = da.sum(axis=0)
    if b.ndim == 2 and db.ndim == 3:
        db = db.sum(axis=0)
    return da, db


def linear(x, w, b=None):
    x, w, b = f64(x, w, b)
    y = x @ w.T
    return y if b is None else y + b


def linear_backward(dy, x, w):
    dy, x, w = f64(dy, x, w)
    dy2 = dy.reshape(-1, w.shape[0])
    x2 = x.reshape(-1, w.shape[1])
    return (dy @ w, dy2.T @ x2, dy2.sum(axis=0))


# ---- activations, softmax, losses, dropout, element-wise ---------------------------------------

def relu(x):
    x = f64(x)
    return np.where(x > 0, x, np.where(np.isnan(x), x, 0.0))


def relu_backward(dy, y):
    dy, y = f64(dy, y)
    return np.where(y > 0, dy, 0.0)


def sigmoid(x):
    x = f64(x)
    e = np.exp(-np.abs(x))  # never overflows
    return np.where(x >= 0, 1.0, e) / (1.0 + e)


def sigmoid_backward(dy, y):
    dy, y = f64(dy, y)
    return dy * y * (1.0 - y)


def tanh(x):
    return np.tanh(f64(x))


def tanh_backward(dy, y):
    dy, y = f64(dy, y)
    return dy * (1.0 - y * y)


def softmax(x, axis=-1):
    x = f64(x)
    m = np.max(x, axis=axis, keepdims=True)
    masked = np.isneginf(m)  # a slice of only -inf gives zeros
    with np.errstate(invalid="ignore"):
        e = np.exp(x - np.where(masked, 0.0, m))
    return e / np.where(masked, 1.0, e.sum(axis=axis, keepdims=True))


def log_softmax(x, axis=-1):
    x = f64(x)
    m = np.max(x, axis=axis, keepdims=True)
    masked = np.isneginf(m)  # a slice of only -inf gives -inf
    m = np.where(masked, 0.0, m)
    with np.errstate(divide="ignore"):
        return (x - m) - np.log(np.where(masked, 1.0, np.exp(x - m).sum(axis=axis, keepdims=True)))


def softmax_backward(dy, y, axis=-1):
    dy, y = f64(dy, y)
    return y * (dy - np.sum(dy * y, axis=axis, keepdims=True))


def log_softmax_backward(dy, y, axis=-1):
    dy, y = f64(dy, y)
    return dy - np.exp(y) * np.sum(dy, axis=axis, keepdims=True)


def cross_entropy(logits, target):
    """(mean loss, probs): loss = mean(logsumexp(x_i) - x_i,t_i)."""
    x = f64(logits)
    t = np.asarray(target, dtype=np.int64)
    logp = log_softmax(x, axis=1)
    return -np.mean(logp[np.arange(len(t)), t]), np.exp(logp)


def cross_entropy_backward(probs, target):
    p = f64(probs)
    t = np.asarray(target, dtype=np.int64)
    d = p.copy()
    d[np.arange(len(t)), t] -= 1.0
    return d / len(t)


def mse_loss(pred, target):
    p, t = f64(pred, target)
    return np.mean((p - t) ** 2)


def mse_loss_backward(pred, target):
    p, t = f64(pred, target)
    return 2.0 * (p - t) / p.size


def binary_cross_entropy_with_logits(logits, target):
    x, t = f64(logits, target)
    return np.mean(np.maximum(x, 0.0) - x * t + np.log1p(np.exp(-np.abs(x))))


def binary_cross_entropy_with_logits_backward(logits, target):
    x, t = f64(logits, target)
    return (sigmoid(x) - t) / x.size


def dropout_apply(x, mask, p):
    """y = x * mask / (1 - p) for a given mask (the mask itself is random)."""
    x = f64(x)
    return np.where(mask != 0, x / (1.0 - p), 0.0) if p < 1 else np.zeros_like(x)


def bias_add(x, b, axis=1):
    x, b = f64(x, b)
    shape = [1] * x.ndim
    shape[axis] = -1
    return x + b.reshape(shape)


def bias_add_backward(dy, axis=1):
    dy = f64(dy)
    axis = axis % dy.ndim
    return dy.sum(axis=tuple(i for i in range(dy.ndim) if i != axis))



# ---- optimizers and gradient clipping -----------------------------------------------------------

# These take the arrays in any float dtype and compute in it (NumPy keeps float32 with Python
# scalars), so the same equations run in float64 are the oracle and in float32 the tolerance
# yardstick. Each returns the updated arrays (nothing is modified in place); the equations are
# PyTorch's single-tensor updates (torch/optim/*.py), as in csrc/cpu/optim.cpp.

def _lerp(a, b, w):
    """PyTorch's lerp: a + w*(b - a) for |w| < 0.5, else b - (b - a)*(1 - w)."""
    return a + w * (b - a) if abs(w) < 0.5 else b - (b - a) * (1 - w)


def sgd_step(p, g, buf, lr, momentum=0.0, weight_decay=0.0, nesterov=False, dampening=0.0,
             maximize=False, first_step=False):
    """-> (p, buf)"""
    d = -g if maximize else g
    if weight_decay:
        d = d + weight_decay * p
    if momentum:
        buf = d.copy() if first_step else momentum * buf + (1 - dampening) * d
        d = d + momentum * buf if nesterov else buf
    return p - lr * d, buf


def adam_step(p, g, m, v, step, lr, beta1, beta2, eps, weight_decay=0.0, decoupled=False,
              amsgrad=False, max_v=None, maximize=False):
    """-> (p, m, v, max_v); step is 1-based."""
    d = -g if maximize else g
    if weight_decay:
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            d = d + weight_decay * p
    m = _lerp(m, d, 1 - beta1)
    v = beta2 * v + (1 - beta2) * d * d
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    v_hat = v
    if amsgrad:
        max_v = np.maximum(max_v, v)
        v_hat = max_v
    denom = np.sqrt(v_hat) / bias_correction2**0.5 + eps
    return p - (lr / bias_correction1) * m / denom, m, v, max_v


def rmsprop_step(p, g, square_avg, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 buf=None, centered=False, grad_avg=None, maximize=False):
    """-> (p, square_avg, buf, grad_avg)"""
    d = -g if maximize else g
    if weight_decay:
        d = d + weight_decay * p
    square_avg = alpha * square_avg + (1 - alpha) * d * d
    if centered:
        grad_avg = _lerp(grad_avg, d, 1 - alpha)
        avg = np.sqrt(square_avg - grad_avg * grad_avg) + eps
    else:
        avg = np.sqrt(square_avg) + eps
    if momentum > 0:
        buf = momentum * buf + d / avg
        return p - lr * buf, square_avg, buf, grad_avg
    return p - lr * (d / avg), square_avg, buf, grad_avg


def adagrad_step(p, g, sum_sq, lr, eps=1e-10, weight_decay=0.0, maximize=False):
    """-> (p, sum_sq); lr is the decayed rate lr0 / (1 + (step - 1) * lr_decay)."""
    d = -g if maximize else g
    if weight_decay:
        d = d + weight_decay * p
    sum_sq = sum_sq + d * d
    return p - lr * (d / (np.sqrt(sum_sq) + eps)), sum_sq


def clip_grad_norm(grads, max_norm, norm_type=2.0):
    """-> (clipped grads, total norm), in float64; PyTorch's clip_grad_norm_."""
    grads = [f64(g) for g in grads]
    if not grads:
        return grads, 0.0
    flat = np.concatenate([g.ravel() for g in grads])
    if np.isinf(norm_type):
        total = float(np.max(np.abs(flat))) if flat.size else 0.0
    else:
        total = float(np.sum(np.abs(flat) ** norm_type) ** (1.0 / norm_type))
    coef = max_norm / (total + 1e-6)
    if not coef >= 1:
        grads = [g * coef for g in grads]
    return grads, total


# ---- convolution --------------------------------------------------------------------------------
# Written from the definitions over explicit windows of the zero-padded input (np.einsum), never
# through fastdl. `dtype` (default float64) lets a test compute the same thing in float32 as the
# tolerance yardstick.

def _conv_pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _conv_windows(xp, r, s, oh, ow, stride, dilation):
    """cols[n, c, i, j, a, b] = xp[n, c, a*sh + i*dh, b*sw + j*dw] for the padded input xp."""
    (sh, sw), (dh, dw) = stride, dilation
    n, c = xp.shape[:2]
    cols = np.empty((n, c, r, s, oh, ow), xp.dtype)
    for i in range(r):
        for j in range(s):
            cols[:, :, i, j] = xp[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh,
                                  j * dw: j * dw + sw * (ow - 1) + 1: sw]
    return cols


def _conv_geometry(x_shape, w_shape, stride, padding, dilation):
    stride, padding, dilation = _conv_pair(stride), _conv_pair(padding), _conv_pair(dilation)
    (_, _, h, w), (_, _, r, s) = x_shape, w_shape
    oh = (h + 2 * padding[0] - dilation[0] * (r - 1) - 1) // stride[0] + 1
    ow = (w + 2 * padding[1] - dilation[1] * (s - 1) - 1) // stride[1] + 1
    return stride, padding, dilation, oh, ow


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, dtype=np.float64):
    x, w, b = (None if a is None else np.asarray(a, dtype) for a in (x, w, b))
    stride, (ph, pw), dilation, oh, ow = _conv_geometry(x.shape, w.shape, stride, padding, dilation)
    n, c = x.shape[:2]
    k, cg, r, s = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = _conv_windows(xp, r, s, oh, ow, stride, dilation).reshape(n, groups, cg, r, s, oh, ow)
    wg = w.reshape(groups, k // groups, cg, r, s)
    y = np.einsum("ngcijab,gkcij->ngkab", cols, wg).reshape(n, k, oh, ow)
    return y if b is None else y + b.reshape(1, k, 1, 1)


def conv2d_backward(dy, x, w, stride=1, padding=0, dilation=1, groups=1, dtype=np.float64):
    """-> (dx, dw, db); x's H, W may exceed the smallest input giving dy's size."""
    dy, x, w = (np.asarray(a, dtype) for a in (dy, x, w))
    stride, (ph, pw), (dh, dw_), _, _ = _conv_geometry(x.shape, w.shape, stride, padding, dilation)
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    oh, ow = dy.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = _conv_windows(xp, r, s, oh, ow, stride, (dh, dw_)).reshape(n, groups, cg, r, s, oh, ow)
    dyg = dy.reshape(n, groups, k // groups, oh, ow)
    wg = w.reshape(groups, k // groups, cg, r, s)
    dw = np.einsum("ngkab,ngcijab->gkcij", dyg, cols).reshape(w.shape)
    dcols = np.einsum("ngkab,gkcij->ngcijab", dyg, wg).reshape(n, c, r, s, oh, ow)
    dxp = np.zeros_like(xp)
    for i in range(r):  # scatter each window tap back (the adjoint of _conv_windows)
        for j in range(s):
            dxp[:, :, i * dh: i * dh + stride[0] * (oh - 1) + 1: stride[0],
                j * dw_: j * dw_ + stride[1] * (ow - 1) + 1: stride[1]] += dcols[:, :, i, j]
    dx = dxp[:, :, ph: ph + h, pw: pw + wd]
    return dx, dw, dy.sum(axis=(0, 2, 3))


def conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0, dtype=np.float64):
    """Scatter form: every input pixel adds x * w into an (R, S) patch of the full output."""
    x, w, b = (None if a is None else np.asarray(a, dtype) for a in (x, w, b))
    (sh, sw), (ph, pw), (oph, opw) = _conv_pair(stride), _conv_pair(padding), _conv_pair(output_padding)
    n, c_in, h, wd = x.shape
    _, c_out, r, s = w.shape
    oh = (h - 1) * sh - 2 * ph + r + oph
    ow = (wd - 1) * sw - 2 * pw + s + opw
    full = np.zeros((n, c_out, (h - 1) * sh + r + oph, (wd - 1) * sw + s + opw), x.dtype)
    patch = np.einsum("ncab,coij->noijab", x, w)  # (n, c_out, r, s, h, w)
    for i in range(r):
        for j in range(s):
            full[:, :, i: i + sh * (h - 1) + 1: sh, j: j + sw * (wd - 1) + 1: sw] += patch[:, :, i, j]
    y = full[:, :, ph: ph + oh, pw: pw + ow]
    return y if b is None else y + b.reshape(1, c_out, 1, 1)


def conv_transpose2d_backward(dy, x, w, stride=1, padding=0, output_padding=0, dtype=np.float64):
    """-> (dx, dw, db): the adjoint of the scatter, a gather over the same patches."""
    dy, x, w = (np.asarray(a, dtype) for a in (dy, x, w))
    (sh, sw), (ph, pw), (oph, opw) = _conv_pair(stride), _conv_pair(padding), _conv_pair(output_padding)
    n, c_in, h, wd = x.shape
    _, c_out, r, s = w.shape
    full = np.zeros((n, c_out, (h - 1) * sh + r + oph, (wd - 1) * sw + s + opw), dy.dtype)
    full[:, :, ph: ph + dy.shape[2], pw: pw + dy.shape[3]] = dy
    dpatch = np.empty((n, c_out, r, s, h, wd), dy.dtype)
    for i in range(r):
        for j in range(s):
            dpatch[:, :, i, j] = full[:, :, i: i + sh * (h - 1) + 1: sh, j: j + sw * (wd - 1) + 1: sw]
    dx = np.einsum("noijab,coij->ncab", dpatch, w)
    dw = np.einsum("ncab,noijab->coij", x, dpatch)
    return dx, dw, dy.sum(axis=(0, 2, 3))
# ---- pooling ------------------------------------------------------------------------------------

# Explicit windows, from PyTorch's documented formulas (torch.nn.MaxPool2d / AvgPool2d): output
# i of an axis of n inputs covers the cells i*s - p + r*d (r < k; d the dilation, 1 for avg), of
# which those inside [0, n) are real, with p <= k / 2. The output size is
#     floor((n + 2p - d(k-1) - 1) / s) + 1, or with ceil_mode ceil(...) + 1, less one when that
#     last window would start at or past n + p (it must start in the input or the left padding).
# avg_pool2d divides by divisor_override if given; else with count_include_pad the window's
# cells inside the padded extent, (hend - hstart) * (wend - wstart) with hend = min(hstart + k,
# n + p) (k * k except where ceil mode runs past the padding), without it its real cells.

def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _out_size(n, k, s, p, d=1, ceil_mode=False):
    span = n + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def _geometry(hw, kernel_size, stride, padding, dilation=1, ceil_mode=False):
    k = _pair(kernel_size)
    s = k if stride is None else _pair(stride)
    p = _pair(padding)
    d = _pair(dilation)
    out = tuple(_out_size(hw[i], k[i], s[i], p[i], d[i], ceil_mode) for i in range(2))
    return k, s, p, out


def _cells(i, n, k, s, p, d=1):
    """The real cells of window i along one axis."""
    return [c for c in range(i * s - p, i * s - p + d * (k - 1) + 1, d) if 0 <= c < n]


def max_pool2d(x, kernel_size=2, stride=None, padding=0, dilation=1, ceil_mode=False):
    """-> (y, argmax): the first max of each window in row-major order; the last NaN if any."""
    x = f64(x)
    n, c, h, w = x.shape
    k, s, p, (oh, ow) = _geometry((h, w), kernel_size, stride, padding, dilation, ceil_mode)
    d = _pair(dilation)
    y = np.empty((n, c, oh, ow))
    am = np.empty((n, c, oh, ow), np.int64)
    for i in range(oh):
        for j in range(ow):
            flat = [(r, q) for r in _cells(i, h, k[0], s[0], p[0], d[0])
                    for q in _cells(j, w, k[1], s[1], p[1], d[1])]
            vals = np.stack([x[:, :, r, q] for r, q in flat], axis=-1)  # (n, c, cells)
            nan = np.isnan(vals)
            first_max = np.argmax(np.where(nan, -np.inf, vals), axis=-1)
            last_nan = vals.shape[-1] - 1 - np.argmax(nan[..., ::-1], axis=-1)
            pick = np.where(nan.any(axis=-1), last_nan, first_max)
            y[:, :, i, j] = np.take_along_axis(vals, pick[..., None], axis=-1)[..., 0]
            am[:, :, i, j] = np.array([r * w + q for r, q in flat])[pick]
    return y, am


def max_pool2d_backward(dy, argmax, input_shape):
    dy = f64(dy)
    n, c, h, w = input_shape
    dx = np.zeros((n * c, h * w))
    np.add.at(dx, (np.repeat(np.arange(n * c), dy.shape[2] * dy.shape[3]), argmax.reshape(-1)), dy.reshape(-1))
    return dx.reshape(input_shape)


def _avg_windows(hw, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    """(i, j, rows, cols, divisor) for every output of avg_pool2d."""
    (h, w) = hw
    k, s, p, (oh, ow) = _geometry(hw, kernel_size, stride, padding, 1, ceil_mode)
    for i in range(oh):
        for j in range(ow):
            rows, cols = _cells(i, h, k[0], s[0], p[0]), _cells(j, w, k[1], s[1], p[1])
            hs, ws = i * s[0] - p[0], j * s[1] - p[1]
            pool_size = (min(hs + k[0], h + p[0]) - hs) * (min(ws + k[1], w + p[1]) - ws)
            if divisor_override is not None:
                div = divisor_override
            elif count_include_pad:
                div = pool_size
            else:
                div = len(rows) * len(cols)
            yield i, j, slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1), div


def avg_pool2d(x, kernel_size=2, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Window sums over the image cells / PyTorch's divisor (above)."""
    x = f64(x)
    n, c, h, w = x.shape
    oh, ow = _geometry((h, w), kernel_size, stride, padding, 1, ceil_mode)[3]
    y = np.empty((n, c, oh, ow))
    for i, j, rs, cs, div in _avg_windows((h, w), kernel_size, stride, padding, ceil_mode,
                                          count_include_pad, divisor_override):
        y[:, :, i, j] = x[:, :, rs, cs].sum(axis=(2, 3)) / div
    return y


def avg_pool2d_backward(dy, input_shape, kernel_size=2, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    dy = f64(dy)
    n, c, h, w = input_shape
    dx = np.zeros((n, c, h, w))
    for i, j, rs, cs, div in _avg_windows((h, w), kernel_size, stride, padding, ceil_mode,
                                          count_include_pad, divisor_override):
        dx[:, :, rs, cs] += dy[:, :, i:i + 1, j:j + 1] / div
    return dx


def _adaptive(i, n, m):
    return slice((i * n) // m, -((-(i + 1) * n) // m))  # [floor(i n / m), ceil((i + 1) n / m))


def adaptive_avg_pool2d(x, output_size):
    x = f64(x)
    n, c, h, w = x.shape
    oh, ow = _pair(output_size)
    oh, ow = h if oh is None else oh, w if ow is None else ow
    y = np.empty((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            y[:, :, i, j] = x[:, :, _adaptive(i, h, oh), _adaptive(j, w, ow)].mean(axis=(2, 3))
    return y


def adaptive_avg_pool2d_backward(dy, input_shape):
    dy = f64(dy)
    n, c, h, w = input_shape
    oh, ow = dy.shape[2:]
    dx = np.zeros(input_shape)
    for i in range(oh):
        for j in range(ow):
            rs, cs = _adaptive(i, h, oh), _adaptive(j, w, ow)
            size = (rs.stop - rs.start) * (cs.stop - cs.start)
            dx[:, :, rs, cs] += dy[:, :, i:i + 1, j:j + 1] / size
    return dx


# ---- normalisation ------------------------------------------------------------------------------

def _channel_axes(x):
    return (0,) + tuple(range(2, x.ndim))


def _per_channel(v, x):
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


def batch_norm(x, weight, bias, running_mean, running_var, training=True, momentum=0.1, eps=1e-5):
    """-> (y, save_mean, save_invstd); the running statistics are batch_norm_running's."""
    x, weight, bias, running_mean, running_var = f64(x, weight, bias, running_mean, running_var)
    if training:
        mean, var = x.mean(axis=_channel_axes(x)), x.var(axis=_channel_axes(x))
    else:
        mean, var = running_mean, running_var
    invstd = 1.0 / np.sqrt(var + eps)
    y = (x - _per_channel(mean, x)) * _per_channel(invstd, x)
    if weight is not None:
        y = y * _per_channel(weight, x)
    if bias is not None:
        y = y + _per_channel(bias, x)
    return y, mean, invstd


def batch_norm_running(x, running_mean, running_var, momentum=0.1):
    """The running statistics after one training step (the variance unbiased), as PyTorch."""
    x, running_mean, running_var = f64(x, running_mean, running_var)
    m = x.size // x.shape[1]
    mean, var = x.mean(axis=_channel_axes(x)), x.var(axis=_channel_axes(x))
    return ((1 - momentum) * running_mean + momentum * mean,
            (1 - momentum) * running_var + momentum * var * m / (m - 1))


def batch_norm_backward(dy, x, weight, save_mean, save_invstd, training=True):
    """-> (dx, dweight, dbias), from the statistics the forward used."""
    dy, x, weight, mean, invstd = f64(dy, x, weight, save_mean, save_invstd)
    axes = _channel_axes(x)
    xhat = (x - _per_channel(mean, x)) * _per_channel(invstd, x)
    dbias = dy.sum(axis=axes)
    dweight = (dy * xhat).sum(axis=axes)
    g = _per_channel(invstd if weight is None else weight * invstd, x)
    if training:
        dx = g * (dy - dy.mean(axis=axes, keepdims=True) - xhat * (dy * xhat).mean(axis=axes, keepdims=True))
    else:
        dx = g * dy
    return dx, dweight, dbias


# ---- embedding (issue 10) -----------------------------------------------------------------------

def embedding(indices, weight):
    """weight[indices]: shape indices.shape + (D,)."""
    return f64(weight)[np.asarray(indices)]


def embedding_backward(dy, indices, num_embeddings, padding_idx=None):
    """dweight (V, D): dy's rows summed into the rows the forward read (np.add.at keeps index
    order for repeats); the padding row left zero."""
    dy = f64(dy)
    d = dy.shape[-1]
    dw = np.zeros((num_embeddings, d), dtype=dy.dtype)
    idx = np.asarray(indices).reshape(-1)
    np.add.at(dw, idx, dy.reshape(idx.size, d))
    if padding_idx is not None:
        dw[padding_idx] = 0
    return dw


# ---- rnn: RNN cell, LSTM cell, LSTM sequence and BPTT (branch rnn) ------------------------------
# Written from the equations (gates ordered i, f, g, o, PyTorch's layout); db is the gradient of
# b_ih and of b_hh alike. The sequence and its BPTT are step-by-step loops over the cell.

def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def rnn_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    x, h, w_ih, w_hh, b_ih, b_hh = f64(x, h, w_ih, w_hh, b_ih, b_hh)
    z = x @ w_ih.T + h @ w_hh.T
    if b_ih is not None:
        z = z + b_ih
    if b_hh is not None:
        z = z + b_hh
    return np.tanh(z)


def rnn_cell_backward(dh_new, x, h, w_ih, w_hh, h_new):
    """-> (dx, dh, dw_ih, dw_hh, db)."""
    dh_new, x, h, w_ih, w_hh, h_new = f64(dh_new, x, h, w_ih, w_hh, h_new)
    da = dh_new * (1 - h_new**2)
    return da @ w_ih, da @ w_hh, da.T @ x, da.T @ h, da.sum(axis=0)


def lstm_cell(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
    """-> (h_new, c_new, gates), gates (N, 4H) the activated i | f | g | o."""
    x, h, c, w_ih, w_hh, b_ih, b_hh = f64(x, h, c, w_ih, w_hh, b_ih, b_hh)
    z = x @ w_ih.T + h @ w_hh.T
    if b_ih is not None:
        z = z + b_ih
    if b_hh is not None:
        z = z + b_hh
    zi, zf, zg, zo = np.split(z, 4, axis=1)
    i, f, g, o = _sigmoid(zi), _sigmoid(zf), np.tanh(zg), _sigmoid(zo)
    c_new = f * c + i * g
    h_new = o * np.tanh(c_new)
    return h_new, c_new, np.concatenate([i, f, g, o], axis=1)


def lstm_cell_backward(dh_new, dc_new, x, h, c, w_ih, w_hh, gates, c_new):
    """-> (dx, dh, dc, dw_ih, dw_hh, db); dh_new / dc_new None mean zero."""
    x, h, c, w_ih, w_hh, gates, c_new = f64(x, h, c, w_ih, w_hh, gates, c_new)
    dh_new = np.zeros_like(c) if dh_new is None else f64(dh_new)
    dc_new = np.zeros_like(c) if dc_new is None else f64(dc_new)
    i, f, g, o = np.split(gates, 4, axis=1)
    tc = np.tanh(c_new)
    d_o = dh_new * tc
    dct = dc_new + dh_new * o * (1 - tc**2)
    dz = np.concatenate([dct * g * i * (1 - i), dct * c * f * (1 - f), dct * i * (1 - g**2),
                         d_o * o * (1 - o)], axis=1)
    return dz @ w_ih, dz @ w_hh, dct * f, dz.T @ x, dz.T @ h, dz.sum(axis=0)


def lstm(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None):
    """-> (y, h_n, c_n, gates, cells): the cell T times; gates (T, N, 4H), cells (T, N, H)."""
    x, w_ih, w_hh = f64(x, w_ih, w_hh)
    t, n, _ = x.shape
    hid = w_hh.shape[1]
    h = np.zeros((n, hid), REF_DTYPE) if h0 is None else f64(h0)
    c = np.zeros((n, hid), REF_DTYPE) if c0 is None else f64(c0)
    ys, gs, cs = [], [], []
    for s in range(t):
        h, c, g = lstm_cell(x[s], h, c, w_ih, w_hh, b_ih, b_hh)
        ys.append(h), gs.append(g), cs.append(c)
    stack = lambda a, shape: np.stack(a) if a else np.zeros(shape, REF_DTYPE)  # noqa: E731
    return (stack(ys, (0, n, hid)), h, c, stack(gs, (0, n, 4 * hid)), stack(cs, (0, n, hid)))


def lstm_backward(dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None):
    """BPTT of lstm (recomputing its forward) -> (dx, dh0, dc0, dw_ih, dw_hh, db); dy, dh_n,
    dc_n None mean zero."""
    x, w_ih, w_hh = f64(x, w_ih, w_hh)
    t, n, _ = x.shape
    hid = w_hh.shape[1]
    h0 = np.zeros((n, hid), REF_DTYPE) if h0 is None else f64(h0)
    c0 = np.zeros((n, hid), REF_DTYPE) if c0 is None else f64(c0)
    y, _, _, gates, cells = lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    dh = np.zeros((n, hid), REF_DTYPE) if dh_n is None else f64(dh_n).copy()
    dc = np.zeros((n, hid), REF_DTYPE) if dc_n is None else f64(dc_n).copy()
    dx = np.zeros_like(x)
    dw_ih, dw_hh, db = np.zeros_like(w_ih), np.zeros_like(w_hh), np.zeros(4 * hid, REF_DTYPE)
    for s in reversed(range(t)):
        if dy is not None:
            dh = dh + f64(dy)[s]
        h_prev = y[s - 1] if s else h0
        c_prev = cells[s - 1] if s else c0
        gx, dh, dc, gwi, gwh, gb = lstm_cell_backward(dh, dc, x[s], h_prev, c_prev, w_ih, w_hh,
                                                      gates[s], cells[s])
        dx[s] = gx
        dw_ih, dw_hh, db = dw_ih + gwi, dw_hh + gwh, db + gb
    return dx, dh, dc, dw_ih, dw_hh, db
# ---- end rnn ---------------------------------------------------------------------------------------
# ---- conv_transpose2d with groups and dilation (issue 9) ------------------------------------------
# PyTorch's definition, as a scatter into the unpadded output: input pixel (i, j) of channel c
# (group g = c // (C_in / groups)) adds x * w[c, o] into rows i*stride + r*dilation, columns
# j*stride + q*dilation of output channel g * (C_out / groups) + o; y is that full output from
# `padding` on, OH = (H-1)*stride - 2*padding + dilation*(R-1) + output_padding + 1.

def _transpose_full(x_shape, w_shape, stride, padding, output_padding, groups, dilation):
    (sh, sw), (ph, pw) = _conv_pair(stride), _conv_pair(padding)
    (oph, opw), (dh, dw) = _conv_pair(output_padding), _conv_pair(dilation)
    n, c_in, h, wd = x_shape
    _, cog, r, s = w_shape
    full = (n, cog * groups, (h - 1) * sh + dh * (r - 1) + 1 + oph, (wd - 1) * sw + dw * (s - 1) + 1 + opw)
    return (sh, sw), (ph, pw), (dh, dw), full


def conv_transpose2d_grouped(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1,
                             dilation=1):
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    (sh, sw), (ph, pw), (dh, dw), full_shape = _transpose_full(x.shape, w.shape, stride, padding,
                                                               output_padding, groups, dilation)
    n, c_in, h, wd = x.shape
    _, cog, r, s = w.shape
    xg = x.reshape(n, groups, c_in // groups, h, wd)
    wg = w.reshape(groups, c_in // groups, cog, r, s)
    patch = np.einsum("ngcab,gcoij->ngoijab", xg, wg).reshape(n, groups * cog, r, s, h, wd)
    full = np.zeros(full_shape)
    for i in range(r):
        for j in range(s):
            full[:, :, i * dh: i * dh + sh * (h - 1) + 1: sh, j * dw: j * dw + sw * (wd - 1) + 1: sw] += patch[:, :, i, j]
    oh, ow = full_shape[2] - 2 * ph, full_shape[3] - 2 * pw
    y = full[:, :, ph: ph + oh, pw: pw + ow]
    return y if b is None else y + np.asarray(b, np.float64).reshape(1, -1, 1, 1)


def conv_transpose2d_grouped_backward(dy, x, w, stride=1, padding=0, output_padding=0, groups=1,
                                      dilation=1):
    """-> (dx, dw, db): the adjoint of the scatter above, a gather over the same patches."""
    dy, x, w = (np.asarray(a, np.float64) for a in (dy, x, w))
    (sh, sw), (ph, pw), (dh, dw_), full_shape = _transpose_full(x.shape, w.shape, stride, padding,
                                                                output_padding, groups, dilation)
    n, c_in, h, wd = x.shape
    _, cog, r, s = w.shape
    full = np.zeros(full_shape)
    full[:, :, ph: ph + dy.shape[2], pw: pw + dy.shape[3]] = dy
    dpatch = np.empty((n, groups * cog, r, s, h, wd))
    for i in range(r):
        for j in range(s):
            dpatch[:, :, i, j] = full[:, :, i * dh: i * dh + sh * (h - 1) + 1: sh,
                                      j * dw_: j * dw_ + sw * (wd - 1) + 1: sw]
    dpg = dpatch.reshape(n, groups, cog, r, s, h, wd)
    xg = x.reshape(n, groups, c_in // groups, h, wd)
    wg = w.reshape(groups, c_in // groups, cog, r, s)
    dx = np.einsum("ngoijab,gcoij->ngcab", dpg, wg).reshape(x.shape)
    dwt = np.einsum("ngcab,ngoijab->gcoij", xg, dpg).reshape(w.shape)
    return dx, dwt, dy.sum(axis=(0, 2, 3))


# ---- attention (issue 11) ---------------------------------------------------------------------
# The oracle DOES build the (Sq, Sk) score matrix: clarity over memory.

def _attention_probs(q, k, causal, scale):
    """softmax(scale q k^T [causal]) and lse; rows with no visible key give zeros and -inf."""
    s = scale * np.einsum("bhid,bhjd->bhij", q, k)
    if causal:
        i = np.arange(q.shape[2])[:, None]
        j = np.arange(k.shape[2])[None, :]
        s = np.where(j <= i, s, -np.inf)
    m = np.max(s, axis=-1, keepdims=True) if s.shape[-1] else np.full(s.shape[:-1] + (1,), -np.inf)
    m_safe = np.where(np.isfinite(m), m, 0)
    e = np.exp(s - m_safe)
    den = e.sum(axis=-1, keepdims=True)
    p = np.divide(e, den, out=np.zeros_like(e), where=den > 0)
    with np.errstate(divide="ignore"):
        lse = (m_safe + np.log(den))[..., 0]
    return p, lse


def attention(q, k, v, causal=False, scale=None):
    """-> (out, lse); q (B, H, Sq, D), k (B, H, Sk, D), v (B, H, Sk, Dv)."""
    q, k, v = f64(q, k, v)
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    p, lse = _attention_probs(q, k, causal, scale)
    return p @ v, lse


def attention_backward(dout, q, k, v, causal=False, scale=None):
    """-> (dq, dk, dv), the probabilities recomputed from q, k."""
    dout, q, k, v = f64(dout, q, k, v)
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    p, _ = _attention_probs(q, k, causal, scale)
    dv = np.swapaxes(p, -1, -2) @ dout
    dp = dout @ np.swapaxes(v, -1, -2)
    ds = p * (dp - np.sum(dp * p, axis=-1, keepdims=True))
    return scale * ds @ k, scale * np.swapaxes(ds, -1, -2) @ q, dv
# ---- end attention ----


# ---- layer_norm (norm family) ----------------------------------------------------------------

def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """-> (y, mean, rstd) over the trailing len(normalized_shape) axes."""
    x, weight, bias = f64(x, weight, bias)
    k = 1 if isinstance(normalized_shape, int) else len(normalized_shape)
    axes = tuple(range(x.ndim - k, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    rstd = 1.0 / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    y = (x - mean) * rstd
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    lead = x.shape[:x.ndim - k]
    return y, mean.reshape(lead), rstd.reshape(lead)


def layer_norm_backward(dy, x, normalized_shape, weight, mean, rstd):
    """-> (dx, dweight, dbias), from the statistics the forward returned."""
    dy, x, weight, mean, rstd = f64(dy, x, weight, mean, rstd)
    k = 1 if isinstance(normalized_shape, int) else len(normalized_shape)
    axes = tuple(range(x.ndim - k, x.ndim))
    lead_axes = tuple(range(x.ndim - k))
    mean = mean.reshape(mean.shape + (1,) * k)
    rstd = rstd.reshape(rstd.shape + (1,) * k)
    xhat = (x - mean) * rstd
    g = dy if weight is None else dy * weight
    dx = rstd * (g - g.mean(axis=axes, keepdims=True) - xhat * (g * xhat).mean(axis=axes, keepdims=True))
    return dx, (dy * xhat).sum(axis=lead_axes), dy.sum(axis=lead_axes)


# ---- gelu (activation family) ------------------------------------------------------------------

def _erfc(z):
    import math
    return np.vectorize(math.erfc, otypes=[np.float64])(z)


def gelu(x, approximate="none"):
    x = np.asarray(x, dtype=np.float64 if approximate == "none" else REF_DTYPE)
    if approximate == "tanh":
        u = np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)
        with np.errstate(over="ignore", invalid="ignore"):
            y = x * 0.5 * (1 + np.tanh(u))
    else:
        with np.errstate(invalid="ignore"):
            y = x * 0.5 * _erfc(-x / np.sqrt(2))
    return np.where(np.isneginf(x), -0.0, y)


def gelu_backward(dy, x, approximate="none"):
    dt = np.float64 if approximate == "none" else REF_DTYPE  # math.erfc: float64 only
    dy, x = np.asarray(dy, dtype=dt), np.asarray(x, dtype=dt)
    with np.errstate(over="ignore", invalid="ignore"):
        if approximate == "tanh":
            k = np.sqrt(2 / np.pi)
            th = np.tanh(k * (x + 0.044715 * x ** 3))
            d = 0.5 * (1 + th) + 0.5 * x * (1 - th ** 2) * k * (1 + 3 * 0.044715 * x ** 2)
        else:
            d = 0.5 * _erfc(-x / np.sqrt(2)) + x * np.exp(-0.5 * x ** 2) / np.sqrt(2 * np.pi)
    d = np.where(np.isposinf(x), 1.0, np.where(np.isneginf(x), 0.0, d))
    return dy * d
