// loss.cu: cross-entropy (fused with softmax), mean squared error and binary cross-entropy with
// logits; forward (mean loss) and backward (gradient of the mean), float32.
//
// Shapes: cross_entropy logits/probs/dlogits (N, C), target (N,) int64; mse and bce: any shape,
// pred/logits and target alike (n contiguous elements).
//   cross_entropy  per row, the softmax sweep of softmax_rows.cuh (a warp per row for C <= 1024,
//                  else a block): m = max x, s = sum exp(x - m), probs = exp(x - m) / s, and the
//                  row's first thread writes loss_i = (m - x[t]) + log s (float, as the CPU) to
//                  a double workspace -- exact for logits of any magnitude. A row of all -inf
//                  gives probs 0 (NaN if it holds a NaN) and loss NaN, as on the CPU. One block
//                  then adds the N row losses in a fixed order.
//                  backward: probs / N everywhere, then one thread per row writes
//                  (probs[t] - 1) / N: the CPU kernel's expressions, so the same bits.
//   mse            mean (p - t)^2 in double;         backward 2 (p - t) / n (float)
//   bce            mean max(x, 0) - x t + log1p(exp(-|x|)) in double (never overflows);
//                  backward (sigmoid(x) - t) / n with activation.cu's sigmoid
// Targets: the thread that reads target[i] checks 0 <= t < C before indexing with it; a bad one
// is recorded with an integer atomicMin (the first bad row wins, whatever the schedule) and the
// launcher, which synchronises anyway, copies it back and throws ValueError.
//
// Variants: these are single-pass streams; the only reference needed is the CPU (the tests
// compare against it and against NumPy float64).
//
// Napkin math: cross_entropy forward moves 8 bytes per logit (read x, write probs) + 16 per row;
// backward 8 per logit. mse/bce forward read 8 bytes per element and write 8 per 16K-element
// chunk; their backward moves 12. A (4096, 1000) cross-entropy is ~33 MB: ~10 us of bandwidth,
// so the device-to-host copy of the loss (and the launch latency) dominates at typical sizes.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "common/check.h"
#include "cuda/common.cuh"
#include "cuda/device_util.cuh"
#include "cuda/loss.cuh"
#include "cuda/softmax_rows.cuh"

namespace fastdl::cuda {

using std::int64_t;
using u64 = unsigned long long;

namespace {

constexpr u64 kNoBadRow = ~u64(0);

// Row r's target, or -1 (recording r in *bad) when it is out of range.
__device__ __forceinline__ int64_t checked_target(const int64_t* target, int64_t r, int64_t c,
                                                  u64* bad) {
  const int64_t t = target[r];
  if (t < 0 || t >= c) {
    atomicMin(bad, u64(r));
    return -1;
  }
  return t;
}

// ---------------------------------------------------------------------------------------------
// cross_entropy
// ---------------------------------------------------------------------------------------------

template <int kRowThreads>
__global__ void __launch_bounds__(kRowBlock)
cross_entropy_forward_kernel(float* __restrict__ probs, double* __restrict__ row_loss,
                             u64* bad, const float* __restrict__ logits,
                             const int64_t* __restrict__ target, int64_t n, int64_t c) {
  __shared__ float smem[kRowBlock / 32];
  const int lane = int(threadIdx.x % kRowThreads);
  for (int64_t r = first_row<kRowThreads>(); r < n; r += row_stride<kRowThreads>()) {
    const float* x = logits + r * c;
    const RowStats st = row_stats<kRowThreads>(x, c, lane, smem);
    row_write<kRowThreads>(probs + r * c, x, c, lane, st, false);
    if (lane == 0) {
      const int64_t t = checked_target(target, r, c, bad);
      row_loss[r] = t < 0 || st.max == -INFINITY
                        ? std::numeric_limits<double>::quiet_NaN()
                        : double((st.max - x[t]) + logf(st.sum));
    }
  }
}

struct Scale {
  float s;
  __device__ float operator()(float x, float) const { return x * s; }
};

__global__ void cross_entropy_backward_fix_kernel(float* __restrict__ dlogits, u64* bad,
                                                  const float* __restrict__ probs,
                                                  const int64_t* __restrict__ target, int64_t n,
                                                  int64_t c, float inv) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; r < n; r += stride) {
    const int64_t t = checked_target(target, r, c, bad);
    if (t >= 0) dlogits[r * c + t] = (probs[r * c + t] - 1.f) * inv;
  }
}

