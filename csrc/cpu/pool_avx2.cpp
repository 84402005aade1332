// pool_avx2.cpp: the per-plane pooling kernels, 8 floats / 4 doubles a vector, and the
// shuffles, gathers and index conversions they need (PoolOps, pool_simd.h). Compiled with
// -mavx2 -mfma; entered only when cpu_isa() reports avx2 or better.
#include "cpu/vec_avx2.h"
#include "cpu/pool_simd.h"

namespace fastdl {
namespace {

template <>
struct PoolOps<VecF32x8> {
  static __m256 even2(const float* p) {
    // [a0 a2 b0 b2 | a4 a6 b4 b6], then the 64-bit pairs reordered 0 2 1 3.
    const __m256 t = _mm256_shuffle_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8), 0x88);
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), 0xD8));
  }
  static __m256 gather(const float* p, std::int64_t s) {
    const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(int(s)));
    // The mask form with a zero source: the plain one's undefined source trips
    // -Wmaybe-uninitialized.
    return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), p, idx,
                                    _mm256_castsi256_ps(_mm256_set1_epi32(-1)), 4);
  }
  static void dup2(__m256 v, __m256& lo, __m256& hi) {
    const __m256 a = _mm256_unpacklo_ps(v, v), b = _mm256_unpackhi_ps(v, v);
    lo = _mm256_permute2f128_ps(a, b, 0x20);
    hi = _mm256_permute2f128_ps(a, b, 0x31);
  }
  static void store_index(std::int64_t* d, std::int64_t b, std::int64_t s, __m256 off) {
    const __m256i o = _mm256_cvttps_epi32(off);
    const __m256i base = _mm256_setr_epi64x(b, b + s, b + 2 * s, b + 3 * s);
    const __m256i lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(o));
    const __m256i hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(o, 1));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d), _mm256_add_epi64(lo, base));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + 4),
                        _mm256_add_epi64(hi, _mm256_add_epi64(base, _mm256_set1_epi64x(4 * s))));
  }
};

template <>
struct PoolOps<VecF64x4> {
  static __m256d even2(const double* p) {
    const __m256d t = _mm256_unpacklo_pd(_mm256_loadu_pd(p), _mm256_loadu_pd(p + 4));  // a0 b0 a2 b2
    return _mm256_permute4x64_pd(t, 0xD8);
  }
  static __m256d gather(const double* p, std::int64_t s) {
    const __m128i idx = _mm_mullo_epi32(_mm_setr_epi32(0, 1, 2, 3), _mm_set1_epi32(int(s)));
    return _mm256_mask_i32gather_pd(_mm256_setzero_pd(), p, idx,
                                    _mm256_castsi256_pd(_mm256_set1_epi64x(-1)), 8);
  }
  static void dup2(__m256d v, __m256d& lo, __m256d& hi) {
    const __m256d a = _mm256_unpacklo_pd(v, v), b = _mm256_unpackhi_pd(v, v);
    lo = _mm256_permute2f128_pd(a, b, 0x20);
    hi = _mm256_permute2f128_pd(a, b, 0x31);
  }
  static void store_index(std::int64_t* d, std::int64_t b, std::int64_t s, __m256d off) {
    const __m256i base = _mm256_setr_epi64x(b, b + s, b + 2 * s, b + 3 * s);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d),
                        _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_cvttpd_epi32(off)), base));
  }
};

}  // namespace

const PoolTable<float> pool_table_avx2_f32 = make_pool_table<VecF32x8>();
const PoolTable<double> pool_table_avx2_f64 = make_pool_table<VecF64x4>();

}  // namespace fastdl
