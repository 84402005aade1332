// dropout_avx2.cpp: dropout_kernel.h compiled with -mavx2 -mfma.
#include "cpu/dropout_kernel.h"

namespace fastdl {
const DropoutTable<float> dropout_table_avx2_f32 = {&dropout_forward_range<float>};
const DropoutTable<double> dropout_table_avx2_f64 = {&dropout_forward_range<double>};
}  // namespace fastdl
