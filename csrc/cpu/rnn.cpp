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
//   2. the fast kernels, on the packed GEMM (cpu/gemm.h) and the point-wise rows of rnn_simd.h
//      (generic / AVX2 / AVX-512, one source over vector traits):
//      - rnn_cell / lstm_cell forward: ONE product [x | h] [w_ih | w_hh]^T over K = I + H, both
//        biases folded into its bias, the activations (and the LSTM's cell update) run by a
//        GemmTileHook on each finished register tile of z while it is in L1: one pass over the
//        (N, 4H) gate block, no separate element-wise kernel. For the LSTM the columns of B are
//        gate-interleaved (GateOrder): every tile of nr columns holds the four gates of nr / 4
//        units, each gate a run of nr / 4 columns; the packing hook (GemmPackB) gathers those
//        columns from the weights' rows where they lie, so nothing is copied and the hook
//        writes gates, c_new, h_new straight into their (N, 4H) / (N, H) layouts.
//        Why B-side interleaving rather than z^T = W h^T with the weights as the packed A: the
//        A side would need every thread's and tile's rows to start at a multiple of 4 (AVX2's
//        row step is 2, its 6-row tiles straddle units), and its point-wise vectors would run
//        along the batch, scattering every store H elements apart. Not measured against each
//        other: the B side was the one that fits every ISA's tile with the GEMM unchanged.
//      - lstm (sequence): w_hh^T gate-interleaved is packed ONCE per call (GemmPackedB) and
//        read in place by the T recurrent products; the input projection of all T steps is one
//        product (T N rows, both biases folded in) into z, and step t's product
//        z_t += h_{t-1} w_hh^T runs the cell in its write-back (gates, c_t, y_t). Inference
//        (no gates / cells wanted) projects chunks of steps into a bounded z (kWork elements)
//        and carries c in c_n.
//      - BPTT: w_hh packed once as the B of dh_{t-1} = dz_t w_hh; each of those products runs
//        step t-1's backward (dz_{t-1}, dc_{t-2}) in its write-back, on the tile's units. The
//        weight gradients are then single products over all T N rows, db a one-row product.
//      - the cell backward passes: the point-wise rows, then the four gradient products.
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

// Per-thread scratch, grown on demand and kept, so steady-state calls touch no fresh pages.
thread_local ScratchBuffer tls_rnn_work, tls_rnn_z, tls_rnn_xh, tls_rnn_bias, tls_rnn_ones;

template <typename T>
T* scratch(ScratchBuffer& buf, std::int64_t elems) {
  T* p = static_cast<T*>(buf.get(sizeof(T) * std::size_t(std::max<std::int64_t>(elems, 1))));
  if (!p) throw std::bad_alloc();
  return p;
}

// The recurrent weights packed once per call, kept per thread for the next call's pages.
template <typename T>
GemmPackedB<T>& packed_weights() {
  thread_local GemmPackedB<T> w;
  return w;
}

// The three product shapes of the family, every operand row-major (C-contiguous):
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

// db (cols,) = the sum of the rows of a (rows, cols): ones (1 x rows) times a, a one-row
// product that the GEMM's skinny kernel reads once, in place, split by columns between threads
// (each column summed in row order whatever the thread count).
template <typename T>
void column_sums(T* db, const T* a, std::int64_t rows, std::int64_t cols, Isa isa) {
  T* ones = scratch<T>(tls_rnn_ones, rows);
  std::fill(ones, ones + rows, T(1));
  gemm(db, cols, ones, rows, std::int64_t(1), a, cols, std::int64_t(1), std::int64_t(1), cols,
       rows, GemmParams<T>{}, isa);
}

