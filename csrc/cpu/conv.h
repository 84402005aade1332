// conv.h: 2-D convolution (cross-correlation, as PyTorch) with stride, padding, dilation and
// groups, forward and both backward passes. conv_transpose2d has no kernels of its own (its
// forward is conv2d_backward_data; see fastdl.ops.conv).
//
//   x (N, C, H, W), w (K, C/G, R, S), b (K,), y (N, K, OH, OW), all C-contiguous;
//   OH = (H + 2*pad_h - dil_h*(R-1) - 1) / stride_h + 1 (likewise OW).
//   y[n,k,oh,ow] = b[k] + sum_{c,r,s} w[k,c,r,s] * x[n, g*C/G + c, oh*sh - ph + r*dh, ow*sw - pw + s*dw]
//   with g = k / (K/G) the filter's group and out-of-range x read as 0.
#pragma once

#include <cstdint>
#include <string>

#include "common/cpu.h"

namespace fastdl {

struct ConvShape {
  std::int64_t n, c, h, w;     // input (for backward-data: dx, whose H, W may exceed the minimum)
  std::int64_t k, r, s;        // filters and their window
  std::int64_t oh, ow;         // output
  std::int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  std::int64_t groups;
};

// Which algorithm a pass runs (conv.cpp's header describes each). `automatic` lets the dispatch
// choose; the others force one (tests reach every path this way); gemm1x1 forced on a shape it
// cannot run (not 1x1, stride 1, unpadded) raises ValueError, and so does winograd (not 3x3,
// stride 1, dilation 1).
enum class ConvAlgo : int {
  automatic = 0, reference = 1, gemm1x1 = 2, implicit_gemm = 3, direct = 4, winograd = 5
};
enum class ConvPass : int { forward = 0, backward_data = 1, backward_weight = 2 };

const char* conv_algo_name(ConvAlgo a);
ConvAlgo conv_algo_from_name(const std::string& name);  // ValueError for an unknown name

// The algorithm `automatic` picks for this pass, shape and element size (4 or 8 bytes).
ConvAlgo conv_choose(ConvPass pass, const ConvShape& s, int elem_bytes, Isa isa = cpu_isa());

// y = conv(x, w) + b (b may be null).
template <typename T>
void conv2d_forward(T* y, const T* x, const T* w, const T* b, const ConvShape& s,
                    ConvAlgo algo = ConvAlgo::automatic, Isa isa = cpu_isa());

// dx = conv^T(dy, w), every element written (=).
template <typename T>
void conv2d_backward_data(T* dx, const T* dy, const T* w, const ConvShape& s,
                          ConvAlgo algo = ConvAlgo::automatic, Isa isa = cpu_isa());

// dw = sum_{n,oh,ow} dy * x-window (=); db = dy summed over N, OH, OW (=), unless db is null.
template <typename T>
void conv2d_backward_weight(T* dw, T* db, const T* dy, const T* x, const ConvShape& s,
                            ConvAlgo algo = ConvAlgo::automatic, Isa isa = cpu_isa());

}  // namespace fastdl
