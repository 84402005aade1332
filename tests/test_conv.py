"""conv2d (stride, padding, dilation, groups) and conv_transpose2d, forward and backward, against
the float64 NumPy reference (tests/reference.py), float64 finite differences, every algorithm of
the CPU dispatch on every ISA, PyTorch on a few layers, and bad input."""

import os
import subprocess
import sys

import numpy as np
import pytest

import fastdl
from fastdl import _core, ops

import reference as ref
from helpers import assert_close, gradcheck

DTYPES = [np.float32, np.float64]
ORDER = ["generic", "avx2", "avx512"]
ISAS = [i for i in ORDER if ORDER.index(i) <= ORDER.index(_core.cpu_isa_supported())]
PASSES = ["forward", "backward_data", "backward_weight"]

# (N, C, H, W, K, R, S, stride, padding, dilation, groups, bias)
CONFIGS = [
    (1, 3, 7, 7, 4, 3, 3, 1, 1, 1, 1, True),                  # batch 1, 3x3 same
    (2, 4, 17, 17, 6, 3, 3, 2, 0, 1, 1, False),               # stride 2
    (2, 3, 17, 13, 5, 3, 3, 3, 2, 1, 1, True),                # stride 3, padding 2
    (2, 4, 9, 11, 6, 1, 1, 1, 0, 1, 1, True),                 # 1x1: a plain GEMM
    (2, 4, 9, 11, 6, 1, 1, 2, 0, 1, 1, False),                # 1x1 stride 2
    (1, 4, 7, 7, 4, 1, 1, 1, 1, 1, 1, True),                  # 1x1 padded
    (1, 2, 3, 3, 2, 1, 1, 1, 2, 1, 1, True),                  # padding wider than the kernel
    (2, 4, 12, 10, 6, 5, 5, 1, 2, 1, 1, True),                # 5x5
    (2, 3, 9, 8, 4, 1, 3, 1, (0, 1), 1, 1, True),             # 1x3
    (2, 3, 9, 8, 4, 3, 1, 1, (1, 0), 1, 1, False),            # 3x1
    (2, 3, 11, 12, 4, 2, 5, (1, 2), (1, 2), 1, 1, True),      # 2x5, asymmetric stride/padding
    (2, 4, 13, 11, 6, 3, 3, 1, 2, 2, 1, True),                # dilation 2
    (1, 4, 15, 15, 4, 3, 3, 2, (2, 1), (2, 1), 1, False),     # asymmetric dilation
    (2, 4, 9, 9, 6, 3, 3, 1, 1, 1, 2, True),                  # groups 2
    (2, 6, 9, 7, 9, 3, 3, 2, 1, 1, 3, False),                 # groups 3, stride 2
    (2, 8, 10, 9, 8, 3, 3, 1, 1, 1, 8, True),                 # depthwise
    (1, 5, 17, 17, 10, 3, 3, 2, 1, 1, 5, True),               # depthwise, multiplier 2, stride 2
    (2, 6, 7, 7, 6, 5, 5, 1, 2, 2, 6, False),                 # depthwise, dilation 2
    (2, 1, 17, 17, 8, 5, 5, 1, 0, 1, 1, True),                # one input channel (LeNet C1)
    (1, 1, 1, 1, 3, 1, 1, 1, 0, 1, 1, True),                  # 1x1 image
    (1, 2, 1, 3, 2, 3, 3, 1, 1, 1, 1, True),                  # 1x3 image, padded
    (3, 2, 3, 3, 2, 3, 3, 1, 0, 1, 1, False),                 # 1x1 output
    (2, 3, 8, 8, 4, 4, 4, 4, 0, 1, 1, True),                  # stride = kernel (patches)
    (2, 16, 7, 7, 32, 3, 3, 1, 1, 1, 1, True),                # more channels: GEMM edge tiles
    (1, 20, 17, 17, 33, 3, 3, 1, 1, 1, 1, True),              # several GEMM tiles each way
    (1, 24, 9, 9, 40, 1, 1, 1, 0, 1, 4, False),               # grouped 1x1
]


def _ids(cfg):
    return "N{}C{}H{}W{}-K{}R{}S{}-s{}p{}d{}g{}{}".format(*cfg[:11], "b" if cfg[11] else "")


