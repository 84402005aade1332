// gemm.cu: C = act(alpha * A B + beta * C + bias) on the GPU: float32, batched, strided.
//
// Shapes: A (batch, M, K), B (batch, K, N), C (batch, M, N). C is row-major (unit column
// stride); A and B are read through (row, column, batch) element strides, so the transposed
// views of the backward passes (dA = dC B^T, dB = A^T dC) cost nothing and a 2-D operand shared
// by a batch has batch stride 0. Epilogue (gemm.cuh): alpha, beta (0 = C not read), a bias per
// row or per column, relu last. There is no backward here: backward is this product again.
//
// Variants, in order of increasing complexity:
//   1. gemm_reference_kernel: one thread per element of C, strided loads, a K loop. The oracle.
//   2. gemm_tiled_kernel<SimtMath>: exact fp32 SGEMM. A 128 x 128 block tile of C, K in slices
//      of BK = 8; 256 threads each own an 8 x 8 micro-tile in registers. The A and B slices are
//      double-buffered in shared memory (stored k-major, so a thread reads 4 consecutive rows or
//      columns as one float4) and the next slice is fetched into registers while the current one
//      is multiplied. Operands contiguous along the loaded dimension use float4 global loads,
//      others scalar loads; edge tiles are zero-filled, so any M, N, K works.
//   3. gemm_tiled_kernel<Tf32Math>: the same tiles and loader with BK = 16, multiplied on the
//      tensor cores with WMMA m16n16k8 (inputs rounded to TF32's 10-bit mantissa, fp32
//      accumulation); each of the 8 warps owns a 64 x 32 piece of the tile. Opt-in (tf32=True).
// Launchers (bottom) pick the loader mode per operand on the host and the variant by `tf32`.
//
// Napkin math (H100 SXM: ~67 TFLOP/s fp32 FMA, ~495 TFLOP/s dense TF32, ~3.3 TB/s HBM):
//   * per block and K slice the SIMT kernel brings 2 x 128 x 8 floats (8 KiB) into shared memory
//     for 2 x 128 x 128 x 8 = 262 kFLOP: 32 FLOP per byte, above the ~20 FLOP/B the fp32 roof
//     needs even if every byte came from HBM (most come from L2: tiles are swizzled, kGroupM).
//   * per k step a thread does 64 FMAs for 4 shared-memory float4 loads: 4 FMA per float read.
//   * the TF32 path uses mma.sync-class WMMA, not Hopper's wgmma/TMA, so expect it far below
//     cuBLAS's TF32 on sm_90; it is worth it where a few times the SIMT speed helps.
#include <mma.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "common/check.h"
#include "cuda/common.cuh"
#include "cuda/gemm.cuh"

