// conv_avx512.cpp: the direct convolution kernels (conv_simd.h) on AVX-512, 16 floats / 8
// doubles a vector. Compiled with the AVX-512 flags; entered only when cpu_isa() reports avx512.
#include "cpu/conv_simd.h"
#include "cpu/vec_avx512.h"

namespace fastdl {
const ConvDirectTable<float> conv_direct_avx512_f32 = make_conv_direct_table<VecF32x16>();
const ConvDirectTable<double> conv_direct_avx512_f64 = make_conv_direct_table<VecF64x8>();
}  // namespace fastdl
