// activation_avx2.cpp: relu/sigmoid/tanh forward and backward, 8 floats / 4 doubles a vector.
// Compiled with -mavx2 -mfma; entered only when cpu_isa() reports avx2 or better.
#include "cpu/activation_simd.h"
#include "cpu/vec_avx2.h"

namespace fastdl {
const ActivationTable<float> activation_table_avx2_f32 = make_activation_table<VecF32x8>();
const ActivationTable<double> activation_table_avx2_f64 = make_activation_table<VecF64x4>();
}  // namespace fastdl
