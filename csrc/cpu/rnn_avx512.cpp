// rnn_avx512.cpp: the recurrent cells' point-wise rows (rnn_simd.h), 16 floats / 8 doubles a
// vector. Compiled with the AVX-512 flags; entered only when cpu_isa() reports avx512.
#include "cpu/rnn_simd.h"
#include "cpu/vec_avx512.h"

namespace fastdl {
const RnnTable<float> rnn_table_avx512_f32 = make_rnn_table<VecF32x16>();
const RnnTable<double> rnn_table_avx512_f64 = make_rnn_table<VecF64x8>();
}  // namespace fastdl
