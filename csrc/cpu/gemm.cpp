// gemm.cpp: C = act(alpha * op(A) * op(B) + beta * C + bias), the product under every dense op.
//
// Shapes: A m x k, B k x n, C m x n (row-major, unit column stride). A and B are read through
// (row, column) element strides, so transposes and non-contiguous views cost nothing extra.
// There is no backward here: dA = dC * B^T and dB = A^T * dC are themselves calls to gemm with
// swapped strides.
//
// Variants, in order of increasing complexity:
//   1. gemm_reference: the triple loop; the oracle for tests.
//   2. ukernel_reference: the plain-C micro-kernel, run through the same packed loop nest (the
//      "generic" ISA, for any x86-64).
//   3. the AVX2 and AVX-512 micro-kernels (gemm_ukernel_avx2.cpp / gemm_ukernel_avx512.cpp).
// The loop nest is BLIS's: five loops around the micro-kernel, blocked by gemm_config.h; A and B
// are packed into thread-local buffers, except that a row-major A feeding few B panels, or a
// row-major B feeding few A panels, is read in place (BLIS's "sup" idea, see read_a_in_place /
// read_b_in_place). Products with at most gemm_config::kSkinny rows or columns skip the nest for
// the bandwidth-bound kernels of gemm_skinny_simd.h (gemm_skinny). Threads each own a rectangle
// of C and run the whole nest on it with their own packing buffers, so no barrier is needed and
// every element of C is computed by the same sequence of operations at any thread count
// (bitwise-reproducible results).
// gemm_packed_b runs the same nest with B supplied by a packing callback (GemmPackB) invoked where
// the nest packs B: the implicit-GEMM convolution (conv.cpp) gathers its im2col panels that way.
// gemm_prepacked_b runs it with all of B packed beforehand (GemmPackedB) and read in place: the
// recurrent weights of a sequence (rnn.cpp), packed once for T products. Either may take a
// GemmTileHook, a fused epilogue run on each finished micro-tile right after the micro-kernel
// stores it (the LSTM cell's non-linearities); with one, or with prepacked panels, threads split
// C's columns at whole NR-wide tiles.
#include "cpu/gemm.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <new>

#include "common/check.h"
#include "common/memory.h"
#include "common/threading.h"
#include "cpu/gemm_config.h"
#include "cpu/gemm_skinny_simd.h"
#include "cpu/gemm_ukernel.h"
#include "cpu/vec_generic.h"

namespace fastdl {

// ---------------------------------------------------------------------------------------------
// Reference
// ---------------------------------------------------------------------------------------------

template <typename T>
static UkEpilogue<T> full_epilogue(const GemmParams<T>& p) {
  return {p.alpha, p.beta, p.bias_axis == BiasAxis::row ? p.bias : nullptr,
          p.bias_axis == BiasAxis::col ? p.bias : nullptr, p.act == Act::relu};
}

template <typename T>
void gemm_reference(T* c, std::int64_t ldc, const T* a, std::int64_t rsa, std::int64_t csa,
                    const T* b, std::int64_t rsb, std::int64_t csb, std::int64_t m,
                    std::int64_t n, std::int64_t k, const GemmParams<T>& p) {
  const UkEpilogue<T> e = full_epilogue(p);
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      T acc = T(0);
      for (std::int64_t q = 0; q < k; ++q) acc += a[i * rsa + q * csa] * b[q * rsb + j * csb];
      T* cij = c + i * ldc + j;
      *cij = apply_epilogue(acc, cij, int(i), int(j), e);
    }
}

// ---------------------------------------------------------------------------------------------
// Plain-C micro-kernel (the generic ISA)
// ---------------------------------------------------------------------------------------------

