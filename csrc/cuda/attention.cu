// attention.cu: flash-style scaled dot-product attention on the GPU (float32), forward and
// backward, FlashAttention-2's structure with plain FMA tiles (no tensor cores yet).
//
// Shapes: q (B, H, Sq, D), k (B, H, Sk, D), v (B, H, Sk, Dv), out / dout (B, H, Sq, Dv),
// lse (B, H, Sq); dq, dk, dv the shapes of q, k, v; all C-contiguous. Per (b, h):
//   S = scale q kᵀ (Sq, Sk), masked to -inf where causal and j > i (top-left aligned, as
//   PyTorch's is_causal, also when Sq != Sk); P = softmax_rows(S); out = P v;
//   lse_i = log sum_j exp(S_ij) over the unmasked j (natural log, scale applied).
//   A row without an unmasked key (only when Sk = 0) gives out = 0 and lse = -inf, never NaN.
// Backward (writes, =): D_i = rowsum(dout_i out_i); P_ij = exp(S_ij - lse_i) recomputed (0 where
// masked or lse_i = -inf); dP = dout vᵀ; dS = P (dP - D_i);
//   dv = Pᵀ dout, dk = scale dSᵀ q, dq = scale dS k.
//
// Kernels, 256 threads (16 x 16) per block, 64 x 64 tiles, each thread owning a 4 x 4 patch of
// a tile (rows 4 ty + i, columns 4 tx + j: one float4 of each operand per step) or a 4 x kW/16
// patch of an accumulator (rows 4 ty + i, columns kW/16 tx + j):
//   tile_dot   a 64 x 64 product X Yᵀ of two row blocks, the shared axis streamed through
//              shared memory 16 columns at a time (transposed, padded: no bank conflicts on
//              the reads), bounds-checked (rows past the end and columns past n read as 0);
//              kN > 0 makes the column count a compile-time constant (the D = 32/64/128 paths).
//   mm_acc     acc += M Z[:, slice] with M a 64 x 64 tile in shared memory and Z a row block of
//              global memory streamed 8 rows at a time through shared memory.
//   forward    one block per (b·h, query tile of 64 rows, slice of kW output columns): loops
//              over the key tiles (causal: only those with a key j <= the tile's last query),
//              online softmax (running max m and sum l per row in shared memory, the
//              accumulator rescaled by exp(m_old - m_new)), out written once, lse saved.
//   rowdot     D_i = rowsum(dout_i out_i), one thread per row.
//   dkdv       one block per (b·h, key tile, column slice): loops over the query tiles
//              (causal: from the tile holding query j0), recomputes S and P from lse, dP, dS,
//              and accumulates dk and dv in registers; written once.
//   dq         a separate pass, one block per (b·h, query tile, column slice of D), looping over
//              the key tiles: dq accumulated in registers, written once. No atomics anywhere:
//              results are bitwise repeatable for a given shape.
// Head sizes: D = Dv = 32, 64 or 128 take compiled-in column counts; any other D / Dv takes
// the generic path (runtime counts, the same kernels). An accumulator holds at most 128
// columns: wider outputs are split into column slices over gridDim.z, each recomputing the
// scores (the forward for Dv > 128, the backward for D or Dv > 128).
//
// Napkin math: forward 4 B H Sq Sk D flops (2 for S, 2 for P V at Dv = D), the backward 2.5x
// that; half of it when causal. A tile_dot step is 2 float4 shared-memory loads per 16 FMA, an
// mm_acc step (kW = 128) 4 scalar + 2 float4 loads per 32 FMA: plain FMA tiles, far below the
// tensor-core peak of sm_80/sm_90: a correct, deterministic baseline; mma tiles are the next step
// (see benchmarks/RESULTS.md). Not yet timed on a GPU.
// Indexing: offsets into q/k/v/out are 64-bit; tile-local indices are int.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "common/check.h"
#include "cuda/attention.cuh"
#include "cuda/common.cuh"