// ---- the gate-interleaved B operand -----------------------------------------------------------
// The forward products' B is W^T (K x G H, W = w_ih, w_hh or both stacked along K) with its
// columns reordered so that every register tile of C (nr columns) holds all G gates of nr / G
// units: group j / nr of nr columns (fewer at the right edge, a multiple of G) carries, for its
// q = width / G units u0 = (j / nr) * nr / G ..., gate 0 of them, then gate 1, ... So the tile hook
// finds the four gates of each of its units in its own tile (each gate a run of q columns) and
// writes them back in the (N, 4H) i | f | g | o layout. The packer gathers the columns from the
// weights' rows where they are: no copy of the weights. G = 1 (the RNN) is the identity.
struct GateOrder {
  std::int64_t hid, gates, nr;
  // The weight row (gate k of unit u: k hid + u) behind column j of the interleaved layout.
  std::int64_t row(std::int64_t j) const {
    const std::int64_t g0 = j / nr * nr, width = std::min(nr, gates * hid - g0), q = width / gates;
    const std::int64_t r = j - g0;
    return r / q * hid + g0 / gates + r % q;
  }
};

template <typename T>
struct StackedWeights {
  const T* w_ih;  // (G H, in) or null when in == 0
  const T* w_hh;  // (G H, hid) or null when only w_ih is packed
  std::int64_t in, rec;  // rows of B from w_ih, then from w_hh (rec = hid or 0)
  GateOrder order;
};

// dst[p nr + jj] = rows[jj][p] for p < kc, jj < cols: one panel's slice of k from `cols` weight
// rows, 8 k at a time (8 contiguous reads a row, written 8 panel rows apart), as pack_panels
// transposes a row-major operand.
template <typename T>
void gather_rows(T* __restrict dst, const T* const* rows, int cols, std::int64_t kc, int nr) {
  std::int64_t p = 0;
  for (; p + 8 <= kc; p += 8)
    for (int jj = 0; jj < cols; ++jj) {
      const T* __restrict r = rows[jj] + p;
#pragma GCC unroll 8
      for (int q = 0; q < 8; ++q) dst[(p + q) * nr + jj] = r[q];
    }
  for (; p < kc; ++p)
    for (int jj = 0; jj < cols; ++jj) dst[p * nr + jj] = rows[jj][p];
}

// GemmPackB::pack for StackedWeights: B(p, j) = p < in ? w_ih[row(j), p] : w_hh[row(j), p - in].
template <typename T>
bool pack_stacked(const void* ctx, T* dst, std::int64_t k0, std::int64_t kc, std::int64_t j0,
                  std::int64_t nc, int nr) {
  const auto& s = *static_cast<const StackedWeights<T>*>(ctx);
  constexpr int kMaxNr = 64;
  if (nr > kMaxNr) return false;
  const T* rows[kMaxNr];
  const std::int64_t p1 = std::clamp<std::int64_t>(s.in - k0, 0, kc);  // rows of B from w_ih
  for (std::int64_t jp = 0; jp < nc; jp += nr, dst += nr * kc) {
    const int cols = int(std::min<std::int64_t>(nr, nc - jp));
    if (cols < nr) std::fill(dst, dst + nr * kc, T(0));
    if (p1 > 0) {
      for (int jj = 0; jj < cols; ++jj) rows[jj] = s.w_ih + s.order.row(j0 + jp + jj) * s.in + k0;
      gather_rows(dst, rows, cols, p1, nr);
    }
    if (p1 < kc) {
      for (int jj = 0; jj < cols; ++jj)
        rows[jj] = s.w_hh + s.order.row(j0 + jp + jj) * s.rec + (k0 + p1 - s.in);
      gather_rows(dst + p1 * nr, rows, cols, kc - p1, nr);
    }
  }
  return true;
}

// b_ih + b_hh (either may be null) in the interleaved column order, or null when both are.
template <typename T>
const T* gate_bias(const T* b_ih, const T* b_hh, const GateOrder& o) {
  if (!b_ih && !b_hh) return nullptr;
  const std::int64_t len = o.gates * o.hid;
  T* b = scratch<T>(tls_rnn_bias, len);
  for (std::int64_t j = 0; j < len; ++j) {
    const std::int64_t r = o.row(j);
    b[j] = b_ih && b_hh ? b_ih[r] + b_hh[r] : b_ih ? b_ih[r] : b_hh[r];
  }
  return b;
}

// ---- fused epilogues (GemmTileHook) ------------------------------------------------------------

