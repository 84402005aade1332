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
//         dw_ih = dz^T x, dw_hh = dz^T [h0; y[:-1]], dx = dz w_ih, db = sum dz.
// Gradients are written (=). Incoming gradients that are null count as zero.
//
// Variants, in order of increasing complexity:
//   1. *_reference: plain loops in double, the oracle for tests (the sequence's oracle is the
//      NumPy one in tests/reference.py).
//   2. the fast kernels, on the packed GEMM (cpu/gemm.h) and the point-wise rows of rnn_simd.h
//      (generic / AVX2 / AVX-512, one source over vector traits):
//      - rnn_cell / lstm_cell forward: ONE product [x | h] [w_ih | w_hh]^T over K = I + H, both
//        biases folded into its bias, the activations (and the LSTM's cell update) run by a
//        GemmTileHook on finished register tiles of z while they are in L1: one pass over the
//        (N, 4H) gate block, no separate element-wise kernel. For the LSTM the columns of B come
//        in groups of four nr-wide panels (PanelOrder): i, f, g, o of the same nr units, each
//        gate's units padded to a multiple of nr in the scratch z. The hook's grain (4 nr)
//        keeps a group in one thread and one NC block, so the hook of the group's o tile reads
//        the i, f, g tiles to its left (just computed, in L1/L2) as full vectors, and writes
//        gates, c_new, h_new straight into their (N, 4H) / (N, H) layouts. Each panel is nr
//        consecutive weight rows, so the packing hook (GemmPackB) packs it with the GEMM's own
//        vectorised transpose (gemm_pack_b) from the weights where they lie: no copy.
//        Measured (one thread, thread CPU time, under load): lstm_cell b64 256->512 forward
//        1.97 ms against 1.81 ms for the bare product (linear on the stacked [x | h], [w_ih |
//        w_hh]); b128 1024->1024 19.2 vs 17.4 ms. The first version interleaved the gates
//        inside each tile (runs of nr / 4 units, half a vector each) and gathered B's columns
//        element by element: 3.2-3.4 and 25.7 ms.
//        Why B-side grouping rather than z^T = W h^T with the weights as the packed A: the A
//        side would need every thread's and tile's rows to start at a multiple of 4 (AVX2's
//        row step is 2, its 6-row tiles straddle units), and its point-wise vectors would run
//        along the batch, scattering every store H elements apart. Not measured: the B side was
//        the one that fits every ISA's tile with the GEMM's micro-kernels unchanged.
//      - lstm (sequence): w_hh^T gate-grouped is packed ONCE per call (GemmPackedB) and read in
//        place by the T recurrent products; the input projection of all T steps is one product
//        (T N rows, both biases folded in) into z, and step t's product z_t += h_{t-1} w_hh^T
//        runs the cell in its write-back (gates, c_t, y_t). Inference (no gates / cells wanted)
//        projects chunks of steps into a bounded z (kWork elements) and carries c in c_n.
//        Measured as above, T50 b64 256->512: 74 ms inference, 83 ms keeping the gates, against
//        82 ms for the same products through ops.matmul (w_hh re-packed every step).
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

// ---- the gate-grouped B operand ---------------------------------------------------------------
// The forward products' B is W^T (K x G H, W = w_ih, w_hh or both stacked along K) with its
// columns in whole register-tile panels of nr consecutive units of one gate, the G gates of a
// block of nr units side by side: panel P holds gate P % G of units (P / G) nr ... For the LSTM
// each gate's units are padded to hp = nr ceil(H / nr) (z is scratch: its padding columns are
// zero weights and zero bias), so a group of 4 panels (the GemmTileHook grain) is always whole
// and the hook of its last tile (gate o) finds i, f, g in the three tiles to its left: full
// vectors of nr units for the point-wise math. Each panel is nr consecutive weight rows, so the
// GEMM's own vectorised packing routine (gemm_pack_b, a transpose) packs it from the weights
// where they lie: nothing is copied. G = 1 (the RNN) is plain W^T, unpadded.
struct PanelOrder {
  std::int64_t hid, gates, nr;
  std::int64_t units() const { return gates == 1 ? hid : (hid + nr - 1) / nr * nr; }
  std::int64_t cols() const { return gates * units(); }  // the product's n
  // Panel p: the weight row of its first column and its number of real (unpadded) columns.
  std::int64_t row(std::int64_t p) const { return p % gates * hid + p / gates * nr; }
  std::int64_t width(std::int64_t p) const {
    return std::min(nr, hid - p / gates * nr);
  }
};

