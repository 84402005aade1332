// elementwise.h: element-wise kernels the autograd layer needs beyond NumPy's own arithmetic.
//
//   bias_add: y (outer, c, inner) = x (outer, c, inner) + b (c,) broadcast along the middle axis
//   (the channel axis of NCHW, or the feature axis of (N, C)). Its backward, db = dy summed over
//   outer and inner, is sum_rows (reduce.h) followed by a sum over inner.
#pragma once

#include <cstdint>

namespace fastdl {

template <typename T>
void bias_add(T* y, const T* x, const T* b, std::int64_t outer, std::int64_t c, std::int64_t inner);

}  // namespace fastdl
