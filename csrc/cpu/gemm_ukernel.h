// gemm_ukernel.h: the micro-kernel contract shared by the reference, AVX2 and AVX-512 kernels.
//
// A micro-kernel multiplies one packed A micro-panel (MR x kc, stored k-major: ap[p*MR + i])
// by one packed B micro-panel (kc x NR, bp[p*NR + j]) into registers, then writes the m x n
// corner (m <= MR, n <= NR) of the tile to C through the epilogue. With lda != 0, A is instead
// read in place, row-major (ap[i*lda + p], rows >= m never touched), and with ldb != 0 a full
// NR-wide B panel is read in place too (bp[p*ldb + j]): BLIS's "sup" idea, used when a small
// product would spend more time packing an operand than reusing it.
//   C[i,j] = act(alpha * acc[i,j] + beta * C[i,j] + bias_row[i] + bias_col[j])
// (beta == 0: C is not read; a null bias pointer adds nothing). Panels are zero-padded to full
// MR / NR by packing, so edge tiles run the same vector code and only the write-back is masked.
//
// Packing turns an "mn x kc" slice of a strided operand into panels of R rows:
//   dst[(r / R) * R * kc + p * R + r % R] = src[r * s_mn + p * s_k]
// A is packed with (s_mn, s_k) = (rsa, csa) and R = MR; B with (csb, rsb) and R = NR.
#pragma once

#include <cstdint>
#include <cstring>

#include "common/cpu.h"

namespace fastdl {

template <typename T>
struct UkEpilogue {
  T alpha;
  T beta;
  const T* bias_row;  // indexed by the tile's row, or null
  const T* bias_col;  // indexed by the tile's column, or null
  bool relu;
};

template <typename T>
using ukernel_fn = void (*)(std::int64_t kc, const T* ap, std::int64_t lda, const T* bp,
                            std::int64_t ldb, T* c, std::int64_t ldc, int m, int n,
                            const UkEpilogue<T>& e);

template <typename T>
using pack_fn = void (*)(T* dst, const T* src, std::int64_t s_mn, std::int64_t s_k,
                         std::int64_t mn, std::int64_t kc);

// Skinny products (gemm_skinny_simd.h): C (m <= gemm_config::kSkinny rows, element (i, j) at
// c[i*rsc + j*csc]) = epilogue(A * B) with B read once in place. dot: A rows and B columns
// contiguous along k (a[i*rsa + q], b[j*csb + q]); axpy: B rows contiguous (b[q*rsb + j]).
template <typename T>
using skinny_dot_fn = void (*)(T* c, std::int64_t rsc, std::int64_t csc, const T* a,
                               std::int64_t rsa, const T* b, std::int64_t csb, int m,
                               std::int64_t n, std::int64_t k, const UkEpilogue<T>& e);
template <typename T>
using skinny_axpy_fn = void (*)(T* c, std::int64_t rsc, std::int64_t csc, const T* a,
                                std::int64_t rsa, std::int64_t csa, const T* b, std::int64_t rsb,
                                int m, std::int64_t n, std::int64_t k, const UkEpilogue<T>& e);
// rank_k: k <= kSkinny, C row-major (row stride ldc), B rows contiguous (b[q*rsb + j]).
template <typename T>
using rank_k_fn = void (*)(T* c, std::int64_t ldc, const T* a, std::int64_t rsa, std::int64_t csa,
                           const T* b, std::int64_t rsb, int k, std::int64_t m, std::int64_t n,
                           const UkEpilogue<T>& e);

// One ISA's GEMM: register tile, cache blocks, the three routines the loop nest calls and the
// three skinny-product kernels.
template <typename T>
struct GemmTable {
  int mr, nr;
  // The finest steps in which C can be split between threads without computing padding: edge
  // tiles run rows in steps of mstep and columns in whole vectors of nstep (MR and NR for the
  // plain-C kernel, which computes whole tiles).
  int mstep, nstep;
  std::int64_t kc, mc, nc;
  ukernel_fn<T> ukernel;
  pack_fn<T> pack_a;
  pack_fn<T> pack_b;
  skinny_dot_fn<T> skinny_dot;
  skinny_axpy_fn<T> skinny_axpy;
  rank_k_fn<T> rank_k;
};

// The table for an ISA, capped at what the processor supports.
template <typename T>
const GemmTable<T>& gemm_table(Isa isa);

extern const GemmTable<float> gemm_table_generic_f32;
extern const GemmTable<double> gemm_table_generic_f64;
extern const GemmTable<float> gemm_table_avx2_f32;
extern const GemmTable<double> gemm_table_avx2_f64;
extern const GemmTable<float> gemm_table_avx512_f32;
extern const GemmTable<double> gemm_table_avx512_f64;

namespace {  // internal linkage: each ISA translation unit gets its own copy, built with its flags

template <typename T>
inline T apply_epilogue(T acc, const T* c, int i, int j, const UkEpilogue<T>& e) {
  T r = e.alpha * acc;
  if (e.beta != T(0)) r += e.beta * *c;
  if (e.bias_row) r += e.bias_row[i];
  if (e.bias_col) r += e.bias_col[j];
  if (e.relu && r < T(0)) r = T(0);  // NaN passes through, as in PyTorch
  return r;
}

// apply_epilogue for a vector of sums V (vector traits, vec_generic.h), for the SIMD
// write-backs. The fields are copied into locals: e is a reference, and without the copy every
// store to C could alias it, so the compiler re-read and re-tested each field for every vector
// (~20 instructions per vector, 15-20% of a k = 64 tile).
template <class V>
struct VecEpilogue {
  using T = typename V::T;
  using R = typename V::reg;
  T alpha_s, beta_s;
  const T* bias_row;
  const T* bias_col;
  bool relu;
  R alpha, beta;

