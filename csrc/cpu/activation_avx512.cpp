// activation_avx512.cpp: relu/sigmoid/tanh forward and backward, 16 floats / 8 doubles a vector.
// Compiled with the AVX-512 flags; entered only when cpu_isa() reports avx512.
#include "cpu/activation_simd.h"
#include "cpu/vec_avx512.h"

namespace fastdl {
const ActivationTable<float> activation_table_avx512_f32 = make_activation_table<VecF32x16>();
const ActivationTable<double> activation_table_avx512_f64 = make_activation_table<VecF64x8>();
}  // namespace fastdl
