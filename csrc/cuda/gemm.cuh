// gemm.cuh: the CUDA matrix product under linear and matmul (float32, batched, strided).
//
//   C[z] (m x n, row stride ldc, unit column stride) = act(alpha * A[z] (m x k) * B[z] (k x n)
//                                                         + beta * C[z] + bias),  z < batch
//
// A and B are read through arbitrary element strides (between rows, between columns, between
// batches), so a transposed view is swapped strides and a 2-D operand shared by the whole batch
// has batch stride 0. beta == 0 means C is not read (it may hold garbage or NaN). The bias is per
// row (length m) or per column (length n); relu is max(0, x) applied last (NaN passes through).
//
// Host-only declarations: included by the bindings (plain C++) and by gemm.cu. Launchers run
// asynchronously on `stream` and throw fastdl::ValueError for sizes the kernels cannot index,
// fastdl::RuntimeError for a failed launch.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace fastdl::cuda {

// Element (i, j) of batch z is ptr[z * batch_stride + i * rs + j * cs] (strides in elements).
struct StridedMatrix {
  const float* ptr;
  std::int64_t batch_stride;  // 0: the same matrix for every batch
  std::int64_t rs;            // between rows
  std::int64_t cs;            // between columns
};

struct GemmEpilogue {
  float alpha = 1.0f;
  float beta = 0.0f;                // 0: C is not read
  const float* bias_row = nullptr;  // length m, or null
  const float* bias_col = nullptr;  // length n, or null
  bool relu = false;
};

// The fast path: tiled, double-buffered SGEMM; with tf32 = true the tensor-core (TF32 inputs,
// fp32 accumulation) variant of the same tiling. sc is C's batch stride, ldc its row stride.
void gemm(float* c, std::int64_t sc, std::int64_t ldc, const StridedMatrix& a,
          const StridedMatrix& b, std::int64_t batch, std::int64_t m, std::int64_t n,
          std::int64_t k, const GemmEpilogue& e, bool tf32, cudaStream_t stream);

// One thread per element of C: the test oracle for gemm.
void gemm_reference(float* c, std::int64_t sc, std::int64_t ldc, const StridedMatrix& a,
                    const StridedMatrix& b, std::int64_t batch, std::int64_t m, std::int64_t n,
                    std::int64_t k, const GemmEpilogue& e, cudaStream_t stream);

}  // namespace fastdl::cuda
