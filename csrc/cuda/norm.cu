// norm.cu: batch normalisation on the GPU (float32): forward (training / eval) and backward.
//
// Shapes: x, y, dy, dx (N, C, L) C-contiguous; per-channel vectors (C,). m = N*L values per
// channel. Semantics (the CPU kernels', csrc/cpu/norm.cpp, and PyTorch's):
//   forward   training: mean, var = the batch's mean and biased variance per channel;
//             save_invstd = 1 / sqrt(var + eps); running stats (when given, in place)
//             = (1 - momentum) old + momentum batch, the variance unbiased (var m / (m - 1)).
//             eval: mean, var = running_mean, running_var, saved as they are used.
//             y = (x - mean) invstd weight + bias (weight, bias null: 1 and 0).
//   backward  dbias = sum dy, dweight = sum dy xhat with xhat = (x - mean) invstd (always);
//             training dx = weight invstd (dy - dbias / m - xhat dweight / m),
//             eval     dx = weight invstd dy.
//
// Kernels (three launches per pass, one read of the inputs for the statistics):
//   1. *_stats_kernel: block b = (channel, chunk) adds one chunk of a channel's m values
//      (whole rows of N, ~16K values) in double: forward the shifted sums sum(x - x0) and
//      sum((x - x0)^2) with x0 the channel's first value (the shift keeps the one-pass variance
//      free of cancellation for data far from 0, and double keeps m up to ~2^40 exact enough),
//      backward sum(dy) and sum(dy (x - mean)). A fixed-order tree per block.
//   2. *_finalize_kernel: one thread per channel adds its chunks in chunk order, writes the
//      statistics / gradients and the per-channel coefficients of the element-wise pass.
//   3. *_apply_kernel: the element-wise pass, y (or dx) from x (and dy) and 4 coefficients.
// No atomics: results are bitwise repeatable for a given shape.
//
// Known cost: for L = 1 (BatchNorm1d on (N, C)) a channel's values are C floats apart, so the
// statistics pass reads 32-byte sectors for 4 useful bytes; a channel-parallel layout would fix
// it if that case ever matters.
//
// Napkin math: forward reads x twice and writes y (12 bytes per value), backward reads x and dy
// twice and writes dx (20 bytes per value): a (64, 256, 56, 56) forward moves ~620 MB, ~0.2 ms
// at 3 TB/s.
//
// layer_norm (x (M, D), the CPU kernels' semantics, csrc/cpu/norm.cpp):
//   1. ln_forward_kernel: one block per row: the row's sum, then the sums of the deviations from
//      that mean rounded to float (exact two-pass moments; the re-reads come from L1/L2), each a
//      fixed-order tree in double; then y with the mean's rounding folded into a shift.
//   2. ln_backward_dx_kernel: one block per row: sum g and sum g xhat (g = dy weight), then dx.
//   3. ln_param_partial_kernel: block (32 columns, kLnChunkRows rows) adds dy xhat and dy down
//      its rows, 8 row-threads per column merged in a fixed order; ln_param_finalize_kernel adds
//      the chunks in chunk order in double. No atomics: bitwise repeatable.
// Napkin math (4096 x 1024): forward reads 16 MB (once from DRAM) and writes 16 MB, backward
// reads 32 MB twice (dx pass, parameter pass) and writes 16 MB: ~30 us at 3 TB/s.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>

#include "common/check.h"
#include "cuda/common.cuh"
#include "cuda/device_util.cuh"
#include "cuda/norm.cuh"

