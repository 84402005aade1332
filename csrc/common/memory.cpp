#include "common/memory.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

namespace fastdl {

namespace {
constexpr std::size_t kPage = 4096;
constexpr std::size_t kHuge = std::size_t(2) << 20;
// Below this, malloc's own free lists serve small blocks without faults; caching them would
// round every bias or scalar up to a page.
constexpr std::size_t kSmall = 64 * 1024;

std::size_t round_pages(std::size_t bytes) {
  const std::size_t unit = bytes >= kHuge ? kHuge : kPage;
  return (bytes + unit - 1) / unit * unit;
}
}  // namespace

void* alloc_pages(std::size_t bytes, std::size_t* rounded) {
  const std::size_t size = round_pages(bytes ? bytes : 1);
  const std::size_t align = size >= kHuge ? kHuge : kPage;
  void* p = std::aligned_alloc(align, size);
#ifdef MADV_HUGEPAGE
  if (p && align == kHuge) madvise(p, size, MADV_HUGEPAGE);  // advice only: ignore errors
#endif
  if (rounded) *rounded = p ? size : 0;
  return p;
}

namespace {
struct OutputCache {
  std::mutex mu;
  std::multimap<std::size_t, void*> free_blocks;  // rounded size -> block
  std::size_t cached = 0;
  std::size_t cap = cache_cap();

  static std::size_t cache_cap() {
    const char* env = std::getenv("FASTDL_CACHE_MB");
    if (!env || !*env) return std::size_t(256) << 20;
    char* end = nullptr;
    const unsigned long long mb = std::strtoull(env, &end, 10);
    return end && *end == '\0' ? std::size_t(mb) << 20 : std::size_t(256) << 20;
  }
};

// Never destroyed: arrays released during interpreter shutdown still return their blocks here.
OutputCache& cache() {
  static OutputCache* c = new OutputCache;
  return *c;
}
}  // namespace

void* output_alloc(std::size_t bytes) {
  if (bytes < kSmall)
    return std::aligned_alloc(64, std::max<std::size_t>(64, (bytes + 63) / 64 * 64));
  const std::size_t size = round_pages(bytes);
  {
    OutputCache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.free_blocks.find(size);
    if (it != c.free_blocks.end()) {
      void* p = it->second;
      c.free_blocks.erase(it);
      c.cached -= size;
      return p;
    }
  }
  return alloc_pages(size);
}

void output_free(void* p, std::size_t bytes) {
  if (!p) return;
  if (bytes < kSmall) return std::free(p);
  const std::size_t size = round_pages(bytes);
  OutputCache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    if (c.cached + size <= c.cap) {
      c.free_blocks.emplace(size, p);
      c.cached += size;
      return;
    }
  }
  std::free(p);
}

std::size_t output_cached_bytes() {
  OutputCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.cached;
}

void output_empty_cache() {
  OutputCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  for (auto& kv : c.free_blocks) std::free(kv.second);
  c.free_blocks.clear();
  c.cached = 0;
}

}  // namespace fastdl
