// gemm_ukernel_avx512.cpp: AVX-512 GEMM micro-kernels (fp32 12x32, fp64 12x16) and packing.
// Compiled with -mavx512f/bw/dq/vl; entered only when cpu_isa() reports avx512.
//
// fp32 packing is vectorised for the two layouts every dense op produces (gemm_ukernel.h gives
// the packed format): a panel whose rows are contiguous along k (row-major A, or B = W^T in
// linear) is transposed 16 x 16 in registers (64 shuffles per 256 floats, ~0.15 cycle/float
// instead of ~1 for the scalar gather), and a panel contiguous along m/n (row-major B, or
// A = X^T in a weight gradient) is copied with masked vector loads and stores. Any other
// stride falls back to the portable pack_panels.
#include <immintrin.h>

#include <algorithm>

#include "cpu/gemm_ukernel_simd.h"
#include "cpu/vec_avx512.h"

namespace fastdl {
namespace {

// In-register transpose of the 16 x 16 block r[row] (16 floats each) into r[column]. The maskz_
// forms with all lanes set are the plain shuffles; GCC 12's plain ones pass an "undefined"
// register through and trip -Wmaybe-uninitialized (as VecF32x16::max in vec_avx512.h).
constexpr __mmask16 kAll16 = 0xFFFF;
constexpr __mmask8 kAll8 = 0xFF;
inline void transpose16x16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {  // pairs of rows interleaved within 128-bit lanes
    t[i] = _mm512_maskz_unpacklo_ps(kAll16, r[i], r[i + 1]);
    t[i + 1] = _mm512_maskz_unpackhi_ps(kAll16, r[i], r[i + 1]);
  }
  __m512 s[16];  // s[4g + q], 128-bit lane L: column 4L + q of rows 4g .. 4g + 3
  for (int g = 0; g < 16; g += 4) {
    const __m512d t0 = _mm512_castps_pd(t[g]), t1 = _mm512_castps_pd(t[g + 1]);
    const __m512d t2 = _mm512_castps_pd(t[g + 2]), t3 = _mm512_castps_pd(t[g + 3]);
    s[g] = _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(kAll8, t0, t2));
    s[g + 1] = _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(kAll8, t0, t2));
    s[g + 2] = _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(kAll8, t1, t3));
    s[g + 3] = _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(kAll8, t1, t3));
  }
  for (int q = 0; q < 4; ++q) {  // gather lane L of s[q], s[4 + q], s[8 + q], s[12 + q]
    const __m512 a = _mm512_maskz_shuffle_f32x4(kAll16, s[q], s[4 + q], 0x88);
    const __m512 b = _mm512_maskz_shuffle_f32x4(kAll16, s[q], s[4 + q], 0xDD);
    const __m512 c = _mm512_maskz_shuffle_f32x4(kAll16, s[8 + q], s[12 + q], 0x88);
    const __m512 d = _mm512_maskz_shuffle_f32x4(kAll16, s[8 + q], s[12 + q], 0xDD);
    r[q] = _mm512_maskz_shuffle_f32x4(kAll16, a, c, 0x88);
    r[4 + q] = _mm512_maskz_shuffle_f32x4(kAll16, b, d, 0x88);
    r[8 + q] = _mm512_maskz_shuffle_f32x4(kAll16, a, c, 0xDD);
    r[12 + q] = _mm512_maskz_shuffle_f32x4(kAll16, b, d, 0xDD);
  }
}

// pack_panels (gemm_ukernel.h) for fp32 with R = MR or NR, vectorised; rows past mn are zeros.
template <int R>
void pack_f32(float* __restrict dst, const float* __restrict src, std::int64_t s_mn,
              std::int64_t s_k, std::int64_t mn, std::int64_t kc) {
  if (s_mn != 1 && s_k != 1) return pack_panels<R>(dst, src, s_mn, s_k, mn, kc);
  constexpr int G = (R + 15) / 16;  // 16-lane groups per k-slice of a panel
  if (s_mn == 1) {
    // Each k-slice contiguous: copy it into a group of CH panels at once, so the source is read
    // in long contiguous runs (CH * R floats of one row per k) instead of walking down kc rows
    // R floats at a time once per panel (every row a new cache line, often a new page).
    constexpr int CH = R >= 128 ? 1 : 128 / R;
    for (std::int64_t q0 = 0; q0 < mn; q0 += CH * R, dst += CH * R * kc) {
      const int panels = int(std::min<std::int64_t>(CH, (mn - q0 + R - 1) / R));
      for (std::int64_t p = 0; p < kc; ++p) {
        const float* sp = src + q0 + p * s_k;
        for (int q = 0; q < panels; ++q) {
          const int rows = mn - q0 - q * R < R ? int(mn - q0 - q * R) : R;
#pragma GCC unroll 4
          for (int g = 0; g < G; ++g) {
            const int lo = 16 * g, valid = rows - lo;
            const __mmask16 ld = valid <= 0 ? 0 : valid >= 16 ? 0xFFFF : __mmask16((1u << valid) - 1);
            const __mmask16 st = __mmask16((1u << (R - lo < 16 ? R - lo : 16)) - 1);
            _mm512_mask_storeu_ps(dst + q * R * kc + p * R + lo, st,
                                  _mm512_maskz_loadu_ps(ld, sp + q * R + lo));
          }
        }
      }
    }
    return;
  }
  for (std::int64_t r0 = 0; r0 < mn; r0 += R, dst += R * kc) {
    const int rows = mn - r0 < R ? int(mn - r0) : R;
    const float* s = src + r0 * s_mn;
    for (int g = 0; g < G; ++g) {  // each row contiguous along k: 16 x 16 transposes
      const int lo = 16 * g, valid = rows - lo;
      const __mmask16 st = __mmask16((1u << (R - lo < 16 ? R - lo : 16)) - 1);
      for (std::int64_t p0 = 0; p0 < kc; p0 += 16) {
        const int kk = kc - p0 < 16 ? int(kc - p0) : 16;
        const __mmask16 ld = __mmask16((1u << kk) - 1);
        __m512 v[16];
        for (int i = 0; i < 16; ++i)
          v[i] = i < valid ? _mm512_maskz_loadu_ps(ld, s + (lo + i) * s_mn + p0) : _mm512_setzero_ps();
        transpose16x16(v);
        for (int j = 0; j < kk; ++j) _mm512_mask_storeu_ps(dst + (p0 + j) * R + lo, st, v[j]);
      }
    }
  }
}

}  // namespace

const GemmTable<float> gemm_table_avx512_f32 = make_simd_table<VecF32x16, gemm_config::Avx512F32>(
    &pack_f32<gemm_config::Avx512F32::MR>, &pack_f32<gemm_config::Avx512F32::NR>);
const GemmTable<double> gemm_table_avx512_f64 = make_simd_table<VecF64x8, gemm_config::Avx512F64>();

}  // namespace fastdl
