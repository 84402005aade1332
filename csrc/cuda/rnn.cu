// rnn.cu: the tanh RNN cell, the LSTM cell and the LSTM over a whole sequence on the GPU,
// float32, forward and backward (backpropagation through time). Same math as csrc/cpu/rnn.cpp:
//
// Shapes: N batch, I input features, H hidden units, T steps. x (N, I), h / c (N, H);
// sequences x (T, N, I), y (T, N, H) = h_1..h_T, cells (T, N, H) = c_1..c_T. RNN w_ih (H, I),
// w_hh (H, H), biases (H,); LSTM w_ih (4H, I), w_hh (4H, H), biases (4H,), gate rows i, f, g, o;
// gates (N, 4H) (sequence (T, N, 4H)) hold the ACTIVATED gates in column blocks i | f | g | o.
//   RNN   h_new = tanh(x w_ih^T + b_ih + h w_hh^T + b_hh)
//         da = dh_new (1 - h_new^2); dx = da w_ih; dh = da w_hh; dw_ih = da^T x;
//         dw_hh = da^T h; db = sum_n da (the gradient of b_ih and of b_hh alike)
//   LSTM  z = x w_ih^T + h w_hh^T + b_ih + b_hh; i, f, o = sigmoid(z_i, z_f, z_o), g = tanh(z_g)
//         c_new = f c + i g; h_new = o tanh(c_new)
//         tc = tanh(c_new); do = dh tc; dct = dc_new + dh o (1 - tc^2); dc = dct f;
//         dz = [dct g i(1-i), dct c f(1-f), dct i (1-g^2), do o(1-o)];
//         dx = dz w_ih; dh = dz w_hh; dw_ih = dz^T x; dw_hh = dz^T h; db = sum_n dz
//   sequence: the cell T times from h0, c0; BPTT from t = T down to 1 with
//         dh_t = dy_t + dz_{t+1} w_hh (dh_n at T) and dc_t from step t + 1 (dc_n at T).
// Gradients are written (=); null incoming gradients count as zero.
//
// Structure (one variant; the CPU kernels and tests/reference.py are the oracles):
//   * every matrix product is the library's SGEMM (cuda/gemm.cuh, exact fp32: tf32 off), its
//     strided operands giving the transposes for free and its epilogue folding in the biases
//     (bias per column) and the accumulation (beta = 1);
//   * ONE fused point-wise kernel per step and direction: lstm_pointwise_forward reads the
//     (N, 4H) pre-activations and the previous cell once and writes the activated gates (in
//     place over the pre-activations), c_new and h_new (and h_n / c_n at the last step);
//     lstm_pointwise_backward reads the gates, both cells, the incoming dh (plus dy_t) and dc
//     and writes dz and dc_prev;
//   * the sequence driver loops over T on the host and only enqueues work on `stream`: the
//     input projection of all T steps is ONE GEMM ((T N) x I times I x 4H, b_ih folded in);
//     each step adds h_{t-1} w_hh^T + b_hh onto its rows (beta = 1), then the point-wise kernel.
//     Inference (gates and cells null) projects chunks of steps into a workspace of at most
//     kInferBytes and keeps the running cell in c_n. BPTT keeps the running dh / dc in dh0 /
//     dc0 (as the CPU), stores dz of every step in one (T, N, 4H) workspace, and after the loop
//     computes dw_ih = dz^T x, dw_hh = dz[0]^T h0 + dz[1:]^T y[:-1] and dx = dz w_ih as single
//     GEMMs over all T N rows, and db with the deterministic column sum of cuda/reduce.cuh.
// Workspaces are stream-ordered (cudaMallocAsync / cudaFreeAsync), one per call. Nothing here
// synchronises or copies to the host, so a training step stays asynchronous.
//
// Napkin math (H100, fp32 SIMT GEMM ~40-50 TFLOP/s, ~3.3 TB/s): a step's recurrent GEMM is
// 2 N H 4H FLOP (N = 64, H = 512: 134 MFLOP, ~3 us at peak, but a 64 x 2048 output is only 16
// tiles of 128 x 128: a handful of SMs busy, so per-step latency, not FLOP/s, bounds the
// sequence); its point-wise kernel moves ~36 N H bytes (~1.2 MB: < 1 us). cuDNN's persistent
// RNN kernels keep w_hh on chip across steps; this driver does not (launch-bound at small N).
#include <algorithm>
#include <cstdint>

