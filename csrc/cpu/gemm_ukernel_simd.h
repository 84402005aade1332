// gemm_ukernel_simd.h: the SIMD micro-kernel body, written once over a vector-traits type V and
// instantiated by gemm_ukernel_avx2.cpp and gemm_ukernel_avx512.cpp with their own compiler flags.
//
// V is one of the shared vector traits (vec_avx2.h, vec_avx512.h; contract in vec_generic.h); the
// kernel uses T, reg, W, zero, set1, load, store, fmadd(a, b, c) = a*b + c, add, mul, max and the
// first-n-lanes loadn / storen of the masked write-back.
//
// The accumulator tile is MR x NV registers (NR = NV * W columns). Per k: NV loads of B, MR
// broadcasts of A, MR * NV FMAs. Everything is unrolled at compile time so the tile lives in
// registers. Edge tiles (m < MR or n < NR) run a smaller compile-time tile MRc x NVc that still
// walks the full-size packed panels, so no FMA is spent on the zero padding: rows in steps of
// kRowStep, columns in whole vectors. (M = 64 with MR = 12 would otherwise compute 72 rows.)
#pragma once

#include "cpu/gemm_config.h"
#include "cpu/gemm_skinny_simd.h"
#include "cpu/gemm_ukernel.h"

namespace fastdl {
namespace {

// GCC 12 cannot see that the first chain of the loop at the end of ukernel_tile (k0 == 0) writes
// `partial` before any chain reads it, and warns; peeling that chain instead to please it
// measured k = 300-500 at 2/3 of the FMA rate (the peeled loop's accumulators went to the stack).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// The tile body: MRc x NVc accumulators over B panels packed for NV vectors, and A packed for
// MR rows (kDirectA false) or read in place with row stride lda (kDirectA true).
template <class V, int MR, int NV, int MRc, int NVc, bool kDirectA>
void ukernel_tile(std::int64_t kc, const typename V::T* __restrict ap, std::int64_t lda,
                  const typename V::T* __restrict bp, std::int64_t ldb, typename V::T* c,
                  std::int64_t ldc, int m, int n, const UkEpilogue<typename V::T>& e) {
  using T = typename V::T;
  using R = typename V::reg;
  const std::int64_t bstep = ldb ? ldb : NV * V::W;  // B row p at bp + p * bstep
  const T* arow[MRc];  // direct A: row i's pointer (rows past m repeat row m - 1, never stored)
  if constexpr (kDirectA) {
#pragma GCC unroll 16
    for (int i = 0; i < MRc; ++i) arow[i] = ap + (i < m ? i : m - 1) * lda;
  }
  R acc[MRc][NVc];
#pragma GCC unroll 16
  for (int i = 0; i < MRc; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NVc; ++v) acc[i][v] = V::zero();

  // One k step: NVc loads of B, MRc broadcasts of A, MRc * NVc FMAs.
  auto step = [&]() __attribute__((always_inline)) {
    R bv[NVc];
#pragma GCC unroll 4
    for (int v = 0; v < NVc; ++v) bv[v] = V::load(bp + v * V::W);
#pragma GCC unroll 16
    for (int i = 0; i < MRc; ++i) {
      const R ai = V::set1(kDirectA ? *arow[i]++ : ap[i]);
#pragma GCC unroll 4
      for (int v = 0; v < NVc; ++v) acc[i][v] = V::fmadd(ai, bv[v], acc[i][v]);
    }
    if constexpr (!kDirectA) ap += MR;
    bp += bstep;
  };
  // The C tile is prefetched (for writing) some steps before the end: late enough that the
  // streamed A and B panels do not evict it from L1, early enough (~1900 cycles for 160 steps
  // of the 12x32 fp32 tile) to hide a DRAM miss. 160 steps, or 5/16 of a longer k block.
  // Measured, one thread: KC = 512 at 2048^3: 48 steps 220 GFLOP/s, 160 steps 231; KC = 1024:
  // 160 steps 218-226 (median), 320 steps 232-238, 480 steps 233-235 at 2048^3; 320 steps for
  // every k block cost 3-4% at k = 256 (64x256x784), hence the floor of 160 for short blocks.
  const std::int64_t prefetch_dist = kc / 16 * 5 > 160 ? kc / 16 * 5 : 160;
  const std::int64_t prefetch_at = kc > prefetch_dist ? kc - prefetch_dist : 0;
  auto run = [&](std::int64_t from, std::int64_t to) __attribute__((always_inline)) {
    std::int64_t p = from;
    if (from <= prefetch_at && prefetch_at < to) {
      for (; p < prefetch_at; ++p) step();
      for (int i = 0; i < m; ++i) {
        __builtin_prefetch(c + i * ldc, 1, 3);
        __builtin_prefetch(c + i * ldc + (n - 1), 1, 3);
      }
    }
    for (; p < to; ++p) step();
  };
  // Write-back: the plain product over a full tile is just the stores; anything else goes
  // through the epilogue, full-width in the interior, masked lanes on the right edge, rows >= m
  // skipped (never a scalar loop).
  auto write_back = [&]() __attribute__((always_inline)) {
    const VecEpilogue<V> ve(e);
    if (m == MRc && n == NVc * V::W && ve.plain()) {
#pragma GCC unroll 16
      for (int i = 0; i < MRc; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NVc; ++v) V::store(c + i * ldc + v * V::W, acc[i][v]);
      return;
    }
#pragma GCC unroll 16
    for (int i = 0; i < MRc; ++i) {
      if (i >= m) break;
      T* ci = c + i * ldc;
      const R brow = ve.row_bias(i);
#pragma GCC unroll 4
      for (int v = 0; v < NVc; ++v) {
        const int left = n - v * V::W;
        if (left <= 0) break;
        ve.store(ci + v * V::W, acc[i][v], brow, v * V::W, left < V::W ? left : V::W);
      }
    }
  };
  constexpr std::int64_t kChain = gemm_config::kChain;
  if (kc <= kChain) {  // one chain: a code path of its own, so the tile stays in registers
    run(0, kc);
    write_back();
    return;
  }

  // Longer k: accumulation chains of at most gemm_config::kChain steps, each starting from zero
  // registers and added to a partial sum kept in L1, so the rounding error of a KC block grows
  // like kChain + KC / kChain, not KC (the spill is 2 * MRc * NVc memory operations per
  // kChain * MRc * NVc FMAs). One loop body for every chain, the first and last included: with
  // the last chain's sum kept in registers instead, or the first chain peeled, GCC kept a chain's
  // accumulators on the stack (k = 300-500 ran at 2/3 of the FMA rate).
  alignas(64) T partial[MRc][NVc][V::W];
  auto fold = [&](bool first) __attribute__((always_inline)) {  // partial (+)= acc; acc = 0
#pragma GCC unroll 16
    for (int i = 0; i < MRc; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NVc; ++v) {
        V::store(partial[i][v], first ? acc[i][v] : V::add(V::load(partial[i][v]), acc[i][v]));
        acc[i][v] = V::zero();
      }
  };
  for (std::int64_t k0 = 0; k0 < kc; k0 += kChain) {
    run(k0, kc - k0 < kChain ? kc : k0 + kChain);
    fold(k0 == 0);
  }
#pragma GCC unroll 16
  for (int i = 0; i < MRc; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NVc; ++v) acc[i][v] = V::load(partial[i][v]);
  write_back();
}
#pragma GCC diagnostic pop

constexpr int row_step(int mr) { return mr % 4 == 0 ? 4 : 2; }

// The micro-kernel the table exports: the full MR x NV tile, or the smallest tile covering an
// m x n edge (chosen at run time, instantiated at compile time).
template <class V, int MR, int NV, int MRc = MR, int NVc = NV>
void ukernel_simd(std::int64_t kc, const typename V::T* __restrict ap, std::int64_t lda,
                  const typename V::T* __restrict bp, std::int64_t ldb, typename V::T* c,
                  std::int64_t ldc, int m, int n, const UkEpilogue<typename V::T>& e) {
  constexpr int kRowStep = row_step(MR);
  if constexpr (MRc > kRowStep) {
    if (m <= MRc - kRowStep)
      return ukernel_simd<V, MR, NV, MRc - kRowStep, NVc>(kc, ap, lda, bp, ldb, c, ldc, m, n, e);
  }
  if constexpr (NVc > 1) {
    if (n <= (NVc - 1) * V::W)
      return ukernel_simd<V, MR, NV, MRc, NVc - 1>(kc, ap, lda, bp, ldb, c, ldc, m, n, e);
  }
  if (lda) return ukernel_tile<V, MR, NV, MRc, NVc, true>(kc, ap, lda, bp, ldb, c, ldc, m, n, e);
  ukernel_tile<V, MR, NV, MRc, NVc, false>(kc, ap, 0, bp, ldb, c, ldc, m, n, e);
}

// The table an ISA file exports: its micro-kernel for blocking B, packing for both operands
// (the portable pack_panels unless the ISA file brings its own vectorised ones).
template <class V, class B>
constexpr GemmTable<typename V::T> make_simd_table(
    pack_fn<typename V::T> pack_a = &pack_panels<B::MR, typename V::T>,
    pack_fn<typename V::T> pack_b = &pack_panels<B::NR, typename V::T>) {
  static_assert(B::NR % V::W == 0, "NR must be a whole number of vectors");
  return {B::MR, B::NR, row_step(B::MR), V::W, B::KC, B::MC, B::NC,
          &ukernel_simd<V, B::MR, B::NR / V::W>,
          pack_a, pack_b, &skinny_dot<V>, &skinny_axpy<V>, &rank_k<V>};
}

}  // namespace
}  // namespace fastdl