def _make(rng, cfg):
    n, c, h, w, k, r, s, stride, padding, dilation, groups, bias = cfg
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((k, c // groups, r, s))
    b = rng.standard_normal(k) if bias else None
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return x, wt, b, kw


def _ulps(w_shape):
    """A float64 kernel sums C/G*R*S (or N*OH*OW) terms in its own order: allow that."""
    return 16 + 4 * np.prod(w_shape[1:]) ** 0.5


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", CONFIGS, ids=_ids)
def test_conv2d_against_reference(rng, cfg, dtype):
    x, w, b, kw = _make(rng, cfg)
    y = ops.conv2d(x.astype(dtype), w.astype(dtype), None if b is None else b.astype(dtype), **kw)
    want = ref.conv2d(x, w, b, **kw)
    base = ref.conv2d(x, w, b, **kw, dtype=dtype)
    assert_close(y, want, dtype, base, name="y", ulps=_ulps(w.shape))
    dy = rng.standard_normal(want.shape)
    got = ops.conv2d_backward(dy.astype(dtype), x.astype(dtype), w.astype(dtype), **kw)
    wants = ref.conv2d_backward(dy, x, w, **kw)
    bases = ref.conv2d_backward(dy, x, w, **kw, dtype=dtype)
    for name, g, r_, bs in zip(("dx", "dw", "db"), got, wants, bases):
        assert_close(g, r_, dtype, bs, name=name, ulps=16 + 4 * dy[0].size ** 0.5)


# (N, C_in, H, W, C_out, R, S, stride, padding, output_padding, bias)
TRANSPOSE_CONFIGS = [
    (1, 3, 5, 5, 4, 3, 3, 1, 0, 0, True),
    (2, 4, 4, 6, 3, 3, 3, 2, 1, 1, False),          # the usual x2 upsampling
    (2, 3, 5, 4, 2, 4, 4, 2, 1, 0, True),           # 4x4 stride 2 (DCGAN)
    (1, 2, 3, 3, 5, 2, 5, (2, 3), (1, 0), (1, 2), True),
    (2, 5, 7, 3, 3, 1, 1, 3, 0, 2, False),          # 1x1, output_padding 2 < stride 3
    (1, 1, 1, 1, 2, 3, 3, 1, 1, 0, True),           # 1x1 input
    (3, 6, 6, 5, 6, 5, 3, 1, (2, 1), 0, True),
]


def _tids(cfg):
    return "N{}C{}H{}W{}-K{}R{}S{}-s{}p{}op{}{}".format(*cfg[:10], "b" if cfg[10] else "")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", TRANSPOSE_CONFIGS, ids=_tids)
def test_conv_transpose2d_against_reference(rng, cfg, dtype):
    n, c_in, h, wd, c_out, r, s, stride, padding, op_, bias = cfg
    x = rng.standard_normal((n, c_in, h, wd))
    w = rng.standard_normal((c_in, c_out, r, s))
    b = rng.standard_normal(c_out) if bias else None
    kw = dict(stride=stride, padding=padding, output_padding=op_)
    cast = lambda a: None if a is None else a.astype(dtype)  # noqa: E731
    y = ops.conv_transpose2d(cast(x), cast(w), cast(b), **kw)
    want = ref.conv_transpose2d(x, w, b, **kw)
    assert_close(y, want, dtype, ref.conv_transpose2d(x, w, b, **kw, dtype=dtype), name="y",
                 ulps=16 + 4 * (c_in * r * s) ** 0.5)
    dy = rng.standard_normal(want.shape)
    got = ops.conv_transpose2d_backward(cast(dy), cast(x), cast(w), **kw)
    wants = ref.conv_transpose2d_backward(dy, x, w, **kw)
    bases = ref.conv_transpose2d_backward(dy, x, w, **kw, dtype=dtype)
    for name, g, r_, bs in zip(("dx", "dw", "db"), got, wants, bases):
        assert_close(g, r_, dtype, bs, name=name, ulps=16 + 4 * dy[0].size ** 0.5)


@pytest.mark.parametrize("cfg", [CONFIGS[i] for i in (0, 2, 8, 10, 11, 14, 16, 20)], ids=_ids)
def test_conv2d_gradcheck(rng, cfg):
    x, w, b, kw = _make(rng, cfg)
    b = rng.standard_normal(w.shape[0])
    gradcheck(lambda x, w, b: ops.conv2d(x, w, b, **kw),
              lambda g, x, w, b: ops.conv2d_backward(g, x, w, **kw),
              [x, w, b], wrt=[0, 1, 2], rng=rng)


@pytest.mark.parametrize("cfg", [TRANSPOSE_CONFIGS[i] for i in (1, 3, 4)], ids=_tids)
def test_conv_transpose2d_gradcheck(rng, cfg):
    n, c_in, h, wd, c_out, r, s, stride, padding, op_, _ = cfg
    x = rng.standard_normal((n, c_in, h, wd))
    w = rng.standard_normal((c_in, c_out, r, s))
    b = rng.standard_normal(c_out)
    kw = dict(stride=stride, padding=padding, output_padding=op_)
    gradcheck(lambda x, w, b: ops.conv_transpose2d(x, w, b, **kw),
              lambda g, x, w, b: ops.conv_transpose2d_backward(g, x, w, **kw),
              [x, w, b], wrt=[0, 1, 2], rng=rng)


# ---- every algorithm of the dispatch, on every ISA, against the plain-loop kernel ---------------

def _sizes(kw):
    pair = lambda v: tuple(v) if isinstance(v, tuple) else (v, v)  # noqa: E731
    return (*pair(kw["stride"]), *pair(kw["padding"]), *pair(kw["dilation"]), kw["groups"])


def _run_pass(pass_, x, w, b, dy, kw, **opt):
    sizes = _sizes(kw)
    if pass_ == "forward":
        y = np.empty(dy.shape, x.dtype)
        _core.conv2d_forward(y, x, w, b, *sizes, **opt)
        return (y,)
    if pass_ == "backward_data":
        dx = np.empty_like(x)
        _core.conv2d_backward_data(dx, dy, w, *sizes, **opt)
        return (dx,)
    dw, db = np.empty_like(w), np.empty(w.shape[0], x.dtype)
    _core.conv2d_backward_weight(dw, db, dy, x, *sizes, **opt)
    return dw, db


def _variant(pass_, x, w, kw, dtype=np.float32, isa=None):
    return _core.conv2d_variant(pass_, x.shape, w.shape, *_sizes(kw), dtype=dtype, isa=isa)


# The configurations each algorithm accepts (a forced variant refuses the others, see below).
def _accepts(variant, cfg):
    n, c, h, w, k, r, s, stride, padding, dilation, groups, bias = cfg
    if variant == "gemm1x1":
        return r == s == 1 and stride == 1 and padding == 0
    if variant == "winograd":
        return r == s == 3 and stride == 1 and dilation == 1
    return True


def _winograd_ulps(pass_, w, dy):
    """F(4, 3)'s transforms scale values by up to ~100 and back: 15-30x the rounding of a direct
    sum (float32, max error / max |y|: 4.6e-6 at C16, 8.5e-6 at C64, 1.2e-5 at C256)."""
    return 64 + 16 * (dy[0].size if pass_ == "backward_weight" else w[0].size) ** 0.5


VARIANTS = ["reference", "gemm1x1", "implicit_gemm", "direct", "winograd"]
KERNEL_CONFIGS = [CONFIGS[i] for i in (0, 1, 2, 3, 5, 8, 10, 11, 13, 15, 16, 18, 20, 23, 24, 25)] + [
    (1, 2, 6, 75, 3, 3, 3, 4, 1, 1, 1, True),  # stride 4 over rows of > 16 outputs (vector gather)
]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", VARIANTS[1:])
def test_every_variant_matches_reference_kernel(rng, variant, dtype, isa):
    for cfg in KERNEL_CONFIGS:
        if not _accepts(variant, cfg):
            continue
        x, w, b, kw = _make(rng, cfg)
        x, w = x.astype(dtype), w.astype(dtype)
        b = None if b is None else b.astype(dtype)
        dy = rng.standard_normal(ref.conv2d(x, w, None, **kw).shape).astype(dtype)
        for pass_ in PASSES:
            want = _run_pass(pass_, x, w, b, dy, kw, variant="reference")
            got = _run_pass(pass_, x, w, b, dy, kw, variant=variant, isa=isa)
            ulps = 16 + 8 * (dy[0].size if pass_ == "backward_weight" else w[0].size) ** 0.5
            if variant == "winograd":
                ulps = _winograd_ulps(pass_, w, dy)
            for g, r_ in zip(got, want):
                assert_close(g, r_, dtype, ulps=ulps, name=f"{variant} {pass_} {_ids(cfg)}")


# Winograd F(4x4, 3x3) on the shapes that stress it: odd sizes (edge tiles cropped), padding
# 0 / 1 / 2 / 3 (3: the backward-data form's padding is negative), groups, batch 1, few channels,
# several GEMM panels of tiles. (N, C, H, W, K, padding, groups)
WINOGRAD_CONFIGS = [
    (1, 3, 7, 7, 4, 1, 1), (2, 2, 13, 17, 3, 0, 1), (1, 1, 17, 13, 1, 2, 1), (2, 4, 9, 11, 6, 2, 2),
    (1, 3, 3, 3, 2, 0, 1), (2, 5, 8, 6, 3, 3, 1), (1, 16, 17, 17, 32, 1, 1), (3, 12, 13, 7, 9, 1, 3),
    (1, 2, 5, 70, 3, 1, 1),  # 18 tiles a row: the vector gathers and interleaves, and their tails
]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_winograd_matches_reference_kernel(rng, dtype, isa):
    for n, c, h, w_, k, p, g in WINOGRAD_CONFIGS:
        cfg = (n, c, h, w_, k, 3, 3, 1, p, 1, g, True)
        x, w, b, kw = _make(rng, cfg)
        x, w, b = x.astype(dtype), w.astype(dtype), b.astype(dtype)
        dy = rng.standard_normal(ref.conv2d(x, w, None, **kw).shape).astype(dtype)
        for pass_ in PASSES:
            want = _run_pass(pass_, x, w, b, dy, kw, variant="reference")
            got = _run_pass(pass_, x, w, b, dy, kw, variant="winograd", isa=isa)
            for g_, r_ in zip(got, want):
                assert_close(g_, r_, dtype, ulps=_winograd_ulps(pass_, w, dy),
                             name=f"winograd {pass_} {_ids(cfg)}")


def test_auto_picks_winograd_for_the_resnet_layers():
    """Issue 9's 3x3 layers (N = 32): every float32 pass on Winograd; float64 keeps the GEMM
    (Winograd's rounding error is 15-30x larger: not what a float64 caller asked for)."""
    for c, hw in [(64, 56), (128, 28), (256, 14)]:
        for dtype, want in (("float32", "winograd"), ("float64", "implicit_gemm")):
            got = [_core.conv2d_variant(p, (32, c, hw, hw), (c, c, 3, 3), 1, 1, 1, 1, 1, 1, 1,
                                        dtype=dtype) for p in PASSES]
            assert got == [want] * 3, (c, hw, dtype)


def test_winograd_can_be_turned_off():
    code = ("from fastdl import _core; print(_core.conv2d_variant('forward', (32, 64, 56, 56), "
            "(64, 64, 3, 3), 1, 1, 1, 1, 1, 1, 1, dtype='float32'))")
    env = dict(os.environ, FASTDL_CONV_WINOGRAD="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "implicit_gemm"


def test_forced_variant_refuses_what_it_cannot_run(rng):
    x, w, b, kw = _make(rng, CONFIGS[0])  # 3x3
    x, w = x.astype(np.float32), w.astype(np.float32)
    y = np.empty((1, 4, 7, 7), np.float32)
    with pytest.raises(ValueError, match="gemm1x1"):
        _core.conv2d_forward(y, x, w, None, *_sizes(kw), variant="gemm1x1")
    with pytest.raises(ValueError, match="variant"):
        _core.conv2d_forward(y, x, w, None, *_sizes(kw), variant="fft")
    # winograd: 3x3, stride 1, dilation 1
    for cfg in (CONFIGS[1], CONFIGS[7], CONFIGS[11]):  # stride 2, 5x5, dilation 2
        x2, w2, _, kw2 = _make(rng, cfg)
        y2 = np.empty(ref.conv2d(x2, w2, None, **kw2).shape)
        with pytest.raises(ValueError, match="winograd"):
            _core.conv2d_forward(y2, x2, w2, None, *_sizes(kw2), variant="winograd")
        with pytest.raises(ValueError, match="winograd"):
            _core.conv2d_backward_data(np.empty_like(x2), y2, w2, *_sizes(kw2), variant="winograd")
        with pytest.raises(ValueError, match="winograd"):
            _core.conv2d_backward_weight(np.empty_like(w2), np.empty(len(w2)), y2, x2, *_sizes(kw2),
                                         variant="winograd")


def test_dispatch_reaches_every_algorithm():
    """The shapes that auto sends to each fast path (the forced-variant test covers their math)."""
    def pick(pass_, xs, ws, **kw):
        kw = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, **kw}
        return _core.conv2d_variant(pass_, xs, ws, *_sizes(kw))
    for pass_ in PASSES:
        assert pick(pass_, (4, 64, 14, 14), (128, 64, 1, 1)) == "gemm1x1"
        assert pick(pass_, (4, 64, 14, 14), (64, 1, 3, 3), padding=1, groups=64) == "direct"
        # 3x3 stride 1: Winograd given channels and tiles enough (backward-weight wants more)
        assert pick(pass_, (4, 64, 28, 28), (64, 64, 3, 3), padding=1) == "winograd"
        wino = "implicit_gemm" if pass_ == "backward_weight" else "winograd"
        assert pick(pass_, (4, 64, 14, 14), (64, 64, 3, 3), padding=1) == wino
        assert pick(pass_, (32, 512, 14, 14), (512, 512, 3, 3), padding=1) == wino
        assert pick(pass_, (4, 64, 14, 14), (64, 64, 3, 3), padding=1, stride=2) == "implicit_gemm"
        assert pick(pass_, (4, 64, 14, 14), (64, 64, 3, 3), padding=2, dilation=2) == "implicit_gemm"
        assert pick(pass_, (1, 256, 14, 14), (256, 256, 3, 3), padding=1) == "implicit_gemm"  # 16 tiles
        assert pick(pass_, (32, 64, 5, 5), (64, 64, 3, 3), padding=1) == "implicit_gemm"  # cropped
    assert pick("forward", (4, 4, 14, 14), (32, 4, 3, 3), padding=1) == "implicit_gemm"  # C/G < 8
    assert pick("forward", (4, 8, 14, 14), (32, 8, 3, 3), padding=1) == "winograd"
    # LeNet's C1: one input channel (forward k = 25) and one backward-data filter row go direct,
    # backward-weight's 32 filter rows stay on the GEMM
    lenet = [pick(p, (4, 1, 28, 28), (32, 1, 5, 5)) for p in PASSES]
    assert lenet == ["direct", "direct", "implicit_gemm"]
    rgb = [pick(p, (4, 3, 32, 32), (64, 3, 3, 3), padding=1) for p in PASSES]
    assert rgb == ["implicit_gemm", "direct", "implicit_gemm"]


# ---- layouts, batches, repeatability ------------------------------------------------------------

def test_noncontiguous_inputs(rng):
    x = rng.standard_normal((3, 10, 9, 16)).astype(np.float32)
    w = rng.standard_normal((5, 6, 3, 3)).astype(np.float32)
    xv = x[::2, ::2, :, ::2]               # (2, 5, 9, 8)
    wv = np.swapaxes(w, 0, 1)              # (6, 5, 3, 3), strided
    b = rng.standard_normal(12).astype(np.float32)[::2]
    kw = dict(stride=1, padding=1)
    assert_close(ops.conv2d(xv, wv, b, **kw), ref.conv2d(xv, wv, b, **kw), np.float32,
                 ref.conv2d(xv, wv, b, **kw, dtype=np.float32))
    dy = rng.standard_normal((2, 6, 8, 9)).astype(np.float32).transpose(0, 1, 3, 2)
    got = ops.conv2d_backward(dy, xv, wv, **kw)
    for g, r_, bs in zip(got, ref.conv2d_backward(dy, xv, wv, **kw),
                         ref.conv2d_backward(dy, xv, wv, **kw, dtype=np.float32)):
        assert_close(g, r_, np.float32, bs)
    xt = np.asfortranarray(rng.standard_normal((2, 6, 5, 7)))
    wt = rng.standard_normal((6, 4, 3, 3))[:, ::-1]
    y = ops.conv_transpose2d(xt, wt, stride=2, padding=1, output_padding=1)
    assert_close(y, ref.conv_transpose2d(xt, wt, stride=2, padding=1, output_padding=1), np.float64)


def test_dtypes_mix_and_convert(rng):
    x = rng.standard_normal((1, 2, 5, 5))
    w = rng.standard_normal((3, 2, 3, 3))
    assert ops.conv2d(x.astype(np.float32), w.astype(np.float32)).dtype == np.float32
    assert ops.conv2d(x.astype(np.float32), w).dtype == np.float64  # mixed: float64, as dense
    yi = ops.conv2d(np.ones((1, 1, 3, 3), np.int64), np.ones((1, 1, 2, 2), np.int32))
    assert yi.dtype == np.float32
    np.testing.assert_array_equal(yi, np.full((1, 1, 2, 2), 4.0, np.float32))
    grads = ops.conv2d_backward(np.ones((1, 3, 3, 3), np.float32), x.astype(np.float32), w)
    assert all(g.dtype == np.float64 for g in grads)


def test_zero_batch(rng):
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    x = np.zeros((0, 3, 8, 8), np.float32)
    y = ops.conv2d(x, w, np.ones(4, np.float32), padding=1)
    assert y.shape == (0, 4, 8, 8) and y.dtype == np.float32
    dx, dw, db = ops.conv2d_backward(y, x, w, padding=1)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dw, 0)
    np.testing.assert_array_equal(db, 0)
    wt = rng.standard_normal((3, 2, 3, 3))
    yt = ops.conv_transpose2d(np.zeros((0, 3, 4, 4)), wt, stride=2)
    assert yt.shape == (0, 2, 9, 9)
    dx, dw, db = ops.conv_transpose2d_backward(yt, np.zeros((0, 3, 4, 4)), wt, stride=2)
    assert dx.shape == (0, 3, 4, 4) and not dw.any() and not db.any()


@pytest.mark.parametrize("cfg", [(8, 32, 20, 20, 32, 3, 3, 1, 1, 1, 1, True),
                                 (8, 32, 20, 20, 32, 3, 3, 1, 1, 1, 32, True),
                                 (8, 64, 10, 10, 96, 1, 1, 1, 0, 1, 1, True)], ids=_ids)
def test_bitwise_repeatable(rng, cfg):
    x, w, b, kw = _make(rng, cfg)
    x, w, b = x.astype(np.float32), w.astype(np.float32), b.astype(np.float32)
    fastdl.set_num_threads(2)
    y1 = ops.conv2d(x, w, b, **kw)
    g1 = ops.conv2d_backward(y1, x, w, **kw)
    for _ in range(2):
        y2 = ops.conv2d(x, w, b, **kw)
        g2 = ops.conv2d_backward(y1, x, w, **kw)
        assert y1.tobytes() == y2.tobytes()
        for a, c in zip(g1, g2):
            assert a.tobytes() == c.tobytes()
    fastdl.set_num_threads(1)
    assert_close(ops.conv2d(x, w, b, **kw), y1, np.float32, ulps=64)


# ---- PyTorch -----------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", [CONFIGS[i] for i in (0, 11, 14, 16, 23)], ids=_ids)
def test_matches_pytorch(rng, cfg):
    torch = pytest.importorskip("torch")
    x, w, b, kw = _make(rng, cfg)
    x, w = x.astype(np.float32), w.astype(np.float32)
    b = None if b is None else b.astype(np.float32)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tw, tb, **kw)
    y = ops.conv2d(x, w, b, **kw)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-4, atol=1e-4)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    ty.backward(torch.tensor(dy))
    dx, dw, db = ops.conv2d_backward(dy, x, w, **kw)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=1e-4, atol=1e-3)
    if tb is not None:
        np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-4, atol=1e-3)