#include "common/check.h"
#include "cuda/common.cuh"
#include "cuda/device_util.cuh"
#include "cuda/gemm.cuh"
#include "cuda/reduce.cuh"
#include "cuda/rnn.cuh"

namespace fastdl::cuda {

using std::int64_t;

namespace {

// Inference's pre-activation workspace cap (a define only so the CPU emulator of tests/cuda_emu
// can make it small enough to exercise several chunks).
#ifndef FASTDL_RNN_INFER_BYTES
#define FASTDL_RNN_INFER_BYTES (std::int64_t(32) << 20)
#endif
constexpr int64_t kInferBytes = FASTDL_RNN_INFER_BYTES;

// ---------------------------------------------------------------------------------------------
// Matrix products through cuda/gemm.cuh
// ---------------------------------------------------------------------------------------------

// A row-major (rows x ld) matrix, and the transpose of one (element (i, j) at p[j * ld + i]).
StridedMatrix rows_of(const float* p, int64_t ld) { return {p, 0, ld, 1}; }
StridedMatrix transpose_of(const float* p, int64_t ld) { return {p, 0, 1, ld}; }

// c (m x n, contiguous) = a (m x k) b (k x n) + beta c + bias (per column, length n, or null).
// k = 0 is an empty sum: c = beta c + bias, zeros when beta = 0 and there is no bias.
void mm(float* c, const StridedMatrix& a, const StridedMatrix& b, int64_t m, int64_t n, int64_t k,
        float beta, const float* bias, cudaStream_t stream) {
  if (m == 0 || n == 0) return;
  if (k == 0 && bias == nullptr) {
    if (beta == 0.f) CUDA_CHECK(cudaMemsetAsync(c, 0, sizeof(float) * size_t(m * n), stream));
    return;
  }
  GemmEpilogue e;
  e.beta = beta;
  e.bias_col = bias;
  gemm(c, 0, n, a, b, 1, m, n, k, e, /*tf32=*/false, stream);
}

// ---------------------------------------------------------------------------------------------
// Point-wise kernels
// ---------------------------------------------------------------------------------------------

struct TanhOp {
  __device__ float operator()(float a, float) const { return tanhf(a); }
};
struct TanhGradOp {  // da = dh (1 - y^2), from the output y
  __device__ float operator()(float dh, float y) const { return dh * (1.f - y * y); }
};

// Element e = r * hid + j of the (n, hid) state; z / gates rows are 4 hid wide. gates may be z
// (in place) and c_new may be c_prev (inference's running cell): each thread reads all its
// inputs before writing, and touches only its own elements, so no __restrict__ on those.
__global__ void __launch_bounds__(kMapThreads)
lstm_pointwise_forward(float* gates, float* c_new, float* __restrict__ h_new,
                       float* __restrict__ c_last, float* __restrict__ h_last, const float* z,
                       const float* c_prev, int64_t n, int64_t hid) {
  const int64_t total = n * hid, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
    const int64_t r = e / hid, j = e - r * hid;
    const float* zr = z + r * 4 * hid;
    const float i = sigmoid_f(zr[j]), f = sigmoid_f(zr[hid + j]), g = tanhf(zr[2 * hid + j]),
                o = sigmoid_f(zr[3 * hid + j]);
    const float c = f * c_prev[e] + i * g;
    const float h = o * tanhf(c);
    float* gr = gates + r * 4 * hid;
    gr[j] = i;
    gr[hid + j] = f;
    gr[2 * hid + j] = g;
    gr[3 * hid + j] = o;
    c_new[e] = c;
    h_new[e] = h;
    if (c_last) c_last[e] = c;
    if (h_last) h_last[e] = h;
  }
}

// dz (n, 4H) and dc_prev (n, H) from dh (+ dy when not null), dc (null: zero), the activated
// gates, the previous cell and c_new. dc_prev may be dc (the running gradient of BPTT).
__global__ void __launch_bounds__(kMapThreads)
lstm_pointwise_backward(float* __restrict__ dz, float* dc_prev, const float* __restrict__ dh,
                        const float* __restrict__ dy, const float* dc,
                        const float* __restrict__ gates, const float* __restrict__ c_prev,
                        const float* __restrict__ c_new, int64_t n, int64_t hid) {
  const int64_t total = n * hid, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
    const int64_t r = e / hid, j = e - r * hid;
    const float* gr = gates + r * 4 * hid;
    const float i = gr[j], f = gr[hid + j], g = gr[2 * hid + j], o = gr[3 * hid + j];
    const float dhv = (dh ? dh[e] : 0.f) + (dy ? dy[e] : 0.f);
    const float tc = tanhf(c_new[e]);
    const float dct = (dc ? dc[e] : 0.f) + dhv * o * (1.f - tc * tc);
    float* dzr = dz + r * 4 * hid;
    dzr[j] = dct * g * i * (1.f - i);
    dzr[hid + j] = dct * c_prev[e] * f * (1.f - f);
    dzr[2 * hid + j] = dct * i * (1.f - g * g);
    dzr[3 * hid + j] = dhv * tc * o * (1.f - o);
    dc_prev[e] = dct * f;
  }
}

