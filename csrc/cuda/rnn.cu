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
//     When a step's product is too small to fill the GPU (N = 64: 16 of 132 SMs busy) it is
//     split along K into S batched products of the same GEMM (split_k below), whose partials
//     the point-wise kernel adds (forward) or sum_rows adds (backward's dh), in a fixed order;
//     the cells split their N-row products (h w_hh^T forward, dx and dh backward) the same way.
//     Inference (gates and cells null) projects chunks of steps into a workspace of at most
//     kInferBytes (or one step's N x 4H, if that is larger) and keeps the running cell in c_n. BPTT keeps the running dh / dc in dh0 /
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

// Split-K of the per-step recurrent products (see split_k below). The minimum chunk is a define
// only so that the emulator's small test sizes take the split path too.
#ifndef FASTDL_RNN_SPLIT_MIN_K
#define FASTDL_RNN_SPLIT_MIN_K 64
#endif
constexpr int64_t kSplitMinK = FASTDL_RNN_SPLIT_MIN_K;
constexpr int64_t kMaxSplit = 16;
constexpr int64_t kGemmTile = 128;  // gemm.cu's block tile of C (kBM = kBN = 128)

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

// A step's recurrent product has only N rows: with N = 64 and 4H = 2048 its output is 16 block
// tiles, so 16 SMs would run the whole K loop while the rest idle. Splitting K into S chunks --
// S batched products of the same GEMM (batch z reads K columns [z K/S, (z+1) K/S)) into a
// workspace, summed afterwards in a fixed order -- puts S times as many blocks to work. S is
// the largest power of two <= kMaxSplit with S * tiles <= the SM count, S dividing K and chunks
// of at least kSplitMinK; 1 (no split) for products that already fill the GPU. A function of
// the shapes and the device only, so results stay bitwise repeatable.
int64_t split_k(int64_t m, int64_t n, int64_t k) {
  int dev = 0, sms = 1;
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const int64_t tiles = ((m + kGemmTile - 1) / kGemmTile) * ((n + kGemmTile - 1) / kGemmTile);
  int64_t s = 1;
  while (2 * s <= kMaxSplit && 2 * s * tiles <= sms && k % (2 * s) == 0 &&
         k / (2 * s) >= kSplitMinK)
    s *= 2;
  return s;
}

// partial[z] (m x n, contiguous, batch stride m n) = A[:, z kc : (z+1) kc] B[z kc : (z+1) kc, :]
// for z < splits; a_step / b_step: how far one K chunk moves A's and B's pointers.
void mm_split(float* partial, StridedMatrix a, int64_t a_step, StridedMatrix b, int64_t b_step,
              int64_t m, int64_t n, int64_t kc, int64_t splits, cudaStream_t stream) {
  a.batch_stride = a_step;
  b.batch_stride = b_step;
  gemm(partial, m * n, n, a, b, splits, m, n, kc, GemmEpilogue{}, /*tf32=*/false, stream);
}