def test_transpose_matches_pytorch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 6, 5, 7)).astype(np.float32)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    kw = dict(stride=(2, 3), padding=(1, 0), output_padding=(1, 2))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv_transpose2d(tx, tw, tb, **kw)
    y = ops.conv_transpose2d(x, w, b, **kw)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-4, atol=1e-4)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    ty.backward(torch.tensor(dy))
    for g, t in zip(ops.conv_transpose2d_backward(dy, x, w, **kw), (tx, tw, tb)):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-4, atol=1e-3)


# ---- bad input ---------------------------------------------------------------------------------

def _bad(fn, exc, match, *args, **kw):
    with pytest.raises(exc, match=match):
        fn(*args, **kw)


def test_bad_input_conv2d():
    x = np.ones((2, 4, 8, 8), np.float32)
    w = np.ones((6, 4, 3, 3), np.float32)
    c2 = ops.conv2d
    _bad(c2, ValueError, r"x must be 3-D or 4-D, got shape \(8, 8\)", x[0, 0], w)
    _bad(c2, ValueError, r"w must be 4-D", x, w[0])
    _bad(c2, ValueError, r"C/groups=4 input channels.*got 2", x, w[:, :2])
    _bad(c2, ValueError, r"groups=3 must divide the input channels C=4", x, w, groups=3)
    _bad(c2, ValueError, r"groups=4 must divide the output channels K=6", x, w[:, :1], groups=4)
    _bad(c2, ValueError, r"groups must be >= 1, got 0", x, w, groups=0)
    _bad(c2, TypeError, r"groups must be an int", x, w, groups=1.5)
    _bad(c2, ValueError, r"stride must be >= 1, got 0", x, w, stride=0)
    _bad(c2, ValueError, r"stride must be >= 1, got \(1, 0\)", x, w, stride=(1, 0))
    _bad(c2, ValueError, r"dilation must be >= 1", x, w, dilation=0)
    _bad(c2, ValueError, r"padding must be >= 0, got -1", x, w, padding=-1)
    _bad(c2, ValueError, r"int or an \(h, w\) pair", x, w, padding=(1, 1, 1))
    _bad(c2, TypeError, r"stride must be an int", x, w, stride="2")
    _bad(c2, ValueError, r"larger than the padded input along H \(8 \+ 2\*0 = 8\)", x,
         np.ones((6, 4, 9, 3), np.float32))
    _bad(c2, ValueError, r"larger than the padded input along W", x, w, dilation=(1, 4))
    _bad(c2, ValueError, r"b must have shape \(6,\), got \(4,\)", x, w, np.ones(4, np.float32))
    _bad(c2, TypeError, r"x must have a real numeric dtype, got complex128", x.astype(complex), w)
    _bad(c2, TypeError, r"w must have a real numeric dtype, got object", x, object())
    db = ops.conv2d_backward
    _bad(db, ValueError, r"dy must have shape \(2, 6, 6, 6\), got \(2, 6, 8, 8\)",
         np.ones((2, 6, 8, 8), np.float32), x, w)
    _bad(db, ValueError, r"dy must be 4-D", np.ones((6, 6, 6), np.float32), x, w)