namespace fastdl::cuda {

using std::int64_t;

namespace {

constexpr int kThreads = 256;  // 16 x 16
constexpr int kTile = 64;      // query and key rows per tile
constexpr int kChunk = 16;     // columns of the shared axis per tile_dot step
// Padded row length of the transposed chunks and of the tiles M: a multiple of 4 so that a
// thread's 4 rows / columns are one aligned float4, off a multiple of 32 against bank conflicts.
constexpr int kLd = kTile + 4;
constexpr int kZRows = 8;      // rows of Z per mm_acc step
constexpr int kMaxW = 128;     // widest accumulator slice
constexpr int kBufFloats = 2 * kChunk * kLd;  // tile_dot's two chunks; mm_acc's 8 x 128 fits
static_assert(kZRows * kMaxW <= kBufFloats, "mm_acc's chunk must fit the shared buffer");
// Tiles per grid row; more loop (grid-stride). The emulator (tests/cuda_emu/run.sh) sets it to 2
// so that its short sequences take the loop.
#ifndef FASTDL_ATTN_MAX_GRID_Y
#define FASTDL_ATTN_MAX_GRID_Y 65535
#endif
constexpr unsigned kMaxGridY = FASTDL_ATTN_MAX_GRID_Y;

// ---- tile products -----------------------------------------------------------------------------

// acc[i][j] = sum_{c < n} x[(4 ty + i) n + c] y[(4 tx + j) n + c]; rows of x at or past
// x_rows, of y at or past y_rows, and columns at or past n read as 0. buf: kBufFloats of shared
// memory. Every thread of the block calls it; for n > 0 it synchronises and returns synchronised
// (for n = 0 it touches no shared memory and does not synchronise).
template <int kN>
__device__ __forceinline__ void tile_dot(float (&acc)[4][4], const float* __restrict__ x,
                                         int x_rows, const float* __restrict__ y, int y_rows,
                                         int64_t n_runtime, float* buf) {
  const int64_t n = kN > 0 ? kN : n_runtime;
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  float* sx = buf;
  float* sy = buf + kChunk * kLd;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    // 64 rows x 16 columns of each operand; consecutive threads read consecutive columns.
    for (int e = tid; e < kTile * kChunk; e += kThreads) {
      const int r = e / kChunk, c = e % kChunk;
      const bool col_ok = (kN > 0 && kN % kChunk == 0) || c0 + c < n;
      sx[c * kLd + r] = (r < x_rows && col_ok) ? x[int64_t(r) * n + c0 + c] : 0.f;
      sy[c * kLd + r] = (r < y_rows && col_ok) ? y[int64_t(r) * n + c0 + c] : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int c = 0; c < kChunk; ++c) {
      const float4 a4 = *reinterpret_cast<const float4*>(sx + c * kLd + ty * 4);
      const float4 b4 = *reinterpret_cast<const float4*>(sy + c * kLd + tx * 4);
      const float a[4] = {a4.x, a4.y, a4.z, a4.w}, b[4] = {b4.x, b4.y, b4.z, b4.w};
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
}

// acc[i][j] += sum_{r < 64} m[(4 ty + i) kLd + r] z[r w + c0 + kW/16 tx + j]: m a 64 x 64 tile in
// shared memory (row length kLd), z a row block in global memory with z_rows valid rows of w
// columns; rows at or past z_rows and columns at or past w read as 0 (m must be finite there).
// Every thread calls it; for z_rows > 0 it returns synchronised.
template <int kW>
__device__ __forceinline__ void mm_acc(float (&acc)[4][kW / 16], const float* m,
                                       const float* __restrict__ z, int z_rows, int64_t w,
                                       int64_t c0, float* buf) {
  constexpr int kJ = kW / 16;
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  for (int k0 = 0; k0 < z_rows; k0 += kZRows) {
    for (int e = tid; e < kZRows * kW; e += kThreads) {
      const int r = e / kW, c = e % kW;
      const int64_t col = c0 + c;
      buf[r * kW + c] = (k0 + r < z_rows && col < w) ? z[int64_t(k0 + r) * w + col] : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kZRows; ++r) {
      float a[4], b[kJ];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = m[(ty * 4 + i) * kLd + k0 + r];
      if constexpr (kJ % 4 == 0) {
#pragma unroll
        for (int j = 0; j < kJ; j += 4) {
          const float4 b4 = *reinterpret_cast<const float4*>(buf + r * kW + tx * kJ + j);
          b[j] = b4.x, b[j + 1] = b4.y, b[j + 2] = b4.z, b[j + 3] = b4.w;
        }
      } else {
#pragma unroll
        for (int j = 0; j < kJ; ++j) b[j] = buf[r * kW + tx * kJ + j];
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < kJ; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
}

struct Dims {
  int64_t sq, sk, d, dv;
  int64_t q_tiles, k_tiles;
  bool causal;
  float scale;
};

// Keys a query tile starting at i0 can see: all, or (causal) those j <= its last row.
__device__ __forceinline__ int64_t visible_keys(const Dims& p, int64_t i0) {
  return p.causal ? std::min<int64_t>(p.sk, i0 + kTile) : p.sk;
}

// ---- forward -----------------------------------------------------------------------------------

template <int kD, int kW>
__global__ void __launch_bounds__(kThreads)
attention_forward_kernel(float* __restrict__ out, float* __restrict__ lse,
                         const float* __restrict__ q, const float* __restrict__ k,
                         const float* __restrict__ v, Dims p) {
  constexpr int kJ = kW / 16;
  __shared__ __align__(16) float buf[kBufFloats];
  __shared__ float ss[kTile * kLd];               // scores, then probabilities
  __shared__ float red_max[kTile * 4], red_sum[kTile * 4];
  __shared__ float m_run[kTile], l_run[kTile], alpha_s[kTile];
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  const int sr = tid / 4, part = tid % 4;  // softmax statistics: 4 threads per row
  const int64_t bh = blockIdx.x, c0 = int64_t(blockIdx.z) * kW;
  for (int64_t t = blockIdx.y; t < p.q_tiles; t += gridDim.y) {
    const int64_t qt = p.q_tiles - 1 - t;  // causal: the longest tiles first
    const int64_t i0 = qt * kTile;
    const int q_rows = int(std::min<int64_t>(kTile, p.sq - i0));
    const float* qb = q + (bh * p.sq + i0) * p.d;
    if (tid < kTile) m_run[tid] = -INFINITY, l_run[tid] = 0.f;
    float acc[4][kJ];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < kJ; ++j) acc[i][j] = 0.f;
    const int64_t keys = visible_keys(p, i0);
    for (int64_t j0 = 0; j0 < keys; j0 += kTile) {
      const int k_rows = int(std::min<int64_t>(kTile, p.sk - j0));
      float s[4][4];
      tile_dot<kD>(s, qb, q_rows, k + (bh * p.sk + j0) * p.d, k_rows, p.d, buf);
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int row = ty * 4 + i, col = tx * 4 + j;
          const bool ok = col < k_rows && (!p.causal || j0 + col <= i0 + row);
          ss[row * kLd + col] = ok ? s[i][j] * p.scale : -INFINITY;
        }
      __syncthreads();
      // Online softmax: the tile's row max, the new running max, probabilities in place.
      float mloc = -INFINITY;
      for (int c = part * 16; c < part * 16 + 16; ++c) mloc = fmaxf(mloc, ss[sr * kLd + c]);
      red_max[sr * 4 + part] = mloc;
      __syncthreads();
      const float m_old = m_run[sr];
      float m_new = m_old;
      for (int u = 0; u < 4; ++u) m_new = fmaxf(m_new, red_max[sr * 4 + u]);
      const float m_safe = m_new == -INFINITY ? 0.f : m_new;  // all masked so far: P = 0
      float psum = 0.f;
      for (int c = part * 16; c < part * 16 + 16; ++c) {
        const float e = expf(ss[sr * kLd + c] - m_safe);
        ss[sr * kLd + c] = e;
        psum += e;
      }
      red_sum[sr * 4 + part] = psum;
      __syncthreads();
      if (part == 0) {
        const float alpha = m_old == -INFINITY ? 0.f : expf(m_old - m_new);
        const float tile_sum =
            (red_sum[sr * 4] + red_sum[sr * 4 + 1]) + (red_sum[sr * 4 + 2] + red_sum[sr * 4 + 3]);
        l_run[sr] = l_run[sr] * alpha + tile_sum;
        m_run[sr] = m_new;
        alpha_s[sr] = alpha;
      }
      __syncthreads();
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float alpha = alpha_s[ty * 4 + i];
#pragma unroll
        for (int j = 0; j < kJ; ++j) acc[i][j] *= alpha;
      }
      mm_acc<kW>(acc, ss, v + (bh * p.sk + j0) * p.dv, k_rows, p.dv, c0, buf);
    }
    __syncthreads();  // l_run / m_run complete (also when no key tile ran)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int row = ty * 4 + i;
      if (row >= q_rows) continue;
      const float l = l_run[row];
      const float inv = l > 0.f ? 1.f / l : 0.f;
      float* orow = out + (bh * p.sq + i0 + row) * p.dv;
#pragma unroll
      for (int j = 0; j < kJ; ++j) {
        const int64_t col = c0 + tx * kJ + j;
        if (col < p.dv) orow[col] = acc[i][j] * inv;
      }
    }
    if (blockIdx.z == 0 && tid < q_rows) {
      const float l = l_run[tid];
      lse[bh * p.sq + i0 + tid] = l > 0.f ? m_run[tid] + logf(l) : -INFINITY;
    }
    __syncthreads();  // before the next tile resets the statistics
  }
}

// ---- backward ----------------------------------------------------------------------------------

// di[r] = sum_c dout[r, c] out[r, c]: one thread per row, the columns in order.
__global__ void __launch_bounds__(kThreads)
attention_rowdot_kernel(float* __restrict__ di, const float* __restrict__ dout,
                        const float* __restrict__ out, int64_t rows, int64_t dv) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; r < rows; r += stride) {
    float s = 0.f;
    for (int64_t c = 0; c < dv; ++c) s = fmaf(dout[r * dv + c], out[r * dv + c], s);
    di[r] = s;
  }
}

