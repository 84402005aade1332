// embedding.cpp: the embedding lookup, y = weight[indices], and its gradient w.r.t. the weight.
//
// Shapes: indices (M,) int64, weight and dweight (V, D), y and dy (M, D); all C-contiguous.
//   forward   y[m, :] = weight[indices[m], :]
//   backward  dweight = 0; dweight[indices[m], :] += dy[m, :] in the order m = 0 .. M-1, the
//             row padding_idx (>= 0) skipped. The grad w.r.t. the indices does not exist.
// Every index is checked against [0, V) before it is used as an address: a bad one throws
// ValueError naming its position, its value and V (embedding.h).
//
// Variants, in order of increasing complexity:
//   1. *_reference: plain loops on one thread, the oracle.
//   2. embedding_forward: rows copied with memcpy (a row is D contiguous elements in both
//      arrays, so the library's copy, already vectorised for every ISA, is the whole kernel),
//      OpenMP over chunks of rows once the copy is large enough to pay for a second thread.
//   3. embedding_backward: deterministic without atomics. dweight is cut into tiles (a range
//      of rows times a range of columns), one OpenMP task per tile; each task zeroes its tile
//      and scans ALL the indices in order, adding the rows that land in its tile. So every
//      element of dweight is written by one thread only, in index order: the result is the
//      same bits for any thread count (and equals the reference's). Cost: each task reads the
//      M indices (8 bytes each) beside its share of the M*D adds; tiles are made only as many
//      as there are threads, so the scans stay a small fraction while D >> threads / 8.
// No *_avx2 / *_avx512 files: both passes are memory-bound copies and adds; memcpy and the
// compiler's baseline vectorisation of the add loop already run at the memory roof, and an add
// rounds the same way whatever the vector width, so every ISA gives the same bits.
#include "cpu/embedding.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "common/check.h"
#include "common/threading.h"
#include "cpu/parallel_chunks.h"