def test_bad_input_conv_transpose2d():
    x = np.ones((2, 4, 5, 5), np.float32)
    w = np.ones((4, 3, 3, 3), np.float32)
    ct = ops.conv_transpose2d
    _bad(ct, ValueError, r"must have C_in=4 along axis 0", x, w[:2])
    _bad(ct, ValueError, r"output_padding must be smaller than stride.*output_padding=1, stride=1",
         x, w, output_padding=1)
    _bad(ct, ValueError, r"output_padding must be smaller than stride.*along W.*=2, stride=2", x, w,
         stride=2, output_padding=(1, 2))
    _bad(ct, ValueError, r"output_padding must be >= 0", x, w, output_padding=-1)
    _bad(ct, ValueError, r"output would be empty along H", np.ones((1, 4, 1, 1), np.float32), w,
         padding=(2, 0))
    _bad(ct, ValueError, r"b must have shape \(3,\)", x, w, np.ones(4, np.float32))
    _bad(ct, ValueError, r"x must be 3-D or 4-D", x[0, 0], w)
    _bad(ops.conv_transpose2d_backward, ValueError, r"dy must have shape \(2, 3, 7, 7\)",
         np.ones((2, 3, 8, 8), np.float32), x, w)


def test_bad_input_extension():
    """Direct callers of the extension get exceptions, never a crash."""
    x = np.ones((2, 4, 8, 8), np.float32)
    w = np.ones((6, 4, 3, 3), np.float32)
    y = np.empty((2, 6, 6, 6), np.float32)
    s = (1, 1, 0, 0, 1, 1, 1)
    _core.conv2d_forward(y, x, w, None, *s)
    _bad(_core.conv2d_forward, TypeError, r"x: must be C-contiguous", y, x[:, :, :, ::-1], w, None, *s)
    _bad(_core.conv2d_forward, TypeError, r"w: expected dtype float32, got float64", y, x,
         w.astype(np.float64), None, *s)
    _bad(_core.conv2d_forward, TypeError, r"expected dtype float32 or float64, got int32",
         y.astype(np.int32), x.astype(np.int32), w.astype(np.int32), None, *s)
    _bad(_core.conv2d_forward, ValueError, r"y: expected shape \(2, 6, 6, 6\), got shape \(2, 6, 8, 8\)",
         np.empty((2, 6, 8, 8), np.float32), x, w, None, *s)
    _bad(_core.conv2d_forward, ValueError, r"b: expected shape \(6,\)", y, x, w,
         np.ones(5, np.float32), *s)
    _bad(_core.conv2d_forward, ValueError, r"groups: 3 does not divide", y, x, w, None,
         *s[:-1], 3)
    _bad(_core.conv2d_forward, ValueError, r"stride: expected >= 1", y, x, w, None, 0, 1, 0, 0, 1, 1, 1)
    _bad(_core.conv2d_forward, ValueError, r"w: the dilated kernel \(9\) is larger than the padded "
         r"input \(8\) along H", y, x, w, None, 1, 1, 0, 0, 4, 1, 1)
    _bad(_core.conv2d_forward, ValueError, r"w: expected 2 input channels per group", y, x, w, None,
         *s[:-1], 2)
    _bad(_core.conv2d_forward, ValueError, r"x: expected 4-D array, got shape \(4, 8, 8\)", y, x[0], w, None, *s)
    dx = np.empty_like(x)
    _bad(_core.conv2d_backward_data, ValueError, r"dy: expected shape \(2, 6, 6, 6\)", dx,
         np.ones((2, 6, 5, 5), np.float32), w, *s)
    # dx may be up to stride - 1 larger than the smallest input (output_padding), no more
    _core.conv2d_backward_data(np.empty((2, 4, 9, 9), np.float32), np.ones((2, 6, 4, 4), np.float32),
                               w, 2, 2, 0, 0, 1, 1, 1)
    _bad(_core.conv2d_backward_data, ValueError, r"dy: expected shape \(2, 6, 5, 5\)",
         np.empty((2, 4, 11, 11), np.float32), np.ones((2, 6, 4, 4), np.float32), w, 2, 2, 0, 0, 1, 1, 1)
    _bad(_core.conv2d_backward_weight, ValueError, r"db: expected shape \(6,\)", np.empty_like(w),
         np.empty(4, np.float32), y, x, *s)
    ro = np.empty_like(w)
    ro.flags.writeable = False
    _bad(_core.conv2d_backward_weight, ValueError, r"dw: output array is read-only", ro, None, y, x, *s)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_thread_counts(rng, threads):
    """Threads over images (N >= threads, partial weight gradients summed in thread order) and
    inside each product (N < threads) give the reference's results."""
    fastdl.set_num_threads(threads)
    for cfg in [(3, 8, 9, 9, 16, 3, 3, 1, 1, 1, 1, True), (2, 8, 9, 9, 16, 3, 3, 2, 1, 1, 1, True),
                (5, 16, 6, 6, 16, 1, 1, 1, 0, 1, 1, True), (4, 8, 9, 9, 8, 3, 3, 2, 1, 1, 8, True)]:
        x, w, b, kw = _make(rng, cfg)
        y = ops.conv2d(x.astype(np.float32), w.astype(np.float32), b.astype(np.float32), **kw)
        assert_close(y, ref.conv2d(x, w, b, **kw), np.float32, ref.conv2d(x, w, b, **kw, dtype=np.float32))
        dy = rng.standard_normal(y.shape)
        got = ops.conv2d_backward(dy.astype(np.float32), x.astype(np.float32), w.astype(np.float32), **kw)
        for g, r_, bs in zip(got, ref.conv2d_backward(dy, x, w, **kw),
                             ref.conv2d_backward(dy, x, w, **kw, dtype=np.float32)):
            assert_close(g, r_, np.float32, bs)