// P for a tile from its raw scores s (unscaled), 0 where masked, out of range or lse = -inf.
__device__ __forceinline__ float prob(float s, float scale, float lse_row, bool ok) {
  return ok && lse_row != -INFINITY ? expf(s * scale - lse_row) : 0.f;
}

// dk, dv of one key tile (rows j0..j0+63) and one column slice c0..c0+kW (of D for dk, of Dv
// for dv), over every query tile that sees it. Tile orientation: rows = keys, columns = queries.
template <int kD, int kDv, int kW>
__global__ void __launch_bounds__(kThreads)
attention_dkdv_kernel(float* __restrict__ dk, float* __restrict__ dv,
                      const float* __restrict__ dout, const float* __restrict__ q,
                      const float* __restrict__ k, const float* __restrict__ v,
                      const float* __restrict__ lse, const float* __restrict__ di, Dims p) {
  constexpr int kJ = kW / 16;
  __shared__ __align__(16) float buf[kBufFloats];
  __shared__ float ps[kTile * kLd], dss[kTile * kLd];
  __shared__ float lse_s[kTile], di_s[kTile];
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  const int64_t bh = blockIdx.x, c0 = int64_t(blockIdx.z) * kW;
  const bool do_k = c0 < p.d, do_v = c0 < p.dv;
  for (int64_t kt = blockIdx.y; kt < p.k_tiles; kt += gridDim.y) {
    const int64_t j0 = kt * kTile;
    const int k_rows = int(std::min<int64_t>(kTile, p.sk - j0));
    const float* kb = k + (bh * p.sk + j0) * p.d;
    const float* vb = v + (bh * p.sk + j0) * p.dv;
    float acc_k[4][kJ], acc_v[4][kJ];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < kJ; ++j) acc_k[i][j] = 0.f, acc_v[i][j] = 0.f;
    // Causal: queries i >= j0 see this tile; the tile holding query j0 is the first.
    for (int64_t i0 = p.causal ? j0 : 0; i0 < p.sq; i0 += kTile) {
      const int q_rows = int(std::min<int64_t>(kTile, p.sq - i0));
      const float* qb = q + (bh * p.sq + i0) * p.d;
      const float* dob = dout + (bh * p.sq + i0) * p.dv;
      if (tid < kTile) {
        lse_s[tid] = tid < q_rows ? lse[bh * p.sq + i0 + tid] : -INFINITY;
        di_s[tid] = tid < q_rows ? di[bh * p.sq + i0 + tid] : 0.f;
      }
      __syncthreads();  // lse_s / di_s (tile_dot does not synchronise when D = 0)
      float s[4][4], dp[4][4];
      tile_dot<kD>(s, kb, k_rows, qb, q_rows, p.d, buf);
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int row = ty * 4 + i, col = tx * 4 + j;
          const bool ok = row < k_rows && col < q_rows && (!p.causal || j0 + row <= i0 + col);
          s[i][j] = prob(s[i][j], p.scale, lse_s[col], ok);
          ps[row * kLd + col] = s[i][j];
        }
      tile_dot<kDv>(dp, vb, k_rows, dob, q_rows, p.dv, buf);
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int row = ty * 4 + i, col = tx * 4 + j;
          dss[row * kLd + col] = s[i][j] * (dp[i][j] - di_s[col]);
        }
      if (do_v) mm_acc<kW>(acc_v, ps, dob, q_rows, p.dv, c0, buf);
      if (do_k) mm_acc<kW>(acc_k, dss, qb, q_rows, p.d, c0, buf);
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int row = ty * 4 + i;
      if (row >= k_rows) continue;