namespace fastdl::cuda {

using std::int64_t;

// ---------------------------------------------------------------------------------------------
// Blocking constants (all of them)
// ---------------------------------------------------------------------------------------------
namespace tiling {
constexpr int kBM = 128;      // rows of C per block
constexpr int kBN = 128;      // columns of C per block
constexpr int kThreads = 256;
constexpr int kPad = 4;       // floats of padding per shared row: keeps float4 alignment and
                              // spreads the transposing (k-fast) stores over all 32 banks
constexpr int kGroupM = 8;    // consecutive blocks walk 8 tile-rows before the next column
                              // panel, so an A row panel and a B column panel stay in L2
constexpr int kSimtBK = 8;    // K slice of the SIMT kernel: 2 x 2 x 8 x 132 x 4 B = 16.5 KiB
constexpr int kTf32BK = 16;   // K slice of the TF32 kernel: 33 KiB + 8 KiB epilogue scratch
constexpr int kMaxBatchBlocks = 65535;  // gridDim.z limit; larger batches take more launches
constexpr int kRefBlockX = 32, kRefBlockY = 8;  // reference kernel block
}  // namespace tiling
using namespace tiling;

// ---------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------

// `old` is C's previous value, read by the caller only when beta != 0 (see c_old).
__device__ __forceinline__ float apply_epilogue(float acc, float old, int i, int j,
                                                const GemmEpilogue& e) {
  float r = e.alpha * acc;
  if (e.beta != 0.0f) r += e.beta * old;
  if (e.bias_row) r += e.bias_row[i];
  if (e.bias_col) r += e.bias_col[j];
  return (e.relu && r < 0.0f) ? 0.0f : r;  // NaN < 0 is false: NaN passes through, as in PyTorch
}

__device__ __forceinline__ float c_old(const float* c, const GemmEpilogue& e) {
  return e.beta != 0.0f ? *c : 0.0f;
}

// ---------------------------------------------------------------------------------------------
// 1. Reference: one thread per element of C
// ---------------------------------------------------------------------------------------------

// Thread (x, y) of block (bx, by, bz) computes C[z0 + bz][i][j] for j = bx * 32 + x and rows
// i = by * 8 + y, stepping by the grid's height (gridDim.y is capped at 65535).
__global__ void gemm_reference_kernel(float* c, int64_t sc, int64_t ldc, StridedMatrix a,
                                      StridedMatrix b, int64_t z0, int m, int n, int k,
                                      GemmEpilogue e) {
  const int j = int(blockIdx.x) * kRefBlockX + int(threadIdx.x);
  const int64_t z = z0 + blockIdx.z;
  if (j >= n) return;
  for (int i = int(blockIdx.y) * kRefBlockY + int(threadIdx.y); i < m;
       i += int(gridDim.y) * kRefBlockY) {
    const float* ai = a.ptr + z * a.batch_stride + i * a.rs;
    const float* bj = b.ptr + z * b.batch_stride + j * b.cs;
    float acc = 0.0f;
    for (int q = 0; q < k; ++q) acc = fmaf(ai[q * a.cs], bj[q * b.rs], acc);
    float* cij = c + z * sc + i * ldc + j;
    *cij = apply_epilogue(acc, c_old(cij, e), i, j, e);
  }
}

// ---------------------------------------------------------------------------------------------
// 2 + 3. Tiled kernels: loader, the two ways to multiply a slice, the shared main loop
// ---------------------------------------------------------------------------------------------

// One operand as the tile loader sees it: a "rows x K" matrix (A: rows = M; B read as its
// transpose: rows = N). Both are staged k-major in shared memory, s[k][row]. Prepared on the host.
struct TileOperand {
  const float* ptr;      // element (0, 0) of batch 0
  int64_t batch_stride;
  int64_t s_r;           // stride between rows (A: rsa; B: csb)
  int64_t s_k;           // stride along K      (A: csa; B: rsb)
  int rows;              // M for A, N for B
  bool k_fast;           // a thread's 4 values are 4 consecutive k of one row (else 4 rows at one k)
  bool vec;              // ... and they are contiguous and 16-byte aligned: one float4 load
};

// Moves one operand's K slices, global -> registers -> shared memory. Each thread moves
// kVectors groups of 4 values per slice. k-fast: BK/4 threads cover a row, kThreads/(BK/4) rows
// per group; row-fast: kBM/4 threads cover a k, kThreads/(kBM/4) = 8 k per group.
template <int BK, bool kToTf32>
struct TileLoader {
  static constexpr int kVectors = kBM * BK / (4 * kThreads);
  static constexpr int kRowsPerGroup = kThreads / (BK / 4);  // k-fast
  static constexpr int kKPerGroup = kThreads / (kBM / 4);    // row-fast
  static_assert(kBM == kBN, "one loader serves A and B");
  static_assert(kVectors >= 1 && kVectors * kRowsPerGroup == kBM && kVectors * kKPerGroup == BK,
                "the groups must tile the slice exactly");

  const float* p;   // this thread's first value in the current K slice
  int r, k;         // its coordinates in the slice (row within the tile, k within the slice)
  float v[kVectors][4];

  __device__ TileLoader(const TileOperand& op, int tile_r, int64_t z) {
    const int t = int(threadIdx.x);
    r = op.k_fast ? t / (BK / 4) : (t % (kBM / 4)) * 4;
    k = op.k_fast ? (t % (BK / 4)) * 4 : t / (kBM / 4);
    p = op.ptr + z * op.batch_stride + int64_t(tile_r + r) * op.s_r + int64_t(k) * op.s_k;
  }

