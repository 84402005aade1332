// pool.h: 2-D max / average / adaptive-average pooling over the H x W planes of an NCHW array,
// forward and backward (pool.cpp documents the semantics).
//
// A "plane" is one (n, c) image: x is (planes, H, W) and y (planes, OH, OW), contiguous. The
// window of output (oh, ow) starts at (oh * sh - ph, ow * sw - pw) and is kh x kw cells, dh / dw
// apart (max-pool dilation; 1 for avg); cells outside the image are padding (-inf for max; for
// avg the divisor mode says whether they count). OH / OW come from the caller (floor or ceil
// mode, bindings/args.cpp); every window holds at least one cell of the image.
#pragma once

#include <cstdint>

#include "common/cpu.h"

namespace fastdl {

// What avg_pool2d divides each window's sum by (PyTorch's count_include_pad, divisor_override).
enum class PoolDivisor : std::int8_t {
  padded,  // the window's cells inside the padded extent [-p, H + p) (count_include_pad=True;
           // kh * kw except where ceil mode runs a window past the padding)
  real,    // the window's cells inside the image (count_include_pad=False)
  fixed,   // Pool2dShape::divisor for every window (divisor_override)
};

struct Pool2dShape {
  std::int64_t planes;  // N * C
  std::int64_t h, w;    // input plane
  std::int64_t oh, ow;  // output plane
  std::int64_t kh, kw, sh, sw, ph, pw;  // window, stride, padding (all 1 / 1 / 0 for adaptive)
  std::int64_t dh = 1, dw = 1;          // dilation (max pool only)
  PoolDivisor divisor_mode = PoolDivisor::padded;  // avg pool only
  std::int64_t divisor = 0;                        // PoolDivisor::fixed's divisor (> 0)
};

// One ISA's per-plane kernels (single-threaded; the dispatch splits planes and output rows).
// Each pass has its default kernel (dilation 1, PoolDivisor::padded) and, beside it, the same
// kernel compiled for the PyTorch options (*_dilated: any dilation; *_modes: any divisor mode),
// so that the options cost the defaults nothing, not even a changed instruction schedule.
template <typename T>
struct PoolTable {
  // Output rows [oh0, oh1) of one plane; x, y and argmax point at the plane.
  void (*max_rows)(T* y, std::int64_t* argmax, const T* x, const Pool2dShape& s, std::int64_t oh0,
                   std::int64_t oh1);
  void (*max_rows_dilated)(T* y, std::int64_t* argmax, const T* x, const Pool2dShape& s,
                           std::int64_t oh0, std::int64_t oh1);
  void (*avg_rows)(T* y, const T* x, const Pool2dShape& s, std::int64_t oh0, std::int64_t oh1);
  void (*avg_rows_modes)(T* y, const T* x, const Pool2dShape& s, std::int64_t oh0,
                         std::int64_t oh1);
  // The whole input-gradient plane (written, =).
  void (*avg_plane_backward)(T* dx, const T* dy, const Pool2dShape& s, T* scratch);
  void (*avg_plane_backward_modes)(T* dx, const T* dy, const Pool2dShape& s, T* scratch);
  // dst[i] = src[i] (add = false) or dst[i] += src[i]: the row step of the scatter passes.
  void (*row_put)(T* dst, const T* src, std::int64_t n, bool add);
  // dst[i] += src[i], the row step of adaptive average pooling's vertical sums.
  void (*row_acc)(T* dst, const T* src, std::int64_t n);
  // dst[i] = src[i] by non-temporal stores (vec_stream.h): a cache-resident plane to its output.
  void (*row_stream)(T* dst, const T* src, std::int64_t n);
};

template <typename T>
const PoolTable<T>& pool_table(Isa isa);

extern const PoolTable<float> pool_table_avx2_f32;
extern const PoolTable<double> pool_table_avx2_f64;
extern const PoolTable<float> pool_table_avx512_f32;
extern const PoolTable<double> pool_table_avx512_f64;

// ---- fast kernels (ISA from cpu_isa() unless given), OpenMP over planes -----------------------
// max_pool2d_backward returns the flat index of the first out-of-range argmax entry (those are
// skipped), or -1 when every index was inside the H x W plane.
template <typename T>
void max_pool2d_forward(T* y, std::int64_t* argmax, const T* x, const Pool2dShape& s,
                        Isa isa = cpu_isa());
template <typename T>
std::int64_t max_pool2d_backward(T* dx, const T* dy, const std::int64_t* argmax,
                                 const Pool2dShape& s, Isa isa = cpu_isa());
template <typename T>
void avg_pool2d_forward(T* y, const T* x, const Pool2dShape& s, Isa isa = cpu_isa());
template <typename T>
void avg_pool2d_backward(T* dx, const T* dy, const Pool2dShape& s, Isa isa = cpu_isa());
template <typename T>
void adaptive_avg_pool2d_forward(T* y, const T* x, const Pool2dShape& s, Isa isa = cpu_isa());
template <typename T>
void adaptive_avg_pool2d_backward(T* dx, const T* dy, const Pool2dShape& s, Isa isa = cpu_isa());

// ---- plain-loop references: the test oracle ---------------------------------------------------
template <typename T>
void max_pool2d_forward_reference(T* y, std::int64_t* argmax, const T* x, const Pool2dShape& s);
template <typename T>
std::int64_t max_pool2d_backward_reference(T* dx, const T* dy, const std::int64_t* argmax,
                                           const Pool2dShape& s);
template <typename T>
void avg_pool2d_forward_reference(T* y, const T* x, const Pool2dShape& s);
template <typename T>
void avg_pool2d_backward_reference(T* dx, const T* dy, const Pool2dShape& s);
template <typename T>
void adaptive_avg_pool2d_forward_reference(T* y, const T* x, const Pool2dShape& s);
template <typename T>
void adaptive_avg_pool2d_backward_reference(T* dx, const T* dy, const Pool2dShape& s);

}  // namespace fastdl
