// gemm_config.h: every GEMM blocking constant, derived in one place from the cache sizes.
//
// Register tile MR x NR (rows of C x columns of C, row-major C) is fixed by the micro-kernel's
// register budget; the cache blocks follow BLIS's analytical model (Low et al., "Analytical
// modeling is enough for high-performance BLIS", TOMS 2016), with one measured departure:
//   KC: 4 KiB of k per packed row (1024 fp32, 512 fp64; k is cut into equal slices of at most
//       KC + KC/8, see slice). Every micro-kernel call reads and writes its C tile once
//       (MR x NR values, often an L3 or DRAM round trip at large n), so a longer k run
//       amortises that better: one thread at 2048^3 ran 199 / 221 / 237-246 GFLOP/s
//       with KC = 256 / 512 / 1024 (benchmarks/RESULTS.md). The B micro-panel (KC x NR, 128 KiB
//       for 12x32 fp32) then streams from L2 at NR * 4 bytes per k step, ~11 B/cycle, far under
//       L2 bandwidth;
//   MC: the packed A block (MC x KC) occupies about half of the (private) L2;
//   NC: the packed B panel (KC x NC) occupies about a quarter of the shared L3 (one panel per
//       thread, room left for A blocks and C).
// Cache sizes are those of the development machine (AMD Zen 5: 48 KiB L1d, 1 MiB L2 per core,
// 32 MiB L3); the model degrades gracefully on smaller caches.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fastdl::gemm_config {

constexpr std::int64_t kL1Bytes = 48 * 1024;
constexpr std::int64_t kL2Bytes = 1024 * 1024;
constexpr std::int64_t kL3Bytes = 32 * 1024 * 1024;
constexpr std::int64_t kL2Ways = 16;

constexpr std::int64_t kKcBytes = 4096;  // one packed row of k, see KC above

// Longest run of k a micro-kernel accumulates in registers before folding it into a partial
// sum (gemm_ukernel_simd.h): with KC = 1024 a single chain would quadruple the rounding error of
// the old KC = 256 blocking, and tests hold fp32 results to twice NumPy's error.
constexpr std::int64_t kChain = 256;

// A row-major A is read in place by the micro-kernel, unpacked, when the thread's part of C has
// at most this many NR-wide column panels (each A micro-panel is then reused at most this many
// times, too few to repay packing it). Measured, one thread, A/B alternating calls: in place
// wins at 64x4096x64 (+11%), 64x784x256 (+3%), 512^3 (+1%), loses at 1024^3 (-5%, 4 KiB row
// stride: the 12 rows of a micro-panel share L1 sets).
constexpr std::int64_t kDirectAMaxPanels = 16;

// Likewise a k-major B (n-contiguous rows) is read in place, a full NR-wide panel at a time, when
// the thread's part of C has at most this many MR-tall row panels and the kc rows of one B
// micro-panel fit in L2 at their stride (b_rows_fit_l2). Measured A/B, one thread, GFLOP/s packed
// vs in place: 128x64x128 211 / 217, 64x256x784 224 / 241, 256^3 252 / 263, 64x4096x64 230 / 251,
// 384^3 261 / 263; but 1000x300x500 (84 panels) 253 / 250, 264x1024x1024 (4 KiB row stride)
// 247 / 199, 1024^3 251 / 191.
constexpr std::int64_t kDirectBMaxPanels = 32;

// ... and only while the thread's part of B (k x its columns) fits in half of L3: a B read from
// DRAM in place touches two lines of a row per micro-panel, a new page every row, which no
// prefetcher follows; packing streams whole rows. Measured A/B, 2 threads, A^T as in a weight
// gradient, GFLOP/s packed vs in place: 64x4095x4097 (64 MiB of B) 246 / 222, 64x2048x4097
// 287 / 229; unchanged below the limit (64x1024x2049, 256x1024x1024).
constexpr std::int64_t kDirectBMaxBytes = kL3Bytes / 2;

// Products with at most this many rows (or columns) of C skip the blocked nest: they are bound by
// reading the long operand, which gemm_skinny_simd.h reads once, in place. Measured, 2 threads,
// fp32, see benchmarks/RESULTS.md note 21.
constexpr std::int64_t kSkinny = 4;

// Rows `stride_bytes` apart fall into at most way / gcd(stride, way) distinct positions of an L2
// way (way = L2 size / ways), each holding kL2Ways lines; a power-of-two stride of 4 KiB leaves
// room for only 256 rows of 128 bytes. Keep half of that for A and C.
constexpr bool b_rows_fit_l2(std::int64_t stride_bytes, std::int64_t rows) {
  std::int64_t g = kL2Bytes / kL2Ways, s = stride_bytes > 0 ? stride_bytes : 1;
  const std::int64_t way = g;
  while (s) {  // g = gcd(way, stride)
    const std::int64_t r = g % s;
    g = s;
    s = r;
  }
  return rows <= way / g * kL2Ways / 2;
}

// The k and n loops cut their extent into equal slices of at most block + block/8 (n's a
// multiple of NR), never leaving a sliver: k = 1025 as KC slices 1024 + 1 cost a whole extra
// pass over C, and a packing of A and B, for one step of work (1025^3 on 2 threads 425 -> 454
// GFLOP/s); n = 2049 as NC panels 2048 + 1 re-packed all of A for one column (2048x2048x2049 on
// 2 threads 436 -> 461 GFLOP/s; 2049^3 vs NumPy 0.91 -> 1.03).
constexpr std::int64_t slice_cap(std::int64_t block) { return block + block / 8; }
constexpr std::int64_t slice(std::int64_t extent, std::int64_t block, std::int64_t unit = 1) {
  const std::int64_t slices = (extent + slice_cap(block) - 1) / slice_cap(block);
  const std::int64_t size = (extent + slices - 1) / slices;
  return (size + unit - 1) / unit * unit;
}

constexpr std::int64_t round_down(std::int64_t x, std::int64_t unit) {
  return x / unit * unit > 0 ? x / unit * unit : unit;
}

template <typename T, int MR_, int NR_>
struct Blocking {
  static constexpr int MR = MR_;
  static constexpr int NR = NR_;
  static constexpr std::int64_t KC = kKcBytes / std::int64_t(sizeof(T));
  static constexpr std::int64_t MC = round_down(kL2Bytes / 2 / (KC * std::int64_t(sizeof(T))), MR);
  static constexpr std::int64_t NC = round_down(kL3Bytes / 4 / (KC * std::int64_t(sizeof(T))), NR);
};

// Register tiles per ISA and type. AVX-512: 24 of the 32 zmm registers accumulate, two hold a
// row of B, A is broadcast from memory. AVX2: 12 of 16 ymm accumulate. Generic: a plain-C
// tile small enough for the compiler to keep in SSE registers.
using Avx512F32 = Blocking<float, 12, 32>;
using Avx512F64 = Blocking<double, 12, 16>;
using Avx2F32 = Blocking<float, 6, 16>;
using Avx2F64 = Blocking<double, 6, 8>;
using GenericF32 = Blocking<float, 4, 8>;
using GenericF64 = Blocking<double, 4, 4>;

}  // namespace fastdl::gemm_config
