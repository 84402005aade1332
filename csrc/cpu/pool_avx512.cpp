// pool_avx512.cpp: the per-plane pooling kernels, 16 floats / 8 doubles a vector, and the
// shuffles, gathers and index conversions they need (PoolOps, pool_simd.h). Compiled with the
// AVX-512 flags; entered only when cpu_isa() reports avx512. maskz_ forms with every lane set
// stand for the plain ones, whose undefined passthrough trips GCC's -Wmaybe-uninitialized.
#include "cpu/vec_avx512.h"
#include "cpu/pool_simd.h"

namespace fastdl {
namespace {

template <>
struct PoolOps<VecF32x16> {
  static __m512 even2(const float* p) {
    const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_ps(_mm512_loadu_ps(p), idx, _mm512_loadu_ps(p + 16));
  }
  static __m512 gather(const float* p, std::int64_t s) {
    const __m512i idx = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(int(s)));
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), __mmask16(0xFFFF), idx, p, 4);
  }
  static void dup2(__m512 v, __m512& lo, __m512& hi) {
    lo = _mm512_maskz_permutexvar_ps(__mmask16(0xFFFF),
                                     _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7), v);
    hi = _mm512_maskz_permutexvar_ps(
        __mmask16(0xFFFF), _mm512_setr_epi32(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15), v);
  }
  static void store_index(std::int64_t* d, std::int64_t b, std::int64_t s, __m512 off) {
    const __m512i o = _mm512_maskz_cvttps_epi32(__mmask16(0xFFFF), off);
    const __m512i base = _mm512_setr_epi64(b, b + s, b + 2 * s, b + 3 * s, b + 4 * s, b + 5 * s,
                                           b + 6 * s, b + 7 * s);
    const __m512i lo = _mm512_maskz_cvtepi32_epi64(__mmask8(0xFF), _mm512_maskz_extracti64x4_epi64(__mmask8(0xFF), o, 0));
    const __m512i hi = _mm512_maskz_cvtepi32_epi64(__mmask8(0xFF), _mm512_maskz_extracti64x4_epi64(__mmask8(0xFF), o, 1));
    _mm512_storeu_si512(d, _mm512_add_epi64(lo, base));
    _mm512_storeu_si512(d + 8, _mm512_add_epi64(hi, _mm512_add_epi64(base, _mm512_set1_epi64(8 * s))));
  }
};

template <>
struct PoolOps<VecF64x8> {
  static __m512d even2(const double* p) {
    const __m512i idx = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
    return _mm512_permutex2var_pd(_mm512_loadu_pd(p), idx, _mm512_loadu_pd(p + 8));
  }
  static __m512d gather(const double* p, std::int64_t s) {
    const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(int(s)));
    return _mm512_mask_i32gather_pd(_mm512_setzero_pd(), __mmask8(0xFF), idx, p, 8);
  }
  static void dup2(__m512d v, __m512d& lo, __m512d& hi) {
    lo = _mm512_maskz_permutexvar_pd(__mmask8(0xFF), _mm512_setr_epi64(0, 0, 1, 1, 2, 2, 3, 3), v);
    hi = _mm512_maskz_permutexvar_pd(__mmask8(0xFF), _mm512_setr_epi64(4, 4, 5, 5, 6, 6, 7, 7), v);
  }
  static void store_index(std::int64_t* d, std::int64_t b, std::int64_t s, __m512d off) {
    const __m256i o = _mm512_maskz_cvttpd_epi32(__mmask8(0xFF), off);
    const __m512i base = _mm512_setr_epi64(b, b + s, b + 2 * s, b + 3 * s, b + 4 * s, b + 5 * s,
                                           b + 6 * s, b + 7 * s);
    _mm512_storeu_si512(d, _mm512_add_epi64(_mm512_maskz_cvtepi32_epi64(__mmask8(0xFF), o), base));
  }
};

}  // namespace

const PoolTable<float> pool_table_avx512_f32 = make_pool_table<VecF32x16>();
const PoolTable<double> pool_table_avx512_f64 = make_pool_table<VecF64x8>();

}  // namespace fastdl
