// conv_avx512.cpp: the direct convolution kernels (conv_simd.h) on AVX-512, 16 floats / 8
// doubles a vector, with permute-based float32 strided gathers (stride 2 and 4) and Winograd's
// tile gather and output interleave. Compiled with the AVX-512 flags; entered only when
// cpu_isa() reports avx512.
#include <immintrin.h>

#include <algorithm>

#include "cpu/conv_simd.h"
#include "cpu/vec_avx512.h"

namespace fastdl {
namespace {
// dst[j] = src[4 j] for j in [0, n) (stride-4 im2col runs): 16 outputs from 61
// inputs by two-register permutes (lanes 0-7 from the first two vectors, 8-15 from the next two),
// the tail masked so that nothing past src[4 (n - 1)] is read.
inline __mmask16 first_lanes(std::int64_t c) {
  c = std::clamp<std::int64_t>(c, 0, 16);
  return _cvtu32_mask16(c >= 16 ? 0xFFFFu : (1u << c) - 1u);
}

void gather4_f32(float* __restrict dst, const float* __restrict src, std::int64_t n) {
  alignas(64) static const int lo[16] = {0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0};
  alignas(64) static const int hi[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 8, 12, 16, 20, 24, 28};
  const __m512i ilo = _mm512_load_si512(lo), ihi = _mm512_load_si512(hi);
  std::int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const float* p = src + 4 * j;
    const __m512 ab = _mm512_permutex2var_ps(_mm512_loadu_ps(p), ilo, _mm512_loadu_ps(p + 16));
    const __m512 cd = _mm512_permutex2var_ps(_mm512_loadu_ps(p + 32), ihi,
                                             _mm512_maskz_loadu_ps(__mmask16(0x1FFF), p + 48));
    _mm512_storeu_ps(dst + j, _mm512_mask_blend_ps(__mmask16(0xFF00), ab, cd));
  }
  if (j < n) {  // a tile row is often shorter than 16 tiles
    const std::int64_t need = 4 * (n - j - 1) + 1;  // elements from p on
    const float* p = src + 4 * j;
    const __m512 a = _mm512_maskz_loadu_ps(first_lanes(need), p);
    const __m512 b = _mm512_maskz_loadu_ps(first_lanes(need - 16), p + 16);
    const __m512 c = _mm512_maskz_loadu_ps(first_lanes(need - 32), p + 32);
    const __m512 d = _mm512_maskz_loadu_ps(first_lanes(need - 48), p + 48);
    const __m512 ab = _mm512_permutex2var_ps(a, ilo, b), cd = _mm512_permutex2var_ps(c, ihi, d);
    _mm512_mask_storeu_ps(dst + j, first_lanes(n - j), _mm512_mask_blend_ps(__mmask16(0xFF00), ab, cd));
  }
}

// Stride 2 (the common strided layer) by a two-register permute: 16 outputs from 31 inputs, the
// second load masked to 15 lanes so nothing past the last needed element is read.
void gather_f32(float* __restrict dst, const float* __restrict src, std::int64_t n,
                std::int64_t stride) {
  std::int64_t j = 0;
  if (stride == 2) {
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    for (; j + 16 <= n; j += 16) {
      const __m512 lo = _mm512_loadu_ps(src + 2 * j);
      const __m512 hi = _mm512_maskz_loadu_ps(__mmask16(0x7FFF), src + 2 * j + 16);
      _mm512_storeu_ps(dst + j, _mm512_permutex2var_ps(lo, even, hi));
    }
  }
  if (stride == 4) return gather4_f32(dst, src, n);
  for (; j < n; ++j) dst[j] = src[j * stride];
}

inline __mmask16 lane_range(std::int64_t lo, std::int64_t hi) {  // lanes [lo, hi) of 16
  lo = std::clamp<std::int64_t>(lo, 0, 16);
  hi = std::clamp<std::int64_t>(hi, lo, 16);
  return _cvtu32_mask16(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}

// Winograd's tile gather (conv_simd.h ConvDirectTable::wino_gather) for 16 tiles of a row at a
// time: the row segment is loaded once as four vectors (masked: zeros for the padding, nothing
// read outside the plane's row), and again four columns on; each of the six taps is then two
// permutes and a blend. (Per tap through gather4_f32, the gather cost 12 of a C64 56x56 layer's
// 33 ms on one thread: ~70 instructions of bounds and calls per 14 values.)
void wino_gather_f32(float* __restrict q, std::int64_t q_step, const float* __restrict plane,
                     std::int64_t ih0, std::int64_t iw0, std::int64_t h, std::int64_t w,
                     std::int64_t n, int taps) {
  // every fourth element from phase j: lanes 0-7 from the first pair of vectors, 8-15 the second
  alignas(64) static const int lo[4][16] = {{0, 4, 8, 12, 16, 20, 24, 28},
                                            {1, 5, 9, 13, 17, 21, 25, 29},
                                            {2, 6, 10, 14, 18, 22, 26, 30},
                                            {3, 7, 11, 15, 19, 23, 27, 31}};
  alignas(64) static const int hi[4][16] = {{0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 8, 12, 16, 20, 24, 28},
                                            {0, 0, 0, 0, 0, 0, 0, 0, 1, 5, 9, 13, 17, 21, 25, 29},
                                            {0, 0, 0, 0, 0, 0, 0, 0, 2, 6, 10, 14, 18, 22, 26, 30},
                                            {0, 0, 0, 0, 0, 0, 0, 0, 3, 7, 11, 15, 19, 23, 27, 31}};
  __m512i ilo[4], ihi[4];
  for (int j = 0; j < 4; ++j) ilo[j] = _mm512_load_si512(lo[j]), ihi[j] = _mm512_load_si512(hi[j]);
  const auto phase = [&](const __m512* v, int j) {
    return _mm512_mask_blend_ps(__mmask16(0xFF00), _mm512_permutex2var_ps(v[0], ilo[j], v[1]),
                                _mm512_permutex2var_ps(v[2], ihi[j], v[3]));
  };
  for (int i = 0; i < taps; ++i) {
    float* qi = q + 6 * i * q_step;
    const std::int64_t r = ih0 + i;
    if (r < 0 || r >= h) {
      for (int j = 0; j < taps; ++j)
        for (std::int64_t l = 0; l < n; l += 16)
          _mm512_mask_storeu_ps(qi + j * q_step + l, first_lanes(n - l), _mm512_setzero_ps());
      continue;
    }
    const float* row = plane + r * w;
    for (std::int64_t l = 0; l < n; l += 16) {
      const __mmask16 out = first_lanes(n - l);
      const std::int64_t need = 4 * (std::min<std::int64_t>(n - l, 16) - 1) + taps;  // columns used
      const std::int64_t base = iw0 + 4 * l;  // column of the chunk's first tile
      __m512 a[4], b[4];  // the columns from base, and from base + 4 (taps 4 and 5)
      for (int k = 0; k < 4; ++k) {
        const std::int64_t e = base + 16 * k;
        a[k] = _mm512_maskz_loadu_ps(lane_range(-e, std::min(w - e, need - 16 * k)), row + e);
      }
      for (int j = 0; j < 4; ++j) _mm512_mask_storeu_ps(qi + j * q_step + l, out, phase(a, j));
      if (taps == 4) continue;
      for (int k = 0; k < 4; ++k) {
        const std::int64_t e = base + 4 + 16 * k;
        b[k] = _mm512_maskz_loadu_ps(lane_range(-e, std::min(w - e, need - 4 - 16 * k)), row + e);
      }
      _mm512_mask_storeu_ps(qi + 4 * q_step + l, out, phase(b, 0));
      _mm512_mask_storeu_ps(qi + 5 * q_step + l, out, phase(b, 1));
    }
  }
}

// Four rows of tiles' values interleaved into one output row (Winograd's output, conv.cpp):
// 16 tiles at a time, two levels of two-register permutes, stores masked at width.
void interleave4_f32(float* __restrict dst, const float* __restrict src, std::int64_t step,
                     std::int64_t n, std::int64_t width) {
  // level 1: (p0, p1) -> pairs p0[l], p1[l] for l in 0-7 (lo) or 8-15 (hi)
  alignas(64) static const int pair_lo[16] = {0, 16, 1, 17, 2, 18, 3, 19,
                                              4, 20, 5, 21, 6, 22, 7, 23};
  alignas(64) static const int pair_hi[16] = {8,  24, 9,  25, 10, 26, 11, 27,
                                              12, 28, 13, 29, 14, 30, 15, 31};
  // level 2: (q01, q23) -> q01[2l], q01[2l+1], q23[2l], q23[2l+1] for l in 0-3 (lo) or 4-7 (hi)
  alignas(64) static const int quad_lo[16] = {0, 1, 16, 17, 2, 3, 18, 19,
                                              4, 5, 20, 21, 6, 7, 22, 23};
  alignas(64) static const int quad_hi[16] = {8,  9,  24, 25, 10, 11, 26, 27,
                                              12, 13, 28, 29, 14, 15, 30, 31};
  const __m512i plo = _mm512_load_si512(pair_lo), phi = _mm512_load_si512(pair_hi);
  const __m512i qlo = _mm512_load_si512(quad_lo), qhi = _mm512_load_si512(quad_hi);
  const std::int64_t lim = std::min(4 * n, width);
  for (std::int64_t l = 0; 4 * l < lim; l += 16) {
    const __mmask16 m = first_lanes(n - l);
    const __m512 p0 = _mm512_maskz_loadu_ps(m, src + l);
    const __m512 p1 = _mm512_maskz_loadu_ps(m, src + step + l);
    const __m512 p2 = _mm512_maskz_loadu_ps(m, src + 2 * step + l);
    const __m512 p3 = _mm512_maskz_loadu_ps(m, src + 3 * step + l);
    const __m512 q01lo = _mm512_permutex2var_ps(p0, plo, p1);
    const __m512 q01hi = _mm512_permutex2var_ps(p0, phi, p1);
    const __m512 q23lo = _mm512_permutex2var_ps(p2, plo, p3);
    const __m512 q23hi = _mm512_permutex2var_ps(p2, phi, p3);
    const __m512 out[4] = {
        _mm512_permutex2var_ps(q01lo, qlo, q23lo), _mm512_permutex2var_ps(q01lo, qhi, q23lo),
        _mm512_permutex2var_ps(q01hi, qlo, q23hi), _mm512_permutex2var_ps(q01hi, qhi, q23hi)};
    for (int v = 0; v < 4; ++v) {
      const std::int64_t left = lim - 4 * l - 16 * v;
      if (left <= 0) break;
      _mm512_mask_storeu_ps(dst + 4 * l + 16 * v, first_lanes(left), out[v]);
    }
  }
}
}  // namespace

const ConvDirectTable<float> conv_direct_avx512_f32 =
    make_conv_direct_table<VecF32x16>(&gather_f32, &interleave4_f32,
                                      &wino_gather_f32);
const ConvDirectTable<double> conv_direct_avx512_f64 = make_conv_direct_table<VecF64x8>();
}  // namespace fastdl
