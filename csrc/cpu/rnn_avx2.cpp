// rnn_avx2.cpp: the recurrent cells' point-wise rows (rnn_simd.h), 8 floats / 4 doubles a
// vector. Compiled with -mavx2 -mfma; entered only when cpu_isa() reports avx2 or better.
#include "cpu/rnn_simd.h"
#include "cpu/vec_avx2.h"

namespace fastdl {
const RnnTable<float> rnn_table_avx2_f32 = make_rnn_table<VecF32x8>();
const RnnTable<double> rnn_table_avx2_f64 = make_rnn_table<VecF64x4>();
}  // namespace fastdl