template <typename T, int MR, int NR>
static void ukernel_reference(std::int64_t kc, const T* __restrict ap, std::int64_t lda,
                              const T* __restrict bp, std::int64_t ldb, T* c, std::int64_t ldc,
                              int m, int n, const UkEpilogue<T>& e) {
  T acc[MR][NR] = {};
  // A element (i, p): packed ap[p*MR + i], or in place ap[i*lda + p] (rows past m repeat row
  // m - 1, whose results are never stored); B row p at bp + p * (ldb or NR). Chains of at most
  // kChain steps, as the SIMD kernels.
  const std::int64_t rs = lda ? lda : 1, cs = lda ? 1 : MR, bs = ldb ? ldb : NR;
  for (std::int64_t k0 = 0; k0 < kc; k0 += gemm_config::kChain) {
    T chain[MR][NR] = {};
    for (std::int64_t p = k0; p < std::min(kc, k0 + gemm_config::kChain); ++p, bp += bs)
      for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j) chain[i][j] += ap[(i < m ? i : m - 1) * rs + p * cs] * bp[j];
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] = k0 ? acc[i][j] + chain[i][j] : chain[i][j];
  }
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) c[i * ldc + j] = apply_epilogue(acc[i][j], c + i * ldc + j, i, j, e);
}

template <typename T, class B>
static constexpr GemmTable<T> make_generic_table() {
  return {B::MR, B::NR, B::MR, B::NR, B::KC, B::MC, B::NC, &ukernel_reference<T, B::MR, B::NR>,
          &pack_panels<B::MR, T>, &pack_panels<B::NR, T>, &skinny_dot<VecScalar<T>>,
          &skinny_axpy<VecScalar<T>>, &rank_k<VecScalar<T>>};
}

const GemmTable<float> gemm_table_generic_f32 = make_generic_table<float, gemm_config::GenericF32>();
const GemmTable<double> gemm_table_generic_f64 =
    make_generic_table<double, gemm_config::GenericF64>();

template <>
const GemmTable<float>& gemm_table<float>(Isa isa) {
  return pick_isa(isa, gemm_table_generic_f32, gemm_table_avx2_f32, gemm_table_avx512_f32);
}

template <>
const GemmTable<double>& gemm_table<double>(Isa isa) {
  return pick_isa(isa, gemm_table_generic_f64, gemm_table_avx2_f64, gemm_table_avx512_f64);
}

// ---------------------------------------------------------------------------------------------
// Packing buffers: one pair per thread, grown on demand and kept, so steady-state calls touch no
// fresh pages (a page fault costs more than packing a small panel); page-backed by alloc_pages
// (huge pages for the B panel of a large product).
// ---------------------------------------------------------------------------------------------

namespace {
thread_local ScratchBuffer tls_pack_a, tls_pack_b;
}  // namespace

// ---------------------------------------------------------------------------------------------
// The loop nest for one thread's rectangle of C
// ---------------------------------------------------------------------------------------------

// Whether A is read in place by the micro-kernel instead of packed (BLIS's "sup" path): only a
// row-major A (k-contiguous rows), and only when each A micro-panel is reused by at most
// gemm_config::kDirectAMaxPanels B micro-panels, i.e. when packing it costs more than the
// strided reads it saves.
template <typename T>
static bool read_a_in_place(const GemmTable<T>& t, std::int64_t rsa, std::int64_t csa,
                            std::int64_t n_cols) {
  return csa == 1 && rsa != 0 && n_cols <= gemm_config::kDirectAMaxPanels * t.nr;
}

// The same for B: a k-major B (n-contiguous rows) is read in place, full NR-wide panels only,
// when each B micro-panel is reused by at most gemm_config::kDirectBMaxPanels A micro-panels, its
// rows do not evict each other from L2, and the thread's part of B is small enough to be found in
// L3 (gemm_config::kDirectBMaxBytes).
template <typename T>
static bool read_b_in_place(const GemmTable<T>& t, std::int64_t rsb, std::int64_t csb,
                            std::int64_t m_rows, std::int64_t k, std::int64_t n_cols) {
  return csb == 1 && rsb != 0 && m_rows <= gemm_config::kDirectBMaxPanels * t.mr &&
         gemm_config::b_rows_fit_l2(rsb * std::int64_t(sizeof(T)), gemm_config::slice(k, t.kc)) &&
         k * n_cols * std::int64_t(sizeof(T)) <= gemm_config::kDirectBMaxBytes;
}