  // Fetch the slice starting at k0 into registers; values outside rows x K read as zero.
  __device__ void load(const TileOperand& op, int tile_r, int k0, int kdim) {
    const int64_t step = op.k_fast ? op.s_k : op.s_r;  // between a thread's 4 values
#pragma unroll
    for (int g = 0; g < kVectors; ++g) {
      const int gr = tile_r + r + (op.k_fast ? g * kRowsPerGroup : 0);
      const int gk = k0 + k + (op.k_fast ? 0 : g * kKPerGroup);
      const float* q = p + (op.k_fast ? g * kRowsPerGroup * op.s_r : g * kKPerGroup * op.s_k);
      if (op.vec) {  // the host made the vector's extent a multiple of 4: all 4 in, or all out
        const float4 x = (gr < op.rows && gk < kdim) ? __ldg(reinterpret_cast<const float4*>(q))
                                                     : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        v[g][0] = x.x, v[g][1] = x.y, v[g][2] = x.z, v[g][3] = x.w;
      } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const bool in = op.k_fast ? (gr < op.rows && gk + i < kdim) : (gr + i < op.rows && gk < kdim);
          v[g][i] = in ? __ldg(q + i * step) : 0.0f;
        }
      }
    }
  }

  __device__ void advance(const TileOperand& op) { p += BK * op.s_k; }

  // Registers -> s[k][row] (k-major). Row-fast groups are one float4 store; k-fast groups
  // transpose through 4 scalar stores (conflict-free thanks to kPad).
  __device__ void store(float (*s)[kBM + kPad], const TileOperand& op) const {
#pragma unroll
    for (int g = 0; g < kVectors; ++g) {
      float x[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) x[i] = kToTf32 ? nvcuda::wmma::__float_to_tf32(v[g][i]) : v[g][i];
      if (op.k_fast) {
        const int row = r + g * kRowsPerGroup;
#pragma unroll
        for (int i = 0; i < 4; ++i) s[k + i][row] = x[i];
      } else {
        *reinterpret_cast<float4*>(&s[k + g * kKPerGroup][r]) = make_float4(x[0], x[1], x[2], x[3]);
      }
    }
  }
};

// Where this block's tile sits in C: blockIdx.x enumerates tiles in groups of kGroupM tile-rows,
// column by column within a group (the L2-friendly order), then the next group.
__device__ __forceinline__ void tile_origin(int m, int n, int& tile_m, int& tile_n) {
  const int tiles_m = (m + kBM - 1) / kBM, tiles_n = (n + kBN - 1) / kBN;
  const int per_group = kGroupM * tiles_n;
  const int id = int(blockIdx.x);
  const int first = id / per_group * kGroupM;
  const int group_rows = min(tiles_m - first, kGroupM);
  const int in_group = id % per_group;
  tile_m = (first + in_group % group_rows) * kBM;
  tile_n = in_group / group_rows * kBN;
}

// -- 2. SIMT math: thread (ty, tx) of a 16 x 16 grid owns rows {ty*4 + i, 64 + ty*4 + i} and
//    columns {tx*4 + j, 64 + tx*4 + j}, i, j < 4: the two float4 halves are 64 apart, so a warp's
//    shared-memory reads are broadcasts (A) or 256 contiguous bytes (B) - no bank conflicts.
struct SimtMath {
  static constexpr int kBK = kSimtBK;
  static constexpr bool kTf32 = false;
  static constexpr int kTM = 8, kTN = 8;
  static_assert((kBM / kTM) * (kBN / kTN) == kThreads, "one micro-tile per thread");
  struct Acc {
    float v[kTM][kTN];
  };

  // micro-tile index (0..7) -> offset in the block tile for thread coordinate t (0..15)
  __device__ static __forceinline__ int offset(int idx, int t) {
    return (idx / 4) * (kBM / 2) + t * 4 + idx % 4;
  }

  __device__ static void zero(Acc& acc) {
#pragma unroll
    for (int i = 0; i < kTM; ++i)
#pragma unroll
      for (int j = 0; j < kTN; ++j) acc.v[i][j] = 0.0f;
  }

