#include "common/threading.h"

#include <omp.h>

#include <atomic>

#include "common/check.h"

namespace fastdl {

namespace {
std::atomic<int>& num_threads_ref() {
  static std::atomic<int> n{omp_get_max_threads() > 0 ? omp_get_max_threads() : 1};
  return n;
}
}  // namespace

int get_num_threads() { return num_threads_ref().load(std::memory_order_relaxed); }

void set_num_threads(int n) {
  FASTDL_CHECK(n >= 1, ValueError, "set_num_threads: n must be >= 1, got ", n);
  num_threads_ref().store(n, std::memory_order_relaxed);
}

}  // namespace fastdl
