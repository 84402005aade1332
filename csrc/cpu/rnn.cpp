// rnn.cpp: the tanh RNN cell, the LSTM cell and the LSTM over a whole sequence, forward and
// backward (backpropagation through time).
//
// Shapes: N batch, I input features, H hidden units, T steps. x (N, I), h / c (N, H);
// sequences x (T, N, I), y (T, N, H) = h_1..h_T, cells (T, N, H) = c_1..c_T. Weights as PyTorch:
// RNN w_ih (H, I), w_hh (H, H), biases (H,); LSTM w_ih (4H, I), w_hh (4H, H), biases (4H,), the
// gate rows ordered i, f, g, o. gates (N, 4H) (sequence: (T, N, 4H)) holds the ACTIVATED gates in
// column blocks i | f | g | o.
//   RNN   h_new = tanh(x w_ih^T + b_ih + h w_hh^T + b_hh)
//         da = dh_new (1 - h_new^2); dx = da w_ih; dh = da w_hh; dw_ih = da^T x;
//         dw_hh = da^T h; db = sum_n da (the gradient of b_ih and of b_hh alike)
//   LSTM  z = x w_ih^T + h w_hh^T + b_ih + b_hh; i, f, o = sigmoid(z_i, z_f, z_o), g = tanh(z_g)
//         c_new = f c + i g; h_new = o tanh(c_new)
//         tc = tanh(c_new); do = dh tc; dct = dc_new + dh o (1 - tc^2); dc = dct f;
//         dz = [dct g i(1-i), dct c f(1-f), dct i (1-g^2), do o(1-o)];
//         dx = dz w_ih; dh = dz w_hh; dw_ih = dz^T x; dw_hh = dz^T h; db = sum_n dz
//   sequence: the cell T times, h_0 = h0, c_0 = c0; BPTT runs the cell's backward from t = T
//         down to 1 with dh_t = dy_t + dz_{t+1} w_hh (dh_n at t = T) and dc_t from step t + 1
//         (dc_n at t = T); the weight gradients are then ONE product each over all T N rows:
//         dw_ih = dz^T x, dw_hh = dz[1:]^T y[:-1] + dz[0]^T h0, dx = dz w_ih, db = sum dz.
// Gradients are written (=). Incoming gradients that are null count as zero.
//
// Variants, in order of increasing complexity:
//   1. *_reference: plain loops in double, the oracle for tests (the sequence's oracle is the
//      NumPy one in tests/reference.py).
//   2. the fast kernels: every matrix product through the packed GEMM (cpu/gemm.h), the
//      point-wise rows of rnn_simd.h (generic / AVX2 / AVX-512 over one vector type).
// The sequence projects the inputs of all T steps as one GEMM ((T N) x I times I x 4H, both
// biases folded in), then runs one recurrent GEMM per step accumulated onto that step's rows.
// Threads: OpenMP inside the GEMM only (no nested regions); every split is a function of the
// shapes and the thread count, so results are bitwise repeatable at a fixed thread count.
#include "cpu/rnn.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <vector>

#include "common/memory.h"
#include "cpu/gemm.h"
#include "cpu/rnn_simd.h"
#include "cpu/vec_generic.h"

