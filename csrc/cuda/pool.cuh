// pool.cuh: 2-D max, average and adaptive average pooling on the GPU (float32, NCHW), forward
// and backward.
//
//   x / dx (N, C, H, W), y / dy (N, C, OH, OW), argmax int64 (N, C, OH, OW): the flat index
//   ih * W + iw of each window's max in its H x W plane. The N*C planes are independent, so
//   the launchers see `planes` = N*C.
//
// Host-only declarations, included by the bindings (plain C++) and by pool.cu. Pointers are
// C-contiguous device memory; launchers run asynchronously on `stream` (max_pool2d_backward
// synchronises, see below) and throw fastdl::ValueError / fastdl::RuntimeError.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace fastdl::cuda {

// What avg_pool2d divides each window's sum by (as the CPU's PoolDivisor, cpu/pool.h).
enum class PoolDivisor : int {
  padded,  // the window's cells inside the padded extent (count_include_pad=True)
  real,    // the window's cells inside the image (count_include_pad=False)
  fixed,   // PoolShape::divisor (divisor_override)
};

struct PoolShape {
  std::int64_t planes;  // N * C
  int h, w, oh, ow;     // OH / OW from the caller: floor or ceil mode (bindings/args.cpp)
  int kh, kw, sh, sw, ph, pw;  // unused by the adaptive pool
  int dh = 1, dw = 1;          // max pool's dilation: window cells dh / dw apart
  PoolDivisor divisor_mode = PoolDivisor::padded;  // avg pool only
  int divisor = 0;                                 // PoolDivisor::fixed's (> 0)
};

// y = max of each window (-inf padding; a NaN is the max), argmax its flat index ih * W + iw.
// Every window holds a cell of the image (the bindings check it).
void max_pool2d_forward(float* y, std::int64_t* argmax, const float* x, const PoolShape& s,
                        cudaStream_t stream);
// dx = 0, then dx[plane][argmax] += dy. Checks every argmax value on the device and throws
// ValueError naming the first one outside [0, H*W), so it synchronises the stream.
void max_pool2d_backward(float* dx, const float* dy, const std::int64_t* argmax,
                         const PoolShape& s, cudaStream_t stream);
// y = window sum / the divisor of divisor_mode (by default the window's cells inside the padded
// extent, count_include_pad); backward writes dx (=).
void avg_pool2d_forward(float* y, const float* x, const PoolShape& s, cudaStream_t stream);
void avg_pool2d_backward(float* dx, const float* dy, const PoolShape& s, cudaStream_t stream);
// Output cell i averages input rows [floor(i H / OH), ceil((i + 1) H / OH)), columns alike.
void adaptive_avg_pool2d_forward(float* y, const float* x, const PoolShape& s,
                                 cudaStream_t stream);
void adaptive_avg_pool2d_backward(float* dx, const float* dy, const PoolShape& s,
                                  cudaStream_t stream);

}  // namespace fastdl::cuda
