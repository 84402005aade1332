// gemm_ukernel_avx2.cpp: AVX2+FMA GEMM micro-kernels (fp32 6x16, fp64 6x8) and packing.
// Compiled with -mavx2 -mfma; entered only when cpu_isa() reports avx2 or better. The vector
// operations are the shared traits of vec_avx2.h; packing is the portable pack_panels.
#include "cpu/gemm_ukernel_simd.h"
#include "cpu/vec_avx2.h"

namespace fastdl {

const GemmTable<float> gemm_table_avx2_f32 = make_simd_table<VecF32x8, gemm_config::Avx2F32>();
const GemmTable<double> gemm_table_avx2_f64 = make_simd_table<VecF64x4, gemm_config::Avx2F64>();

}  // namespace fastdl