namespace fastdl {

// ---------------------------------------------------------------------------------------------
// Reference
// ---------------------------------------------------------------------------------------------

namespace {
double ref_sigmoid(double v) { return 1 / (1 + std::exp(-v)); }

// out (rows, cols) = a (rows, k) b^T, b (cols, k), in double, plus optional biases (cols,).
template <typename T>
void ref_linear(double* out, const T* a, const T* b, std::int64_t rows, std::int64_t cols,
                std::int64_t k, const T* b1, const T* b2, bool accumulate) {
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t j = 0; j < cols; ++j) {
      double s = accumulate ? out[r * cols + j] : 0.0;
      for (std::int64_t q = 0; q < k; ++q) s += double(a[r * k + q]) * double(b[j * k + q]);
      if (b1) s += double(b1[j]);
      if (b2) s += double(b2[j]);
      out[r * cols + j] = s;
    }
}

// From da (n, g) in double: dx = da w_ih (n, in), dh = da w_hh (n, hid), dw_ih = da^T x,
// dw_hh = da^T h, db = sum_n da.
template <typename T>
void ref_grads(T* dx, T* dh, T* dw_ih, T* dw_hh, T* db, const double* da, const T* x, const T* h,
               const T* w_ih, const T* w_hh, std::int64_t n, std::int64_t in, std::int64_t hid,
               std::int64_t g) {
  for (std::int64_t r = 0; r < n; ++r) {
    for (std::int64_t q = 0; q < in; ++q) {
      double s = 0;
      for (std::int64_t j = 0; j < g; ++j) s += da[r * g + j] * double(w_ih[j * in + q]);
      dx[r * in + q] = T(s);
    }
    for (std::int64_t q = 0; q < hid; ++q) {
      double s = 0;
      for (std::int64_t j = 0; j < g; ++j) s += da[r * g + j] * double(w_hh[j * hid + q]);
      dh[r * hid + q] = T(s);
    }
  }
  for (std::int64_t j = 0; j < g; ++j) {
    for (std::int64_t q = 0; q < in; ++q) {
      double s = 0;
      for (std::int64_t r = 0; r < n; ++r) s += da[r * g + j] * double(x[r * in + q]);
      dw_ih[j * in + q] = T(s);
    }
    for (std::int64_t q = 0; q < hid; ++q) {
      double s = 0;
      for (std::int64_t r = 0; r < n; ++r) s += da[r * g + j] * double(h[r * hid + q]);
      dw_hh[j * hid + q] = T(s);
    }
    double s = 0;
    for (std::int64_t r = 0; r < n; ++r) s += da[r * g + j];
    db[j] = T(s);
  }
}
}  // namespace

template <typename T>
void rnn_cell_forward_reference(T* h_new, const T* x, const T* h, const T* w_ih, const T* w_hh,
                                const T* b_ih, const T* b_hh, std::int64_t n, std::int64_t in,
                                std::int64_t hid) {
  std::vector<double> z(std::size_t(n * hid));
  ref_linear(z.data(), x, w_ih, n, hid, in, b_ih, b_hh, false);
  ref_linear(z.data(), h, w_hh, n, hid, hid, static_cast<const T*>(nullptr),
             static_cast<const T*>(nullptr), true);
  for (std::int64_t k = 0; k < n * hid; ++k) h_new[k] = T(std::tanh(z[std::size_t(k)]));
}

template <typename T>
void rnn_cell_backward_reference(T* dx, T* dh, T* dw_ih, T* dw_hh, T* db, const T* dh_new,
                                 const T* x, const T* h, const T* w_ih, const T* w_hh,
                                 const T* h_new, std::int64_t n, std::int64_t in,
                                 std::int64_t hid) {
  std::vector<double> da(std::size_t(n * hid));
  for (std::int64_t k = 0; k < n * hid; ++k) {
    const double y = double(h_new[k]);
    da[std::size_t(k)] = double(dh_new[k]) * (1 - y * y);
  }
  ref_grads(dx, dh, dw_ih, dw_hh, db, da.data(), x, h, w_ih, w_hh, n, in, hid, hid);
}

template <typename T>
void lstm_cell_forward_reference(T* h_new, T* c_new, T* gates, const T* x, const T* h,
                                 const T* c, const T* w_ih, const T* w_hh, const T* b_ih,
                                 const T* b_hh, std::int64_t n, std::int64_t in,
                                 std::int64_t hid) {
  const std::int64_t g4 = 4 * hid;
  std::vector<double> z(std::size_t(n * g4));
  ref_linear(z.data(), x, w_ih, n, g4, in, b_ih, b_hh, false);
  ref_linear(z.data(), h, w_hh, n, g4, hid, static_cast<const T*>(nullptr),
             static_cast<const T*>(nullptr), true);
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t u = 0; u < hid; ++u) {
      const double* zr = z.data() + r * g4;
      const double i = ref_sigmoid(zr[u]), f = ref_sigmoid(zr[hid + u]),
                   g = std::tanh(zr[2 * hid + u]), o = ref_sigmoid(zr[3 * hid + u]);
      const double cn = f * double(c[r * hid + u]) + i * g;
      T* gr = gates + r * g4;
      gr[u] = T(i), gr[hid + u] = T(f), gr[2 * hid + u] = T(g), gr[3 * hid + u] = T(o);
      c_new[r * hid + u] = T(cn);
      h_new[r * hid + u] = T(o * std::tanh(cn));
    }
}