// How B reaches the nest when it is not a strided matrix, and the fused tile hook.
//   vb: B given by its packer (gemm_packed_b); pre: all of B prepacked (GemmPackedB, panels of
//   nr columns with k rows each); b, rsb, csb are then unused. The part of C being computed
//   starts at row ib, column jb of the whole product (the hook's and the packers' indices).
template <typename T>
struct GemmSource {
  const GemmPackB<T>* vb = nullptr;
  const T* pre = nullptr;
  const GemmTileHook<T>* hook = nullptr;
};

// Returns false only if the packing buffers could not be allocated.
template <typename T>
static bool gemm_serial(const GemmTable<T>& t, T* c, std::int64_t ldc, const T* a,
                        std::int64_t rsa, std::int64_t csa, const T* b, std::int64_t rsb,
                        std::int64_t csb, std::int64_t m, std::int64_t n, std::int64_t k,
                        const UkEpilogue<T>& e, const GemmSource<T>& src = {},
                        std::int64_t ib = 0, std::int64_t jb = 0) {
  const GemmPackB<T>* vb = src.vb;
  const bool direct_a = read_a_in_place(t, rsa, csa, n);
  const bool direct_b = !vb && !src.pre && read_b_in_place(t, rsb, csb, m, k, n);
  const std::int64_t kc_max = gemm_config::slice(k, t.kc);  // k >= 1: gemm_empty_k took k == 0
  const std::int64_t mc_max = std::min(t.mc, (m + t.mr - 1) / t.mr * t.mr);
  const std::int64_t grain = src.hook && src.hook->grain > 0 ? src.hook->grain : t.nr;
  const std::int64_t nc_max = gemm_config::slice(n, t.nc, grain);
  T* pa = direct_a ? nullptr : static_cast<T*>(tls_pack_a.get(sizeof(T) * std::size_t(mc_max * kc_max)));
  const std::int64_t pb_cols = direct_b ? t.nr : nc_max;  // in place: only a narrow last panel
  T* pb = src.pre ? nullptr
                  : static_cast<T*>(tls_pack_b.get(sizeof(T) * std::size_t(kc_max * pb_cols)));
  if ((!direct_a && !pa) || (!src.pre && !pb)) return false;

  for (std::int64_t jc = 0; jc < n; jc += nc_max) {  // 5th loop around the micro-kernel: NC columns
    const std::int64_t nc = std::min(nc_max, n - jc);
    const std::int64_t nc_full = nc / t.nr * t.nr;  // in-place B: panels before this are full
    for (std::int64_t pc = 0; pc < k; pc += kc_max) {  // 4th loop: a slice of k, <= KC + KC/8
      const std::int64_t kc = std::min(kc_max, k - pc);
      // beta applies on the first slice only; bias and activation once the sum is complete.
      const bool last = pc + kc == k;
      UkEpilogue<T> ep = e;
      if (pc > 0) ep.beta = T(1);
      if (!last) ep.bias_row = ep.bias_col = nullptr, ep.relu = false;
      const T* bs = vb || src.pre ? nullptr : b + pc * rsb + jc * csb;
      if (src.pre) {
        // prepacked: the panels are read where they are
      } else if (vb) {
        if (!vb->pack(vb->ctx, pb, pc, kc, jb + jc, nc, t.nr)) return false;
      }
      else if (!direct_b)
        t.pack_b(pb, bs, csb, rsb, nc, kc);
      else if (nc_full < nc)  // the narrow last panel is packed, so no kernel reads past n
        t.pack_b(pb, bs + nc_full, csb, rsb, nc - nc_full, kc);
      for (std::int64_t ic = 0; ic < m; ic += t.mc) {  // 3rd loop: MC rows, A block in L2
        const std::int64_t mc = std::min(t.mc, m - ic);
        if (!direct_a) t.pack_a(pa, a + ic * rsa + pc * csa, rsa, csa, mc, kc);
        for (std::int64_t jr = 0; jr < nc; jr += t.nr) {  // 2nd loop: one B micro-panel in L1
          UkEpilogue<T> et = ep;
          if (et.bias_col) et.bias_col += jc + jr;
          const int nn = int(std::min<std::int64_t>(t.nr, nc - jr));
          const bool b_in_place = direct_b && jr < nc_full;
          const T* bp = src.pre ? src.pre + (jb + jc + jr) * k + pc * t.nr
                        : b_in_place ? bs + jr : direct_b ? pb : pb + jr * kc;
          const std::int64_t ldb = b_in_place ? rsb : 0;
          for (std::int64_t ir = 0; ir < mc; ir += t.mr) {  // 1st loop: one A micro-panel
            UkEpilogue<T> ei = et;
            if (ei.bias_row) ei.bias_row += ic + ir;
            const int mm = int(std::min<std::int64_t>(t.mr, mc - ir));
            const T* ap = direct_a ? a + (ic + ir) * rsa + pc : pa + ir * kc;
            T* ct = c + (ic + ir) * ldc + jc + jr;
            t.ukernel(kc, ap, direct_a ? rsa : 0, bp, ldb, ct, ldc, mm, nn, ei);
            if (src.hook && src.hook->fn && last)
              src.hook->fn(src.hook->ctx, ct, ldc, ib + ic + ir, jb + jc + jr, mm, nn);
          }
        }
      }
    }
  }
  return true;
}