  explicit VecEpilogue(const UkEpilogue<T>& e)
      : alpha_s(e.alpha), beta_s(e.beta), bias_row(e.bias_row), bias_col(e.bias_col),
        relu(e.relu), alpha(V::set1(e.alpha)), beta(V::set1(e.beta)) {}
  bool plain() const {
    return alpha_s == T(1) && beta_s == T(0) && !bias_row && !bias_col && !relu;
  }
  R row_bias(std::int64_t i) const { return bias_row ? V::set1(bias_row[i]) : V::zero(); }
  // c[0 .. cnt) = act(alpha * sum + beta * c + brow + bias_col[j .. j + cnt)).
  void store(T* c, R sum, R brow, std::int64_t j, int cnt) const {
    R r = V::mul(alpha, sum);
    if (beta_s != T(0)) r = V::fmadd(beta, V::loadn(c, cnt), r);
    if (bias_row) r = V::add(r, brow);
    if (bias_col) r = V::add(r, V::loadn(bias_col + j, cnt));
    if (relu) r = V::max(V::zero(), r);  // max(0, NaN) is NaN, as in PyTorch
    V::storen(c, r, cnt);
  }
};

template <int R, typename T>
void pack_panels(T* __restrict dst, const T* __restrict src, std::int64_t s_mn, std::int64_t s_k,
                 std::int64_t mn, std::int64_t kc) {
  for (std::int64_t r0 = 0; r0 < mn; r0 += R, dst += R * kc) {
    const int rows = mn - r0 < R ? int(mn - r0) : R;
    const T* s = src + r0 * s_mn;
    if (rows < R) std::memset(dst, 0, sizeof(T) * std::size_t(R * kc));
    if (s_mn == 1) {  // each k-slice of the panel is contiguous in memory: row copies
      for (std::int64_t p = 0; p < kc; ++p)
        for (int r = 0; r < rows; ++r) dst[p * R + r] = s[p * s_k + r];
    } else if (s_k == 1 && rows == R) {  // each row contiguous along k: a transpose, 8 k at a time
      std::int64_t p = 0;
      for (; p + 8 <= kc; p += 8)
        for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
          for (int q = 0; q < 8; ++q) dst[(p + q) * R + r] = s[r * s_mn + p + q];
      for (; p < kc; ++p)
        for (int r = 0; r < R; ++r) dst[p * R + r] = s[r * s_mn + p];
    } else {
      for (int r = 0; r < rows; ++r)
        for (std::int64_t p = 0; p < kc; ++p) dst[p * R + r] = s[r * s_mn + p * s_k];
    }
  }
}

}  // namespace

}  // namespace fastdl
