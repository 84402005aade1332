// softmax_avx512.cpp: the softmax / cross-entropy row primitives, 16 floats / 8 doubles a vector.
// Compiled with the AVX-512 flags; entered only when cpu_isa() reports avx512.
#include "cpu/softmax_simd.h"
#include "cpu/vec_avx512.h"

namespace fastdl {
const SoftmaxTable<float> softmax_table_avx512_f32 = make_softmax_table<VecF32x16>();
const SoftmaxTable<double> softmax_table_avx512_f64 = make_softmax_table<VecF64x8>();
}  // namespace fastdl