// The LSTM cell's write-back: the tile (rows i0.., interleaved columns j0..) holds z of n / 4
// units; gates (may be null), c_new and h_new of rows i0.. receive them.
template <typename T>
struct LstmHook {
  const RnnTable<T>* tab;
  T* gates;  // (N, 4H) or null
  T* c_new;
  T* h_new;
  const T* c;
  std::int64_t hid;
};

template <typename T>
void lstm_hook(const void* ctx, T* z, std::int64_t ldz, std::int64_t i0, std::int64_t j0, int m,
               int n) {
  const auto& k = *static_cast<const LstmHook<T>*>(ctx);
  const std::int64_t q = n / 4, u0 = j0 / 4, g4 = 4 * k.hid;
  for (int r = 0; r < m; ++r) {
    const std::int64_t row = i0 + r;
    k.tab->lstm_row(k.gates ? k.gates + row * g4 + u0 : nullptr, k.hid,
                    k.c_new + row * k.hid + u0, k.h_new + row * k.hid + u0, z + r * ldz, q,
                    k.c + row * k.hid + u0, q);
  }
}

// The RNN cell's: tanh of the tile, written to h_new (the product's C itself).
template <typename T>
void tanh_hook(const void* ctx, T* c, std::int64_t ldc, std::int64_t, std::int64_t, int m, int n) {
  const auto& tab = *static_cast<const RnnTable<T>*>(ctx);
  for (int r = 0; r < m; ++r) tab.tanh_inplace(c + r * ldc, n);
}

// BPTT: the tile is dh_s (rows i0.., units j0..) = dz_{s+1} w_hh; with dy_s it is the total
// gradient of h_s, and step s's backward runs on its units: dz_s, and dc in place.
template <typename T>
struct LstmBackHook {
  const RnnTable<T>* tab;
  T* dz;        // (N, 4H) of step s
  T* dc;        // (N, H): the gradient of c_s in, of c_{s-1} out
  const T* dy;  // (N, H) of step s, or null
  const T* gates;
  const T* c_prev;
  const T* c;
  std::int64_t hid;
};

template <typename T>
void lstm_back_hook(const void* ctx, T* dh, std::int64_t lddh, std::int64_t i0, std::int64_t j0,
                    int m, int n) {
  const auto& k = *static_cast<const LstmBackHook<T>*>(ctx);
  const std::int64_t g4 = 4 * k.hid;
  for (int r = 0; r < m; ++r) {
    const std::int64_t row = i0 + r, e = row * k.hid + j0;
    k.tab->lstm_row_backward(k.dz + row * g4 + j0, k.dc + e, dh + r * lddh,
                             k.dy ? k.dy + e : nullptr, k.dc + e, k.gates + row * g4 + j0,
                             k.c_prev + e, k.c + e, k.hid, n);
  }
}

// [x | h] (n, in + hid): the A operand of a cell's single product over K = in + hid.
template <typename T>
const T* stack_inputs(const T* x, const T* h, std::int64_t n, std::int64_t in, std::int64_t hid) {
  T* xh = scratch<T>(tls_rnn_xh, n * (in + hid));
  for (std::int64_t r = 0; r < n; ++r) {
    std::copy(x + r * in, x + (r + 1) * in, xh + r * (in + hid));
    std::copy(h + r * hid, h + (r + 1) * hid, xh + r * (in + hid) + in);
  }
  return xh;
}

template <typename T>
GateOrder gate_order(std::int64_t hid, std::int64_t gates, Isa isa) {
  int mr, nr;
  std::int64_t kc;
  gemm_tile<T>(isa, &mr, &nr, &kc);
  return {hid, gates, nr};
}

}  // namespace