// k == 0: the product is empty, only the epilogue remains.
template <typename T>
static void gemm_empty_k(T* c, std::int64_t ldc, std::int64_t m, std::int64_t n,
                         const UkEpilogue<T>& e) {
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j)
      c[i * ldc + j] = apply_epilogue(T(0), c + i * ldc + j, int(i), int(j), e);
}

// ---------------------------------------------------------------------------------------------
// Threading: split C into a tm x tn grid of rectangles, one per thread
// ---------------------------------------------------------------------------------------------

namespace {
struct Split {
  int threads, tm, tn;
};

// Each thread should get at least 0.6 MFLOP (~2.5 us), or the fork/join costs more than it
// saves. Measured, mean per call over back-to-back calls, 1 vs 2 threads (us): 64^3 2.6 / 2.5,
// 80^3 4.8 / 3.3, 100^3 9.9 / 5.9, 64x1000x10 11.0 / 7.5 (libgomp's workers spin between
// calls; the old limit of 2 MFLOP per thread kept all of these on one thread). Below ~1 MFLOP
// the gain is within the noise and a two-thread region stalls whenever the other core is busy
// (64^3 through ops.matmul: 3.9 us, or 7.8 us in a noisy minute, vs 4.2 on one), so 64^3
// stays on one thread.
// Among the grids tm x tn = threads, pick the one with the least per-thread cost: the tile area
// plus ~0.5 cycle per packed element of A (16 tile elements' worth of FMAs per row of A packed)
// and three times that per packed element of B, counting only the operands that the thread's
// shape will pack (A once per NC panel; an operand read in place costs nothing). Packed A lands
// in the thread's own L2 block; packed B fills a KC x NC panel in the shared L3, which every A
// block then reads back. The packing terms are why a square product splits by columns: each
// thread then reads its A in place or packs it, and packs half of B, instead of packing all of B
// (measured A/B, 2 threads, GFLOP/s row vs column split: 512^3 495 / 510, 1024^3 481 / 494,
// 1024^3 with B^T 485 / 500, 2048^3 465 / 475; with B weighted like A, 2000^3 went by rows:
// 431-448 vs 463-472 by columns, 1000x300x500 485-493 vs 495-508; other shapes unchanged).
// With the thin edge tile counted (below), 64x256x784 and 64x4096x64 split by rows instead of
// columns: 447-452 -> 469-481 and 452-459 -> 477-483 GFLOP/s; 34 other shapes unchanged.
template <typename T>
Split choose_split(const GemmTable<T>& t, std::int64_t rsa, std::int64_t csa, std::int64_t rsb,
                   std::int64_t csb, std::int64_t m, std::int64_t n, std::int64_t k,
                   int max_threads) {
  const double flops = 2.0 * double(m) * double(n) * double(k);
  int threads = int(std::min<double>(max_threads, std::max(1.0, flops / 6e5)));
  // Units of mstep rows and nstep columns: the grain of the split (a part may end in an edge tile).
  const std::int64_t mu = (m + t.mstep - 1) / t.mstep, nu = (n + t.nstep - 1) / t.nstep;
  threads = int(std::min<std::int64_t>(threads, mu * nu));
  Split best{1, 1, 1};
  double best_cost = -1;
  for (int tm = 1; tm <= threads; ++tm) {
    if (threads % tm) continue;
    const int tn = threads / tm;
    if (tm > mu || tn > nu) continue;
    // The largest part's extent (edge tiles compute no padding, so the last one counts as is).
    const std::int64_t rows = std::min(m, (mu + tm - 1) / tm * t.mstep);
    const std::int64_t cols = std::min(n, (nu + tn - 1) / tn * t.nstep);
    const std::int64_t panel = gemm_config::slice(cols, t.nc, t.nr);
    const std::int64_t packed_a =
        read_a_in_place(t, rsa, csa, cols) ? 0 : rows * ((cols + panel - 1) / panel);
    const std::int64_t packed_b = read_b_in_place(t, rsb, csb, rows, k, cols) ? 0 : cols;
    // A part ending in the thinnest edge tile (mstep rows: 4 x 32 fp32 on AVX-512, 8 accumulators,
    // just enough to cover the FMA latency) pays that tile at ~1.4x its rows: one thread,
    // 12 / 16 / 20 rows x 256 x 784 took 20.3 / 29.7 / 33.2 us.
    const std::int64_t work_rows = rows + (rows % t.mr == t.mstep ? t.mstep / 2 : 0);
    const double cost =
        double(work_rows) * double(cols) + 16.0 * double(packed_a) + 48.0 * double(packed_b);
    if (best_cost < 0 || cost < best_cost) best = {threads, tm, tn}, best_cost = cost;
  }
  if (best_cost < 0) best = {1, 1, 1};  // a prime thread count that fits neither way
  return best;
}

// [begin, end) of part `i` of `parts` when `units` tiles of `size` elements cover `total`.
std::int64_t part_begin(std::int64_t units, int parts, int i, int size, std::int64_t total) {
  return std::min<std::int64_t>(total, units * i / parts * size);
}
}  // namespace

