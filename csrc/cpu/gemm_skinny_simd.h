// gemm_skinny_simd.h: products with at most gemm_config::kSkinny rows of C (a batch-1 dense
// layer, a matrix-vector product after transposition) or a k of at most kSkinny (rank_k),
// written once over vector traits V (vec_generic.h's contract) like the micro-kernels.
//
// Shapes: C m x n (m <= kSkinny; element (i, j) at c[i*rsc + j*csc], any strides, so the caller
// can hand over a transposed problem), A m x k, B k x n. Such a product does 2 FLOPs per element
// of B, so it is bound by reading B: B is read once, in place, never packed (packing would move
// it three times), and A (m x k, small) stays in L1. C = epilogue(A * B), per element.
//   skinny_dot:  rows of A and columns of B contiguous along k (x W^T with W (n, k) row-major):
//                four or eight columns of B at a time, each against every row of A while it is
//                in L1, W-lane partial sums (chains of kChain steps) reduced at the end.
//   skinny_axpy: rows of B contiguous along n (x W with W (k, n) row-major): blocks of C's
//                columns live in registers while 32 rows of B stream past, A broadcast, then
//                join partial sums in L1; B is read once, row after row.
// Every element of C is one fixed sequence of operations whatever the thread's column range, so
// results do not depend on the thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cpu/gemm_config.h"
#include "cpu/gemm_ukernel.h"