// out (m x n) = a (m x k) b (k x n), split along K (into `part`, splits * m * n floats) and the
// partials added by the deterministic column sum when split_k says so, else one product.
// a_kstep / b_kstep: how far one K column of a / one K row of b moves the pointer.
void mm_summed(float* out, const StridedMatrix& a, int64_t a_kstep, const StridedMatrix& b,
               int64_t b_kstep, int64_t m, int64_t n, int64_t k, int64_t splits, float* part,
               cudaStream_t stream) {
  if (splits <= 1 || m * n == 0) {
    mm(out, a, b, m, n, k, 0.f, nullptr, stream);
    return;
  }
  const int64_t kc = k / splits;
  mm_split(part, a, kc * a_kstep, b, kc * b_kstep, m, n, kc, splits, stream);
  sum_rows(out, part, splits, m * n, stream);
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

// The pre-activations of a step: z plus, when the recurrent product was split (splits > 0),
// the split partial products (n, 4H) each, in order, and the bias (4H,) (null: none).
struct SplitSum {
  const float* partial = nullptr;
  int64_t splits = 0;
  const float* bias = nullptr;
};

// Element e = r * hid + j of the (n, hid) state; z / gates rows are 4 hid wide. gates may be z
// (in place) and c_new may be c_prev (inference's running cell): each thread reads all its
// inputs before writing, and touches only its own elements, so no __restrict__ on those.
__global__ void __launch_bounds__(kMapThreads)
lstm_pointwise_forward(float* gates, float* c_new, float* __restrict__ h_new,
                       float* __restrict__ c_last, float* __restrict__ h_last, const float* z,
                       const float* c_prev, SplitSum add, int64_t n, int64_t hid) {
  const int64_t total = n * hid, stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t part_stride = n * 4 * hid;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
    const int64_t r = e / hid, j = e - r * hid;
    const float* zr = z + r * 4 * hid;
    float pre[4];
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int64_t col = q * hid + j;
      float v = zr[col];
      for (int64_t s = 0; s < add.splits; ++s) v += add.partial[s * part_stride + r * 4 * hid + col];
      if (add.bias) v += add.bias[col];
      pre[q] = v;
    }
    const float i = sigmoid_f(pre[0]), f = sigmoid_f(pre[1]), g = tanhf(pre[2]),
                o = sigmoid_f(pre[3]);
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
                         const float* z, const float* c_prev, const SplitSum& add, int64_t n,
                         int64_t hid, cudaStream_t stream) {
  if (n * hid == 0) return;
  lstm_pointwise_forward<<<grid_for(n * hid, 1), kMapThreads, 0, stream>>>(
      gates, c_new, h_new, c_last, h_last, z, c_prev, add, n, hid);
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
  // dx and dh have only N rows: split along K = g like the sequence's dh when that helps.
  const int64_t sx = split_k(n, in, g), sh = split_k(n, hid, g);
  DeviceBuffer<float> part(std::max<int64_t>({1, sx > 1 ? sx * n * in : 0, sh > 1 ? sh * n * hid : 0}),
                           stream);
  mm_summed(dx, rows_of(da, g), 1, rows_of(w_ih, in), in, n, in, g, sx, part.p, stream);
  mm_summed(dh, rows_of(da, g), 1, rows_of(w_hh, hid), hid, n, hid, g, sh, part.p, stream);
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
  // The pre-activations are built in `gates` and activated in place; the recurrent product is
  // split like the sequence's when it is small (the point-wise kernel then adds it and b_hh).
  mm(gates, rows_of(x, in), transpose_of(w_ih, in), n, g4, in, 0.f, b_ih, stream);
  const int64_t splits = n > 0 && hid > 0 ? split_k(n, g4, hid) : 1, kc = hid / splits;
  DeviceBuffer<float> part(splits > 1 ? splits * n * g4 : 1, stream);
  if (splits > 1)
    mm_split(part.p, rows_of(h, hid), kc, transpose_of(w_hh, hid), kc, n, g4, kc, splits, stream);
  else
    mm(gates, rows_of(h, hid), transpose_of(w_hh, hid), n, g4, hid, 1.f, b_hh, stream);
  launch_forward_step(gates, c_new, h_new, nullptr, nullptr, gates, c,
                      splits > 1 ? SplitSum{part.p, splits, b_hh} : SplitSum{}, n, hid, stream);
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
  // The recurrent product h_{s-1} w_hh^T (n x 4H, K = H), split when it is too small to fill
  // the GPU: its partials go to `part` and the point-wise kernel adds them and b_hh.
  const int64_t splits = split_k(n, g4, hid), kc = hid / splits;
  DeviceBuffer<float> part(splits > 1 ? splits * step_floats : 1, stream);
  const SplitSum add = splits > 1 ? SplitSum{part.p, splits, b_hh} : SplitSum{};
  for (int64_t s0 = 0; s0 < t; s0 += chunk) {
    const int64_t len = std::min(chunk, t - s0);
    // The input projection of `len` steps (all T when training) as one GEMM, b_ih folded in.
    float* z0 = training ? gates + s0 * step_floats : z_all;
    mm(z0, rows_of(x + s0 * n * in, in), transpose_of(w_ih, in), len * n, g4, in, 0.f, b_ih,
       stream);
    for (int64_t s = s0; s < s0 + len; ++s) {
      float* z = z0 + (s - s0) * step_floats;
      const float* h_prev = s ? y + (s - 1) * nh : h0;
      if (splits > 1)
        mm_split(part.p, rows_of(h_prev, hid), kc, transpose_of(w_hh, hid), kc, n, g4, kc, splits,
                 stream);
      else
        mm(z, rows_of(h_prev, hid), transpose_of(w_hh, hid), n, g4, hid, 1.f, b_hh, stream);
      const bool last = s == t - 1;
      if (training) {
        const float* c_prev = s ? cells + (s - 1) * nh : c0;
        launch_forward_step(z, cells + s * nh, y + s * nh, last ? c_n : nullptr,
                            last ? h_n : nullptr, z, c_prev, add, n, hid, stream);
      } else {  // the running cell lives in c_n
        launch_forward_step(z, c_n, y + s * nh, nullptr, last ? h_n : nullptr, z, s ? c_n : c0,
                            add, n, hid, stream);
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
  // dh_{s-1} = dz_s w_hh (n x H, K = 4H): split like the forward's product when small; the
  // partials are added by the deterministic column sum (sum_rows over the split axis).
  const int64_t splits = t > 0 ? split_k(n, hid, g4) : 1;
  DeviceBuffer<float> part(splits > 1 ? std::max<int64_t>(1, splits * nh) : 1, stream);
  for (int64_t s = t - 1; s >= 0; --s) {
    float* dzs = dz.p + s * n * g4;
    const float* c_prev = s ? cells + (s - 1) * nh : c0;
    launch_backward_step(dzs, dc0, dh0, dy ? dy + s * nh : nullptr, dc0, gates + s * n * g4,
                         c_prev, cells + s * nh, n, hid, stream);
    mm_summed(dh0, rows_of(dzs, g4), 1, rows_of(w_hh, hid), hid, n, hid, g4, splits, part.p,
              stream);
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