// Products with at most kSkinny rows or columns of C, or a k of at most kSkinny with B's rows
// contiguous (gemm_skinny_simd.h). One with few columns is turned into one with few rows by
// transposing it (C^T = B^T A^T: swapped strides and bias axes, nothing moves). Returns false,
// leaving the product to the blocked nest, when no skinny kernel suits the operands' layout.
// Threads split the long dimension: one per 256 KiB of B read (of C written, for rank_k), at
// least 64 columns (4 rows) each.
template <typename T>
static bool gemm_skinny(const GemmTable<T>& t, int max_threads, T* c, std::int64_t ldc,
                        const T* a, std::int64_t rsa, std::int64_t csa, const T* b,
                        std::int64_t rsb, std::int64_t csb, std::int64_t m, std::int64_t n,
                        std::int64_t k, const UkEpilogue<T>& e) {
  constexpr std::int64_t kBytesPerThread = 256 * 1024, kMinCols = 64;
  const bool few_rows = m <= gemm_config::kSkinny;
  if (!few_rows && n > gemm_config::kSkinny) {
    // rank_k: C written once at store speed, where the nest pays a tile's fill and drain every
    // k steps; below 64 KiB of C the nest's few tiles are cheaper (32x2x64: 0.5 vs 0.8 us).
    const std::int64_t bytes = m * n * std::int64_t(sizeof(T));
    if (k > gemm_config::kSkinny || csb != 1 || bytes < 64 * 1024) return false;
    const int threads = int(std::clamp<std::int64_t>(std::min(bytes / kBytesPerThread, m / 4), 1,
                                                     std::max(1, max_threads)));
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
      const int id = omp_get_thread_num();
      const std::int64_t i0 = m * id / threads, i1 = m * (id + 1) / threads;
      UkEpilogue<T> ep = e;
      if (ep.bias_row) ep.bias_row += i0;
      if (i1 > i0)
        t.rank_k(c + i0 * ldc, ldc, a + i0 * rsa, rsa, csa, b, rsb, int(k), i1 - i0, n, ep);
    }
    return true;
  }
  UkEpilogue<T> et = e;
  std::int64_t rsc = ldc, csc = 1;
  if (!few_rows) {
    std::swap(m, n), std::swap(a, b), std::swap(rsc, csc);
    std::swap(rsa, csb), std::swap(csa, rsb);
    std::swap(et.bias_row, et.bias_col);
  }
  const bool dot = csa == 1 && rsb == 1;
  if (!dot && csb != 1) return false;

  const std::int64_t bytes = k * n * std::int64_t(sizeof(T));
  const int threads = int(std::clamp<std::int64_t>(
      std::min(bytes / kBytesPerThread, n / kMinCols), 1, std::max(1, max_threads)));
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int id = omp_get_thread_num();
    // Column ranges in whole 16-element runs, so no thread splits another's vector.
    const std::int64_t j0 = id == 0 ? 0 : n * id / threads / 16 * 16;
    const std::int64_t j1 = id + 1 == threads ? n : n * (id + 1) / threads / 16 * 16;
    if (j1 > j0) {
      UkEpilogue<T> ep = et;
      if (ep.bias_col) ep.bias_col += j0;
      if (dot)
        t.skinny_dot(c + j0 * csc, rsc, csc, a, rsa, b + j0 * csb, csb, int(m), j1 - j0, k, ep);
      else
        t.skinny_axpy(c + j0 * csc, rsc, csc, a, rsa, csa, b + j0, rsb, int(m), j1 - j0, k, ep);
    }
  }
  return true;
}

