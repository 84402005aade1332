// memory.h: page-backed memory for the CPU kernels: packing buffers and the outputs the Python
// layer hands out.
//
// Memory fresh from the system costs a page fault per 4 KiB on first touch (~1.4-2.5 us on the
// development VM: a 16 MiB gradient is ~10 ms of faults, as long as the 2048^3 product that
// fills it), and glibc gives large freed blocks back to the system (munmap, or heap trimming past
// M_TRIM_THRESHOLD), so a training loop allocating the same outputs every step would fault them
// in every step. The output cache keeps freed blocks, by size, up to a cap and hands them out
// again, as PyTorch's CUDA caching allocator does on the GPU.
#pragma once

#include <cstddef>
#include <cstdlib>

namespace fastdl {

// `bytes` rounded up to whole 4 KiB pages (2 MiB ones from 2 MiB up, advised as huge pages: one
// TLB entry instead of 512), page-aligned. nullptr if the system has no memory. Release with
// std::free.
void* alloc_pages(std::size_t bytes, std::size_t* rounded = nullptr);

// A scratch buffer for one thread (declare it thread_local): grown on demand and kept, so
// steady-state calls touch no fresh pages (a page fault costs more than packing a small panel).
// get() returns nullptr if the system has no memory.
struct ScratchBuffer {
  void* ptr = nullptr;
  std::size_t bytes = 0;
  ScratchBuffer() = default;
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  ~ScratchBuffer() { std::free(ptr); }
  void* get(std::size_t need) {
    if (need > bytes) {
      std::free(ptr);
      ptr = alloc_pages(need, &bytes);
    }
    return ptr;
  }
};

// The output cache. Blocks from output_alloc are 64-byte aligned; output_free(p, bytes) takes
// the same `bytes` and keeps the block for the next request of that rounded size; the cache holds
// at most FASTDL_CACHE_MB (default 256; 0 disables caching) and, when full, drops the least
// recently freed blocks to make room. Thread-safe.
void* output_alloc(std::size_t bytes);
void output_free(void* p, std::size_t bytes);
std::size_t output_cached_bytes();
void output_empty_cache();  // every cached block back to the system

}  // namespace fastdl
