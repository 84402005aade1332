// gemm_ukernel_avx512.cpp: AVX-512 GEMM micro-kernels (fp32 12x32, fp64 12x16) and packing.
// Compiled with -mavx512f/bw/dq/vl; entered only when cpu_isa() reports avx512.
#include <immintrin.h>

#include "cpu/gemm_ukernel_simd.h"

namespace fastdl {
namespace {

struct F32x16 {
  using T = float;
  using reg = __m512;
  using mask = __mmask16;
  static constexpr int W = 16;
  static reg zero() { return _mm512_setzero_ps(); }
  static reg set1(T x) { return _mm512_set1_ps(x); }
  static reg load(const T* p) { return _mm512_loadu_ps(p); }
  static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  // maskz_ with all lanes: _mm512_max_ps's "undefined" passthrough trips GCC 12's
  // -Wmaybe-uninitialized.
  static reg max(reg a, reg b) { return _mm512_maskz_max_ps(mask(0xFFFF), a, b); }
  static mask lanes(int n) { return mask((1u << n) - 1u); }
  static reg maskload(mask m, const T* p) { return _mm512_maskz_loadu_ps(m, p); }
  static void maskstore(T* p, mask m, reg v) { _mm512_mask_storeu_ps(p, m, v); }
};

struct F64x8 {
  using T = double;
  using reg = __m512d;
  using mask = __mmask8;
  static constexpr int W = 8;
  static reg zero() { return _mm512_setzero_pd(); }
  static reg set1(T x) { return _mm512_set1_pd(x); }
  static reg load(const T* p) { return _mm512_loadu_pd(p); }
  static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_pd(a, b, c); }
  static reg add(reg a, reg b) { return _mm512_add_pd(a, b); }
  static reg mul(reg a, reg b) { return _mm512_mul_pd(a, b); }
  static reg max(reg a, reg b) { return _mm512_maskz_max_pd(mask(0xFF), a, b); }
  static mask lanes(int n) { return mask((1u << n) - 1u); }
  static reg maskload(mask m, const T* p) { return _mm512_maskz_loadu_pd(m, p); }
  static void maskstore(T* p, mask m, reg v) { _mm512_mask_storeu_pd(p, m, v); }
};

}  // namespace

const GemmTable<float> gemm_table_avx512_f32 = make_simd_table<F32x16, gemm_config::Avx512F32>();
const GemmTable<double> gemm_table_avx512_f64 = make_simd_table<F64x8, gemm_config::Avx512F64>();

}  // namespace fastdl