template <typename T>
void rnn_cell_forward(T* h_new, const T* x, const T* h, const T* w_ih, const T* w_hh,
                      const T* b_ih, const T* b_hh, std::int64_t n, std::int64_t in,
                      std::int64_t hid, Isa isa) {
  // One product over K = I + H, [x | h] [w_ih | w_hh]^T, biases and tanh in its write-back.
  const GateOrder order = gate_order<T>(hid, 1, isa);
  const StackedWeights<T> sw{w_ih, w_hh, in, hid, order};
  const GemmPackB<T> packer{&pack_stacked<T>, &sw};
  const GemmTileHook<T> hook{&tanh_hook<T>, &rnn_table<T>(isa)};
  gemm_packed_b(h_new, hid, stack_inputs(x, h, n, in, hid), in + hid, std::int64_t(1), packer,
                n, hid, in + hid, with_bias(gate_bias(b_ih, b_hh, order)), isa, 0, &hook);
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
  column_sums(db, da, n, hid, isa);
}

template <typename T>
void lstm_cell_forward(T* h_new, T* c_new, T* gates, const T* x, const T* h, const T* c,
                       const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh,
                       std::int64_t n, std::int64_t in, std::int64_t hid, Isa isa) {
  // One product over K = I + H into the gate-interleaved z; the non-linearities and the cell
  // update run in its write-back, tile by tile, and store gates, c_new and h_new.
  const std::int64_t g4 = 4 * hid;
  const GateOrder order = gate_order<T>(hid, 4, isa);
  const StackedWeights<T> sw{w_ih, w_hh, in, hid, order};
  const GemmPackB<T> packer{&pack_stacked<T>, &sw};
  const LstmHook<T> ctx{&rnn_table<T>(isa), gates, c_new, h_new, c, hid};
  const GemmTileHook<T> hook{&lstm_hook<T>, &ctx};
  T* z = scratch<T>(tls_rnn_z, n * g4);
  gemm_packed_b(z, g4, stack_inputs(x, h, n, in, hid), in + hid, std::int64_t(1), packer, n, g4,
                in + hid, with_bias(gate_bias(b_ih, b_hh, order)), isa, 0, &hook);
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
    t.lstm_row_backward(dz + r * g4, dc + r * hid, dh_new ? dh_new + r * hid : nullptr, nullptr,
                        dc_new ? dc_new + r * hid : nullptr, gates + r * g4, c + r * hid,
                        c_new + r * hid, hid, hid);
  const GemmParams<T> p;
  mm_nn(dx, in, dz, g4, w_ih, in, n, in, g4, p, isa);
  mm_nn(dh, hid, dz, g4, w_hh, hid, n, hid, g4, p, isa);
  mm_tn(dw_ih, in, dz, g4, x, in, g4, in, n, p, isa);
  mm_tn(dw_hh, hid, dz, g4, h, hid, g4, hid, n, p, isa);
  column_sums(db, dz, n, g4, isa);
}

