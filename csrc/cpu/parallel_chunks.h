// parallel_chunks.h: split [0, n) into one contiguous chunk per thread for streaming kernels.
//
// Memory-bound element-wise kernels only gain from a second thread once the array is large
// enough to amortise waking the OpenMP team (a few microseconds); `grain` is the smallest
// chunk worth a thread, measured per kernel family (benchmarks/RESULTS.md). Chunk edges are
// multiples of 64 elements (whole cache lines for both float and double), and every element is
// computed by the same code whatever the chunking, so results never depend on the thread count.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "common/threading.h"

namespace fastdl {

template <class F>
void parallel_chunks(std::int64_t n, std::int64_t grain, F&& f) {
  const std::int64_t want = std::max<std::int64_t>(1, n / std::max<std::int64_t>(grain, 1));
  const int threads = int(std::min<std::int64_t>(get_num_threads(), want));
  if (threads <= 1) {
    f(std::int64_t(0), n);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const std::int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const std::int64_t per = (n / nt + 63) / 64 * 64;
    const std::int64_t lo = std::min(n, t * per), hi = t == nt - 1 ? n : std::min(n, lo + per);
    if (lo < hi) f(lo, hi);
  }
}

}  // namespace fastdl
