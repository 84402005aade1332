"""The internal GEMM (fastdl._core.gemm) against its triple-loop reference, for every ISA.

Small-integer inputs make every product and partial sum exact, so the packed kernels must
reproduce the reference bit for bit whatever their blocking: this covers every residue of the
register tile in M and N, k spanning several KC blocks, M past MC and N past NC, transposed
operands, alpha/beta and each fused epilogue.
"""

import numpy as np
import pytest

import fastdl
from fastdl import _core

ISAS = [isa for isa in ("generic", "avx2", "avx512")
        if ["generic", "avx2", "avx512"].index(isa)
        <= ["generic", "avx2", "avx512"].index(_core.cpu_isa_supported())]
DTYPES = [np.dtype(np.float32), np.dtype(np.float64)]


def ints(rng, shape, dtype, lo=-3, hi=4):
    return rng.integers(lo, hi, shape).astype(dtype)


def run_both(a, b, isa, c0=None, **kw):
    m, n = a.shape[0], b.shape[1]
    got = np.empty((m, n), a.dtype) if c0 is None else c0.copy()
    want = np.empty((m, n), a.dtype) if c0 is None else c0.copy()
    _core.gemm(got, a, b, isa=isa, **kw)
    _core.gemm_reference(want, a, b, **kw)
    return got, want