template <typename T>
void lstm_cell_backward_reference(T* dx, T* dh, T* dc, T* dw_ih, T* dw_hh, T* db,
                                  const T* dh_new, const T* dc_new, const T* x, const T* h,
                                  const T* c, const T* w_ih, const T* w_hh, const T* gates,
                                  const T* c_new, std::int64_t n, std::int64_t in,
                                  std::int64_t hid) {
  const std::int64_t g4 = 4 * hid;
  std::vector<double> dz(std::size_t(n * g4));
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t u = 0; u < hid; ++u) {
      const std::int64_t k = r * hid + u;
      const T* gr = gates + r * g4;
      const double i = double(gr[u]), f = double(gr[hid + u]), g = double(gr[2 * hid + u]),
                   o = double(gr[3 * hid + u]);
      const double tc = std::tanh(double(c_new[k]));
      const double dhv = dh_new ? double(dh_new[k]) : 0.0, dcv = dc_new ? double(dc_new[k]) : 0.0;
      const double dct = dcv + dhv * o * (1 - tc * tc);
      double* dzr = dz.data() + r * g4;
      dzr[u] = dct * g * i * (1 - i);
      dzr[hid + u] = dct * double(c[k]) * f * (1 - f);
      dzr[2 * hid + u] = dct * i * (1 - g * g);
      dzr[3 * hid + u] = dhv * tc * o * (1 - o);
      dc[k] = T(dct * f);
    }
  ref_grads(dx, dh, dw_ih, dw_hh, db, dz.data(), x, h, w_ih, w_hh, n, in, hid, g4);
}

// ---------------------------------------------------------------------------------------------
// Fast kernels
// ---------------------------------------------------------------------------------------------

const RnnTable<float> rnn_table_generic_f32 = make_rnn_table<VecScalar<float>>();
const RnnTable<double> rnn_table_generic_f64 = make_rnn_table<VecScalar<double>>();

template <>
const RnnTable<float>& rnn_table<float>(Isa isa) {
  return pick_isa(isa, rnn_table_generic_f32, rnn_table_avx2_f32, rnn_table_avx512_f32);
}
template <>
const RnnTable<double>& rnn_table<double>(Isa isa) {
  return pick_isa(isa, rnn_table_generic_f64, rnn_table_avx2_f64, rnn_table_avx512_f64);
}

namespace {

// Per-thread scratch (the z / dz blocks and the folded bias), grown on demand and kept, so
// steady-state calls touch no fresh pages.
thread_local ScratchBuffer tls_rnn_work, tls_rnn_bias;

template <typename T>
T* scratch(ScratchBuffer& buf, std::int64_t elems) {
  T* p = static_cast<T*>(buf.get(sizeof(T) * std::size_t(std::max<std::int64_t>(elems, 1))));
  if (!p) throw std::bad_alloc();
  return p;
}

// The three product shapes of the family, every operand row-major (C-contiguous):
// C (m, n) = A (m, k) B^T with B (n, k)  -- a linear layer
template <typename T>
void mm_nt(T* c, std::int64_t ldc, const T* a, std::int64_t lda, const T* b, std::int64_t ldb,
           std::int64_t m, std::int64_t n, std::int64_t k, const GemmParams<T>& p, Isa isa) {
  gemm(c, ldc, a, lda, 1, b, 1, ldb, m, n, k, p, isa);
}
// C (m, n) = A (m, k) B with B (k, n)  -- a gradient of the input
template <typename T>
void mm_nn(T* c, std::int64_t ldc, const T* a, std::int64_t lda, const T* b, std::int64_t ldb,
           std::int64_t m, std::int64_t n, std::int64_t k, const GemmParams<T>& p, Isa isa) {
  gemm(c, ldc, a, lda, 1, b, ldb, 1, m, n, k, p, isa);
}
// C (m, n) = A^T B with A (k, m), B (k, n)  -- a gradient of the weights
template <typename T>
void mm_tn(T* c, std::int64_t ldc, const T* a, std::int64_t lda, const T* b, std::int64_t ldb,
           std::int64_t m, std::int64_t n, std::int64_t k, const GemmParams<T>& p, Isa isa) {
  gemm(c, ldc, a, 1, lda, b, ldb, 1, m, n, k, p, isa);
}

template <typename T>
GemmParams<T> with_bias(const T* bias, T beta = T(0)) {
  GemmParams<T> p;
  p.bias = bias;
  p.bias_axis = BiasAxis::col;
  p.beta = beta;
  return p;
}

// db (cols,) = the sum of the rows of a (rows, cols), in a fixed order.
template <typename T>
void column_sums(T* db, const T* a, std::int64_t rows, std::int64_t cols) {
  std::fill(db, db + cols, T(0));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t j = 0; j < cols; ++j) db[j] += a[r * cols + j];
}

