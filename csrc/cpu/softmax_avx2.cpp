// softmax_avx2.cpp: the softmax / cross-entropy row primitives, 8 floats / 4 doubles a vector.
// Compiled with -mavx2 -mfma; entered only when cpu_isa() reports avx2 or better.
#include "cpu/softmax_simd.h"
#include "cpu/vec_avx2.h"

namespace fastdl {
const SoftmaxTable<float> softmax_table_avx2_f32 = make_softmax_table<VecF32x8>();
const SoftmaxTable<double> softmax_table_avx2_f64 = make_softmax_table<VecF64x4>();
}  // namespace fastdl