@pytest.mark.parametrize("variant", VARIANTS)
def test_zero_batch_every_variant(rng, variant):
    r, p = (3, 1) if variant == "winograd" else (1, 0)
    x = np.zeros((0, 8, 5, 5), np.float32)
    w = rng.standard_normal((16, 8, r, r)).astype(np.float32)
    y = np.empty((0, 16, 5, 5), np.float32)
    _core.conv2d_forward(y, x, w, None, 1, 1, p, p, 1, 1, 1, variant=variant)
    dx = np.empty_like(x)
    _core.conv2d_backward_data(dx, y, w, 1, 1, p, p, 1, 1, 1, variant=variant)
    dw, db = np.full_like(w, np.nan), np.full(16, np.nan, np.float32)
    _core.conv2d_backward_weight(dw, db, y, x, 1, 1, p, p, 1, 1, 1, variant=variant)
    np.testing.assert_array_equal(dw, 0)
    np.testing.assert_array_equal(db, 0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_outputs_fully_written(rng, variant):
    """Every output element is written (=), also where no window reaches: dx under a stride larger
    than the kernel, and the extra rows/columns of a dx larger than the smallest input."""
    for (n, c, h, w_, k, r, s, st, p), extra in [((2, 8, 9, 9, 16, 1, 1, 3, 0), 0),
                                                 ((2, 1, 6, 9, 16, 2, 2, 3, 1), 2),
                                                 ((2, 16, 7, 7, 8, 3, 3, 2, 1), 1),
                                                 ((2, 16, 7, 9, 8, 3, 3, 1, 1), 0),
                                                 ((1, 3, 13, 9, 4, 3, 3, 1, 0), 0)]:
        if not _accepts(variant, (n, c, h, w_, k, r, s, st, p, 1, 1, False)):
            continue
        x = rng.standard_normal((n, c, h, w_))
        w = rng.standard_normal((k, c, r, s))
        oh, ow = (h + 2 * p - r) // st + 1, (w_ + 2 * p - s) // st + 1
        dy = rng.standard_normal((n, k, oh, ow))
        big = np.full((n, c, h + extra, w_ + extra), np.nan)  # extra < stride: still gives oh, ow
        _core.conv2d_backward_data(big, dy, w, st, st, p, p, 1, 1, 1, variant=variant)
        want = ref.conv2d_backward(dy, np.zeros(big.shape), w, stride=st, padding=p)[0]
        assert_close(big, want, np.float64, ulps=64)
        y = np.full((n, k, oh, ow), np.nan)
        _core.conv2d_forward(y, x, w, None, st, st, p, p, 1, 1, 1, variant=variant)
        assert_close(y, ref.conv2d(x, w, stride=st, padding=p), np.float64, ulps=64)


# ---- judge's findings (F0, F0b, F1, F3, F4): edge cases with one defined answer -----------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_channels_as_pytorch(dtype):
    """C = 0: y = b (a sum over nothing), dx/dw empty, db = dy summed; K = 0: y empty, dx = 0.
    Outputs come from np.empty, so a kernel that skips them shows garbage here."""
    x, w = np.ones((2, 0, 4, 4), dtype), np.ones((3, 0, 3, 3), dtype)
    b = np.array([1.0, -2.0, 0.5], dtype)
    y = ops.conv2d(x, w, b)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, np.broadcast_to(b[None, :, None, None], (2, 3, 2, 2)))
    np.testing.assert_array_equal(ops.conv2d(x, w, padding=1), np.zeros((2, 3, 4, 4), dtype))
    dy = np.arange(24, dtype=dtype).reshape(2, 3, 2, 2)
    dx, dw, db = ops.conv2d_backward(dy, x, w)
    assert dx.shape == x.shape and dw.shape == w.shape
    np.testing.assert_array_equal(db, dy.sum(axis=(0, 2, 3)))
    # K = 0 (zero filters): nothing to compute, dx = 0 of x's shape.
    x3 = np.ones((1, 3, 4, 4), dtype)
    assert ops.conv2d(x3, np.ones((0, 3, 3, 3), dtype)).shape == (1, 0, 2, 2)
    dx, dw, db = ops.conv2d_backward(np.ones((1, 0, 2, 2), dtype), x3, np.ones((0, 3, 3, 3), dtype))
    np.testing.assert_array_equal(dx, np.zeros_like(x3))
    assert dw.shape == (0, 3, 3, 3) and db.shape == (0,)
    # Groups with zero channels on both sides.
    assert ops.conv2d(np.ones((1, 0, 4, 4), dtype), np.ones((0, 0, 1, 1), dtype), groups=2).shape \
        == (1, 0, 4, 4)
    # Transposed: C_in = 0 -> y = b; C_out = 0 -> y empty; backward shapes and db.
    yt = ops.conv_transpose2d(np.ones((1, 0, 4, 4), dtype), np.ones((0, 2, 3, 3), dtype),
                              np.array([1.0, 3.0], dtype), stride=2)
    np.testing.assert_array_equal(yt, np.broadcast_to(np.array([1.0, 3.0], dtype)[None, :, None, None],
                                                      (1, 2, 9, 9)))
    assert ops.conv_transpose2d(np.ones((1, 3, 4, 4), dtype), np.ones((3, 0, 3, 3), dtype)).shape \
        == (1, 0, 6, 6)
    dyt = np.arange(72, dtype=dtype).reshape(1, 2, 6, 6)
    dx, dw, db = ops.conv_transpose2d_backward(dyt, np.ones((1, 0, 4, 4), dtype),
                                               np.ones((0, 2, 3, 3), dtype))
    assert dx.shape == (1, 0, 4, 4) and dw.shape == (0, 2, 3, 3)
    np.testing.assert_array_equal(db, dyt.sum(axis=(0, 2, 3)))
    dx, dw, db = ops.conv_transpose2d_backward(np.ones((1, 0, 6, 6), dtype), x3,
                                               np.ones((3, 0, 3, 3), dtype))
    np.testing.assert_array_equal(dx, np.zeros_like(x3))
    assert dw.shape == (3, 0, 3, 3) and db.shape == (0,)