void launch_forward_step(float* gates, float* c_new, float* h_new, float* c_last, float* h_last,
                         const float* z, const float* c_prev, int64_t n, int64_t hid,
                         cudaStream_t stream) {
  if (n * hid == 0) return;
  lstm_pointwise_forward<<<grid_for(n * hid, 1), kMapThreads, 0, stream>>>(
      gates, c_new, h_new, c_last, h_last, z, c_prev, n, hid);
  CUDA_CHECK_LAUNCH();
}

void launch_backward_step(float* dz, float* dc_prev, const float* dh, const float* dy,
                          const float* dc, const float* gates, const float* c_prev,
                          const float* c_new, int64_t n, int64_t hid, cudaStream_t stream) {
  if (n * hid == 0) return;
  lstm_pointwise_backward<<<grid_for(n * hid, 1), kMapThreads, 0, stream>>>(
      dz, dc_prev, dh, dy, dc, gates, c_prev, c_new, n, hid);
  CUDA_CHECK_LAUNCH();
}

// dst = src (count floats, device to device, stream-ordered), or zeros when src is null.
void copy_or_zero(float* dst, const float* src, int64_t count, cudaStream_t stream) {
  if (count == 0) return;
  if (src)
    CUDA_CHECK(cudaMemcpyAsync(dst, src, sizeof(float) * size_t(count), cudaMemcpyDeviceToDevice,
                               stream));
  else
    CUDA_CHECK(cudaMemsetAsync(dst, 0, sizeof(float) * size_t(count), stream));
}