  __device__ static void multiply(Acc& acc, const float (*as)[kBM + kPad],
                                  const float (*bs)[kBN + kPad]) {
    const int ty = int(threadIdx.x) / 16, tx = int(threadIdx.x) % 16;
#pragma unroll
    for (int kk = 0; kk < kBK; ++kk) {
      float a[kTM], b[kTN];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float4 av = *reinterpret_cast<const float4*>(&as[kk][h * (kBM / 2) + ty * 4]);
        const float4 bv = *reinterpret_cast<const float4*>(&bs[kk][h * (kBN / 2) + tx * 4]);
        a[h * 4 + 0] = av.x, a[h * 4 + 1] = av.y, a[h * 4 + 2] = av.z, a[h * 4 + 3] = av.w;
        b[h * 4 + 0] = bv.x, b[h * 4 + 1] = bv.y, b[h * 4 + 2] = bv.z, b[h * 4 + 3] = bv.w;
      }
#pragma unroll
      for (int i = 0; i < kTM; ++i)
#pragma unroll
        for (int j = 0; j < kTN; ++j) acc.v[i][j] = fmaf(a[i], b[j], acc.v[i][j]);
    }
  }

  // c_vec: C's rows are 16-byte aligned and n % 4 == 0, so each group of 4 columns is one
  // float4, entirely inside or entirely outside C.
  __device__ static void write(const Acc& acc, float* c, int64_t ldc, bool c_vec, int tile_m,
                               int tile_n, int m, int n, const GemmEpilogue& e) {
    const int ty = int(threadIdx.x) / 16, tx = int(threadIdx.x) % 16;
#pragma unroll
    for (int i = 0; i < kTM; ++i) {
      const int row = tile_m + offset(i, ty);
      if (row >= m) continue;
      float* crow = c + row * ldc;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int col = tile_n + offset(h * 4, tx);
        if (c_vec) {
          if (col >= n) continue;
          float4* dst = reinterpret_cast<float4*>(crow + col);
          const float4 old = e.beta != 0.0f ? *dst : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
          *dst = make_float4(apply_epilogue(acc.v[i][h * 4 + 0], old.x, row, col + 0, e),
                             apply_epilogue(acc.v[i][h * 4 + 1], old.y, row, col + 1, e),
                             apply_epilogue(acc.v[i][h * 4 + 2], old.z, row, col + 2, e),
                             apply_epilogue(acc.v[i][h * 4 + 3], old.w, row, col + 3, e));
        } else {
#pragma unroll
          for (int j = 0; j < 4; ++j)
            if (col + j < n)
              crow[col + j] = apply_epilogue(acc.v[i][h * 4 + j], c_old(crow + col + j, e), row,
                                             col + j, e);
        }
      }
    }
  }
};

// -- 3. TF32 tensor-core math: 8 warps as 2 x 4, each owning 64 x 32 of the tile as 4 x 2 WMMA
//    accumulators (16 x 16, fp32). The slices in shared memory are already TF32-rounded (by the
//    loader), A k-major = a col_major matrix_a, B k-major = a row_major matrix_b.
struct Tf32Math {
  static constexpr int kBK = kTf32BK;
  static constexpr bool kTf32 = true;
  static constexpr int kWarpsN = 4;
  static constexpr int kWarpM = 64, kWarpN = 32;
  static constexpr int kFragsM = kWarpM / 16, kFragsN = kWarpN / 16;
  static_assert((kBM / kWarpM) * (kBN / kWarpN) * 32 == kThreads, "one warp tile per warp");
  static_assert(kBK % 8 == 0, "WMMA TF32 steps k by 8");
  using AccFrag = nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 8, float>;
  struct Acc {
    AccFrag f[kFragsM][kFragsN];
  };

  __device__ static void zero(Acc& acc) {
#pragma unroll
    for (int i = 0; i < kFragsM; ++i)
#pragma unroll
      for (int j = 0; j < kFragsN; ++j) nvcuda::wmma::fill_fragment(acc.f[i][j], 0.0f);
  }

  // WMMA wants 32-byte aligned fragment pointers: rows are (kBM + kPad) * 4 = 528 B apart, so k
  // must step by 8 (4224 B) and columns by 16 floats (64 B) - both hold.
  __device__ static void multiply(Acc& acc, const float (*as)[kBM + kPad],
                                  const float (*bs)[kBN + kPad]) {
    namespace wmma = nvcuda::wmma;
    const int warp = int(threadIdx.x) / 32;
    const int wm = warp / kWarpsN * kWarpM, wn = warp % kWarpsN * kWarpN;
#pragma unroll 1  // one k step's fragments live at a time: unrolled, ptxas hoists both and spills
    for (int kk = 0; kk < kBK; kk += 8) {
      wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::col_major> fa[kFragsM];
      wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb[kFragsN];
#pragma unroll
      for (int i = 0; i < kFragsM; ++i) wmma::load_matrix_sync(fa[i], &as[kk][wm + i * 16], kBM + kPad);
#pragma unroll
      for (int j = 0; j < kFragsN; ++j) wmma::load_matrix_sync(fb[j], &bs[kk][wn + j * 16], kBN + kPad);
#pragma unroll
      for (int i = 0; i < kFragsM; ++i)
#pragma unroll
        for (int j = 0; j < kFragsN; ++j) wmma::mma_sync(acc.f[i][j], fa[i], fb[j], acc.f[i][j]);
    }
  }

