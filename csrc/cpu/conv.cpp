// conv.cpp: 2-D convolution with stride, padding, dilation and groups: forward, backward-data,
// backward-weight.
//
// Shapes: x (N, C, H, W), w (K, C/G, R, S), b (K,), y (N, K, OH, OW), C-contiguous; G groups,
// filter k sees input channels [g*C/G, (g+1)*C/G) with g = k / (K/G).
//   forward          y[n,k,oh,ow] = b[k] + sum_{c,r,s} w[k,c,r,s] x[n,gC/G+c, oh*sh-ph+r*dh, ow*sw-pw+s*dw]
//   backward-data    dx = the adjoint of x -> y (every element written, zeros where no window reaches)
//   backward-weight  dw[k,c,r,s] = sum_{n,oh,ow} dy[n,k,oh,ow] x[n, gC/G+c, ...];  db[k] = sum dy[n,k]
// Gradients are written (=), never accumulated.
//
// Variants, in order of increasing complexity:
//   1. *_reference: plain loops; the oracle for tests and the fallback.
//   (the fast variants follow below)
#include "cpu/conv.h"

#include <algorithm>
#include <cstring>

#include "common/check.h"

namespace fastdl {

const char* conv_algo_name(ConvAlgo a) {
  switch (a) {
    case ConvAlgo::automatic: return "auto";
    case ConvAlgo::reference: return "reference";
    case ConvAlgo::gemm1x1: return "gemm1x1";
    case ConvAlgo::implicit_gemm: return "implicit_gemm";
    case ConvAlgo::direct: return "direct";
  }
  return "?";
}

ConvAlgo conv_algo_from_name(const std::string& name) {
  for (ConvAlgo a : {ConvAlgo::automatic, ConvAlgo::reference, ConvAlgo::gemm1x1,
                     ConvAlgo::implicit_gemm, ConvAlgo::direct})
    if (name == conv_algo_name(a)) return a;
  throw ValueError("variant: expected one of auto, reference, gemm1x1, implicit_gemm, direct, got '" +
                   name + "'");
}

// ---------------------------------------------------------------------------------------------
// Reference
// ---------------------------------------------------------------------------------------------

template <typename T>
static void conv2d_forward_reference(T* y, const T* x, const T* w, const T* b, const ConvShape& s) {
  const std::int64_t cg = s.c / s.groups, kg = s.k / s.groups;
  for (std::int64_t n = 0; n < s.n; ++n)
    for (std::int64_t k = 0; k < s.k; ++k) {
      const T* xg = x + (n * s.c + k / kg * cg) * s.h * s.w;
      const T* wk = w + k * cg * s.r * s.s;
      T* yk = y + (n * s.k + k) * s.oh * s.ow;
      for (std::int64_t oh = 0; oh < s.oh; ++oh)
        for (std::int64_t ow = 0; ow < s.ow; ++ow) {
          T acc = b ? b[k] : T(0);
          for (std::int64_t c = 0; c < cg; ++c)
            for (std::int64_t r = 0; r < s.r; ++r) {
              const std::int64_t ih = oh * s.stride_h - s.pad_h + r * s.dil_h;
              if (ih < 0 || ih >= s.h) continue;
              for (std::int64_t q = 0; q < s.s; ++q) {
                const std::int64_t iw = ow * s.stride_w - s.pad_w + q * s.dil_w;
                if (iw < 0 || iw >= s.w) continue;
                acc += wk[(c * s.r + r) * s.s + q] * xg[(c * s.h + ih) * s.w + iw];
              }
            }
          yk[oh * s.ow + ow] = acc;
        }
    }
}

template <typename T>
static void conv2d_backward_data_reference(T* dx, const T* dy, const T* w, const ConvShape& s) {
  const std::int64_t cg = s.c / s.groups, kg = s.k / s.groups;
  std::fill(dx, dx + s.n * s.c * s.h * s.w, T(0));
  for (std::int64_t n = 0; n < s.n; ++n)
    for (std::int64_t k = 0; k < s.k; ++k) {
      T* dxg = dx + (n * s.c + k / kg * cg) * s.h * s.w;
      const T* wk = w + k * cg * s.r * s.s;
      const T* dyk = dy + (n * s.k + k) * s.oh * s.ow;
      for (std::int64_t oh = 0; oh < s.oh; ++oh)
        for (std::int64_t ow = 0; ow < s.ow; ++ow) {
          const T g = dyk[oh * s.ow + ow];
          for (std::int64_t c = 0; c < cg; ++c)
            for (std::int64_t r = 0; r < s.r; ++r) {
              const std::int64_t ih = oh * s.stride_h - s.pad_h + r * s.dil_h;
              if (ih < 0 || ih >= s.h) continue;
              for (std::int64_t q = 0; q < s.s; ++q) {
                const std::int64_t iw = ow * s.stride_w - s.pad_w + q * s.dil_w;
                if (iw < 0 || iw >= s.w) continue;
                dxg[(c * s.h + ih) * s.w + iw] += g * wk[(c * s.r + r) * s.s + q];
              }
            }
        }
    }
}

template <typename T>
static void conv2d_backward_weight_reference(T* dw, T* db, const T* dy, const T* x,
                                             const ConvShape& s) {
  const std::int64_t cg = s.c / s.groups, kg = s.k / s.groups;
  for (std::int64_t k = 0; k < s.k; ++k) {
    T* dwk = dw + k * cg * s.r * s.s;
    for (std::int64_t c = 0; c < cg; ++c)
      for (std::int64_t r = 0; r < s.r; ++r)
        for (std::int64_t q = 0; q < s.s; ++q) {
          T acc = T(0);
          for (std::int64_t n = 0; n < s.n; ++n) {
            const T* xc = x + (n * s.c + k / kg * cg + c) * s.h * s.w;
            const T* dyk = dy + (n * s.k + k) * s.oh * s.ow;
            for (std::int64_t oh = 0; oh < s.oh; ++oh) {
              const std::int64_t ih = oh * s.stride_h - s.pad_h + r * s.dil_h;
              if (ih < 0 || ih >= s.h) continue;
              for (std::int64_t ow = 0; ow < s.ow; ++ow) {
                const std::int64_t iw = ow * s.stride_w - s.pad_w + q * s.dil_w;
                if (iw < 0 || iw >= s.w) continue;
                acc += dyk[oh * s.ow + ow] * xc[ih * s.w + iw];
              }
            }
          }
          dwk[(c * s.r + r) * s.s + q] = acc;
        }
    if (db) {
      T acc = T(0);
      for (std::int64_t n = 0; n < s.n; ++n) {
        const T* dyk = dy + (n * s.k + k) * s.oh * s.ow;
        for (std::int64_t i = 0; i < s.oh * s.ow; ++i) acc += dyk[i];
      }
      db[k] = acc;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Dispatch
// ---------------------------------------------------------------------------------------------

ConvAlgo conv_choose(ConvPass, const ConvShape&, int, Isa) { return ConvAlgo::reference; }

template <typename T>
void conv2d_forward(T* y, const T* x, const T* w, const T* b, const ConvShape& s, ConvAlgo,
                    Isa) {
  conv2d_forward_reference(y, x, w, b, s);
}

template <typename T>
void conv2d_backward_data(T* dx, const T* dy, const T* w, const ConvShape& s, ConvAlgo, Isa) {
  conv2d_backward_data_reference(dx, dy, w, s);
}

template <typename T>
void conv2d_backward_weight(T* dw, T* db, const T* dy, const T* x, const ConvShape& s, ConvAlgo,
                            Isa) {
  conv2d_backward_weight_reference(dw, db, dy, x, s);
}

#define FASTDL_INSTANTIATE(T)                                                                   \
  template void conv2d_forward<T>(T*, const T*, const T*, const T*, const ConvShape&, ConvAlgo, \
                                  Isa);                                                         \
  template void conv2d_backward_data<T>(T*, const T*, const T*, const ConvShape&, ConvAlgo, Isa); \
  template void conv2d_backward_weight<T>(T*, T*, const T*, const T*, const ConvShape&, ConvAlgo, \
                                          Isa);
FASTDL_INSTANTIATE(float)
FASTDL_INSTANTIATE(double)
#undef FASTDL_INSTANTIATE

}  // namespace fastdl
