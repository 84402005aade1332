// conv_avx2.cpp: the direct convolution kernels (conv_simd.h) on AVX2+FMA, 8 floats / 4 doubles
// a vector. Compiled with the AVX2 flags; entered only when cpu_isa() reports avx2 or better.
#include "cpu/conv_simd.h"
#include "cpu/vec_avx2.h"

namespace fastdl {
const ConvDirectTable<float> conv_direct_avx2_f32 = make_conv_direct_table<VecF32x8>();
const ConvDirectTable<double> conv_direct_avx2_f64 = make_conv_direct_table<VecF64x4>();
}  // namespace fastdl