def assert_every_layout(a, b, isa, msg, both_ways=False):
    """a @ b equals the reference with a and b each row-major and as a transposed view (unit
    stride along the rows), and with both_ways b^T @ a^T too (rows and columns exchanged)."""
    for av in (a, np.ascontiguousarray(a.T).T):
        for bv in (b, np.ascontiguousarray(b.T).T):
            for x, y in ((av, bv), (bv.T, av.T)) if both_ways else ((av, bv),):
                got, want = run_both(x, y, isa)
                np.testing.assert_array_equal(got, want, err_msg=f"{msg}: {x.shape} @ {y.shape}")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_tile_residue(rng, isa, dtype):
    t = _core.gemm_blocking(dtype, isa)
    mr, nr = t["mr"], t["nr"]
    for m in range(1, 2 * mr + 2):
        for n in sorted({1, nr - 1, nr, nr + 1, 2 * nr + 3, (m * 7) % (2 * nr) + 1}):
            for k in (1, 5):
                a, b = ints(rng, (m, k), dtype), ints(rng, (k, n), dtype)
                got, want = run_both(a, b, isa)
                np.testing.assert_array_equal(got, want, err_msg=f"m={m} n={n} k={k}")
    for n in range(1, 2 * nr + 2):  # every column residue at a fixed awkward m
        a, b = ints(rng, (mr + 3, 9), dtype), ints(rng, (9, n), dtype)
        got, want = run_both(a, b, isa)
        np.testing.assert_array_equal(got, want, err_msg=f"n={n}")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_accumulation_chain_boundaries(rng, isa, dtype):
    # The micro-kernels sum k in chains of 256 steps: one chain (kept in registers), a partial
    # last chain, whole chains, in full and edge tiles, A and B packed and in place. Small
    # integers make every sum exact, so a chain dropped or counted twice cannot hide.
    t = _core.gemm_blocking(dtype, isa)
    for k in (255, 256, 257, 300, 511, 512, 513, 769):
        for m, n in ((t["mr"], t["nr"]), (t["mr"] + 5, t["nr"] + 7)):
            a, b = ints(rng, (m, k), dtype), ints(rng, (k, n), dtype)
            assert_every_layout(a, b, isa, f"m={m} k={k} n={n}")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_packing_layouts_and_edges(rng, isa, dtype):
    # Each operand row-major or a transposed view (the two layouts the vectorised packing
    # handles: k-contiguous panels are transposed in registers, m/n-contiguous ones copied),
    # with k covering a partial 16-wide transpose block and the C-prefetch split of the k loop,
    # and m, n at every edge-tile size the micro-kernel dispatches to.
    t = _core.gemm_blocking(dtype, isa)
    mr, nr = t["mr"], t["nr"]
    ms = sorted({1, 2, 3, 4, 5, mr - 1, mr, mr + 4, 2 * mr - 3})
    ns = sorted({1, 7, nr // 2, nr // 2 + 1, nr - 1, nr, nr + 9})
    for k in (1, 17, 67):
        for m in ms:
            for n in ns:
                a = ints(rng, (m, k), dtype)
                b = ints(rng, (k, n), dtype)
                assert_every_layout(a, b, isa, f"m={m} n={n} k={k}")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_cache_block_boundaries(rng, isa, dtype):
    t = _core.gemm_blocking(dtype, isa)
    cases = [
        (t["mr"] + 1, 2 * t["kc_max"] + 3, t["nr"] + 2),  # three slices of k
        (t["mc"] + t["mr"] + 1, 7, 5),                # past one MC block
        (3, 4, t["nc"] + t["nr"] + 3),                # few rows: the skinny kernels
        (t["mr"] + 1, 7, t["nc"] + t["nr"] + 3),      # one panel just past NC
        (t["mr"] + 1, 7, t["nc_max"] + t["nr"] + 3),  # two NC panels
        (t["mc"] + 1, t["kc_max"] + 1, 2 * t["nr"] + 1),  # two slices of k
        (t["mr"] - 1, t["kc"] + 1, t["nr"] - 1),  # one slice just past KC
    ]
    for m, k, n in cases:
        a, b = ints(rng, (m, k), dtype, -2, 3), ints(rng, (k, n), dtype, -2, 3)
        got, want = run_both(a, b, isa)
        np.testing.assert_array_equal(got, want, err_msg=f"m={m} k={k} n={n}")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_in_place_and_packed_operands(rng, isa, dtype):
    # Row-major A is read in place up to direct_a_max_n columns of C, row-major B up to
    # direct_b_max_m rows (full panels; a narrow last panel is packed) unless its row stride
    # would alias in L2 over k rows: both sides of each limit, with edge tiles.
    t = _core.gemm_blocking(dtype, isa)
    mr, nr = t["mr"], t["nr"]
    max_m, max_n = t["direct_b_max_m"], t["direct_a_max_n"]
    aliasing_cols = 4096 // dtype.itemsize  # a 4 KiB row stride
    for m, k, n in [(max_m, 67, 3 * nr + 7), (max_m + mr + 5, 67, 3 * nr + 7),
                    (2 * mr + 1, 300, max_n), (2 * mr + 1, 300, max_n + 3),
                    (mr + 5, 5, 2 * nr)]:
        a = ints(rng, (m, k), dtype)
        for b in (ints(rng, (k, n), dtype), ints(rng, (k, aliasing_cols), dtype)[:, :n]):
            got, want = run_both(a, b, isa)
            np.testing.assert_array_equal(got, want, err_msg=f"m={m} k={k} n={n}")


@pytest.mark.parametrize("isa", ISAS)
def test_b_too_large_to_read_in_place(rng, isa):
    # Past direct_b_max_bytes of B for one thread, B is packed again (with edge tiles).
    t = _core.gemm_blocking(np.dtype(np.float32), isa)
    k = 2 * t["kc"] + 5
    n = t["direct_b_max_bytes"] // 4 // k + t["nr"] + 3
    a, b = ints(rng, (t["mr"] + 5, k), np.float32, -2, 3), ints(rng, (k, n), np.float32, -2, 3)
    threads = fastdl.get_num_threads()
    try:
        fastdl.set_num_threads(1)
        got, want = run_both(a, b, isa)
    finally:
        fastdl.set_num_threads(threads)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_skinny_products(rng, isa, dtype):
    # At most 4 rows or columns of C: the skinny kernels (dot when A's rows and B's columns run
    # along k, axpy when B's rows are contiguous), directly or after transposing the problem,
    # with k past their vector width and their accumulation chains, n past the narrow last
    # column block and past a 4 KiB span; every other layout falls back to the blocked nest.
    span = 4096 // dtype.itemsize
    for m in (1, 2, 3, 4):
        for k, n in [(1, 1), (5, 3), (17, 50), (300, 129), (4099, 7), (33, span + 37)]:
            a = ints(rng, (m, k), dtype, -2, 3)
            b = ints(rng, (k, n), dtype, -2, 3)
            # Few rows, then (b^T @ a^T) few columns.
            assert_every_layout(a, b, isa, f"m={m} k={k} n={n}", both_ways=True)
    a, b = ints(rng, (3, 40), dtype), ints(rng, (40, 70), dtype)
    c0 = ints(rng, (3, 70), dtype)
    for bias_axis in (0, 1):
        bias = ints(rng, (3 if bias_axis == 0 else 70,), dtype)
        for x, y, c, ax in ((a, b, c0, bias_axis), (b.T, a.T, c0.T.copy(), 1 - bias_axis)):
            got, want = run_both(x, y, isa, c0=c, alpha=2.0, beta=-1.0, bias=bias,
                                 bias_axis=ax, relu=True)
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_rank_k_products(rng, isa, dtype):
    # k <= 4 with B's rows contiguous and at least 64 KiB of C: the rank-k kernel (row by row,
    # full vectors, a masked tail at n % W); B transposed falls back to the blocked nest.
    m, n = 130, 131
    c0 = ints(rng, (m, n), dtype)
    for k in (1, 2, 3, 4):
        a = ints(rng, (m, k), dtype)
        b = ints(rng, (k, n), dtype)
        assert_every_layout(a, b, isa, f"k={k}")
        for bias_axis in (0, 1):
            bias = ints(rng, (m if bias_axis == 0 else n,), dtype)
            got, want = run_both(a, b, isa, c0=c0, alpha=2.0, beta=-1.0, bias=bias,
                                 bias_axis=bias_axis, relu=True)
            np.testing.assert_array_equal(got, want, err_msg=f"k={k} bias_axis={bias_axis}")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_strided_operands(rng, isa, dtype):
    m, k, n = 29, 300, 45
    a_t = ints(rng, (k, m), dtype).T              # unit stride along M
    b_t = ints(rng, (n, k), dtype).T              # unit stride along K
    a_s = ints(rng, (2 * m, 3 * k), dtype)[::2, ::3]  # no unit stride at all
    b_r = ints(rng, (k, n), dtype)[::-1]          # negative row stride
    for a in (a_t, a_s):
        for b in (b_t, b_r):
            got, want = run_both(a, b, isa)
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(got, a @ b)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (2.0, 0.0), (1.0, 1.0), (-0.5, 2.0), (0.0, -1.0)])
@pytest.mark.parametrize("bias_axis", [None, 0, 1])
@pytest.mark.parametrize("relu", [False, True])
def test_epilogues(rng, isa, dtype, alpha, beta, bias_axis, relu):
    t = _core.gemm_blocking(dtype, isa)
    m, k, n = t["mr"] + 5, t["kc_max"] + 9, t["nr"] + 7  # edge tiles and two slices of k
    a, b = ints(rng, (m, k), dtype), ints(rng, (k, n), dtype)
    c0 = ints(rng, (m, n), dtype, -9, 10)
    kw = dict(alpha=alpha, beta=beta, relu=relu)
    if bias_axis is not None:
        kw.update(bias=ints(rng, (m if bias_axis == 0 else n,), dtype, -20, 20), bias_axis=bias_axis)
    got, want = run_both(a, b, isa, c0, **kw)
    np.testing.assert_array_equal(got, want)
    bias = kw.get("bias", np.zeros(1, dtype))
    expect = alpha * (a.astype(np.float64) @ b) + beta * c0 + (bias[:, None] if bias_axis == 0 else bias)
    np.testing.assert_array_equal(got, np.maximum(expect, 0) if relu else expect)


