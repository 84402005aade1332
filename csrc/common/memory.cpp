#include "common/memory.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <iterator>
#include <list>
#include <map>
#include <mutex>
#include <string>
#include <vector>

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
// Free blocks by rounded size, and the same blocks in the order they were freed (oldest first),
// so a full cache makes room by dropping the least recently freed blocks: a loop whose shapes
// changed (a new batch size, a new model) takes over the cache instead of faulting every step
// while it stays full of sizes nobody asks for any more.
struct OutputCache {
  using Age = std::list<std::pair<std::size_t, void*>>;
  std::mutex mu;
  Age by_age;
  std::multimap<std::size_t, Age::iterator> free_blocks;
  std::size_t cached = 0;
  std::size_t cap = cache_cap();

  static std::size_t cache_cap() {
    const char* env = std::getenv("FASTDL_CACHE_MB");
    if (!env || !*env) return std::size_t(256) << 20;
    char* end = nullptr;
    const unsigned long long mb = std::strtoull(env, &end, 10);
    return end && *end == '\0' ? std::size_t(mb) << 20 : std::size_t(256) << 20;
  }

  // The most recently freed block of `size` (its pages are the likeliest still in cache), or
  // null. A multimap keeps equal keys in insertion order, so that is the last of its range.
  void* take(std::size_t size) {
    auto range = free_blocks.equal_range(size);
    if (range.first == range.second) return nullptr;
    auto newest = std::prev(range.second);
    void* p = newest->second->second;
    by_age.erase(newest->second);
    free_blocks.erase(newest);
    cached -= size;
    return p;
  }

  // Drops the oldest blocks until `size` more fits; false if it never can.
  bool make_room(std::size_t size, std::vector<void*>* dropped) {
    if (size > cap) return false;
    while (cached + size > cap) {
      auto& [sz, p] = by_age.front();
      // The oldest block overall is the oldest of its size: the first of its range.
      free_blocks.erase(free_blocks.lower_bound(sz));
      dropped->push_back(p);
      cached -= sz;
      by_age.pop_front();
    }
    return true;
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
    if (void* p = c.take(size)) return p;
  }
  return alloc_pages(size);
}

void output_free(void* p, std::size_t bytes) {
  if (!p) return;
  if (bytes < kSmall) return std::free(p);
  const std::size_t size = round_pages(bytes);
  OutputCache& c = cache();
  std::vector<void*> dropped;  // freed outside the lock: munmap is slow
  bool kept = false;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    if (c.make_room(size, &dropped)) {
      c.free_blocks.emplace(size, c.by_age.insert(c.by_age.end(), {size, p}));
      c.cached += size;
      kept = true;
    }
  }
  for (void* q : dropped) std::free(q);
  if (!kept) std::free(p);
}

std::size_t output_cached_bytes() {
  OutputCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.cached;
}

void output_empty_cache() {
  OutputCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  for (auto& kv : c.by_age) std::free(kv.second);
  c.by_age.clear();
  c.free_blocks.clear();
  c.cached = 0;
}

}  // namespace fastdl