// Copies the bad-row flag back (synchronising) and throws if a target was out of range.
void throw_if_bad_target(const u64* bad, const int64_t* target, int64_t c, const char* op,
                         cudaStream_t stream) {
  u64 row = kNoBadRow;
  CUDA_CHECK(cudaMemcpyAsync(&row, bad, sizeof(u64), cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  if (row == kNoBadRow) return;
  int64_t value = 0;
  CUDA_CHECK(cudaMemcpyAsync(&value, target + row, sizeof(int64_t), cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  throw fastdl::ValueError(fastdl::detail::concat(op, ": target[", row, "] = ", value,
                                                  " is out of range [0, C) with C = ", c));
}

// ---------------------------------------------------------------------------------------------
// mse and bce terms (summed by deterministic_sum) and gradients (launch_map)
// ---------------------------------------------------------------------------------------------

struct MseTerm {
  const float* p;
  const float* t;
  __device__ double operator()(int64_t i) const {
    const double d = double(p[i]) - double(t[i]);
    return d * d;
  }
};

struct BceTerm {
  const float* x;
  const float* t;
  __device__ double operator()(int64_t i) const {
    const double v = double(x[i]), y = double(t[i]);
    return fmax(v, 0.0) - v * y + log1p(exp(-fabs(v)));
  }
};

struct MseGrad {
  float scale;
  __device__ float operator()(float p, float t) const { return scale * (p - t); }
};

struct BceGrad {
  float inv;
  __device__ float operator()(float x, float t) const { return (sigmoid_f(x) - t) * inv; }
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Launchers
// ---------------------------------------------------------------------------------------------

double cross_entropy_forward(float* probs, const float* logits, const int64_t* target, int64_t n,
                             int64_t c, cudaStream_t stream) {
  FASTDL_CHECK(n > 0, ValueError, "cross_entropy: the mean over an empty batch is undefined");
  // ws[0]: the total; ws[1 + r]: row r's loss. flag: the first row with a bad target.
  DeviceBuffer<double> ws(n + 1, stream);
  DeviceBuffer<u64> flag(1, stream);
  CUDA_CHECK(cudaMemsetAsync(flag.p, 0xff, sizeof(u64), stream));
  if (c <= kWarpRowMax)
    cross_entropy_forward_kernel<32><<<row_grid(n, 32), kRowBlock, 0, stream>>>(
        probs, ws.p + 1, flag.p, logits, target, n, c);
  else
    cross_entropy_forward_kernel<kRowBlock><<<row_grid(n, kRowBlock), kRowBlock, 0, stream>>>(
        probs, ws.p + 1, flag.p, logits, target, n, c);
  CUDA_CHECK_LAUNCH();
  sum_doubles_kernel<<<1, kSumThreads, 0, stream>>>(ws.p, ws.p + 1, n, 1.0);
  CUDA_CHECK_LAUNCH();
  double total = 0.0;
  CUDA_CHECK(cudaMemcpyAsync(&total, ws.p, sizeof(double), cudaMemcpyDeviceToHost, stream));
  throw_if_bad_target(flag.p, target, c, "cross_entropy", stream);  // synchronises
  return double(float(total / double(n)));  // the CPU kernel's T(sum / n)
}

void cross_entropy_backward(float* dlogits, const float* probs, const int64_t* target, int64_t n,
                            int64_t c, cudaStream_t stream) {
  FASTDL_CHECK(n > 0, ValueError,
               "cross_entropy_backward: the mean over an empty batch is undefined");
  const float inv = 1.f / float(n);
  DeviceBuffer<u64> flag(1, stream);
  CUDA_CHECK(cudaMemsetAsync(flag.p, 0xff, sizeof(u64), stream));
  launch_map(dlogits, probs, nullptr, n * c, Scale{inv}, stream);
  cross_entropy_backward_fix_kernel<<<grid_for(n, 1), kMapThreads, 0, stream>>>(
      dlogits, flag.p, probs, target, n, c, inv);
  CUDA_CHECK_LAUNCH();
  throw_if_bad_target(flag.p, target, c, "cross_entropy_backward", stream);
}

double mse_forward(const float* pred, const float* target, int64_t n, cudaStream_t stream) {
  FASTDL_CHECK(n > 0, ValueError, "mse_loss: the mean over zero elements is undefined");
  return double(float(deterministic_sum(n, MseTerm{pred, target}, 1.0, stream) / double(n)));
}

void mse_backward(float* dpred, const float* pred, const float* target, int64_t n,
                  cudaStream_t stream) {
  FASTDL_CHECK(n > 0, ValueError, "mse_loss_backward: the mean over zero elements is undefined");
  launch_map(dpred, pred, target, n, MseGrad{2.f / float(n)}, stream);
}

double bce_with_logits_forward(const float* logits, const float* target, int64_t n,
                               cudaStream_t stream) {
  FASTDL_CHECK(n > 0, ValueError,
               "binary_cross_entropy_with_logits: the mean over zero elements is undefined");
  return double(float(deterministic_sum(n, BceTerm{logits, target}, 1.0, stream) / double(n)));
}

void bce_with_logits_backward(float* dlogits, const float* logits, const float* target, int64_t n,
                              cudaStream_t stream) {
  FASTDL_CHECK(n > 0, ValueError,
               "binary_cross_entropy_with_logits_backward: the mean over zero elements is "
               "undefined");
  launch_map(dlogits, logits, target, n, BceGrad{1.f / float(n)}, stream);
}

}  // namespace fastdl::cuda