template <typename T>
void lstm_forward(T* y, T* h_n, T* c_n, T* gates, T* cells, const T* x, const T* h0,
                  const T* c0, const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh,
                  std::int64_t t, std::int64_t n, std::int64_t in, std::int64_t hid, Isa isa) {
  const std::int64_t g4 = 4 * hid, nh = n * hid;
  std::copy(h0, h0 + nh, h_n);
  std::copy(c0, c0 + nh, c_n);
  if (t == 0 || n == 0 || hid == 0) {
    if (t > 0) std::fill(y, y + t * nh, T(0));  // H = 0 or N = 0: nothing to compute
    return;
  }
  const RnnTable<T>& tab = rnn_table<T>(isa);
  const GateOrder order = gate_order<T>(hid, 4, isa);
  const T* bias = gate_bias(b_ih, b_hh, order);
  // w_hh^T interleaved, packed once for all T steps.
  GemmPackedB<T>& whh = packed_weights<T>();
  const StackedWeights<T> rec{nullptr, w_hh, 0, hid, order};
  whh.pack(GemmPackB<T>{&pack_stacked<T>, &rec}, hid, g4, isa);
  const StackedWeights<T> inp{w_ih, nullptr, in, 0, order};
  const GemmPackB<T> inp_packer{&pack_stacked<T>, &inp};
  // The input projection of every step (both biases folded in) is one product; inference keeps
  // no gates, so it projects chunks of steps whose z block is at most kWork elements (at least
  // one step) and carries the cell state in c_n.
  const bool train = gates != nullptr;
  constexpr std::int64_t kWork = std::int64_t(1) << 20;
  const std::int64_t chunk = train ? t : std::clamp<std::int64_t>(kWork / (n * g4), 1, t);
  T* z = scratch<T>(tls_rnn_z, chunk * n * g4);
  for (std::int64_t s0 = 0; s0 < t; s0 += chunk) {
    const std::int64_t steps = std::min(chunk, t - s0);
    gemm_packed_b(z, g4, x + s0 * n * in, in, std::int64_t(1), inp_packer, steps * n, g4, in,
                  with_bias(bias), isa);
    for (std::int64_t s = s0; s < s0 + steps; ++s) {
      // z_s += h_{s-1} w_hh^T, the cell in the write-back.
      const T* hp = s ? y + (s - 1) * nh : h0;
      const LstmHook<T> ctx{&tab, train ? gates + s * n * g4 : nullptr,
                            train ? cells + s * nh : c_n, y + s * nh,
                            train ? (s ? cells + (s - 1) * nh : c0) : c_n, hid};
      const GemmTileHook<T> hook{&lstm_hook<T>, &ctx};
      gemm_prepacked_b(z + (s - s0) * n * g4, g4, hp, hid, std::int64_t(1), whh, n,
                       with_bias<T>(nullptr, T(1)), 0, &hook);
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
  // dh0 / dc0 carry the running gradients of h_s and c_s down the steps.
  if (dh_n) std::copy(dh_n, dh_n + nh, dh0); else std::fill(dh0, dh0 + nh, T(0));
  if (dc_n) std::copy(dc_n, dc_n + nh, dc0); else std::fill(dc0, dc0 + nh, T(0));
  T* dz = scratch<T>(tls_rnn_work, t * n * g4);
  const GemmParams<T> p;
  if (t > 0 && nh > 0) {
    // w_hh (4H x H) as the B of dh_{s-1} = dz_s w_hh, packed once for all steps.
    GemmPackedB<T>& whh = packed_weights<T>();
    whh.pack(w_hh, hid, std::int64_t(1), g4, hid, isa);
    // Step T: dh_n + dy_T and dc_n are given.
    const std::int64_t last = t - 1;
    for (std::int64_t r = 0; r < n; ++r) {
      const std::int64_t e = last * nh + r * hid;
      tab.lstm_row_backward(dz + (last * n + r) * g4, dc0 + r * hid, dh0 + r * hid,
                            dy ? dy + e : nullptr, dc0 + r * hid, gates + (last * n + r) * g4,
                            last ? cells + e - nh : c0 + r * hid, cells + e, hid, hid);
    }
    // Steps T-1 .. 1: dh_s = dz_{s+1} w_hh, step s's backward in the product's write-back.
    for (std::int64_t s = t - 2; s >= 0; --s) {
      const LstmBackHook<T> ctx{&tab, dz + s * n * g4, dc0, dy ? dy + s * nh : nullptr,
                                gates + s * n * g4, s ? cells + (s - 1) * nh : c0,
                                cells + s * nh, hid};
      const GemmTileHook<T> hook{&lstm_back_hook<T>, &ctx};
      gemm_prepacked_b(dh0, hid, dz + (s + 1) * n * g4, g4, std::int64_t(1), whh, n, p, 0, &hook);
    }
    gemm_prepacked_b(dh0, hid, dz, g4, std::int64_t(1), whh, n, p);  // dh0 = dz_1 w_hh
  }
  // The weight gradients: one product each over all T N rows.
  mm_tn(dw_ih, in, dz, g4, x, in, g4, in, t * n, p, isa);
  mm_tn(dw_hh, hid, dz + n * g4, g4, y, hid, g4, hid, std::max<std::int64_t>(t - 1, 0) * n, p,
        isa);
  if (t > 0) mm_tn(dw_hh, hid, dz, g4, h0, hid, g4, hid, n, with_bias<T>(nullptr, T(1)), isa);
  mm_nn(dx, in, dz, g4, w_ih, in, t * n, in, g4, p, isa);
  column_sums(db, dz, t * n, g4, isa);
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