@pytest.mark.parametrize("variant", VARIANTS)
def test_zero_channels_every_variant(variant):
    """The extension itself (any forced variant) writes every output element for C = 0 / K = 0."""
    nan = np.nan
    for c, k in [(0, 4), (4, 0)]:
        x, w = np.ones((2, c, 5, 5)), np.ones((k, c, 1, 1))
        b = np.arange(k, dtype=np.float64)
        y = np.full((2, k, 5, 5), nan)
        _core.conv2d_forward(y, x, w, b, 1, 1, 0, 0, 1, 1, 1, variant=variant)
        np.testing.assert_array_equal(y, np.broadcast_to(b[None, :, None, None], y.shape))
        dy = np.ones((2, k, 5, 5))
        dx = np.full(x.shape, nan)
        _core.conv2d_backward_data(dx, dy, w, 1, 1, 0, 0, 1, 1, 1, variant=variant)
        np.testing.assert_array_equal(dx, 0)
        dw, db = np.full(w.shape, nan), np.full(k, nan)
        _core.conv2d_backward_weight(dw, db, dy, x, 1, 1, 0, 0, 1, 1, 1, variant=variant)
        np.testing.assert_array_equal(db, np.full(k, 50.0))


@pytest.mark.parametrize("isa", ISAS)
def test_stride_past_the_input_is_one_window(rng, isa):
    """A stride that leaves one window per axis (up to 2**31 and beyond) gives the unstrided answer
    in every pass and variant, with a workspace that does not grow with the stride (the direct
    kernels lay planes out in stride phases: 2**31 was a MemoryError)."""
    x = rng.standard_normal((1, 2, 8, 8)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    for stride in (9, 2**31, 2**40):
        np.testing.assert_allclose(ops.conv2d(x, w, stride=stride), ops.conv2d(x[:, :, :3, :3], w),
                                   rtol=1e-6, atol=1e-6)
    # Every variant, against the reference kernel (which keeps the stride), one axis or both
    # strided past the input, the other ordinary; dx as large as the stride allows.
    for c, k, st, pad in [(1, 4, (2**31, 1), (1, 0)), (8, 16, (5, 2**33), (0, 1)),
                          (2, 2, (2**31, 2**31), (1, 1)), (16, 8, (1, 7), (0, 0))]:
        x = rng.standard_normal((2, c, 3 + 2, 9)).astype(np.float64)
        w = rng.standard_normal((k, c, 3, 3))
        oh = (x.shape[2] + 2 * pad[0] - 3) // st[0] + 1
        ow = (x.shape[3] + 2 * pad[1] - 3) // st[1] + 1
        dy = rng.standard_normal((2, k, oh, ow))
        for variant in VARIANTS[1:]:
            # gemm1x1 takes no 3x3; winograd only where each axis is unit-strided or one window
            if variant == "gemm1x1" or (variant == "winograd" and
                                        any(s != 1 and o != 1 for s, o in zip(st, (oh, ow)))):
                continue
            kw = dict(stride=st, padding=pad, dilation=1, groups=1)
            for pass_ in PASSES:
                want = _run_pass(pass_, x, w, None, dy, kw, variant="reference")
                got = _run_pass(pass_, x, w, None, dy, kw, variant=variant, isa=isa)
                for g, r_ in zip(got, want):
                    assert_close(g, r_, np.float64, ulps=64, name=f"{variant} {pass_} {st}")
    # A 1x1 kernel strided past the input is not the unstrided plain GEMM (oh != h).
    x1 = rng.standard_normal((1, 4, 3, 3))
    w1 = rng.standard_normal((2, 4, 1, 1))
    assert_close(ops.conv2d(x1, w1, stride=2**31), ops.conv2d(x1[:, :, :1, :1], w1), np.float64)


@pytest.mark.parametrize("which", ["x", "w", "dy"])
def test_none_array_is_type_error(rng, which):
    args = {"dy": rng.standard_normal((1, 2, 3, 3)), "x": rng.standard_normal((1, 3, 5, 5)),
            "w": rng.standard_normal((2, 3, 3, 3))}
    args[which] = None
    if which != "dy":
        with pytest.raises(TypeError, match=f"conv2d: {which} must be an array, got None"):
            ops.conv2d(args["x"], args["w"])
    with pytest.raises(TypeError, match=f"conv2d_backward: {which} must be an array, got None"):
        ops.conv2d_backward(args["dy"], args["x"], args["w"])
    wt = None if which == "w" else rng.standard_normal((3, 2, 3, 3))
    xt = None if which == "x" else rng.standard_normal((1, 3, 3, 3))
    dyt = None if which == "dy" else rng.standard_normal((1, 2, 5, 5))
    if which != "dy":
        with pytest.raises(TypeError, match=f"conv_transpose2d: {which} must be an array"):
            ops.conv_transpose2d(xt, wt)
    with pytest.raises(TypeError, match=f"conv_transpose2d_backward: {which} must be an array"):
        ops.conv_transpose2d_backward(dyt, xt, wt)


def test_size_arguments_as_arrays():
    x, w = np.ones((1, 1, 5, 5)), np.ones((1, 1, 2, 2))
    assert ops.conv2d(x, w, dilation=np.array([1, 2])).shape == (1, 1, 4, 3)
    assert ops.conv2d(x, w, stride=np.int64(2)).shape == (1, 1, 2, 2)
    with pytest.raises(TypeError, match="conv2d: dilation must be an int or an \\(h, w\\) pair"):
        ops.conv2d(x, w, dilation=np.array([1.5, 2.0]))
    with pytest.raises(ValueError, match="conv2d: stride must be an int or an \\(h, w\\) pair"):
        ops.conv2d(x, w, stride=np.array([1, 2, 3]))


def test_zero_height_image_is_value_error():
    """DESIGN section 4: a 0-height or 0-width image is undefined (PyTorch refuses it too), even
    where padding would give it windows; the extension refuses it as well."""
    w = np.ones((2, 3, 1, 1), np.float32)
    for shape in [(1, 3, 0, 4), (1, 3, 4, 0), (2, 3, 0, 0)]:
        x = np.ones(shape, np.float32)
        with pytest.raises(ValueError, match="conv2d: x must have H, W >= 1"):
            ops.conv2d(x, w, padding=1)
        with pytest.raises(ValueError, match="conv2d_backward: x must have H, W >= 1"):
            ops.conv2d_backward(np.ones((1, 2, 2, 6), np.float32), x, w, padding=1)
        with pytest.raises(ValueError, match="conv_transpose2d: x must have H, W >= 1"):
            ops.conv_transpose2d(x, np.ones((3, 2, 3, 3), np.float32))
        with pytest.raises(ValueError, match="conv_transpose2d_backward: x must have H, W >= 1"):
            ops.conv_transpose2d_backward(np.ones((1, 2, 2, 2), np.float32), x,
                                          np.ones((3, 2, 3, 3), np.float32))
    with pytest.raises(ValueError, match="x: expected H, W >= 1"):
        _core.conv2d_forward(np.empty((1, 2, 2, 6), np.float32), np.ones((1, 3, 0, 4), np.float32),
                             w, None, 1, 1, 1, 1, 1, 1, 1)


def test_integer_inputs_follow_the_dtype_rule(rng):
    """ops/_util.py's rule, as every family: ints count as float32 and never widen on their own;
    a float64 operand makes the op float64; the values are exact."""
    xi = rng.integers(-3, 4, (1, 2, 5, 5))
    wf = rng.standard_normal((3, 2, 3, 3))
    want = ref.conv2d(xi.astype(np.float64), wf)
    y32 = ops.conv2d(xi, wf.astype(np.float32))
    assert y32.dtype == np.float32
    assert_close(y32, want, np.float32, ulps=64)
    y64 = ops.conv2d(xi, wf)
    assert y64.dtype == np.float64
    assert_close(y64, want, np.float64, ulps=64)
    assert ops.conv2d(xi, rng.integers(-1, 2, (3, 2, 3, 3))).dtype == np.float32
    assert ops.conv2d(xi.astype(np.float16), wf.astype(np.float16)).dtype == np.float32
    assert ops.conv2d(xi.astype(bool), wf.astype(np.float32)).dtype == np.float32
    wt = rng.integers(-2, 3, (2, 3, 3, 3))
    assert ops.conv_transpose2d(xi, wt).dtype == np.float32
    assert ops.conv_transpose2d(xi, wt.astype(np.float64)).dtype == np.float64
    grads = ops.conv2d_backward(rng.integers(-2, 3, (1, 3, 3, 3)), xi, wf.astype(np.float32))
    assert all(g.dtype == np.float32 for g in grads)


def test_unbatched_input_as_pytorch(rng):
    """A 3-D x (C, H, W) is one image (PyTorch's unbatched form): y, dy and dx are 3-D."""
    x = rng.standard_normal((4, 7, 6))
    w = rng.standard_normal((6, 2, 3, 3))
    b = rng.standard_normal(6)
    kw = dict(stride=2, padding=1, groups=2)
    y = ops.conv2d(x, w, b, **kw)
    np.testing.assert_array_equal(y, ops.conv2d(x[None], w, b, **kw)[0])
    dy = rng.standard_normal(y.shape)
    got, want = ops.conv2d_backward(dy, x, w, **kw), ops.conv2d_backward(dy[None], x[None], w, **kw)
    assert got[0].shape == x.shape
    for g, r_ in zip(got, (want[0][0], *want[1:])):
        np.testing.assert_array_equal(g, r_)
    wt = rng.standard_normal((4, 3, 3, 3))
    yt = ops.conv_transpose2d(x, wt, None, stride=2, output_padding=1)
    np.testing.assert_array_equal(yt, ops.conv_transpose2d(x[None], wt, stride=2, output_padding=1)[0])
    dyt = rng.standard_normal(yt.shape)
    got = ops.conv_transpose2d_backward(dyt, x, wt, stride=2, output_padding=1)
    want = ops.conv_transpose2d_backward(dyt[None], x[None], wt, stride=2, output_padding=1)
    assert got[0].shape == x.shape
    for g, r_ in zip(got, (want[0][0], *want[1:])):
        np.testing.assert_array_equal(g, r_)
    with pytest.raises(ValueError, match="conv2d_backward: dy must be 3-D"):
        ops.conv2d_backward(dy[None], x, w, **kw)
    torch = pytest.importorskip("torch")
    t = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), **kw)
    assert_close(y, t.numpy(), np.float64, ulps=64)