template <typename T>
static void gemm_dispatch(const GemmTable<T>& table, int max_threads, T* c, std::int64_t ldc,
                          const T* a, std::int64_t rsa, std::int64_t csa, const T* b,
                          std::int64_t rsb, std::int64_t csb, std::int64_t m, std::int64_t n,
                          std::int64_t k, const UkEpilogue<T>& e,
                          const GemmSource<T>& src = {}) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    gemm_empty_k(c, ldc, m, n, e);
    if (src.hook && src.hook->fn)
      for (std::int64_t j = 0; j < n; j += table.nr)
        src.hook->fn(src.hook->ctx, c + j, ldc, 0, j, int(m),
                     int(std::min<std::int64_t>(table.nr, n - j)));
    return;
  }
  const bool plain = !src.vb && !src.pre && !src.hook;
  if (plain && gemm_skinny(table, max_threads, c, ldc, a, rsa, csa, b, rsb, csb, m, n, k, e))
    return;
  // Prepacked panels and tile hooks need every thread's columns to start at a whole panel (a
  // whole group of the hook's grain).
  GemmTable<T> t = table;
  if (src.pre || src.hook)
    t.nstep = src.hook && src.hook->grain > 0 ? int(src.hook->grain) : t.nr;
  // A packed B: strides that read_b_in_place refuses, so the split counts B as packed.
  const Split s = !plain ? choose_split(t, rsa, csa, 0, 0, m, n, k, max_threads)
                         : choose_split(t, rsa, csa, rsb, csb, m, n, k, max_threads);
  if (s.threads == 1) {
    if (!gemm_serial(t, c, ldc, a, rsa, csa, b, rsb, csb, m, n, k, e, src))
      throw std::bad_alloc();
    return;
  }
  const std::int64_t mu = (m + t.mstep - 1) / t.mstep, nu = (n + t.nstep - 1) / t.nstep;
  std::atomic<bool> ok{true};
#pragma omp parallel num_threads(s.threads)
  {
    const int id = omp_get_thread_num();
    const int ti = id / s.tn, tj = id % s.tn;
    const std::int64_t m0 = part_begin(mu, s.tm, ti, t.mstep, m);
    const std::int64_t m1 = part_begin(mu, s.tm, ti + 1, t.mstep, m);
    const std::int64_t n0 = part_begin(nu, s.tn, tj, t.nstep, n);
    const std::int64_t n1 = part_begin(nu, s.tn, tj + 1, t.nstep, n);
    if (m1 > m0 && n1 > n0) {
      UkEpilogue<T> et = e;
      if (et.bias_row) et.bias_row += m0;
      if (et.bias_col) et.bias_col += n0;
      if (!gemm_serial(t, c + m0 * ldc + n0, ldc, a + m0 * rsa, rsa, csa,
                       plain ? b + n0 * csb : nullptr, rsb, csb, m1 - m0, n1 - n0, k, et, src,
                       m0, n0))
        ok.store(false);
    }
  }
  if (!ok.load()) throw std::bad_alloc();
}