  // Accumulator layout is opaque, so each fragment goes through a per-warp 16 x 16 scratch;
  // the warp then writes it two rows (2 x 64 B) at a time with the epilogue and bounds checks.
  __device__ static void write(const Acc& acc, float* c, int64_t ldc, bool /*c_vec*/, int tile_m,
                               int tile_n, int m, int n, const GemmEpilogue& e) {
    namespace wmma = nvcuda::wmma;
    __shared__ __align__(128) float scratch[kThreads / 32][16 * 16];
    const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
    const int wm = tile_m + warp / kWarpsN * kWarpM, wn = tile_n + warp % kWarpsN * kWarpN;
    float* s = scratch[warp];
#pragma unroll
    for (int i = 0; i < kFragsM; ++i)
#pragma unroll
      for (int j = 0; j < kFragsN; ++j) {
        wmma::store_matrix_sync(s, acc.f[i][j], 16, wmma::mem_row_major);
        __syncwarp();
#pragma unroll
        for (int rr = lane / 16; rr < 16; rr += 2) {
          const int row = wm + i * 16 + rr, col = wn + j * 16 + lane % 16;
          if (row < m && col < n) {
            float* cij = c + row * ldc + col;
            *cij = apply_epilogue(s[rr * 16 + lane % 16], c_old(cij, e), row, col, e);
          }
        }
        __syncwarp();
      }
  }
};

// The main loop, shared by both variants: prefetch slice t+1 into registers, multiply slice t
// from shared buffer t%2, store slice t+1 into the other buffer, one barrier per slice. Block z
// computes batch z0 + blockIdx.z (the host launches batches in chunks of kMaxBatchBlocks; a
// loop over z in here would keep ~40 more registers live and spill).
template <class Math>
__global__ void __launch_bounds__(kThreads, 2)
gemm_tiled_kernel(float* c, int64_t sc, int64_t ldc, bool c_vec, TileOperand a, TileOperand b,
                  int64_t z0, int m, int n, int k, GemmEpilogue e) {
  constexpr int BK = Math::kBK;
  using Loader = TileLoader<BK, Math::kTf32>;
  __shared__ __align__(128) float as[2][BK][kBM + kPad];
  __shared__ __align__(128) float bs[2][BK][kBN + kPad];
  int tile_m, tile_n;
  tile_origin(m, n, tile_m, tile_n);
  const int slices = (k + BK - 1) / BK;
  const int64_t z = z0 + blockIdx.z;

  Loader la(a, tile_m, z), lb(b, tile_n, z);
  typename Math::Acc acc;
  Math::zero(acc);
  la.load(a, tile_m, 0, k);
  lb.load(b, tile_n, 0, k);
  la.store(as[0], a);
  lb.store(bs[0], b);
  __syncthreads();
  for (int t = 0; t < slices; ++t) {
    const int cur = t & 1;
    const bool more = t + 1 < slices;
    if (more) {  // global loads in flight while the FMA / tensor units work on slice t
      la.advance(a);
      lb.advance(b);
      la.load(a, tile_m, (t + 1) * BK, k);
      lb.load(b, tile_n, (t + 1) * BK, k);
    }
    Math::multiply(acc, as[cur], bs[cur]);
    if (more) {
      la.store(as[cur ^ 1], a);
      lb.store(bs[cur ^ 1], b);
    }
    __syncthreads();  // slice t+1 is visible to all, and nobody still reads buffer cur
  }
  Math::write(acc, c + z * sc, ldc, c_vec, tile_m, tile_n, m, n, e);
}

// ---------------------------------------------------------------------------------------------
// Launchers
// ---------------------------------------------------------------------------------------------