template <typename T>
struct StackedWeights {
  const T* w_ih;  // (G H, in) or null when in == 0
  const T* w_hh;  // (G H, hid) or null when only w_ih is packed
  std::int64_t in, rec;  // rows of B from w_ih, then from w_hh (rec = hid or 0)
  PanelOrder order;
  Isa isa;  // the product's: its packing routine
};

// GemmPackB::pack for StackedWeights: B(p, j) = p < in ? w_ih[row(j), p] : w_hh[row(j), p - in].
// The hook's grain aligns every block to whole panels (j0 % nr == 0).
template <typename T>
bool pack_stacked(const void* ctx, T* dst, std::int64_t k0, std::int64_t kc, std::int64_t j0,
                  std::int64_t nc, int nr) {
  const auto& s = *static_cast<const StackedWeights<T>*>(ctx);
  if (j0 % nr != 0 || nr != s.order.nr) return false;  // never: the grain keeps them aligned
  const std::int64_t p1 = std::clamp<std::int64_t>(s.in - k0, 0, kc);  // rows of B from w_ih
  for (std::int64_t jp = 0; jp < nc; jp += nr, dst += nr * kc) {
    const std::int64_t panel = (j0 + jp) / nr, row = s.order.row(panel);
    const std::int64_t width = s.order.width(panel);
    // Each piece is one panel (width <= nr) of its rows of k: the rows of a panel are
    // contiguous in the packed format, so w_ih's rows and then w_hh's fill it in turn.
    if (p1 > 0)
      gemm_pack_b(dst, s.w_ih + row * s.in + k0, std::int64_t(1), s.in, p1, width, s.isa);
    if (p1 < kc)
      gemm_pack_b(dst + p1 * nr, s.w_hh + row * s.rec + (k0 + p1 - s.in), std::int64_t(1), s.rec,
                  kc - p1, width, s.isa);
  }
  return true;
}

// b_ih + b_hh (either may be null) in the panel order (zero in padding columns), or null.
template <typename T>
const T* gate_bias(const T* b_ih, const T* b_hh, const PanelOrder& o) {
  if (!b_ih && !b_hh) return nullptr;
  const std::int64_t cols = o.cols();
  T* b = scratch<T>(tls_rnn_bias, cols);
  for (std::int64_t p = 0; p * o.nr < cols; ++p) {
    const std::int64_t row = o.row(p), width = o.width(p);
    for (std::int64_t j = 0; j < o.nr && p * o.nr + j < cols; ++j) {
      const std::int64_t r = row + j;
      b[p * o.nr + j] = j >= width ? T(0)
                        : b_ih && b_hh ? b_ih[r] + b_hh[r]
                        : b_ih        ? b_ih[r]
                                      : b_hh[r];
    }
  }
  return b;
}

// ---- fused epilogues (GemmTileHook) ------------------------------------------------------------

// The LSTM cell's write-back, on the o tile of each group (grain 4 nr): the group's four tiles
// (rows i0.., i | f | g | o of units (j0 / 4nr) nr ..) hold z; gates (may be null), c_new and
// h_new of rows i0.. receive the cell.
template <typename T>
struct LstmHook {
  const RnnTable<T>* tab;
  T* gates;  // (N, 4H) or null
  T* c_new;
  T* h_new;
  const T* c;
  std::int64_t hid, nr;
};