namespace fastdl::cuda {

using std::int64_t;

namespace {

constexpr int kThreads = 256;
constexpr int64_t kChunkValues = 16384;  // values of one channel per statistics block

// Chunking of a channel's N rows of L values: whole rows, about kChunkValues per chunk.
struct Chunks {
  int64_t rows;   // rows of N per chunk
  int64_t count;  // chunks per channel
};

Chunks chunks_of(int64_t n, int64_t l) {
  const int64_t rows = std::max<int64_t>(1, kChunkValues / std::max<int64_t>(l, 1));
  return {rows, (n + rows - 1) / rows};
}

// Both sums of a block, thread 0 gets them: a fixed-order tree over shared memory.
__device__ __forceinline__ double2 block_sum2(double a, double b, double2* smem) {
  smem[threadIdx.x] = make_double2(a, b);
  __syncthreads();
#pragma unroll
  for (int s = kThreads / 2; s > 0; s /= 2) {
    if (int(threadIdx.x) < s) {
      smem[threadIdx.x].x += smem[threadIdx.x + s].x;
      smem[threadIdx.x].y += smem[threadIdx.x + s].y;
    }
    __syncthreads();
  }
  return smem[0];
}

// The offsets (into (N, C, L)) of chunk q of channel ch, visited by this thread: f(offset).
template <class F>
__device__ __forceinline__ void for_chunk(int64_t n, int c, int l, int ch, int64_t q,
                                          int64_t rows, F f) {
  const int64_t n0 = q * rows, n1 = min(n, n0 + rows);
  const int count = int((n1 - n0) * l);  // <= max(kChunkValues, l): an int
  for (int j = int(threadIdx.x); j < count; j += kThreads) {
    const int r = j / l, li = j - r * l;
    f(((n0 + r) * c + ch) * l + li);
  }
}

// ---------------------------------------------------------------------------------------------
// forward
// ---------------------------------------------------------------------------------------------

__global__ void __launch_bounds__(kThreads)
forward_stats_kernel(double2* part, const float* __restrict__ x, int64_t n, int c, int l,
                     Chunks ck) {
  __shared__ double2 smem[kThreads];
  const int ch = int(blockIdx.x / ck.count);
  const int64_t q = blockIdx.x % ck.count;
  const double x0 = double(__ldg(x + int64_t(ch) * l));
  double s1 = 0.0, s2 = 0.0;
  for_chunk(n, c, l, ch, q, ck.rows, [&](int64_t i) {
    const double d = double(__ldg(x + i)) - x0;
    s1 += d;
    s2 += d * d;
  });
  const double2 s = block_sum2(s1, s2, smem);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

// coef[ch] = (mean, weight * invstd, bias, 0): y = (x - mean) * coef.y + coef.z
__global__ void forward_finalize_kernel(float4* coef, float* save_mean, float* save_invstd,
                                        float* running_mean, float* running_var,
                                        const double2* part, const float* x, const float* weight,
                                        const float* bias, int64_t n, int c, int l, Chunks ck,
                                        bool training, double momentum, double eps) {
  for (int64_t ch = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; ch < c;
       ch += int64_t(gridDim.x) * blockDim.x) {
    double mean, var;
    if (training) {
      double s1 = 0.0, s2 = 0.0;
      for (int64_t q = 0; q < ck.count; ++q) {
        s1 += part[ch * ck.count + q].x;
        s2 += part[ch * ck.count + q].y;
      }
      const double m = double(n) * double(l);
      const double d = s1 / m;
      mean = double(x[ch * l]) + d;
      var = fmax(s2 / m - d * d, 0.0);
      if (running_mean)
        running_mean[ch] = float((1.0 - momentum) * double(running_mean[ch]) + momentum * mean);
      if (running_var)
        running_var[ch] =
            float((1.0 - momentum) * double(running_var[ch]) + momentum * var * m / (m - 1.0));
    } else {
      mean = double(running_mean[ch]);
      var = double(running_var[ch]);
    }
    const double invstd = 1.0 / sqrt(var + eps);
    save_mean[ch] = float(mean);
    save_invstd[ch] = float(invstd);
    const double a = (weight ? double(weight[ch]) : 1.0) * invstd;
    coef[ch] = make_float4(float(mean), float(a), bias ? bias[ch] : 0.0f, 0.0f);
  }
}

// out = (a - coef.x) * coef.y + coef.z - b * coef.w, b null: 0. Forward: a = x, backward:
// a = x, b = dy with the signs folded into the coefficients (see backward_finalize_kernel).
template <class I>
__global__ void __launch_bounds__(kThreads)
apply_kernel(float* __restrict__ out, const float* __restrict__ a, const float* __restrict__ b,
             const float4* __restrict__ coef, I total, I c, I l) {
  for (I i = I(blockIdx.x) * kThreads + threadIdx.x; i < total; i += I(gridDim.x) * kThreads) {
    const float4 k = coef[i / l % c];
    const float v = (__ldg(a + i) - k.x) * k.y + k.z;
    out[i] = b ? v + __ldg(b + i) * k.w : v;
  }
}

// ---------------------------------------------------------------------------------------------
// backward
// ---------------------------------------------------------------------------------------------

__global__ void __launch_bounds__(kThreads)
backward_stats_kernel(double2* part, const float* __restrict__ dy, const float* __restrict__ x,
                      const float* __restrict__ save_mean, int64_t n, int c, int l, Chunks ck) {
  __shared__ double2 smem[kThreads];
  const int ch = int(blockIdx.x / ck.count);
  const int64_t q = blockIdx.x % ck.count;
  const double mean = double(save_mean[ch]);
  double s1 = 0.0, s2 = 0.0;
  for_chunk(n, c, l, ch, q, ck.rows, [&](int64_t i) {
    const double g = double(__ldg(dy + i));
    s1 += g;
    s2 += g * (double(__ldg(x + i)) - mean);
  });
  const double2 s = block_sum2(s1, s2, smem);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

// dx = (x - mean) * coef.y + coef.z + dy * coef.w with coef = (mean, -a invstd dweight / m,
// -a dbias / m, a), a = weight * invstd (training); eval: (mean, 0, 0, a).
__global__ void backward_finalize_kernel(float4* coef, float* dweight, float* dbias,
                                         const double2* part, const float* weight,
                                         const float* save_mean, const float* save_invstd,
                                         int64_t n, int c, int l, Chunks ck, bool training) {
  for (int64_t ch = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; ch < c;
       ch += int64_t(gridDim.x) * blockDim.x) {
    double s1 = 0.0, s2 = 0.0;
    for (int64_t q = 0; q < ck.count; ++q) {
      s1 += part[ch * ck.count + q].x;
      s2 += part[ch * ck.count + q].y;
    }
    const double invstd = double(save_invstd[ch]);
    const double dw = s2 * invstd;
    dbias[ch] = float(s1);
    dweight[ch] = float(dw);
    const double a = (weight ? double(weight[ch]) : 1.0) * invstd;
    const double m = double(n) * double(l);
    const bool t = training && m > 0.0;
    coef[ch] = make_float4(save_mean[ch], t ? float(-a * invstd * dw / m) : 0.0f,
                           t ? float(-a * s1 / m) : 0.0f, float(a));
  }
}

// ---------------------------------------------------------------------------------------------
// Launchers
// ---------------------------------------------------------------------------------------------

void check_sizes(const char* op, int64_t n, int64_t c, int64_t l, const Chunks& ck) {
  FASTDL_CHECK(n >= 0 && c >= 0 && l >= 0 && c <= INT_MAX && l <= INT_MAX, ValueError, op,
               ": sizes N=", n, ", C=", c, ", L=", l, " exceed the CUDA kernels' limits");
  FASTDL_CHECK(c * ck.count <= INT_MAX, ValueError, op, ": ", c, " channels of ", n * l,
               " values need more statistics blocks than one CUDA grid holds");
}

void launch_apply(float* out, const float* a, const float* b, const float4* coef, int64_t total,
                  int64_t c, int64_t l, cudaStream_t stream) {
  if (total == 0) return;
  const unsigned grid = grid_for(total, 4, kThreads);
  if (total < (int64_t(1) << 31) - int64_t(kThreads) * 65536)
    apply_kernel<unsigned><<<grid, kThreads, 0, stream>>>(out, a, b, coef, unsigned(total),
                                                         unsigned(c), unsigned(l));
  else
    apply_kernel<int64_t><<<grid, kThreads, 0, stream>>>(out, a, b, coef, total, c, l);
  CUDA_CHECK_LAUNCH();
}

unsigned channel_grid(int64_t c) { return unsigned(std::max<int64_t>(1, (c + 255) / 256)); }

// ---- layer_norm ------------------------------------------------------------------------------

constexpr int kLnChunkRows = 256;  // rows per parameter-gradient partial
constexpr int kLnRowThreads = 8;   // row-threads per column in the parameter pass

__global__ void __launch_bounds__(kThreads)
ln_forward_kernel(float* y, float* mean, float* rstd, const float* x, const float* weight,
                  const float* bias, int d, float eps) {
  __shared__ double2 smem[kThreads];
  const int64_t row = blockIdx.x;
  const float* xr = x + row * d;
  float s = 0.f;
  for (int j = threadIdx.x; j < d; j += kThreads) s += xr[j];
  const float a0 = float(block_sum2(double(s), 0.0, smem).x / d);
  __syncthreads();  // every thread has read smem[0] before the next tree overwrites it
  float s1 = 0.f, s2 = 0.f;
  for (int j = threadIdx.x; j < d; j += kThreads) {
    const float dv = xr[j] - a0;
    s1 += dv;
    s2 += dv * dv;
  }
  const double2 t = block_sum2(double(s1), double(s2), smem);
  const double mu = double(a0) + t.x / d;
  const double var = fmax(t.y - t.x * t.x / d, 0.0) / d;
  const double r = 1.0 / sqrt(var + double(eps));
  const float a = float(mu), rf = float(r), c = float(-(mu - double(a)) * r);
  if (threadIdx.x == 0) {
    mean[row] = a;
    rstd[row] = rf;
  }
  float* yr = y + row * d;
  for (int j = threadIdx.x; j < d; j += kThreads) {
    float v = (xr[j] - a) * rf + c;
    if (weight) v *= weight[j];
    if (bias) v += bias[j];
    yr[j] = v;
  }
}

__global__ void __launch_bounds__(kThreads)
ln_backward_dx_kernel(float* dx, const float* dy, const float* x, const float* weight,
                      const float* mean, const float* rstd, int d) {
  __shared__ double2 smem[kThreads];
  const int64_t row = blockIdx.x;
  const float *xr = x + row * d, *dyr = dy + row * d;
  const float a = mean[row], r = rstd[row];
  float sg = 0.f, sgx = 0.f;
  for (int j = threadIdx.x; j < d; j += kThreads) {
    const float g = weight ? dyr[j] * weight[j] : dyr[j];
    sg += g;
    sgx += g * ((xr[j] - a) * r);
  }
  const double2 t = block_sum2(double(sg), double(sgx), smem);
  const float k = float(-double(r) * t.x / d), q = float(double(r) * t.y / d);
  float* dxr = dx + row * d;
  for (int j = threadIdx.x; j < d; j += kThreads) {
    const float g = weight ? dyr[j] * weight[j] : dyr[j];
    dxr[j] = g * r + k - ((xr[j] - a) * r) * q;
  }
}

// part[chunk * d + j] = (sum dy xhat, sum dy) over the chunk's rows of column j.
__global__ void ln_param_partial_kernel(float2* part, const float* dy, const float* x,
                                        const float* mean, const float* rstd, int64_t m, int d) {
  __shared__ float2 smem[kLnRowThreads][32];
  const int j = blockIdx.x * 32 + threadIdx.x;
  const int64_t r0 = int64_t(blockIdx.y) * kLnChunkRows;
  const int64_t r1 = r0 + kLnChunkRows < m ? r0 + kLnChunkRows : m;
  float sw = 0.f, sb = 0.f;
  if (j < d)
    for (int64_t i = r0 + threadIdx.y; i < r1; i += kLnRowThreads) {
      const float g = dy[i * d + j];
      sw += g * ((x[i * d + j] - mean[i]) * rstd[i]);
      sb += g;
    }
  smem[threadIdx.y][threadIdx.x] = make_float2(sw, sb);
  __syncthreads();
  if (threadIdx.y == 0 && j < d) {
    float2 acc = smem[0][threadIdx.x];
    for (int w = 1; w < kLnRowThreads; ++w) {
      acc.x += smem[w][threadIdx.x].x;
      acc.y += smem[w][threadIdx.x].y;
    }
    part[int64_t(blockIdx.y) * d + j] = acc;
  }
}

__global__ void ln_param_finalize_kernel(float* dweight, float* dbias, const float2* part,
                                         int64_t chunks, int d) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= d) return;
  double sw = 0, sb = 0;
  for (int64_t c = 0; c < chunks; ++c) {
    sw += double(part[c * d + j].x);
    sb += double(part[c * d + j].y);
  }
  dweight[j] = float(sw);
  dbias[j] = float(sb);
}

void check_ln_sizes(const char* op, int64_t m, int64_t d) {
  FASTDL_CHECK(m >= 0 && d >= 0 && d <= INT_MAX && m <= INT_MAX, ValueError, op, ": sizes M=", m,
               ", D=", d, " exceed the CUDA kernels' limits");
  FASTDL_CHECK((m + kLnChunkRows - 1) / kLnChunkRows <= 65535, ValueError, op, ": ", m,
               " rows need more parameter-gradient chunks than one CUDA grid holds");
}

}  // namespace

void layer_norm_forward(float* y, float* mean, float* rstd, const float* x, const float* weight,
                        const float* bias, int64_t m, int64_t d, double eps, cudaStream_t stream) {
  check_ln_sizes("layer_norm", m, d);
  if (m == 0 || d == 0) return;
  ln_forward_kernel<<<unsigned(m), kThreads, 0, stream>>>(y, mean, rstd, x, weight, bias, int(d),
                                                          float(eps));
  CUDA_CHECK_LAUNCH();
}

void layer_norm_backward(float* dx, float* dweight, float* dbias, const float* dy,
                         const float* x, const float* weight, const float* mean,
                         const float* rstd, int64_t m, int64_t d, cudaStream_t stream) {
  check_ln_sizes("layer_norm_backward", m, d);
  if (d == 0) return;
  if (m > 0) {
    ln_backward_dx_kernel<<<unsigned(m), kThreads, 0, stream>>>(dx, dy, x, weight, mean, rstd,
                                                                int(d));
    CUDA_CHECK_LAUNCH();
  }
  const int64_t chunks = (m + kLnChunkRows - 1) / kLnChunkRows;
  DeviceBuffer<float2> part(std::max<int64_t>(1, chunks * d), stream);
  if (chunks > 0) {
    ln_param_partial_kernel<<<dim3(unsigned((d + 31) / 32), unsigned(chunks)),
                              dim3(32, kLnRowThreads), 0, stream>>>(part.p, dy, x, mean, rstd, m,
                                                                    int(d));
    CUDA_CHECK_LAUNCH();
  }
  ln_param_finalize_kernel<<<unsigned((d + 255) / 256), 256, 0, stream>>>(dweight, dbias, part.p,
                                                                          chunks, int(d));
  CUDA_CHECK_LAUNCH();
}

void batch_norm_forward(float* y, float* save_mean, float* save_invstd, const float* x,
                        const float* weight, const float* bias, float* running_mean,
                        float* running_var, int64_t n, int64_t c, int64_t l, bool training,
                        double momentum, double eps, cudaStream_t stream) {
  const Chunks ck = chunks_of(n, l);
  check_sizes("batch_norm", n, c, l, ck);
  const int64_t m = n * l;
  FASTDL_CHECK(!training || m > 1 || c == 0, ValueError,
               "batch_norm: training needs more than 1 value per channel, got N*L = ", m);
  FASTDL_CHECK(training || (running_mean && running_var), ValueError,
               "batch_norm: eval mode (training=False) needs running_mean and running_var");
  if (c == 0) return;
  DeviceBuffer<double2> part(training ? c * ck.count : 1, stream);
  DeviceBuffer<float4> coef(c, stream);
  if (training) {
    forward_stats_kernel<<<unsigned(c * ck.count), kThreads, 0, stream>>>(part.p, x, n, int(c),
                                                                          int(l), ck);
    CUDA_CHECK_LAUNCH();
  }
  forward_finalize_kernel<<<channel_grid(c), 256, 0, stream>>>(
      coef.p, save_mean, save_invstd, running_mean, running_var, part.p, x, weight, bias, n,
      int(c), int(l), ck, training, momentum, eps);
  CUDA_CHECK_LAUNCH();
  launch_apply(y, x, nullptr, coef.p, m * c, c, l, stream);
}

void batch_norm_backward(float* dx, float* dweight, float* dbias, const float* dy,
                         const float* x, const float* weight, const float* save_mean,
                         const float* save_invstd, int64_t n, int64_t c, int64_t l,
                         bool training, cudaStream_t stream) {
  const Chunks ck = chunks_of(n, l);
  check_sizes("batch_norm_backward", n, c, l, ck);
  if (c == 0) return;
  DeviceBuffer<double2> part(std::max<int64_t>(1, c * ck.count), stream);
  DeviceBuffer<float4> coef(c, stream);
  if (ck.count > 0) {
    backward_stats_kernel<<<unsigned(c * ck.count), kThreads, 0, stream>>>(
        part.p, dy, x, save_mean, n, int(c), int(l), ck);
    CUDA_CHECK_LAUNCH();
  }
  backward_finalize_kernel<<<channel_grid(c), 256, 0, stream>>>(
      coef.p, dweight, dbias, part.p, weight, save_mean, save_invstd, n, int(c), int(l), ck,
      training);
  CUDA_CHECK_LAUNCH();
  launch_apply(dx, x, dy, coef.p, n * c * l, c, l, stream);
}

}  // namespace fastdl::cuda