namespace {

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

// Sizes the kernels index with int (tile origins plus a tile stay below INT_MAX).
void check_sizes(int64_t m, int64_t n, int64_t k) {
  constexpr int64_t kMax = INT_MAX - 2 * kBM;
  FASTDL_CHECK(m <= kMax && n <= kMax && k <= kMax, ValueError, "gemm: sizes m=", m, ", n=", n,
               ", k=", k, " exceed the CUDA kernels' limit of ", kMax, " per dimension");
}

// Chooses how the tile loader walks an operand: along whichever of K and rows moves less in
// memory, with float4 loads when that dimension is contiguous and everything stays aligned.
TileOperand tile_operand(const float* ptr, int64_t batch_stride, int64_t s_r, int64_t s_k,
                         int64_t rows, int64_t k, int64_t batch) {
  TileOperand op{ptr, batch_stride, s_r, s_k, int(rows), false, false};
  const auto mag = [](int64_t s) { return s < 0 ? -s : s; };
  op.k_fast = mag(s_k) <= mag(s_r);
  const int64_t step = op.k_fast ? s_k : s_r;      // between a vector's 4 values
  const int64_t extent = op.k_fast ? k : rows;      // along the vector
  const int64_t other = op.k_fast ? s_r : s_k;      // along the other dimension
  const int64_t other_extent = op.k_fast ? rows : k;
  op.vec = step == 1 && extent % 4 == 0 && (other_extent == 1 || other % 4 == 0) &&
           (batch == 1 || batch_stride % 4 == 0) && aligned16(ptr);
  return op;
}

template <class Math>
void launch_tiled(float* c, int64_t sc, int64_t ldc, const StridedMatrix& a, const StridedMatrix& b,
                  int64_t batch, int64_t m, int64_t n, int64_t k, const GemmEpilogue& e,
                  cudaStream_t stream) {
  const int64_t tiles = ((m + kBM - 1) / kBM) * ((n + kBN - 1) / kBN);
  FASTDL_CHECK(tiles <= INT_MAX, ValueError, "gemm: ", m, " x ", n,
               " output has more tiles than one CUDA grid can hold");
  const TileOperand ta = tile_operand(a.ptr, a.batch_stride, a.rs, a.cs, m, k, batch);
  const TileOperand tb = tile_operand(b.ptr, b.batch_stride, b.cs, b.rs, n, k, batch);
  const bool c_vec = aligned16(c) && ldc % 4 == 0 && n % 4 == 0 && (batch == 1 || sc % 4 == 0);
  for (int64_t z0 = 0; z0 < batch; z0 += kMaxBatchBlocks) {
    const dim3 grid(unsigned(tiles), 1, unsigned(std::min<int64_t>(batch - z0, kMaxBatchBlocks)));
    gemm_tiled_kernel<Math><<<grid, kThreads, 0, stream>>>(c, sc, ldc, c_vec, ta, tb, z0, int(m),
                                                           int(n), int(k), e);
    CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

void gemm(float* c, int64_t sc, int64_t ldc, const StridedMatrix& a, const StridedMatrix& b,
          int64_t batch, int64_t m, int64_t n, int64_t k, const GemmEpilogue& e, bool tf32,
          cudaStream_t stream) {
  if (batch == 0 || m == 0 || n == 0) return;
  check_sizes(m, n, k);
  if (tf32)
    launch_tiled<Tf32Math>(c, sc, ldc, a, b, batch, m, n, k, e, stream);
  else
    launch_tiled<SimtMath>(c, sc, ldc, a, b, batch, m, n, k, e, stream);
}

void gemm_reference(float* c, int64_t sc, int64_t ldc, const StridedMatrix& a,
                    const StridedMatrix& b, int64_t batch, int64_t m, int64_t n, int64_t k,
                    const GemmEpilogue& e, cudaStream_t stream) {
  if (batch == 0 || m == 0 || n == 0) return;
  check_sizes(m, n, k);
  const dim3 block(kRefBlockX, kRefBlockY);
  for (int64_t z0 = 0; z0 < batch; z0 += kMaxBatchBlocks) {
    const dim3 grid(unsigned((n + kRefBlockX - 1) / kRefBlockX),
                    unsigned(std::min<int64_t>((m + kRefBlockY - 1) / kRefBlockY, 65535)),
                    unsigned(std::min<int64_t>(batch - z0, kMaxBatchBlocks)));
    gemm_reference_kernel<<<grid, block, 0, stream>>>(c, sc, ldc, a, b, z0, int(m), int(n),
                                                      int(k), e);
    CUDA_CHECK_LAUNCH();
  }
}

}  // namespace fastdl::cuda