template <typename T>
void gemm(T* c, std::int64_t ldc, const T* a, std::int64_t rsa, std::int64_t csa, const T* b,
          std::int64_t rsb, std::int64_t csb, std::int64_t m, std::int64_t n, std::int64_t k,
          const GemmParams<T>& p, Isa isa, int max_threads) {
  gemm_dispatch(gemm_table<T>(isa), max_threads > 0 ? max_threads : get_num_threads(), c, ldc, a,
                rsa, csa, b, rsb, csb, m, n, k, full_epilogue(p));
}

template <typename T>
void gemm_packed_b(T* c, std::int64_t ldc, const T* a, std::int64_t rsa, std::int64_t csa,
                   const GemmPackB<T>& b, std::int64_t m, std::int64_t n, std::int64_t k,
                   const GemmParams<T>& p, Isa isa, int max_threads,
                   const GemmTileHook<T>* hook) {
  GemmSource<T> src;
  src.vb = &b;
  src.hook = hook;
  gemm_dispatch(gemm_table<T>(isa), max_threads > 0 ? max_threads : get_num_threads(), c, ldc, a,
                rsa, csa, static_cast<const T*>(nullptr), 0, 0, m, n, k, full_epilogue(p), src);
}

// ---------------------------------------------------------------------------------------------
// Prepacked B
// ---------------------------------------------------------------------------------------------

template <typename T>
GemmPackedB<T>::~GemmPackedB() {
  std::free(data_);
}

template <typename T>
T* GemmPackedB<T>::reserve(std::int64_t k, std::int64_t n, Isa isa) {
  const GemmTable<T>& t = gemm_table<T>(isa);
  const std::size_t need =
      sizeof(T) * std::size_t(std::max<std::int64_t>(1, (n + t.nr - 1) / t.nr * t.nr * k));
  if (need > bytes_) {
    std::free(data_);
    data_ = static_cast<T*>(alloc_pages(need, &bytes_));
    if (!data_) {
      bytes_ = 0;
      throw std::bad_alloc();
    }
  }
  k_ = k, n_ = n, isa_ = isa;
  return data_;
}

template <typename T>
void gemm_pack_b(T* dst, const T* b, std::int64_t rsb, std::int64_t csb, std::int64_t k,
                 std::int64_t n, Isa isa) {
  if (k > 0 && n > 0) gemm_table<T>(isa).pack_b(dst, b, csb, rsb, n, k);
}

template <typename T>
void GemmPackedB<T>::pack(const T* b, std::int64_t rsb, std::int64_t csb, std::int64_t k,
                          std::int64_t n, Isa isa) {
  gemm_pack_b(reserve(k, n, isa), b, rsb, csb, k, n, isa);
}

template <typename T>
void GemmPackedB<T>::pack(const GemmPackB<T>& packer, std::int64_t k, std::int64_t n, Isa isa) {
  T* dst = reserve(k, n, isa);
  if (n > 0 && k > 0 && !packer.pack(packer.ctx, dst, 0, k, 0, n, gemm_table<T>(isa).nr))
    throw std::bad_alloc();
}

template <typename T>
void gemm_prepacked_b(T* c, std::int64_t ldc, const T* a, std::int64_t rsa, std::int64_t csa,
                      const GemmPackedB<T>& b, std::int64_t m, const GemmParams<T>& p,
                      int max_threads, const GemmTileHook<T>* hook) {
  GemmSource<T> src;
  src.pre = b.data();
  src.hook = hook;
  gemm_dispatch(gemm_table<T>(b.isa()), max_threads > 0 ? max_threads : get_num_threads(), c,
                ldc, a, rsa, csa, static_cast<const T*>(nullptr), 0, 0, m, b.n(), b.k(),
                full_epilogue(p), src);
}

