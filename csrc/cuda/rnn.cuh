// rnn.cuh: the tanh RNN cell, the LSTM cell and the whole-sequence LSTM on the GPU (float32),
// forward and backward; the math, layouts and variants are documented in rnn.cu.
//
// Shapes: x (N, I), h / c (N, H), gates (N, 4H) (activated, column blocks i | f | g | o);
// sequences x (T, N, I), y (T, N, H), gates (T, N, 4H), cells (T, N, H). RNN w_ih (H, I),
// w_hh (H, H), biases (H,); LSTM w_ih (4H, I), w_hh (4H, H), biases (4H,). All C-contiguous
// device arrays; optional ones (biases, incoming gradients, the sequence's gates / cells) are
// null. Gradients are written (=). Launchers only enqueue work on `stream`: no synchronisation
// and no host copies (workspaces are stream-ordered allocations made once per call); they
// throw fastdl::ValueError for sizes the GEMM cannot index, RuntimeError for a failed launch.
// Host-only declarations: included by the bindings (plain C++) and by rnn.cu.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace fastdl::cuda {

void rnn_cell_forward(float* h_new, const float* x, const float* h, const float* w_ih,
                      const float* w_hh, const float* b_ih, const float* b_hh, std::int64_t n,
                      std::int64_t in, std::int64_t hid, cudaStream_t stream);
void rnn_cell_backward(float* dx, float* dh, float* dw_ih, float* dw_hh, float* db,
                       const float* dh_new, const float* x, const float* h, const float* w_ih,
                       const float* w_hh, const float* h_new, std::int64_t n, std::int64_t in,
                       std::int64_t hid, cudaStream_t stream);

void lstm_cell_forward(float* h_new, float* c_new, float* gates, const float* x, const float* h,
                       const float* c, const float* w_ih, const float* w_hh, const float* b_ih,
                       const float* b_hh, std::int64_t n, std::int64_t in, std::int64_t hid,
                       cudaStream_t stream);
void lstm_cell_backward(float* dx, float* dh, float* dc, float* dw_ih, float* dw_hh, float* db,
                        const float* dh_new, const float* dc_new, const float* x, const float* h,
                        const float* c, const float* w_ih, const float* w_hh, const float* gates,
                        const float* c_new, std::int64_t n, std::int64_t in, std::int64_t hid,
                        cudaStream_t stream);

// gates and cells both null: inference (a bounded workspace instead). t = 0: h_n = h0, c_n = c0.
void lstm_forward(float* y, float* h_n, float* c_n, float* gates, float* cells, const float* x,
                  const float* h0, const float* c0, const float* w_ih, const float* w_hh,
                  const float* b_ih, const float* b_hh, std::int64_t t, std::int64_t n,
                  std::int64_t in, std::int64_t hid, cudaStream_t stream);
// dy, dh_n, dc_n may be null (zero).
void lstm_backward(float* dx, float* dh0, float* dc0, float* dw_ih, float* dw_hh, float* db,
                   const float* dy, const float* dh_n, const float* dc_n, const float* x,
                   const float* h0, const float* c0, const float* w_ih, const float* w_hh,
                   const float* y, const float* gates, const float* cells, std::int64_t t,
                   std::int64_t n, std::int64_t in, std::int64_t hid, cudaStream_t stream);

}  // namespace fastdl::cuda