@pytest.mark.parametrize("mask", [(False, True, True), (True, False, False), (False, False, True),
                                  (True, True, False), (False, True, False)])
def test_backward_output_mask(rng, mask):
    """output_mask skips the passes not asked for; the others equal the full backward's."""
    x = rng.standard_normal((2, 4, 7, 6))
    w = rng.standard_normal((6, 2, 3, 3))
    dy = rng.standard_normal((2, 6, 7, 3))
    full = ops.conv2d_backward(dy, x, w, stride=(1, 2), padding=1, groups=2)
    part = ops.conv2d_backward(dy, x, w, stride=(1, 2), padding=1, groups=2, output_mask=mask)
    for want, got, m in zip(full, part, mask):
        assert (got is None) != m
        if m:
            np.testing.assert_array_equal(got, want)
    xt = rng.standard_normal((2, 3, 4, 5))
    wt = rng.standard_normal((3, 2, 3, 3))
    dyt = rng.standard_normal((2, 2, 9, 11))
    full = ops.conv_transpose2d_backward(dyt, xt, wt, stride=2, output_padding=(0, 0))
    part = ops.conv_transpose2d_backward(dyt, xt, wt, stride=2, output_mask=mask)
    for want, got, m in zip(full, part, mask):
        assert (got is None) != m
        if m:
            np.testing.assert_array_equal(got, want)