template <typename T>
void gemm_tile(Isa isa, int* mr, int* nr, std::int64_t* kc) {
  const GemmTable<T>& t = gemm_table<T>(isa);
  *mr = t.mr, *nr = t.nr, *kc = t.kc;
}

template <typename T>
void gemm_batched(T* c, std::int64_t sc, std::int64_t ldc, const T* a, std::int64_t sa,
                  std::int64_t rsa, std::int64_t csa, const T* b, std::int64_t sb,
                  std::int64_t rsb, std::int64_t csb, std::int64_t batch, std::int64_t m,
                  std::int64_t n, std::int64_t k, const GemmParams<T>& p, Isa isa) {
  const GemmTable<T>& t = gemm_table<T>(isa);
  const UkEpilogue<T> e = full_epilogue(p);
  const int threads = get_num_threads();
  // Whole rounds of one product per thread (the skinny kernels or the serial nest: the choice
  // gemm_dispatch makes, so results do not depend on the thread count), then the remainder, fewer
  // products than threads, each split across all threads: 3 x 512^3 on 2 threads would otherwise
  // take two products' time (NumPy/fastdl 0.82 -> 1.0x).
  const std::int64_t rounds = m > 0 && n > 0 && k > 0 ? batch / threads * threads : 0;
  if (rounds > 0) {
    std::atomic<bool> ok{true};
#pragma omp parallel for schedule(static) num_threads(threads)
    for (std::int64_t i = 0; i < rounds; ++i) {
      T* ci = c + i * sc;
      const T *ai = a + i * sa, *bi = b + i * sb;
      if (!gemm_skinny(t, 1, ci, ldc, ai, rsa, csa, bi, rsb, csb, m, n, k, e) &&
          !gemm_serial(t, ci, ldc, ai, rsa, csa, bi, rsb, csb, m, n, k, e))
        ok.store(false);
    }
    if (!ok.load()) throw std::bad_alloc();
  }
  for (std::int64_t i = rounds; i < batch; ++i)
    gemm_dispatch(t, threads, c + i * sc, ldc, a + i * sa, rsa, csa, b + i * sb, rsb, csb, m, n,
                  k, e);
}

#define FASTDL_INSTANTIATE_GEMM(T)                                                             \
  template void gemm<T>(T*, std::int64_t, const T*, std::int64_t, std::int64_t, const T*,    \
                        std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, \
                        const GemmParams<T>&, Isa, int);                                       \
  template void gemm_packed_b<T>(T*, std::int64_t, const T*, std::int64_t, std::int64_t,      \
                                 const GemmPackB<T>&, std::int64_t, std::int64_t, std::int64_t, \
                                 const GemmParams<T>&, Isa, int, const GemmTileHook<T>*);      \
  template class GemmPackedB<T>;                                                               \
  template void gemm_pack_b<T>(T*, const T*, std::int64_t, std::int64_t, std::int64_t,        \
                               std::int64_t, Isa);                                             \
  template void gemm_prepacked_b<T>(T*, std::int64_t, const T*, std::int64_t, std::int64_t,   \
                                    const GemmPackedB<T>&, std::int64_t, const GemmParams<T>&, \
                                    int, const GemmTileHook<T>*);                              \
  template void gemm_tile<T>(Isa, int*, int*, std::int64_t*);                                 \
  template void gemm_batched<T>(T*, std::int64_t, std::int64_t, const T*, std::int64_t,       \
                                std::int64_t, std::int64_t, const T*, std::int64_t,           \
                                std::int64_t, std::int64_t, std::int64_t, std::int64_t,       \
                                std::int64_t, std::int64_t, const GemmParams<T>&, Isa);       \
  template void gemm_reference<T>(T*, std::int64_t, const T*, std::int64_t, std::int64_t,     \
                                  const T*, std::int64_t, std::int64_t, std::int64_t,         \
                                  std::int64_t, std::int64_t, const GemmParams<T>&);
FASTDL_INSTANTIATE_GEMM(float)
FASTDL_INSTANTIATE_GEMM(double)
#undef FASTDL_INSTANTIATE_GEMM

}  // namespace fastdl