namespace fastdl {
namespace {

template <class V, int MI>
void skinny_dot_rows(typename V::T* c, std::int64_t rsc, std::int64_t csc, const typename V::T* a,
                     std::int64_t rsa, const typename V::T* b, std::int64_t csb, std::int64_t n,
                     std::int64_t k, const UkEpilogue<typename V::T>& e) {
  using T = typename V::T;
  using R = typename V::reg;
  // Columns of B per pass: eight independent streams and accumulator chains when the registers
  // allow (AVX-512, one row of A), four otherwise.
  constexpr int JB = MI == 1 && V::W * sizeof(T) >= 64 ? 8 : 4;
  for (std::int64_t j0 = 0; j0 < n; j0 += JB) {
    const int nj = int(std::min<std::int64_t>(JB, n - j0));
    const T* bj[JB];
#pragma GCC unroll 8
    for (int j = 0; j < JB; ++j) bj[j] = b + (j0 + (j < nj ? j : nj - 1)) * csb;
    R s[MI][JB];
#pragma GCC unroll 4
    for (int i = 0; i < MI; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < JB; ++j) s[i][j] = V::zero();
    // Chains of at most kChain vector steps, each added to a partial sum in L1 (as the
    // micro-kernels do), so the error bound does not grow with k / W.
    alignas(64) T partial[MI][JB][V::W];
    for (std::int64_t q0 = 0; q0 < k; q0 += gemm_config::kChain * V::W) {
      const std::int64_t q1 = std::min(k, q0 + gemm_config::kChain * V::W);
      // One vector step at q; `load` is V::load, or a masked load for the last k % W elements
      // (zeros past k).
      auto step = [&](std::int64_t q, auto load) __attribute__((always_inline)) {
        R bv[JB];
#pragma GCC unroll 8
        for (int j = 0; j < JB; ++j) bv[j] = load(bj[j] + q);
#pragma GCC unroll 4
        for (int i = 0; i < MI; ++i) {
          const R av = load(a + i * rsa + q);
#pragma GCC unroll 8
          for (int j = 0; j < JB; ++j) s[i][j] = V::fmadd(av, bv[j], s[i][j]);
        }
      };
      std::int64_t q = q0;
      for (; q + V::W <= q1; q += V::W) step(q, [](const T* p) { return V::load(p); });
      if (q < q1) {
        const int left = int(q1 - q);
        step(q, [left](const T* p) { return V::loadn(p, left); });
      }
#pragma GCC unroll 4
      for (int i = 0; i < MI; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < JB; ++j) {
          V::store(partial[i][j], q0 ? V::add(V::load(partial[i][j]), s[i][j]) : s[i][j]);
          s[i][j] = V::zero();
        }
    }
    for (int i = 0; i < MI; ++i)
      for (int j = 0; j < nj; ++j) {
        T* cij = c + i * rsc + (j0 + j) * csc;
        *cij = apply_epilogue(V::hsum(V::load(partial[i][j])), cij, i, int(j0 + j), e);
      }
  }
}

template <class V, int MI>
void skinny_axpy_rows(typename V::T* c, std::int64_t rsc, std::int64_t csc,
                      const typename V::T* a, std::int64_t rsa, std::int64_t csa,
                      const typename V::T* b, std::int64_t rsb, std::int64_t n, std::int64_t k,
                      const UkEpilogue<typename V::T>& e) {
  using T = typename V::T;
  using R = typename V::reg;
  constexpr int JV = MI <= 2 ? 8 : 6;  // vectors of C's columns per block, MI * JV <= 24 registers
  constexpr int kBlock = JV * V::W;
  // C's columns are taken 4 KiB of a row at a time (the span), B's rows 32 at a time: for each
  // group of 32 rows every block of the span accumulates in registers and is added to the span's
  // partial sums in L1, so B is read row after row in 4 KiB runs (a block walking all k rows
  // alone touched a new page per row: 1.2 ms instead of ~0.65 for 1 x 4096 x 4096).
  constexpr int kRows = 32;
  constexpr int kSpan = 4096 / int(sizeof(T)) / kBlock * kBlock;
  alignas(64) T partial[MI][kSpan];
  for (std::int64_t js = 0; js < n; js += kSpan) {
    const int span = int(std::min<std::int64_t>(kSpan, n - js));
    for (std::int64_t q0 = 0; q0 < k; q0 += kRows) {
      const std::int64_t q1 = std::min<std::int64_t>(k, q0 + kRows);
      for (int jb = 0; jb < span; jb += kBlock) {
        const int cols = std::min(kBlock, span - jb);
        R s[MI][JV];
#pragma GCC unroll 4
        for (int i = 0; i < MI; ++i)
#pragma GCC unroll 8
          for (int v = 0; v < JV; ++v) s[i][v] = V::zero();
        // The rows q0 .. q1 of B's block; `load(p, v)` reads its vector v (masked past column n
        // in the narrow last block).
        auto rows = [&](auto load) __attribute__((always_inline)) {
          const T* bq = b + q0 * rsb + js + jb;
          for (std::int64_t q = q0; q < q1; ++q, bq += rsb) {
            R bv[JV];
#pragma GCC unroll 8
            for (int v = 0; v < JV; ++v) bv[v] = load(bq + v * V::W, v);
#pragma GCC unroll 4
            for (int i = 0; i < MI; ++i) {
              const R ai = V::set1(a[i * rsa + q * csa]);
#pragma GCC unroll 8
              for (int v = 0; v < JV; ++v) s[i][v] = V::fmadd(ai, bv[v], s[i][v]);
            }
          }
        };
        if (cols == kBlock)
          rows([](const T* p, int) { return V::load(p); });
        else
          rows([cols](const T* p, int v) {
            return V::loadn(p, std::clamp(cols - v * V::W, 0, V::W));
          });
#pragma GCC unroll 4
        for (int i = 0; i < MI; ++i)
#pragma GCC unroll 8
          for (int v = 0; v < JV; ++v) {
            T* pv = partial[i] + jb + v * V::W;
            V::store(pv, q0 ? V::add(V::load(pv), s[i][v]) : s[i][v]);
          }
      }
    }
    for (int i = 0; i < MI; ++i)
      for (int j = 0; j < span; ++j) {
        T* cij = c + i * rsc + (js + j) * csc;
        *cij = apply_epilogue(partial[i][j], cij, i, int(js + j), e);
      }
  }
}

// Rank-k products, k <= kSkinny (the weight gradient of a batch of at most kSkinny samples, an
// outer product): C (m x n, row stride ldc) with B's rows contiguous, written row after row in
// full vectors at the speed of writing C. Every element is the sequence the micro-kernels use (K
// fused multiply-adds from zero, then the epilogue), so results equal the blocked nest's; the
// nest would pay its ~80-cycle tile fill and drain for every K steps of work.
template <class V, int K>
void rank_k_rows(typename V::T* c, std::int64_t ldc, const typename V::T* a, std::int64_t rsa,
                 std::int64_t csa, const typename V::T* b, std::int64_t rsb, std::int64_t m,
                 std::int64_t n, const UkEpilogue<typename V::T>& e) {
  using T = typename V::T;
  using R = typename V::reg;
  const VecEpilogue<V> ve(e);
  for (std::int64_t i = 0; i < m; ++i) {
    R ai[K];
#pragma GCC unroll 4
    for (int q = 0; q < K; ++q) ai[q] = V::set1(a[i * rsa + q * csa]);
    const R brow = ve.row_bias(i);
    T* ci = c + i * ldc;
    auto at = [&](std::int64_t j, auto load) __attribute__((always_inline)) {
      R sum = V::zero();
#pragma GCC unroll 4
      for (int q = 0; q < K; ++q) sum = V::fmadd(ai[q], load(b + q * rsb + j), sum);
      return sum;
    };
    std::int64_t j = 0;
    for (; j + V::W <= n; j += V::W)
      ve.store(ci + j, at(j, [](const T* p) { return V::load(p); }), brow, j, V::W);
    if (j < n) {
      const int left = int(n - j);
      ve.store(ci + j, at(j, [left](const T* p) { return V::loadn(p, left); }), brow, j, left);
    }
  }
}

// The entry points a GemmTable exports: the row count m (or k, for rank_k), 1 .. kSkinny, picks
// the compile-time instantiation.
template <class F>
void with_count(int r, F&& f) {
  static_assert(gemm_config::kSkinny == 4, "one instantiation per count below");
  switch (r) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    default: return f(std::integral_constant<int, 4>{});
  }
}

template <class V>
void skinny_dot(typename V::T* c, std::int64_t rsc, std::int64_t csc, const typename V::T* a,
                std::int64_t rsa, const typename V::T* b, std::int64_t csb, int m, std::int64_t n,
                std::int64_t k, const UkEpilogue<typename V::T>& e) {
  with_count(m, [&](auto mi) {
    skinny_dot_rows<V, decltype(mi)::value>(c, rsc, csc, a, rsa, b, csb, n, k, e);
  });
}

template <class V>
void skinny_axpy(typename V::T* c, std::int64_t rsc, std::int64_t csc, const typename V::T* a,
                 std::int64_t rsa, std::int64_t csa, const typename V::T* b, std::int64_t rsb,
                 int m, std::int64_t n, std::int64_t k, const UkEpilogue<typename V::T>& e) {
  with_count(m, [&](auto mi) {
    skinny_axpy_rows<V, decltype(mi)::value>(c, rsc, csc, a, rsa, csa, b, rsb, n, k, e);
  });
}

template <class V>
void rank_k(typename V::T* c, std::int64_t ldc, const typename V::T* a, std::int64_t rsa,
            std::int64_t csa, const typename V::T* b, std::int64_t rsb, int k, std::int64_t m,
            std::int64_t n, const UkEpilogue<typename V::T>& e) {
  with_count(k, [&](auto kk) {
    rank_k_rows<V, decltype(kk)::value>(c, ldc, a, rsa, csa, b, rsb, m, n, e);
  });
}

}  // namespace
}  // namespace fastdl