namespace fastdl {

namespace {

// Bytes of work below which a second thread costs more than it saves (as the other
// memory-bound families: a few microseconds of OpenMP wake-up against ~10 GB/s per core).
constexpr std::int64_t kGrainBytes = std::int64_t(1) << 16;

[[noreturn]] void throw_bad_index(const std::int64_t* indices, std::int64_t pos, std::int64_t v) {
  throw fastdl::ValueError(detail::concat("indices: indices[", pos, "] = ", indices[pos],
                                          " is out of range [0, V) with V = ", v,
                                          " (the number of embeddings)"));
}

inline bool in_range(std::int64_t idx, std::int64_t v) { return idx >= 0 && idx < v; }

// The first position whose index is outside [0, v), or -1.
std::int64_t first_bad_index(const std::int64_t* indices, std::int64_t m, std::int64_t v) {
  for (std::int64_t i = 0; i < m; ++i)
    if (!in_range(indices[i], v)) return i;
  return -1;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Reference loops
// ---------------------------------------------------------------------------------------------

template <typename T>
void embedding_forward_reference(T* y, const std::int64_t* indices, const T* weight,
                                 std::int64_t m, std::int64_t v, std::int64_t d) {
  for (std::int64_t i = 0; i < m; ++i) {
    const std::int64_t idx = indices[i];
    if (!in_range(idx, v)) throw_bad_index(indices, i, v);
    for (std::int64_t j = 0; j < d; ++j) y[i * d + j] = weight[idx * d + j];
  }
}

template <typename T>
void embedding_backward_reference(T* dweight, const T* dy, const std::int64_t* indices,
                                  std::int64_t padding_idx, std::int64_t m, std::int64_t v,
                                  std::int64_t d) {
  const std::int64_t bad = first_bad_index(indices, m, v);
  if (bad >= 0) throw_bad_index(indices, bad, v);
  for (std::int64_t k = 0; k < v * d; ++k) dweight[k] = T(0);
  for (std::int64_t i = 0; i < m; ++i) {
    const std::int64_t idx = indices[i];
    if (idx == padding_idx) continue;
    for (std::int64_t j = 0; j < d; ++j) dweight[idx * d + j] += dy[i * d + j];
  }
}

// ---------------------------------------------------------------------------------------------
// Fast kernels
// ---------------------------------------------------------------------------------------------

template <typename T>
void embedding_forward(T* y, const std::int64_t* indices, const T* weight, std::int64_t m,
                       std::int64_t v, std::int64_t d) {
  const std::size_t row_bytes = std::size_t(d) * sizeof(T);
  const std::int64_t grain_rows =
      std::max<std::int64_t>(1, kGrainBytes / std::max<std::int64_t>(1, std::int64_t(row_bytes)));
  // Each chunk stops at its first bad index; chunks are ascending ranges, so the smallest
  // position any chunk reports is the first bad one overall (the same message at any thread
  // count). No exception may leave an OpenMP region: it is thrown after.
  std::atomic<std::int64_t> first_bad{m};
  parallel_chunks(m, grain_rows, [&](std::int64_t lo, std::int64_t hi) {
    for (std::int64_t i = lo; i < hi; ++i) {
      const std::int64_t idx = indices[i];
      if (!in_range(idx, v)) {
        std::int64_t seen = first_bad.load();
        while (i < seen && !first_bad.compare_exchange_weak(seen, i)) {
        }
        return;
      }
      if (row_bytes) std::memcpy(y + i * d, weight + idx * d, row_bytes);
    }
  });
  if (first_bad.load() < m) throw_bad_index(indices, first_bad.load(), v);
}

template <typename T>
void embedding_backward(T* dweight, const T* dy, const std::int64_t* indices,
                        std::int64_t padding_idx, std::int64_t m, std::int64_t v,
                        std::int64_t d) {
  // Checked before anything is written: dweight is left as it was on a bad call.
  const std::int64_t bad = first_bad_index(indices, m, v);
  if (bad >= 0) throw_bad_index(indices, bad, v);
  if (v == 0 || d == 0) return;
  // Tiles: row ranges first (a row tile's scan skips most indices cheaply); column ranges of
  // at least 64 elements only when there are fewer rows than threads.
  const std::int64_t work = (m + v) * d * std::int64_t(sizeof(T));
  const std::int64_t threads = std::clamp<std::int64_t>(work / kGrainBytes, 1, get_num_threads());
  const std::int64_t row_tiles = std::min(threads, v);
  const std::int64_t col_tiles = std::clamp<std::int64_t>(threads / row_tiles, 1,
                                                          std::max<std::int64_t>(1, d / 64));
  const std::int64_t tiles = row_tiles * col_tiles;
#pragma omp parallel for schedule(static) num_threads(int(std::min(threads, tiles))) if (tiles > 1)
  for (std::int64_t t = 0; t < tiles; ++t) {
    const std::int64_t rt = t / col_tiles, ct = t % col_tiles;
    const std::int64_t r0 = v * rt / row_tiles, r1 = v * (rt + 1) / row_tiles;
    const std::int64_t c0 = d * ct / col_tiles, c1 = d * (ct + 1) / col_tiles;
    for (std::int64_t r = r0; r < r1; ++r)
      std::fill(dweight + r * d + c0, dweight + r * d + c1, T(0));
    for (std::int64_t i = 0; i < m; ++i) {
      const std::int64_t idx = indices[i];
      if (idx < r0 || idx >= r1 || idx == padding_idx) continue;
      T* __restrict__ dst = dweight + idx * d;
      const T* __restrict__ src = dy + i * d;
      for (std::int64_t j = c0; j < c1; ++j) dst[j] += src[j];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Instantiations
// ---------------------------------------------------------------------------------------------

#define FASTDL_EMBEDDING_INSTANTIATE(T)                                                         \
  template void embedding_forward<T>(T*, const std::int64_t*, const T*, std::int64_t,          \
                                     std::int64_t, std::int64_t);                               \
  template void embedding_backward<T>(T*, const T*, const std::int64_t*, std::int64_t,         \
                                      std::int64_t, std::int64_t, std::int64_t);                \
  template void embedding_forward_reference<T>(T*, const std::int64_t*, const T*, std::int64_t, \
                                               std::int64_t, std::int64_t);                     \
  template void embedding_backward_reference<T>(T*, const T*, const std::int64_t*,             \
                                                std::int64_t, std::int64_t, std::int64_t,       \
                                                std::int64_t);
FASTDL_EMBEDDING_INSTANTIATE(float)
FASTDL_EMBEDDING_INSTANTIATE(double)
#undef FASTDL_EMBEDDING_INSTANTIATE

}  // namespace fastdl