#pragma unroll
      for (int j = 0; j < kJ; ++j) {
        const int64_t col = c0 + tx * kJ + j;
        if (col < p.d) dk[(bh * p.sk + j0 + row) * p.d + col] = acc_k[i][j] * p.scale;
        if (col < p.dv) dv[(bh * p.sk + j0 + row) * p.dv + col] = acc_v[i][j];
      }
    }
    __syncthreads();
  }
}

// dq of one query tile and one column slice of D, over every key tile it sees (its own pass,
// so that no two blocks add into the same dq row). Tile orientation: rows = queries.
template <int kD, int kDv, int kW>
__global__ void __launch_bounds__(kThreads)
attention_dq_kernel(float* __restrict__ dq, const float* __restrict__ dout,
                    const float* __restrict__ q, const float* __restrict__ k,
                    const float* __restrict__ v, const float* __restrict__ lse,
                    const float* __restrict__ di, Dims p) {
  constexpr int kJ = kW / 16;
  __shared__ __align__(16) float buf[kBufFloats];
  __shared__ float dss[kTile * kLd];
  __shared__ float lse_s[kTile], di_s[kTile];
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  const int64_t bh = blockIdx.x, c0 = int64_t(blockIdx.z) * kW;
  for (int64_t t = blockIdx.y; t < p.q_tiles; t += gridDim.y) {
    const int64_t i0 = (p.q_tiles - 1 - t) * kTile;
    const int q_rows = int(std::min<int64_t>(kTile, p.sq - i0));
    const float* qb = q + (bh * p.sq + i0) * p.d;
    const float* dob = dout + (bh * p.sq + i0) * p.dv;
    if (tid < kTile) {
      lse_s[tid] = tid < q_rows ? lse[bh * p.sq + i0 + tid] : -INFINITY;
      di_s[tid] = tid < q_rows ? di[bh * p.sq + i0 + tid] : 0.f;
    }
    __syncthreads();
    float acc[4][kJ];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < kJ; ++j) acc[i][j] = 0.f;
    const int64_t keys = visible_keys(p, i0);
    for (int64_t j0 = 0; j0 < keys; j0 += kTile) {
      const int k_rows = int(std::min<int64_t>(kTile, p.sk - j0));
      const float* kb = k + (bh * p.sk + j0) * p.d;
      float s[4][4], dp[4][4];
      tile_dot<kD>(s, qb, q_rows, kb, k_rows, p.d, buf);
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int row = ty * 4 + i, col = tx * 4 + j;
          const bool ok = row < q_rows && col < k_rows && (!p.causal || j0 + col <= i0 + row);
          s[i][j] = prob(s[i][j], p.scale, lse_s[row], ok);
        }
      tile_dot<kDv>(dp, dob, q_rows, v + (bh * p.sk + j0) * p.dv, k_rows, p.dv, buf);
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int row = ty * 4 + i, col = tx * 4 + j;
          dss[row * kLd + col] = s[i][j] * (dp[i][j] - di_s[row]);
        }
      mm_acc<kW>(acc, dss, kb, k_rows, p.d, c0, buf);
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int row = ty * 4 + i;
      if (row >= q_rows) continue;
