// rnn.h: recurrent cells and the whole-sequence LSTM, forward and backward (rnn.cpp documents
// the math, the layouts and the variants).
//
// Shapes: x (N, I), h / c (N, H), gates (N, 4H) with column blocks i | f | g | o; sequences
// x (T, N, I), y (T, N, H), gates (T, N, 4H), cells (T, N, H). RNN weights w_ih (H, I),
// w_hh (H, H), biases (H,); LSTM w_ih (4H, I), w_hh (4H, H), biases (4H,). Every array is
// C-contiguous; optional arrays (biases, incoming gradients, the sequence's gates / cells) are
// null pointers. Gradients are written (=).
#pragma once

#include <cstdint>

#include "common/cpu.h"

namespace fastdl {

// One ISA's point-wise rows (single-threaded; rnn_simd.h).
template <typename T>
struct RnnTable {
  // h = tanh(h), n elements in place.
  void (*tanh_inplace)(T* h, std::int64_t n);
  // da = dh * (1 - y^2)
  void (*tanh_grad)(T* da, const T* dh, const T* y, std::int64_t n);
  // `units` consecutive units of one row of an LSTM cell: gate k (i, f, g, o) of unit u is
  // z[k zs + u] (pre-activation) and gates[k gs + u] (activated; gates null: not stored);
  // c_new = f c + i g, h_new = o tanh(c_new). c may alias c_new.
  void (*lstm_row)(T* gates, std::int64_t gs, T* c_new, T* h_new, const T* z, std::int64_t zs,
                   const T* c, std::int64_t units);
  // Its backward over `units` consecutive units (gate stride hid in gates and dz): dz and
  // dc_prev = dct f, from dh + dy (the gradient of h_new; either may be null: zero), dc (of
  // c_new; null: zero), the activated gates, c (the previous cell) and c_new. dc_prev may
  // alias dc.
  void (*lstm_row_backward)(T* dz, T* dc_prev, const T* dh, const T* dy, const T* dc,
                            const T* gates, const T* c, const T* c_new, std::int64_t hid,
                            std::int64_t units);
};

template <typename T>
const RnnTable<T>& rnn_table(Isa isa);

extern const RnnTable<float> rnn_table_avx2_f32;
extern const RnnTable<double> rnn_table_avx2_f64;
extern const RnnTable<float> rnn_table_avx512_f32;
extern const RnnTable<double> rnn_table_avx512_f64;

// ---- RNN cell (tanh) ---------------------------------------------------------------------------
template <typename T>
void rnn_cell_forward(T* h_new, const T* x, const T* h, const T* w_ih, const T* w_hh,
                      const T* b_ih, const T* b_hh, std::int64_t n, std::int64_t in,
                      std::int64_t hid, Isa isa = cpu_isa());
template <typename T>
void rnn_cell_backward(T* dx, T* dh, T* dw_ih, T* dw_hh, T* db, const T* dh_new, const T* x,
                       const T* h, const T* w_ih, const T* w_hh, const T* h_new, std::int64_t n,
                       std::int64_t in, std::int64_t hid, Isa isa = cpu_isa());

// ---- LSTM cell ---------------------------------------------------------------------------------
template <typename T>
void lstm_cell_forward(T* h_new, T* c_new, T* gates, const T* x, const T* h, const T* c,
                       const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh,
                       std::int64_t n, std::int64_t in, std::int64_t hid, Isa isa = cpu_isa());
template <typename T>
void lstm_cell_backward(T* dx, T* dh, T* dc, T* dw_ih, T* dw_hh, T* db, const T* dh_new,
                        const T* dc_new, const T* x, const T* h, const T* c, const T* w_ih,
                        const T* w_hh, const T* gates, const T* c_new, std::int64_t n,
                        std::int64_t in, std::int64_t hid, Isa isa = cpu_isa());

// ---- LSTM over a whole sequence ----------------------------------------------------------------
// gates and cells both null: inference (a bounded workspace instead). t = 0: h_n = h0, c_n = c0.
template <typename T>
void lstm_forward(T* y, T* h_n, T* c_n, T* gates, T* cells, const T* x, const T* h0,
                  const T* c0, const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh,
                  std::int64_t t, std::int64_t n, std::int64_t in, std::int64_t hid,
                  Isa isa = cpu_isa());
// dy, dh_n, dc_n may be null (zero).
template <typename T>
void lstm_backward(T* dx, T* dh0, T* dc0, T* dw_ih, T* dw_hh, T* db, const T* dy,
                   const T* dh_n, const T* dc_n, const T* x, const T* h0, const T* c0,
                   const T* w_ih, const T* w_hh, const T* y, const T* gates, const T* cells,
                   std::int64_t t, std::int64_t n, std::int64_t in, std::int64_t hid,
                   Isa isa = cpu_isa());

// ---- Plain loops in double: the test oracle of each of the above --------------------------------
template <typename T>
void rnn_cell_forward_reference(T* h_new, const T* x, const T* h, const T* w_ih, const T* w_hh,
                                const T* b_ih, const T* b_hh, std::int64_t n, std::int64_t in,
                                std::int64_t hid);
template <typename T>
void rnn_cell_backward_reference(T* dx, T* dh, T* dw_ih, T* dw_hh, T* db, const T* dh_new,
                                 const T* x, const T* h, const T* w_ih, const T* w_hh,
                                 const T* h_new, std::int64_t n, std::int64_t in,
                                 std::int64_t hid);
template <typename T>
void lstm_cell_forward_reference(T* h_new, T* c_new, T* gates, const T* x, const T* h,
                                 const T* c, const T* w_ih, const T* w_hh, const T* b_ih,
                                 const T* b_hh, std::int64_t n, std::int64_t in,
                                 std::int64_t hid);
template <typename T>
void lstm_cell_backward_reference(T* dx, T* dh, T* dc, T* dw_ih, T* dw_hh, T* db,
                                  const T* dh_new, const T* dc_new, const T* x, const T* h,
                                  const T* c, const T* w_ih, const T* w_hh, const T* gates,
                                  const T* c_new, std::int64_t n, std::int64_t in,
                                  std::int64_t hid);

}  // namespace fastdl