template <typename T>
void lstm_hook(const void* ctx, T* z, std::int64_t ldz, std::int64_t i0, std::int64_t j0, int m,
               int) {
  const auto& k = *static_cast<const LstmHook<T>*>(ctx);
  const std::int64_t panel = j0 / k.nr;
  if (panel % 4 != 3) return;  // not the group's last tile
  const std::int64_t u0 = panel / 4 * k.nr, units = std::min(k.nr, k.hid - u0), g4 = 4 * k.hid;
  const T* zi = z - 3 * k.nr;  // the group's i tile
  for (int r = 0; r < m; ++r) {
    const std::int64_t row = i0 + r;
    k.tab->lstm_row(k.gates ? k.gates + row * g4 + u0 : nullptr, k.hid,
                    k.c_new + row * k.hid + u0, k.h_new + row * k.hid + u0, zi + r * ldz, k.nr,
                    k.c + row * k.hid + u0, units);
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

// h_prev (T N, H) = [h0; y_1 .. y_{T-1}] as the B of dw_hh = dz^T h_prev, gathered by the packer
// (rows < N from h0, the rest from y shifted by one step), so dw_hh is one product over all
// T N rows with no copy of the states.
template <typename T>
struct PrevStates {
  const T* h0;
  const T* y;
  std::int64_t n, hid;
};

template <typename T>
bool pack_prev_states(const void* ctx, T* dst, std::int64_t k0, std::int64_t kc, std::int64_t j0,
                      std::int64_t nc, int nr) {
  const auto& s = *static_cast<const PrevStates<T>*>(ctx);
  for (std::int64_t jp = 0; jp < nc; jp += nr, dst += nr * kc) {
    const std::int64_t cols = std::min<std::int64_t>(nr, nc - jp);
    for (std::int64_t p = 0; p < kc; ++p) {
      const std::int64_t r = k0 + p;
      const T* src = (r < s.n ? s.h0 + r * s.hid : s.y + (r - s.n) * s.hid) + j0 + jp;
      std::copy(src, src + cols, dst + p * nr);
      std::fill(dst + p * nr + cols, dst + (p + 1) * nr, T(0));
    }
  }
  return true;
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
PanelOrder panel_order(std::int64_t hid, std::int64_t gates, Isa isa) {
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
  const PanelOrder order = panel_order<T>(hid, 1, isa);
  const StackedWeights<T> sw{w_ih, w_hh, in, hid, order, isa};
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
  // One product over K = I + H into the gate-grouped z; the non-linearities and the cell
  // update run in its write-back, a group of four tiles at a time, and store gates, c_new, h_new.
  const PanelOrder order = panel_order<T>(hid, 4, isa);
  const StackedWeights<T> sw{w_ih, w_hh, in, hid, order, isa};
  const GemmPackB<T> packer{&pack_stacked<T>, &sw};
  const LstmHook<T> ctx{&rnn_table<T>(isa), gates, c_new, h_new, c, hid, order.nr};
  const GemmTileHook<T> hook{&lstm_hook<T>, &ctx, 4 * order.nr};
  const std::int64_t cols = order.cols();
  T* z = scratch<T>(tls_rnn_z, n * cols);
  gemm_packed_b(z, cols, stack_inputs(x, h, n, in, hid), in + hid, std::int64_t(1), packer, n,
                cols, in + hid, with_bias(gate_bias(b_ih, b_hh, order)), isa, 0, &hook);
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
  const PanelOrder order = panel_order<T>(hid, 4, isa);
  const std::int64_t cols = order.cols(), grain = 4 * order.nr;
  const T* bias = gate_bias(b_ih, b_hh, order);
  // w_hh^T gate-grouped, packed once for all T steps.
  GemmPackedB<T>& whh = packed_weights<T>();
  const StackedWeights<T> rec{nullptr, w_hh, 0, hid, order, isa};
  whh.pack(GemmPackB<T>{&pack_stacked<T>, &rec}, hid, cols, isa);
  const StackedWeights<T> inp{w_ih, nullptr, in, 0, order, isa};
  const GemmPackB<T> inp_packer{&pack_stacked<T>, &inp};
  const GemmTileHook<T> aligned{nullptr, nullptr, grain};  // the packer's whole panels
  // The input projection of every step (both biases folded in) is one product; inference keeps
  // no gates, so it projects chunks of steps whose z block is at most kWork elements (at least
  // one step) and carries the cell state in c_n.
  const bool train = gates != nullptr;
  constexpr std::int64_t kWork = std::int64_t(1) << 20;
  const std::int64_t chunk = train ? t : std::clamp<std::int64_t>(kWork / (n * cols), 1, t);
  T* z = scratch<T>(tls_rnn_z, chunk * n * cols);
  for (std::int64_t s0 = 0; s0 < t; s0 += chunk) {
    const std::int64_t steps = std::min(chunk, t - s0);
    gemm_packed_b(z, cols, x + s0 * n * in, in, std::int64_t(1), inp_packer, steps * n, cols, in,
                  with_bias(bias), isa, 0, &aligned);
    for (std::int64_t s = s0; s < s0 + steps; ++s) {
      // z_s += h_{s-1} w_hh^T, the cell in the write-back.
      const T* hp = s ? y + (s - 1) * nh : h0;
      const LstmHook<T> ctx{&tab, train ? gates + s * n * g4 : nullptr,
                            train ? cells + s * nh : c_n, y + s * nh,
                            train ? (s ? cells + (s - 1) * nh : c0) : c_n, hid, order.nr};
      const GemmTileHook<T> hook{&lstm_hook<T>, &ctx, grain};
      gemm_prepacked_b(z + (s - s0) * n * cols, cols, hp, hid, std::int64_t(1), whh, n,
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
  const PrevStates<T> prev{h0, y, n, hid};
  gemm_packed_b(dw_hh, hid, dz, std::int64_t(1), g4, GemmPackB<T>{&pack_prev_states<T>, &prev},
                g4, hid, t * n, p, isa);
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