// b_ih + b_hh (either may be null) as one bias vector, or null when both are.
template <typename T>
const T* fold_biases(const T* b_ih, const T* b_hh, std::int64_t len) {
  if (!b_ih || !b_hh) return b_ih ? b_ih : b_hh;
  T* b = scratch<T>(tls_rnn_bias, len);
  for (std::int64_t j = 0; j < len; ++j) b[j] = b_ih[j] + b_hh[j];
  return b;
}

}  // namespace

template <typename T>
void rnn_cell_forward(T* h_new, const T* x, const T* h, const T* w_ih, const T* w_hh,
                      const T* b_ih, const T* b_hh, std::int64_t n, std::int64_t in,
                      std::int64_t hid, Isa isa) {
  mm_nt(h_new, hid, x, in, w_ih, in, n, hid, in, with_bias(b_ih), isa);
  mm_nt(h_new, hid, h, hid, w_hh, hid, n, hid, hid, with_bias(b_hh, T(1)), isa);
  rnn_table<T>(isa).tanh_inplace(h_new, n * hid);
}

template <typename T>
void rnn_cell_backward(T* dx, T* dh, T* dw_ih, T* dw_hh, T* db, const T* dh_new, const T* x,
                       const T* h, const T* w_ih, const T* w_hh, const T* h_new, std::int64_t n,
                       std::int64_t in, std::int64_t hid, Isa isa) {
  T* da = scratch<T>(tls_rnn_work, n * hid);
  rnn_table<T>(isa).tanh_grad(da, dh_new, h_new, n * hid);
  const GemmParams<T> p;
  mm_nn(dx, in, da, hid, w_ih, in, n, in, hid, p, isa);
  mm_nn(dh, hid, da, hid, w_hh, hid, n, hid, hid, p, isa);
  mm_tn(dw_ih, in, da, hid, x, in, hid, in, n, p, isa);
  mm_tn(dw_hh, hid, da, hid, h, hid, hid, hid, n, p, isa);
  column_sums(db, da, n, hid);
}

template <typename T>
void lstm_cell_forward(T* h_new, T* c_new, T* gates, const T* x, const T* h, const T* c,
                       const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh,
                       std::int64_t n, std::int64_t in, std::int64_t hid, Isa isa) {
  const std::int64_t g4 = 4 * hid;
  const T* bias = fold_biases(b_ih, b_hh, g4);
  mm_nt(gates, g4, x, in, w_ih, in, n, g4, in, with_bias(bias), isa);
  mm_nt(gates, g4, h, hid, w_hh, hid, n, g4, hid, with_bias<T>(nullptr, T(1)), isa);
  const RnnTable<T>& t = rnn_table<T>(isa);
  for (std::int64_t r = 0; r < n; ++r)
    t.lstm_row(gates + r * g4, c_new + r * hid, h_new + r * hid, gates + r * g4, c + r * hid, hid);
}

