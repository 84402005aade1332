// conv_avx512.cpp: the direct convolution kernels (conv_simd.h) on AVX-512, 16 floats / 8
// doubles a vector. Compiled with the AVX-512 flags; entered only when cpu_isa() reports avx512.
#include <immintrin.h>

#include "cpu/conv_simd.h"
#include "cpu/vec_avx512.h"

namespace fastdl {
namespace {
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
  for (; j < n; ++j) dst[j] = src[j * stride];
}
}  // namespace

const ConvDirectTable<float> conv_direct_avx512_f32 = make_conv_direct_table<VecF32x16>(&gather_f32);
const ConvDirectTable<double> conv_direct_avx512_f64 = make_conv_direct_table<VecF64x8>();
}  // namespace fastdl
