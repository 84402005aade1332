"""``python -m fastdl bench``: fastdl against NumPy and (when installed) PyTorch, in one process.

Every case is timed the same way for every library (a warm-up call, then repeated batches of
calls; the median batch time per call is reported), with FLOPs counted so a time reads against
the machine's peak. Results are checked against NumPy after timing.
"""

from __future__ import annotations

import ctypes
import json
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from . import get_num_threads, info, ops


def numpy_blas() -> str:
    """Which BLAS library and kernel NumPy is running (OpenBLAS's core name when it can tell)."""
    try:
        libs = sorted(
            {line.split()[-1] for line in open("/proc/self/maps") if "openblas" in line.lower()}
        )
    except OSError:
        libs = []
    for path in libs:
        lib = ctypes.CDLL(path)
        for sym in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename",
                    "openblas_get_corename64_", "openblas_get_corename"):
            fn = getattr(lib, sym, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                return f"OpenBLAS, {fn().decode()} kernel"
    return "unknown BLAS"


def handicap_warning() -> str | None:
    forced = [v for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if os.environ.get(v)]
    if forced:
        return (f"{' and '.join(forced)} set: NumPy's OpenBLAS is forced off its best kernel, so "
                f"it is no fair baseline. Unset them for benchmarking.")
    return None


def _time(fn, budget: float) -> float:
    """Median seconds per call over batches filling `budget` seconds."""
    fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    per_batch = max(1, int(budget / 10 / one))
    samples = []
    end = time.perf_counter() + budget
    while len(samples) < 3 or (time.perf_counter() < end and len(samples) < 50):
        t0 = time.perf_counter()
        for _ in range(per_batch):
            fn()
        samples.append((time.perf_counter() - t0) / per_batch)
    return float(np.median(samples))


@dataclass
class Row:
    op: str
    shape: str
    flops: float
    times: dict = field(default_factory=dict)  # library -> seconds per call
    nbytes: float = 0.0  # memory-bound ops: bytes moved per call (their rate is GB/s)

    def gflops(self, lib: str) -> float:
        return self.flops / self.times[lib] / 1e9

    def rate(self, lib: str) -> float:
        """GFLOP/s, or GB/s for a memory-bound row."""
        return (self.nbytes if self.nbytes else self.flops) / self.times[lib] / 1e9


def _cases(quick: bool):
    sizes = [256, 512, 1024] if quick else [128, 256, 512, 1024, 2048]
    for n in sizes:
        yield "matmul", (n, n, n)
    yield "linear", (64, 784, 256)
    yield "linear", (256, 1024, 1024)


# conv2d cases (N, C, H, W, K, R, stride, padding, groups): ResNet-style 3x3 layers, a strided
# one, a 1x1, a depthwise one and LeNet's first layer.
CONV_CASES = [
    (32, 64, 56, 56, 64, 3, 1, 1, 1),
    (32, 128, 28, 28, 128, 3, 1, 1, 1),
    (32, 256, 14, 14, 256, 3, 1, 1, 1),
    (32, 64, 56, 56, 128, 3, 2, 1, 1),
    (32, 256, 14, 14, 512, 1, 1, 0, 1),
    (32, 128, 28, 28, 128, 3, 1, 1, 128),
    (64, 1, 28, 28, 32, 5, 1, 0, 1),
]
CONV_QUICK = [(4, 64, 14, 14, 64, 3, 1, 1, 1), (4, 64, 14, 14, 64, 3, 1, 1, 64),
              (4, 1, 28, 28, 32, 5, 1, 0, 1)]  # small: the NumPy baseline's backward is slow


def conv_shape_str(case) -> str:
    n, c, h, w, k, r, st, p, g = case
    return f"{n}x{c}x{h}x{w}->{k} {r}x{r}" + (f" s{st}" if st > 1 else "") + (f" g{g}" if g > 1 else "")


def conv_flops(case) -> float:
    """Forward FLOPs: 2 per multiply-add (the backward's dx + dw is twice that)."""
    n, c, h, w, k, r, st, p, g = case
    oh, ow = (h + 2 * p - r) // st + 1, (w + 2 * p - r) // st + 1
    return 2.0 * n * k * (c // g) * r * r * oh * ow


def _windows(x, r, stride, padding):
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (r, r), axis=(2, 3))
    return xp, win[:, :, ::stride, ::stride]  # (N, C, OH, OW, R, S) view


def numpy_conv2d(x, w, b=None, stride=1, padding=0, groups=1):
    """The NumPy baseline: im2col (a window view) contracted by einsum (BLAS where it can)."""
    n, c = x.shape[:2]
    k, cg, r, _ = w.shape
    _, win = _windows(x, r, stride, padding)
    oh, ow = win.shape[2:4]
    win = win.reshape(n, groups, cg, oh, ow, r, r)
    y = np.einsum("ngchwrs,gkcrs->ngkhw", win, w.reshape(groups, k // groups, cg, r, r),
                  optimize=True).reshape(n, k, oh, ow)
    return y if b is None else y + b.reshape(1, k, 1, 1)


def numpy_conv2d_backward(dy, x, w, stride=1, padding=0, groups=1):
    """(dx, dw, db) by im2col: dw = dy . cols, dcols = w . dy scattered back (col2im)."""
    n, c, h, wd = x.shape
    k, cg, r, _ = w.shape
    xp, win = _windows(x, r, stride, padding)
    oh, ow = win.shape[2:4]
    dyg = dy.reshape(n, groups, k // groups, oh, ow)
    wg = w.reshape(groups, k // groups, cg, r, r)
    dw = np.einsum("ngkhw,ngchwrs->gkcrs", dyg, win.reshape(n, groups, cg, oh, ow, r, r),
                   optimize=True).reshape(w.shape)
    dcols = np.einsum("ngkhw,gkcrs->ngchwrs", dyg, wg, optimize=True).reshape(n, c, oh, ow, r, r)
    dxp = np.zeros_like(xp)
    for i in range(r):
        for j in range(r):
            dxp[:, :, i: i + stride * (oh - 1) + 1: stride, j: j + stride * (ow - 1) + 1: stride] += \
                dcols[..., i, j]
    return dxp[:, :, padding: padding + h, padding: padding + wd], dw, dy.sum(axis=(0, 2, 3))


def conv_impls(case, x, w, b, dy, torch=None):
    """lib -> (forward, backward) callables for one conv2d case; backward returns (dx, dw, db)."""
    n, c, h, wd, k, r, st, p, g = case
    kw = dict(stride=st, padding=p, groups=g)
    impl = {
        "fastdl": (lambda: ops.conv2d(x, w, b, **kw), lambda: ops.conv2d_backward(dy, x, w, **kw)),
        "numpy": (lambda: numpy_conv2d(x, w, b, **kw),
                  lambda: numpy_conv2d_backward(dy, x, w, **kw)),
    }
    if torch is not None:
        tx, tw, tb, tdy = (torch.from_numpy(a) for a in (x, w, b, dy))
        # aten's backward entry point: dx, dw, db without re-running the forward
        impl["torch"] = (
            lambda: torch.nn.functional.conv2d(tx, tw, tb, **kw),
            lambda: torch.ops.aten.convolution_backward(
                tdy, tx, tw, [k], [st, st], [p, p], [1, 1], False, [0, 0], g, [True, True, True]),
        )
    return impl


def _torch():
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(get_num_threads())
    return torch


def run(quick: bool = True, libs=("fastdl", "numpy", "torch")) -> list[Row]:
    rng = np.random.default_rng(0)
    torch = _torch() if "torch" in libs else None
    budget = 0.15 if quick else 0.5
    rows = []
    for op, (m, k, n) in _cases(quick):
        a = rng.standard_normal((m, k), dtype=np.float32)
        if op == "matmul":
            b = rng.standard_normal((k, n), dtype=np.float32)
            dy = rng.standard_normal((m, n), dtype=np.float32)
            impl = {
                "fastdl": (lambda: ops.matmul(a, b), lambda: ops.matmul_backward(dy, a, b)),
                "numpy": (lambda: a @ b, lambda: (dy @ b.T, a.T @ dy)),
            }
            shape = f"{m}x{k}x{n}"
        else:
            w = rng.standard_normal((n, k), dtype=np.float32) * 0.05
            bias = rng.standard_normal(n, dtype=np.float32)
            dy = rng.standard_normal((m, n), dtype=np.float32)
            impl = {
                "fastdl": (lambda: ops.linear(a, w, bias), lambda: ops.linear_backward(dy, a, w)),
                "numpy": (lambda: a @ w.T + bias, lambda: (dy @ w, dy.T @ a, dy.sum(0))),
            }
            shape = f"{m}x{k}->{n}"
        if torch is not None:
            ta, tdy = torch.from_numpy(a), torch.from_numpy(dy)
            if op == "matmul":
                tb = torch.from_numpy(b)
                impl["torch"] = (lambda: ta @ tb, lambda: (tdy @ tb.T, ta.T @ tdy))
            else:
                tw, tbias = torch.from_numpy(w), torch.from_numpy(bias)
                impl["torch"] = (
                    lambda: torch.nn.functional.linear(ta, tw, tbias),
                    lambda: (tdy @ tw, tdy.T @ ta, tdy.sum(0)),
                )
        fwd = Row(op, shape, 2.0 * m * k * n)
        bwd = Row(op + "_backward", shape, 4.0 * m * k * n)
        for lib, (f, g) in impl.items():
            if lib in libs:
                fwd.times[lib] = _time(f, budget)
                bwd.times[lib] = _time(g, budget)
        # Check after timing: fastdl against NumPy.
        for row, f in ((fwd, 0), (bwd, 1)):
            got, want = impl["fastdl"][f](), impl["numpy"][f]()
            got, want = (got,) if f == 0 else got, (want,) if f == 0 else want
            for g_, w_ in zip(got, want):
                np.testing.assert_allclose(g_, w_, rtol=2e-3, atol=2e-3 * float(np.abs(w_).max()))
        rows += [fwd, bwd]
    for case in CONV_QUICK if quick else CONV_CASES:
        n, c, h, wd, k, r, st, p, g = case
        x = rng.standard_normal((n, c, h, wd), dtype=np.float32)
        w = rng.standard_normal((k, c // g, r, r), dtype=np.float32) * 0.1
        bias = rng.standard_normal(k, dtype=np.float32)
        dy = rng.standard_normal(ops.conv2d(x, w, bias, stride=st, padding=p, groups=g).shape,
                                 dtype=np.float32)
        impl = conv_impls(case, x, w, bias, dy, torch)
        fwd = Row("conv2d", conv_shape_str(case), conv_flops(case))
        bwd = Row("conv2d_backward", conv_shape_str(case), 2 * conv_flops(case))
        for lib, (f, g_) in impl.items():
            if lib in libs:  # quick: a third of the budget, the CLI smoke test runs in CI
                fwd.times[lib] = _time(f, budget / 3 if quick else budget)
                bwd.times[lib] = _time(g_, budget / 3 if quick else budget)
        for f in (0, 1):  # check after timing: fastdl against the NumPy im2col baseline
            got, want = impl["fastdl"][f](), impl["numpy"][f]()
            got, want = (got,) if f == 0 else got, (want,) if f == 0 else want
            for g_, w_ in zip(got, want):
                np.testing.assert_allclose(g_, w_, rtol=2e-3, atol=2e-3 * float(np.abs(w_).max()))
        rows += [fwd, bwd]
    rows += _memory_rows(rng, torch, libs, budget, quick)
    return rows


def _memory_rows(rng, torch, libs, budget: float, quick: bool) -> list[Row]:
    """Pooling and batch norm: memory-bound, rated in GB/s of the bytes they must move."""
    shape = (8, 64, 56, 56) if quick else (32, 64, 112, 112)
    x = rng.standard_normal(shape, dtype=np.float32)
    n = x.size
    y, am = ops.max_pool2d(x, 2)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    h, w = shape[2:]
    win = x.reshape(*shape[:2], h // 2, 2, w // 2, 2)
    impl = {  # op -> (bytes, {lib: fn}, check)
        "max_pool2d": (7 * n, {"fastdl": lambda: ops.max_pool2d(x, 2)[0],
                               "numpy": lambda: win.max(axis=(3, 5))}),
        "max_pool2d_backward": (7 * n, {"fastdl": lambda: ops.max_pool2d_backward(dy, am, shape)}),
        "avg_pool2d": (5 * n, {"fastdl": lambda: ops.avg_pool2d(x, 2),
                               "numpy": lambda: win.mean(axis=(3, 5))}),
        "avg_pool2d_backward": (5 * n, {
            "fastdl": lambda: ops.avg_pool2d_backward(dy, shape, 2),
            "numpy": lambda: np.repeat(np.repeat(dy * np.float32(0.25), 2, axis=2), 2, axis=3)}),
    }
    bshape = (8, 64, 28, 28) if quick else (32, 64, 56, 56)
    xb = rng.standard_normal(bshape, dtype=np.float32)
    dyb = rng.standard_normal(bshape, dtype=np.float32)
    c = bshape[1]
    wb, bb = np.ones(c, np.float32), np.zeros(c, np.float32)
    rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)

    def bn_fastdl():
        _, sm, si = ops.batch_norm(xb, wb, bb, rm, rv)
        return ops.batch_norm_backward(dyb, xb, wb, sm, si)[0]

    impl["batch_norm fwd+bwd"] = (20 * xb.size, {"fastdl": bn_fastdl})
    if torch is not None:
        t, aten, F = torch.from_numpy, torch.ops.aten, torch.nn.functional
        tx, tdy, tam = t(x), t(dy), t(am)
        impl["max_pool2d"][1]["torch"] = lambda: F.max_pool2d(tx, 2, return_indices=True)[0]
        impl["max_pool2d_backward"][1]["torch"] = lambda: aten.max_pool2d_with_indices_backward(
            tdy, tx, [2, 2], [2, 2], [0, 0], [1, 1], False, tam)
        impl["avg_pool2d"][1]["torch"] = lambda: F.avg_pool2d(tx, 2)
        impl["avg_pool2d_backward"][1]["torch"] = lambda: aten.avg_pool2d_backward(
            tdy, tx, [2, 2], [2, 2], [0, 0], False, True, None)
        txb, tdyb, twb, tbb, trm, trv = map(t, (xb, dyb, wb, bb, rm.copy(), rv.copy()))

        def bn_torch():
            _, sm, si = aten.native_batch_norm(txb, twb, tbb, trm, trv, True, 0.1, 1e-5)
            return aten.native_batch_norm_backward(tdyb, txb, twb, trm, trv, sm, si, True, 1e-5,
                                                   [True, True, True])[0]

        impl["batch_norm fwd+bwd"][1]["torch"] = bn_torch
    rows = []
    for op, (nbytes, fns) in impl.items():
        row = Row(op, "x".join(map(str, bshape if op.startswith("batch") else shape)), 0.0,
                  nbytes=float(nbytes))
        for lib, fn in fns.items():
            if lib in libs:
                row.times[lib] = _time(fn, budget)
        # Check after timing: fastdl against the other libraries.
        got = np.asarray(fns["fastdl"]())
        for lib, fn in fns.items():
            want = np.asarray(fn() if lib != "torch" else fn().numpy())
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * float(np.abs(want).max()))
        rows.append(row)
    return rows


def format_table(rows: list[Row]) -> str:
    """One table for the FLOP-bound rows (GFLOP/s), one for the memory-bound ones (GB/s)."""
    tables = [_table([r for r in rows if not r.nbytes], "GFLOP/s"),
              _table([r for r in rows if r.nbytes], "GB/s")]
    tables = [t for t in tables if t]
    tables.append("vs X = X's time / fastdl's time (above 1: fastdl is faster)")
    return "\n\n".join(tables)


def _table(rows: list[Row], unit: str) -> str:
    if not rows:
        return ""
    libs = [lib for lib in ("fastdl", "numpy", "torch") if any(lib in r.times for r in rows)]
    head = f"{'op':20} {'shape':22}" + "".join(f" {lib + ' ms':>10} {unit:>8}" for lib in libs)
    head += "".join(f" {'vs ' + lib:>9}" for lib in libs[1:])
    lines = [head, "-" * len(head)]
    for r in rows:
        line = f"{r.op:20} {r.shape:22}"
        for lib in libs:
            line += f" {r.times[lib] * 1e3:10.3f} {r.rate(lib):8.1f}" if lib in r.times else " " * 20
        for lib in libs[1:]:
            line += f" {r.times[lib] / r.times['fastdl']:8.2f}x" if lib in r.times else " " * 10
        lines.append(line)
    return "\n".join(lines)


def main(quick: bool, json_path: str | None, plot_path: str | None) -> None:
    facts = info()
    print(f"fastdl {facts['version']}  ISA {facts['cpu_isa']}  threads {facts['num_threads']}")
    print(f"NumPy {np.__version__} on {numpy_blas()}")
    torch = _torch()
    print(f"PyTorch {torch.__version__}" if torch else "PyTorch not installed: skipped")
    warn = handicap_warning()
    if warn:
        print("WARNING:", warn)
    rows = run(quick)
    print(format_table(rows))
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"info": facts, "numpy_blas": numpy_blas(), "rows": [asdict(r) for r in rows]},
                      f, indent=2)
        print("wrote", json_path)
    if plot_path:
        _plot(rows, plot_path)
        print("wrote", plot_path)


def _plot(rows: list[Row], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    libs = [lib for lib in ("fastdl", "numpy", "torch") if any(lib in r.times for r in rows)]
    fig, ax = plt.subplots(figsize=(max(6, len(rows) * 0.8), 4))
    width = 0.8 / len(libs)
    for i, lib in enumerate(libs):
        xs = [j + i * width for j, r in enumerate(rows) if lib in r.times]
        ax.bar(xs, [r.rate(lib) for r in rows if lib in r.times], width, label=lib)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(rows))])
    ax.set_xticklabels([f"{r.op}\n{r.shape}" for r in rows], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("GFLOP/s (GB/s for pooling and batch norm)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