@pytest.mark.parametrize("isa", ISAS)
def test_beta_zero_ignores_garbage(isa):
    a = np.ones((13, 3), np.float32)
    b = np.ones((3, 35), np.float32)
    c = np.full((13, 35), np.nan, np.float32)
    _core.gemm(c, a, b, isa=isa)
    np.testing.assert_array_equal(c, 3.0)


@pytest.mark.parametrize("isa", ISAS)
def test_relu_propagates_nan(isa):
    a = np.array([[np.nan, 1.0], [-1.0, 0.0]], np.float32)
    c = np.empty((2, 2), np.float32)
    _core.gemm(c, a, np.eye(2, dtype=np.float32), relu=True, isa=isa)
    assert np.isnan(c[0]).all() and (c[1] == 0.0).all()  # NaN * 0 is NaN too


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_batched_and_broadcast(rng, isa, dtype):
    for batch in (1, 2, 5):
        a, b = ints(rng, (batch, 7, 33), dtype), ints(rng, (batch, 33, 19), dtype)
        c = np.empty((batch, 7, 19), dtype)
        _core.gemm(c, a, b, isa=isa)
        np.testing.assert_array_equal(c, a @ b)
        _core.gemm(c, a, b[0], isa=isa)  # b shared by the batch (stride 0)
        np.testing.assert_array_equal(c, a @ b[0])