#pragma unroll
      for (int j = 0; j < kJ; ++j) {
        const int64_t col = c0 + tx * kJ + j;
        if (col < p.d) dq[(bh * p.sq + i0 + row) * p.d + col] = acc[i][j] * p.scale;
      }
    }
    __syncthreads();  // before the next tile overwrites lse_s / di_s
  }
}

// ---- launchers ---------------------------------------------------------------------------------

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The accumulator slice width for `cols` output columns: the narrowest of 32, 64, 128 that
// holds them (wider outputs take several slices of 128).
int slice_width(int64_t cols) { return cols <= 32 ? 32 : cols <= 64 ? 64 : kMaxW; }

Dims make_dims(int64_t sq, int64_t sk, int64_t d, int64_t dv, bool causal, float scale) {
  return Dims{sq, sk, d, dv, ceil_div(sq, kTile), ceil_div(sk, kTile), causal, scale};
}

dim3 grid_of(int64_t bh, int64_t tiles, int64_t slices) {
  FASTDL_CHECK(bh <= INT32_MAX && slices <= 65535, ValueError,
               "attention: B*H = ", bh, " and column slices = ", slices,
               " exceed the CUDA grid (at most 2^31 - 1 and 65535)");
  return dim3(unsigned(bh), unsigned(std::min<int64_t>(tiles, kMaxGridY)), unsigned(slices));
}

// The head-size switch of every pass: compiled-in column counts for D = Dv = 32, 64, 128, the
// generic kernels otherwise with the slice width of the widest accumulated output. F is called
// with (kD, kDv, kW) as integral constants.
template <int N>
using Int = std::integral_constant<int, N>;