// The weight, input and bias gradients shared by both cells: from da / dz (n, g) with g = H
// (RNN) or 4H (LSTM).
void cell_grads(float* dx, float* dh, float* dw_ih, float* dw_hh, float* db, const float* da,
                const float* x, const float* h, const float* w_ih, const float* w_hh, int64_t n,
                int64_t in, int64_t hid, int64_t g, cudaStream_t stream) {
  mm(dx, rows_of(da, g), rows_of(w_ih, in), n, in, g, 0.f, nullptr, stream);
  mm(dh, rows_of(da, g), rows_of(w_hh, hid), n, hid, g, 0.f, nullptr, stream);
  mm(dw_ih, transpose_of(da, g), rows_of(x, in), g, in, n, 0.f, nullptr, stream);
  mm(dw_hh, transpose_of(da, g), rows_of(h, hid), g, hid, n, 0.f, nullptr, stream);
  sum_rows(db, da, n, g, stream);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// RNN cell
// ---------------------------------------------------------------------------------------------

void rnn_cell_forward(float* h_new, const float* x, const float* h, const float* w_ih,
                      const float* w_hh, const float* b_ih, const float* b_hh, int64_t n,
                      int64_t in, int64_t hid, cudaStream_t stream) {
  mm(h_new, rows_of(x, in), transpose_of(w_ih, in), n, hid, in, 0.f, b_ih, stream);
  mm(h_new, rows_of(h, hid), transpose_of(w_hh, hid), n, hid, hid, 1.f, b_hh, stream);
  launch_map(h_new, h_new, nullptr, n * hid, TanhOp{}, stream);
}

void rnn_cell_backward(float* dx, float* dh, float* dw_ih, float* dw_hh, float* db,
                       const float* dh_new, const float* x, const float* h, const float* w_ih,
                       const float* w_hh, const float* h_new, int64_t n, int64_t in, int64_t hid,
                       cudaStream_t stream) {
  DeviceBuffer<float> da(std::max<int64_t>(1, n * hid), stream);
  launch_map(da.p, dh_new, h_new, n * hid, TanhGradOp{}, stream);
  cell_grads(dx, dh, dw_ih, dw_hh, db, da.p, x, h, w_ih, w_hh, n, in, hid, hid, stream);
}

// ---------------------------------------------------------------------------------------------
// LSTM cell
// ---------------------------------------------------------------------------------------------

void lstm_cell_forward(float* h_new, float* c_new, float* gates, const float* x, const float* h,
                       const float* c, const float* w_ih, const float* w_hh, const float* b_ih,
                       const float* b_hh, int64_t n, int64_t in, int64_t hid,
                       cudaStream_t stream) {
  const int64_t g4 = 4 * hid;
  // The pre-activations are built in `gates` and activated in place.
  mm(gates, rows_of(x, in), transpose_of(w_ih, in), n, g4, in, 0.f, b_ih, stream);
  mm(gates, rows_of(h, hid), transpose_of(w_hh, hid), n, g4, hid, 1.f, b_hh, stream);
  launch_forward_step(gates, c_new, h_new, nullptr, nullptr, gates, c, n, hid, stream);
}

void lstm_cell_backward(float* dx, float* dh, float* dc, float* dw_ih, float* dw_hh, float* db,
                        const float* dh_new, const float* dc_new, const float* x, const float* h,
                        const float* c, const float* w_ih, const float* w_hh, const float* gates,
                        const float* c_new, int64_t n, int64_t in, int64_t hid,
                        cudaStream_t stream) {
  const int64_t g4 = 4 * hid;
  DeviceBuffer<float> dz(std::max<int64_t>(1, n * g4), stream);
  launch_backward_step(dz.p, dc, dh_new, nullptr, dc_new, gates, c, c_new, n, hid, stream);
  cell_grads(dx, dh, dw_ih, dw_hh, db, dz.p, x, h, w_ih, w_hh, n, in, hid, g4, stream);
}

// ---------------------------------------------------------------------------------------------
// LSTM over a whole sequence
// ---------------------------------------------------------------------------------------------

void lstm_forward(float* y, float* h_n, float* c_n, float* gates, float* cells, const float* x,
                  const float* h0, const float* c0, const float* w_ih, const float* w_hh,
                  const float* b_ih, const float* b_hh, int64_t t, int64_t n, int64_t in,
                  int64_t hid, cudaStream_t stream) {
  const int64_t g4 = 4 * hid, nh = n * hid;
  if (t == 0 || nh == 0) {
    copy_or_zero(h_n, h0, nh, stream);
    copy_or_zero(c_n, c0, nh, stream);
    return;
  }
  const bool training = gates != nullptr;
  // Inference: chunks of `chunk` steps share one pre-activation workspace.
  const int64_t step_floats = n * g4;
  const int64_t chunk =
      training ? t
               : std::clamp<int64_t>(kInferBytes / int64_t(sizeof(float)) / std::max<int64_t>(
                                                                                 1, step_floats),
                                     1, t);
  DeviceBuffer<float> ws(training ? 1 : chunk * step_floats, stream);
  float* z_all = training ? gates : ws.p;
  for (int64_t s0 = 0; s0 < t; s0 += chunk) {
    const int64_t len = std::min(chunk, t - s0);
    // The input projection of `len` steps (all T when training) as one GEMM, b_ih folded in.
    float* z0 = training ? gates + s0 * step_floats : z_all;
    mm(z0, rows_of(x + s0 * n * in, in), transpose_of(w_ih, in), len * n, g4, in, 0.f, b_ih,
       stream);
    for (int64_t s = s0; s < s0 + len; ++s) {
      float* z = z0 + (s - s0) * step_floats;
      const float* h_prev = s ? y + (s - 1) * nh : h0;
      mm(z, rows_of(h_prev, hid), transpose_of(w_hh, hid), n, g4, hid, 1.f, b_hh, stream);
      const bool last = s == t - 1;
      if (training) {
        const float* c_prev = s ? cells + (s - 1) * nh : c0;
        launch_forward_step(z, cells + s * nh, y + s * nh, last ? c_n : nullptr,
                            last ? h_n : nullptr, z, c_prev, n, hid, stream);
      } else {  // the running cell lives in c_n
        launch_forward_step(z, c_n, y + s * nh, nullptr, last ? h_n : nullptr, z, s ? c_n : c0,
                            n, hid, stream);
      }
    }
  }
}

void lstm_backward(float* dx, float* dh0, float* dc0, float* dw_ih, float* dw_hh, float* db,
                   const float* dy, const float* dh_n, const float* dc_n, const float* x,
                   const float* h0, const float* c0, const float* w_ih, const float* w_hh,
                   const float* y, const float* gates, const float* cells, int64_t t, int64_t n,
                   int64_t in, int64_t hid, cudaStream_t stream) {
  const int64_t g4 = 4 * hid, nh = n * hid, rows = t * n;
  // dh0 / dc0 carry the running gradients of h_s and c_s down the steps.
  copy_or_zero(dh0, dh_n, nh, stream);
  copy_or_zero(dc0, dc_n, nh, stream);
  DeviceBuffer<float> dz(std::max<int64_t>(1, rows * g4), stream);
  for (int64_t s = t - 1; s >= 0; --s) {
    float* dzs = dz.p + s * n * g4;
    const float* c_prev = s ? cells + (s - 1) * nh : c0;
    launch_backward_step(dzs, dc0, dh0, dy ? dy + s * nh : nullptr, dc0, gates + s * n * g4,
                         c_prev, cells + s * nh, n, hid, stream);
    mm(dh0, rows_of(dzs, g4), rows_of(w_hh, hid), n, hid, g4, 0.f, nullptr, stream);
  }
  mm(dw_ih, transpose_of(dz.p, g4), rows_of(x, in), g4, in, rows, 0.f, nullptr, stream);
  mm(dw_hh, transpose_of(dz.p, g4), rows_of(h0, hid), g4, hid, t > 0 ? n : 0, 0.f, nullptr,
     stream);
  if (t > 1)
    mm(dw_hh, transpose_of(dz.p + n * g4, g4), rows_of(y, hid), g4, hid, (t - 1) * n, 1.f,
       nullptr, stream);
  mm(dx, rows_of(dz.p, g4), rows_of(w_ih, in), rows, in, g4, 0.f, nullptr, stream);
  sum_rows(db, dz.p, rows, g4, stream);
}

}  // namespace fastdl::cuda