def test_backward_output_mask_bad():
    x, w, dy = np.ones((1, 1, 3, 3)), np.ones((1, 1, 3, 3)), np.ones((1, 1, 1, 1))
    with pytest.raises(ValueError, match="output_mask must have 3 entries"):
        ops.conv2d_backward(dy, x, w, output_mask=(True, False))
    with pytest.raises(TypeError, match="output_mask must be a sequence"):
        ops.conv2d_backward(dy, x, w, output_mask=1)


# ---- conv_transpose2d groups and dilation (issue 9) ----------------------------------------------
# Against tests/reference.py's grouped scatter (PyTorch's definition), float64 finite differences
# and torch; output_padding up to max(stride, dilation) - 1, so also past the stride (the ops'
# "full output" path).

# (N, C_in, H, W, C_out, R, S, stride, padding, output_padding, groups, dilation, bias)
GROUPED_TRANSPOSE = [
    (1, 4, 5, 4, 6, 3, 3, 2, 1, 1, 2, 1, True),        # groups 2, batch 1
    (2, 3, 4, 5, 3, 2, 3, 1, 0, 0, 3, 1, False),       # depthwise-like: groups = C_in = C_out
    (2, 2, 5, 3, 4, 3, 3, 1, 1, 0, 1, 2, True),        # dilation 2, stride 1
    (1, 6, 3, 4, 4, 3, 2, 2, 1, 1, 2, (2, 3), True),   # dilation per axis, groups 2
    (2, 2, 4, 4, 2, 3, 3, 1, 2, 2, 1, 3, True),        # output_padding 2 >= stride 1 (< dilation 3)
    (1, 4, 3, 5, 2, 2, 2, (1, 2), (0, 1), (1, 2), 2, 3, False),  # full path on both axes
    (2, 6, 5, 5, 9, 1, 1, 3, 0, 2, 3, 1, True),        # 1x1, stride 3, groups 3
    (1, 2, 7, 1, 2, 3, 1, 2, (3, 0), (1, 0), 2, (2, 1), True),  # padding 3 larger than the kernel
]


def _gt_ids(cfg):
    return "N{}Ci{}H{}W{}Co{}R{}S{}-s{}p{}op{}g{}d{}{}".format(*cfg[:12], "b" if cfg[12] else "")


def _gt_make(rng, cfg):
    n, c_in, h, wd, c_out, r, s, stride, padding, op_, groups, dil, bias = cfg
    x = rng.standard_normal((n, c_in, h, wd))
    w = rng.standard_normal((c_in, c_out // groups, r, s))
    b = rng.standard_normal(c_out) if bias else None
    kw = dict(stride=stride, padding=padding, output_padding=op_, groups=groups, dilation=dil)
    return x, w, b, kw


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", GROUPED_TRANSPOSE, ids=_gt_ids)
def test_conv_transpose2d_groups_dilation_against_reference(rng, cfg, dtype):
    x, w, b, kw = _gt_make(rng, cfg)
    cast = lambda a: None if a is None else a.astype(dtype)  # noqa: E731
    y = ops.conv_transpose2d(cast(x), cast(w), cast(b), **kw)
    want = ref.conv_transpose2d_grouped(x, w, b, **kw)
    tol = 16 + 4 * (x.shape[1] * w.shape[2] * w.shape[3]) ** 0.5
    assert_close(y, want, dtype, name="y", ulps=tol * 4)
    dy = rng.standard_normal(want.shape)
    got = ops.conv_transpose2d_backward(cast(dy), cast(x), cast(w), **kw)
    wants = ref.conv_transpose2d_grouped_backward(dy, x, w, **kw)
    for name, g, r_ in zip(("dx", "dw", "db"), got, wants):
        assert_close(g, r_, dtype, name=name, ulps=4 * (16 + 4 * dy[0].size ** 0.5))
    # the same through the positional order of PyTorch's F.conv_transpose2d
    y2 = ops.conv_transpose2d(cast(x), cast(w), cast(b), kw["stride"], kw["padding"],
                              kw["output_padding"], kw["groups"], kw["dilation"])
    np.testing.assert_array_equal(y, y2)


@pytest.mark.parametrize("cfg", [GROUPED_TRANSPOSE[i] for i in (0, 3, 4, 5)], ids=_gt_ids)
def test_conv_transpose2d_groups_dilation_gradcheck(rng, cfg):
    x, w, _, kw = _gt_make(rng, cfg)
    b = rng.standard_normal(w.shape[1] * kw["groups"])
    gradcheck(lambda x, w, b: ops.conv_transpose2d(x, w, b, **kw),
              lambda g, x, w, b: ops.conv_transpose2d_backward(g, x, w, **kw),
              [x, w, b], wrt=[0, 1, 2], rng=rng)


@pytest.mark.parametrize("cfg", GROUPED_TRANSPOSE, ids=_gt_ids)
def test_conv_transpose2d_groups_dilation_against_torch(rng, cfg):
    torch = pytest.importorskip("torch")
    x, w, b, kw = _gt_make(rng, cfg)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    ty = torch.nn.functional.conv_transpose2d(tx, tw, tb, **kw)
    y = ops.conv_transpose2d(x, w, b, **kw)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    dx, dw, db = ops.conv_transpose2d_backward(dy, x, w, **kw, output_mask=(True, True, b is not None))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=1e-12, atol=1e-12)
    if b is not None:
        np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_conv_transpose2d_output_mask_full_path(rng):
    """The mask skips the same passes on the full-output path (output_padding >= stride)."""
    x, w, b, kw = _gt_make(rng, GROUPED_TRANSPOSE[4])
    dy = rng.standard_normal(ops.conv_transpose2d(x, w, b, **kw).shape)
    full = ops.conv_transpose2d_backward(dy, x, w, **kw)
    for mask in ((True, False, False), (False, True, False), (False, False, True)):
        got = ops.conv_transpose2d_backward(dy, x, w, **kw, output_mask=mask)
        for m, g, f in zip(mask, got, full):
            assert (g is None) != m
            if m:
                np.testing.assert_array_equal(g, f)


def test_bad_input_conv_transpose2d_groups_dilation():
    x = np.ones((2, 4, 5, 5), np.float32)
    w = np.ones((4, 3, 3, 3), np.float32)
    ct = ops.conv_transpose2d
    _bad(ct, ValueError, r"groups=3 must divide the input channels C_in=4", x, w, groups=3)
    _bad(ct, ValueError, r"groups must be >= 1, got 0", x, w, groups=0)
    _bad(ct, TypeError, r"groups must be an int", x, w, groups=2.0)
    _bad(ct, ValueError, r"dilation must be >= 1, got 0", x, w, dilation=0)
    _bad(ct, ValueError, r"must have C_in=4 along axis 0", x, w[:2], groups=2)
    _bad(ct, ValueError, r"output_padding must be smaller than stride or dilation along H, got "
         r"output_padding=2, stride=2, dilation=2", x, w, stride=2, dilation=2, output_padding=2)
    _bad(ct, ValueError, r"output_padding must be smaller than stride or dilation along W.*=3, "
         r"stride=1, dilation=3", x, w, dilation=(1, 3), output_padding=(0, 3))
    _bad(ct, ValueError, r"b must have shape \(6,\)", x, w, np.ones(3, np.float32), groups=2)
    _bad(ops.conv_transpose2d_backward, ValueError, r"dy must have shape \(2, 6, 9, 9\)",
         np.ones((2, 6, 7, 7), np.float32), x, w, groups=2, dilation=2)
