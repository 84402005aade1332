// norm_avx512.cpp: the normalisation run primitives (norm_simd.h), 16 floats / 8 doubles a
// vector. Compiled with the AVX-512 flags; entered only when cpu_isa() reports avx512.
#include "cpu/norm_simd.h"
#include "cpu/vec_avx512.h"

namespace fastdl {
const NormTable<float> norm_table_avx512_f32 = make_norm_table<VecF32x16>();
const NormTable<double> norm_table_avx512_f64 = make_norm_table<VecF64x8>();
}  // namespace fastdl
