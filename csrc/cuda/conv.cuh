// conv.cuh: 2-D convolution on the GPU (float32, NCHW), forward and both backward passes.
//
//   x (N, C, H, W), w (K, C/groups, R, S), y / dy (N, K, OH, OW), b / db (K,)
//   OH = (H + 2 pad_h - dil_h (R - 1) - 1) / stride_h + 1, likewise OW
//
// Host-only declarations, included by the bindings (plain C++) and by conv.cu. Every pointer is
// C-contiguous device memory; launchers run asynchronously on `stream` and throw
// fastdl::ValueError for sizes the kernels cannot index, fastdl::RuntimeError for a failed
// launch. The bindings check every shape relation before calling.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace fastdl::cuda {

struct ConvShape {
  std::int64_t n;   // batch
  int c, h, w;      // input channels and plane (dx's plane in backward_data)
  int k, r, s;      // output channels and filter plane
  int oh, ow;       // output plane
  int stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  int groups;       // divides c and k
};

// y = conv(x, w) + b (b may be null).
void conv2d_forward(float* y, const float* x, const float* w, const float* b, const ConvShape& sh,
                    cudaStream_t stream);
// dx (N, C, H, W) = the transpose of the convolution applied to dy, every element written.
void conv2d_backward_data(float* dx, const float* dy, const float* w, const ConvShape& sh,
                          cudaStream_t stream);
// dw = sum over n, oh, ow of dy * the input window; db = dy summed per channel (db may be null).
void conv2d_backward_weight(float* dw, float* db, const float* dy, const float* x,
                            const ConvShape& sh, cudaStream_t stream);

// One thread per output element, plain loops: the test oracles of the three above.
void conv2d_forward_reference(float* y, const float* x, const float* w, const float* b,
                              const ConvShape& sh, cudaStream_t stream);
void conv2d_backward_data_reference(float* dx, const float* dy, const float* w,
                                    const ConvShape& sh, cudaStream_t stream);
void conv2d_backward_weight_reference(float* dw, float* db, const float* dy, const float* x,
                                      const ConvShape& sh, cudaStream_t stream);

}  // namespace fastdl::cuda
