// emu.h: CPU emulation of the CUDA subset the fastdl kernels use (see run.sh): one block at a
// time, its threads as std::threads sharing a std::barrier for __syncthreads, __shared__ as statics.
#pragma once
#include <cuda_runtime_api.h>
#include <vector_types.h>
#include <vector_functions.h>
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>
#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __shared__
#undef __align__
#undef __launch_bounds__
#undef __restrict__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define __restrict__
inline thread_local uint3 threadIdx;
inline uint3 blockIdx;
inline dim3 gridDim, blockDim;
inline std::barrier<>* emu_bar = nullptr;
inline void __syncthreads() { emu_bar->arrive_and_wait(); }
// __syncthreads_count: two counters used alternately (a thread-local parity per call), the one
// of the previous call reset between the two barriers, when every thread has read it.
inline std::atomic<int> emu_count[2];
inline thread_local int emu_parity = 0;
inline int __syncthreads_count(int pred) {
  const int p = emu_parity;
  emu_parity ^= 1;
  emu_count[p].fetch_add(pred != 0);
  emu_bar->arrive_and_wait();
  const int n = emu_count[p].load();
  if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) emu_count[p ^ 1].store(0);
  emu_bar->arrive_and_wait();
  return n;
}
template <class T> inline T __ldg(const T* p) { return *p; }
using std::min; using std::max; using std::isnan;
inline float atomicAdd(float* p, float v) { return std::atomic_ref<float>(*p).fetch_add(v); }
inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) {
  std::atomic_ref<unsigned long long> a(*p);
  unsigned long long old = a.load();
  while (v < old && !a.compare_exchange_weak(old, v)) {}
  return old;
}
template <class T> T __shfl_xor_sync(unsigned, T v, int, int) { std::abort(); return v; }
inline void emu_launch(dim3 g, dim3 b, const std::function<void()>& body) {
  gridDim = g; blockDim = b;
  const unsigned nt = b.x * b.y * b.z;
  for (unsigned z = 0; z < g.z; ++z)
    for (unsigned y = 0; y < g.y; ++y)
      for (unsigned x = 0; x < g.x; ++x) {
        blockIdx = make_uint3(x, y, z);
        std::barrier<> bar(nt);
        emu_bar = &bar;
        emu_count[0].store(0), emu_count[1].store(0);
        std::vector<std::thread> ts;
        for (unsigned t = 0; t < nt; ++t)
          ts.emplace_back([&, t] { threadIdx = make_uint3(t % b.x, t / b.x % b.y, t / (b.x * b.y)); body(); });
        for (auto& th : ts) th.join();
      }
}
inline dim3 emu_dim(unsigned x) { return dim3(x); }
inline dim3 emu_dim(dim3 d) { return d; }
inline cudaError_t emu_mallocAsync(void** p, size_t n, cudaStream_t) { *p = std::malloc(n ? n : 1); return cudaSuccess; }
inline cudaError_t emu_freeAsync(void* p, cudaStream_t) { std::free(p); return cudaSuccess; }
inline cudaError_t emu_memsetAsync(void* p, int v, size_t n, cudaStream_t) { std::memset(p, v, n); return cudaSuccess; }
inline cudaError_t emu_memcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind, cudaStream_t) { std::memcpy(d, s, n); return cudaSuccess; }
inline cudaError_t emu_ok(...) { return cudaSuccess; }
inline cudaError_t emu_attr(int* v, cudaDeviceAttr, int) { *v = 3; return cudaSuccess; }  // 3 "SMs": splits happen
inline cudaError_t emu_getdev(int* d) { *d = 0; return cudaSuccess; }
#define cudaMallocAsync emu_mallocAsync
#define cudaFreeAsync emu_freeAsync
#define cudaMemsetAsync emu_memsetAsync
#define cudaMemcpyAsync emu_memcpyAsync
#define cudaStreamSynchronize emu_ok
#define cudaGetLastError() cudaSuccess
#define cudaDeviceGetAttribute emu_attr
#define cudaGetDevice emu_getdev
