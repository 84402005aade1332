// dropout_avx512.cpp: dropout_kernel.h compiled with the AVX-512 flags (vpmullq for the hash).
#include "cpu/dropout_kernel.h"

namespace fastdl {
const DropoutTable<float> dropout_table_avx512_f32 = {&dropout_forward_range<float>};
const DropoutTable<double> dropout_table_avx512_f64 = {&dropout_forward_range<double>};
}  // namespace fastdl
