// norm.h: normalisation layers. batch_norm over the (N, C, L) view of an (N, C, *) input,
// forward (training: batch statistics; eval: running statistics) and backward; layer_norm over
// the rows of an (M, D) input, forward and backward; norm.cpp documents the semantics. The run primitives of NormTable (moments, affine map, gradient sums)
// are per contiguous run of elements, so a layer norm's rows can be built from them too.
#pragma once

#include <cstdint>

#include "common/cpu.h"

namespace fastdl {

// One ISA's run primitives (single-threaded, n contiguous elements).
template <typename T>
struct NormTable {
  // mean and M2 = sum (x - mean)^2, by two passes over the run (the second from L1).
  void (*moments)(double* mean, double* m2, const T* x, std::int64_t n);
  // y = (x - a) * b + c; stream: y by non-temporal stores (vec_stream.h)
  void (*affine)(T* y, const T* x, std::int64_t n, T a, T b, T c, bool stream);
  // sdy = sum dy, sdyx = sum dy * (x - a)
  void (*grad_sums)(double* sdy, double* sdyx, const T* dy, const T* x, std::int64_t n, T a);
  // dx = dy * k + c - (x - a) * b; stream: dx by non-temporal stores
  void (*grad_input)(T* dx, const T* dy, const T* x, std::int64_t n, T a, T k, T b, T c,
                     bool stream);
  // layer_norm's rows (w, b: per-element weight and bias, null for 1 and 0):
  // y = ((x - a) r + c) w + b
  void (*ln_affine)(T* y, const T* x, const T* w, const T* b, std::int64_t n, T a, T r, T c);
  // with g = dy w: sg = sum g, sgx = sum g (x - a) r
  void (*ln_grad_sums)(double* sg, double* sgx, const T* dy, const T* x, const T* w,
                       std::int64_t n, T a, T r);
  // xhat = (x - a) r: dx = g r + k - xhat q; dw += dy xhat; db += dy
  void (*ln_grad_input)(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w,
                        std::int64_t n, T a, T r, T k, T q);
};

template <typename T>
const NormTable<T>& norm_table(Isa isa);

extern const NormTable<float> norm_table_avx2_f32;
extern const NormTable<double> norm_table_avx2_f64;
extern const NormTable<float> norm_table_avx512_f32;
extern const NormTable<double> norm_table_avx512_f64;

// x, y, dy, dx (n, c, l) contiguous; per-channel vectors (c,). weight, bias, running_mean and
// running_var may be null (weight 1, bias 0, no running update); eval (training = false)
// requires the running statistics. save_mean / save_invstd receive the statistics used.
template <typename T>
void batch_norm_forward(T* y, T* save_mean, T* save_invstd, const T* x, const T* weight,
                        const T* bias, T* running_mean, T* running_var, std::int64_t n,
                        std::int64_t c, std::int64_t l, bool training, double momentum,
                        double eps, Isa isa = cpu_isa());
// dweight and dbias are always written (dweight = sum dy * xhat, dbias = sum dy).
template <typename T>
void batch_norm_backward(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* weight,
                         const T* save_mean, const T* save_invstd, std::int64_t n, std::int64_t c,
                         std::int64_t l, bool training, Isa isa = cpu_isa());

// x, y (m, d) contiguous; weight, bias (d,) or null (1 and 0); mean, rstd (m,) receive each row's
// mean and 1 / sqrt(biased var + eps).
template <typename T>
void layer_norm_forward(T* y, T* mean, T* rstd, const T* x, const T* weight, const T* bias,
                        std::int64_t m, std::int64_t d, double eps, Isa isa = cpu_isa());
// dx (m, d); dweight = sum_rows dy xhat and dbias = sum_rows dy (d,), always written, in an order
// that does not depend on the thread count.
template <typename T>
void layer_norm_backward(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* weight,
                         const T* mean, const T* rstd, std::int64_t m, std::int64_t d,
                         Isa isa = cpu_isa());

// Plain loops in double: the test oracle.
template <typename T>
void batch_norm_forward_reference(T* y, T* save_mean, T* save_invstd, const T* x,
                                  const T* weight, const T* bias, T* running_mean, T* running_var,
                                  std::int64_t n, std::int64_t c, std::int64_t l, bool training,
                                  double momentum, double eps);
template <typename T>
void batch_norm_backward_reference(T* dx, T* dweight, T* dbias, const T* dy, const T* x,
                                   const T* weight, const T* save_mean, const T* save_invstd,
                                   std::int64_t n, std::int64_t c, std::int64_t l, bool training);

template <typename T>
void layer_norm_forward_reference(T* y, T* mean, T* rstd, const T* x, const T* weight,
                                  const T* bias, std::int64_t m, std::int64_t d, double eps);
template <typename T>
void layer_norm_backward_reference(T* dx, T* dweight, T* dbias, const T* dy, const T* x,
                                   const T* weight, const T* mean, const T* rstd, std::int64_t m,
                                   std::int64_t d);

}  // namespace fastdl