@pytest.mark.parametrize("isa", ISAS)
def test_bitwise_same_at_any_thread_count(rng, isa):
    # Every element of C is computed by the same sequence of operations whatever the thread
    # count and the split it picks (rows, columns, or a batch per thread), so results on random
    # floats are bitwise identical, run after run.
    cases = [((300, 700), (700, 200), False), ((64, 4096), (4096, 64), False),
             ((1000, 60), (60, 530), False), ((200, 300), (200, 300), True),
             ((3, 1000), (1000, 2000), False), ((2, 1000), (2000, 1000), True),  # skinny
             ((2000, 1000), (1000, 1), False), ((700, 3), (3, 900), False)]
    for sa, sb, trans_b in cases:
        a = rng.standard_normal(sa).astype(np.float32)
        b = rng.standard_normal(sb).astype(np.float32)
        b = b.T if trans_b else b
        results = []
        for threads in (1, 2, 3, 2):
            fastdl.set_num_threads(threads)
            c = np.empty((a.shape[0], b.shape[1]), np.float32)
            _core.gemm(c, a, b, isa=isa)
            results.append(c)
        for c in results[1:]:
            np.testing.assert_array_equal(c, results[0])
    # Batches: whole rounds of one product per thread, then the remainder split across threads
    # (3 products of 30 MFLOP on 2 threads: one round, then one product on both).
    for batch, m, k, n in [(9, 40, 30, 50), (3, 200, 300, 250)]:
        a = rng.standard_normal((batch, m, k)).astype(np.float32)
        b = rng.standard_normal((batch, k, n)).astype(np.float32)
        batched = []
        for threads in (1, 2, 4):
            fastdl.set_num_threads(threads)
            c = np.empty((batch, m, n), np.float32)
            _core.gemm(c, a, b, isa=isa)
            batched.append(c)
        for c in batched[1:]:
            np.testing.assert_array_equal(c, batched[0])


def test_sum_rows(rng):
    for m, n in [(1, 1), (7, 3), (1000, 17), (300, 1030), (0, 5), (5, 0)]:
        for dtype in DTYPES:
            x = ints(rng, (m, n), dtype)
            got = np.empty(n, dtype)
            want = np.empty(n, dtype)
            _core.sum_rows(got, x)
            _core.sum_rows_reference(want, x)
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(got, x.sum(0))


def test_sum_rows_accuracy(rng):
    # Blocked partial sums keep float32 error near NumPy's pairwise summation on long columns.
    x = (rng.random((100_000, 3)) + 1.0).astype(np.float32)
    got = np.empty(3, np.float32)
    _core.sum_rows(got, x)
    exact = x.astype(np.float64).sum(0)
    assert np.max(np.abs(got - exact) / exact) < 2e-6