template <typename T>
void lstm_cell_backward(T* dx, T* dh, T* dc, T* dw_ih, T* dw_hh, T* db, const T* dh_new,
                        const T* dc_new, const T* x, const T* h, const T* c, const T* w_ih,
                        const T* w_hh, const T* gates, const T* c_new, std::int64_t n,
                        std::int64_t in, std::int64_t hid, Isa isa) {
  const std::int64_t g4 = 4 * hid;
  T* dz = scratch<T>(tls_rnn_work, n * g4);
  const RnnTable<T>& t = rnn_table<T>(isa);
  for (std::int64_t r = 0; r < n; ++r)
    t.lstm_row_backward(dz + r * g4, dc + r * hid, dh_new ? dh_new + r * hid : nullptr,
                        dc_new ? dc_new + r * hid : nullptr, gates + r * g4, c + r * hid,
                        c_new + r * hid, hid);
  const GemmParams<T> p;
  mm_nn(dx, in, dz, g4, w_ih, in, n, in, g4, p, isa);
  mm_nn(dh, hid, dz, g4, w_hh, hid, n, hid, g4, p, isa);
  mm_tn(dw_ih, in, dz, g4, x, in, g4, in, n, p, isa);
  mm_tn(dw_hh, hid, dz, g4, h, hid, g4, hid, n, p, isa);
  column_sums(db, dz, n, g4);
}

template <typename T>
void lstm_forward(T* y, T* h_n, T* c_n, T* gates, T* cells, const T* x, const T* h0,
                  const T* c0, const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh,
                  std::int64_t t, std::int64_t n, std::int64_t in, std::int64_t hid, Isa isa) {
  const std::int64_t g4 = 4 * hid, nh = n * hid;
  const RnnTable<T>& tab = rnn_table<T>(isa);
  std::copy(h0, h0 + nh, h_n);
  std::copy(c0, c0 + nh, c_n);
  if (t == 0) return;
  const T* bias = fold_biases(b_ih, b_hh, g4);
  const bool train = gates != nullptr;
  // Inference keeps no gates: the input projection runs over chunks of steps whose z block is
  // at most kWork elements (at least one step), and the cell state lives in c_n.
  constexpr std::int64_t kWork = std::int64_t(1) << 20;
  const std::int64_t chunk =
      train ? t : std::clamp<std::int64_t>(kWork / std::max<std::int64_t>(n * g4, 1), 1, t);
  T* z = train ? gates : scratch<T>(tls_rnn_work, chunk * n * g4);
  for (std::int64_t s0 = 0; s0 < t; s0 += chunk) {
    const std::int64_t steps = std::min(chunk, t - s0);
    T* zc = train ? gates + s0 * n * g4 : z;
    mm_nt(zc, g4, x + s0 * n * in, in, w_ih, in, steps * n, g4, in, with_bias(bias), isa);
    for (std::int64_t s = s0; s < s0 + steps; ++s) {
      T* zs = zc + (s - s0) * n * g4;
      const T* hp = s ? y + (s - 1) * nh : h0;
      const T* cp = train ? (s ? cells + (s - 1) * nh : c0) : c_n;
      T* cs = train ? cells + s * nh : c_n;
      mm_nt(zs, g4, hp, hid, w_hh, hid, n, g4, hid, with_bias<T>(nullptr, T(1)), isa);
      for (std::int64_t r = 0; r < n; ++r)
        tab.lstm_row(zs + r * g4, cs + r * hid, y + s * nh + r * hid, zs + r * g4, cp + r * hid,
                     hid);
    }
  }
  std::copy(y + (t - 1) * nh, y + t * nh, h_n);
  if (train) std::copy(cells + (t - 1) * nh, cells + t * nh, c_n);
}