template <class F>
void head_switch(int64_t d, int64_t dv, int64_t acc_cols, F&& f) {
  if (d == dv && d == 32) return f(Int<32>{}, Int<32>{}, Int<32>{});
  if (d == dv && d == 64) return f(Int<64>{}, Int<64>{}, Int<64>{});
  if (d == dv && d == 128) return f(Int<128>{}, Int<128>{}, Int<128>{});
  switch (slice_width(acc_cols)) {
    case 32: return f(Int<0>{}, Int<0>{}, Int<32>{});
    case 64: return f(Int<0>{}, Int<0>{}, Int<64>{});
    default: return f(Int<0>{}, Int<0>{}, Int<kMaxW>{});
  }
}

}  // namespace

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       int64_t b, int64_t h, int64_t sq, int64_t sk, int64_t d, int64_t dv,
                       bool causal, float scale, cudaStream_t stream) {
  const int64_t bh = b * h;
  if (bh == 0 || sq == 0) return;
  const Dims p = make_dims(sq, sk, d, dv, causal, scale);
  head_switch(d, dv, dv, [&](auto kd, auto, auto kw) {
    constexpr int kD = decltype(kd)::value, kW = decltype(kw)::value;
    // One slice at least: lse is written even when Dv = 0.
    const dim3 grid = grid_of(bh, p.q_tiles, std::max<int64_t>(1, ceil_div(dv, kW)));
    attention_forward_kernel<kD, kW><<<grid, kThreads, 0, stream>>>(out, lse, q, k, v, p);
  });
  CUDA_CHECK_LAUNCH();
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                        const float* k, const float* v, const float* out, const float* lse,
                        int64_t b, int64_t h, int64_t sq, int64_t sk, int64_t d, int64_t dvdim,
                        bool causal, float scale, cudaStream_t stream) {
  const int64_t bh = b * h;
  if (bh == 0) return;
  const Dims p = make_dims(sq, sk, d, dvdim, causal, scale);
  if (sq == 0) {  // no query sees any key: dk = dv = 0 (dq is empty)
    if (sk * d > 0) CUDA_CHECK(cudaMemsetAsync(dk, 0, sizeof(float) * size_t(bh * sk * d), stream));
    if (sk * dvdim > 0)
      CUDA_CHECK(cudaMemsetAsync(dv, 0, sizeof(float) * size_t(bh * sk * dvdim), stream));
    return;
  }
  float* di = nullptr;
  CUDA_CHECK(
      cudaMallocAsync(reinterpret_cast<void**>(&di), sizeof(float) * size_t(bh * sq), stream));
  const int64_t rows = bh * sq;
  const unsigned row_blocks = unsigned(std::min<int64_t>(ceil_div(rows, kThreads), 1 << 16));
  attention_rowdot_kernel<<<row_blocks, kThreads, 0, stream>>>(di, dout, out, rows, dvdim);
  CUDA_CHECK_LAUNCH();
  const int64_t kv_slices = ceil_div(std::max(d, dvdim), slice_width(std::max(d, dvdim)));
  if (sk > 0 && kv_slices > 0) {
    head_switch(d, dvdim, std::max(d, dvdim), [&](auto kd, auto kdv, auto kw) {
      constexpr int kD = decltype(kd)::value, kDv = decltype(kdv)::value;
      constexpr int kW = decltype(kw)::value;
      const dim3 grid = grid_of(bh, p.k_tiles, ceil_div(std::max(d, dvdim), kW));
      attention_dkdv_kernel<kD, kDv, kW>
          <<<grid, kThreads, 0, stream>>>(dk, dv, dout, q, k, v, lse, di, p);
    });
    CUDA_CHECK_LAUNCH();
  }
  if (d > 0) {
    head_switch(d, dvdim, d, [&](auto kd, auto kdv, auto kw) {
      constexpr int kD = decltype(kd)::value, kDv = decltype(kdv)::value;
      constexpr int kW = decltype(kw)::value;
      const dim3 grid = grid_of(bh, p.q_tiles, ceil_div(d, kW));
      attention_dq_kernel<kD, kDv, kW>
          <<<grid, kThreads, 0, stream>>>(dq, dout, q, k, v, lse, di, p);
    });
    CUDA_CHECK_LAUNCH();
  }
  CUDA_CHECK(cudaFreeAsync(di, stream));
}

}  // namespace fastdl::cuda
