// norm_avx2.cpp: the normalisation run primitives (norm_simd.h), 8 floats / 4 doubles a vector.
// Compiled with -mavx2 -mfma; entered only when cpu_isa() reports avx2 or better.
#include "cpu/norm_simd.h"
#include "cpu/vec_avx2.h"

namespace fastdl {
const NormTable<float> norm_table_avx2_f32 = make_norm_table<VecF32x8>();
const NormTable<double> norm_table_avx2_f64 = make_norm_table<VecF64x4>();
}  // namespace fastdl