template <typename T>
void lstm_backward(T* dx, T* dh0, T* dc0, T* dw_ih, T* dw_hh, T* db, const T* dy,
                   const T* dh_n, const T* dc_n, const T* x, const T* h0, const T* c0,
                   const T* w_ih, const T* w_hh, const T* y, const T* gates, const T* cells,
                   std::int64_t t, std::int64_t n, std::int64_t in, std::int64_t hid, Isa isa) {
  const std::int64_t g4 = 4 * hid, nh = n * hid;
  const RnnTable<T>& tab = rnn_table<T>(isa);
  // dh0 / dc0 carry the running gradients of h_t and c_t down the steps.
  if (dh_n) std::copy(dh_n, dh_n + nh, dh0); else std::fill(dh0, dh0 + nh, T(0));
  if (dc_n) std::copy(dc_n, dc_n + nh, dc0); else std::fill(dc0, dc0 + nh, T(0));
  T* dz = scratch<T>(tls_rnn_work, t * n * g4);
  const GemmParams<T> p;
  for (std::int64_t s = t - 1; s >= 0; --s) {
    if (dy)
      for (std::int64_t k = 0; k < nh; ++k) dh0[k] += dy[s * nh + k];
    const T* cp = s ? cells + (s - 1) * nh : c0;
    T* dzs = dz + s * n * g4;
    for (std::int64_t r = 0; r < n; ++r)
      tab.lstm_row_backward(dzs + r * g4, dc0 + r * hid, dh0 + r * hid, dc0 + r * hid,
                            gates + (s * n + r) * g4, cp + r * hid, cells + s * nh + r * hid, hid);
    mm_nn(dh0, hid, dzs, g4, w_hh, hid, n, hid, g4, p, isa);
  }
  mm_tn(dw_ih, in, dz, g4, x, in, g4, in, t * n, p, isa);
  mm_tn(dw_hh, hid, dz + n * g4, g4, y, hid, g4, hid, std::max<std::int64_t>(t - 1, 0) * n, p,
        isa);
  if (t > 0) mm_tn(dw_hh, hid, dz, g4, h0, hid, g4, hid, n, with_bias<T>(nullptr, T(1)), isa);
  mm_nn(dx, in, dz, g4, w_ih, in, t * n, in, g4, p, isa);
  column_sums(db, dz, t * n, g4);
}

#define FASTDL_INSTANTIATE_RNN(T)                                                              \
  template void rnn_cell_forward<T>(T*, const T*, const T*, const T*, const T*, const T*,      \
                                    const T*, std::int64_t, std::int64_t, std::int64_t, Isa);  \
  template void rnn_cell_backward<T>(T*, T*, T*, T*, T*, const T*, const T*, const T*,         \
                                     const T*, const T*, const T*, std::int64_t, std::int64_t, \
                                     std::int64_t, Isa);                                       \
  template void lstm_cell_forward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,       \
                                     const T*, const T*, const T*, std::int64_t, std::int64_t, \
                                     std::int64_t, Isa);                                       \
  template void lstm_cell_backward<T>(T*, T*, T*, T*, T*, T*, const T*, const T*, const T*,    \
                                      const T*, const T*, const T*, const T*, const T*,        \
                                      const T*, std::int64_t, std::int64_t, std::int64_t, Isa); \
  template void lstm_forward<T>(T*, T*, T*, T*, T*, const T*, const T*, const T*, const T*,    \
                                const T*, const T*, const T*, std::int64_t, std::int64_t,      \
                                std::int64_t, std::int64_t, Isa);                              \
  template void lstm_backward<T>(T*, T*, T*, T*, T*, T*, const T*, const T*, const T*,         \
                                 const T*, const T*, const T*, const T*, const T*, const T*,   \
                                 const T*, const T*, std::int64_t, std::int64_t, std::int64_t, \
                                 std::int64_t, Isa);                                           \
  template void rnn_cell_forward_reference<T>(T*, const T*, const T*, const T*, const T*,      \
                                              const T*, const T*, std::int64_t, std::int64_t,  \
                                              std::int64_t);                                   \
  template void rnn_cell_backward_reference<T>(T*, T*, T*, T*, T*, const T*, const T*,         \
                                               const T*, const T*, const T*, const T*,         \
                                               std::int64_t, std::int64_t, std::int64_t);      \
  template void lstm_cell_forward_reference<T>(T*, T*, T*, const T*, const T*, const T*,       \
                                               const T*, const T*, const T*, const T*,         \
                                               std::int64_t, std::int64_t, std::int64_t);      \
  template void lstm_cell_backward_reference<T>(T*, T*, T*, T*, T*, T*, const T*, const T*,    \
                                                const T*, const T*, const T*, const T*,        \
                                                const T*, const T*, const T*, std::int64_t,    \
                                                std::int64_t, std::int64_t);
FASTDL_INSTANTIATE_RNN(float)
FASTDL_INSTANTIATE_RNN(double)
#undef FASTDL_INSTANTIATE_RNN

}  // namespace fastdl
