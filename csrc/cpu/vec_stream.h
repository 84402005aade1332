// vec_stream.h: non-temporal ("streaming") stores over the vector traits of vec_*.h, for
// kernels whose output is far larger than the caches and written once.
//
// Why: an ordinary store first reads the cache line it writes (read-for-ownership), so a
// write-only stream costs twice its bytes in memory traffic; a non-temporal store writes the
// line without reading it. Measured on this Xeon (1 thread, 104 MB): AVX-512 stores 23-26 ms,
// memset 21 ms, non-temporal stores 8.6 ms. The price: the data goes to memory rather than the
// caches, so use them only for outputs too large to be still cached when they are read.
//
// stream_row<V>(dst, src, n): dst[0 .. n) = src[0 .. n), the part of dst aligned to the vector
// size written with streaming stores, the ragged ends with ordinary ones. map1_stream / map2_stream
// are vec_math.h's map1 / map2 with the same treatment of y. Each ends with a store fence, so the
// data is ordered before whatever follows (another thread's reads after the OpenMP barrier).
// The one-lane generic vector has no streaming store: it falls back to the plain maps.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace fastdl {
namespace {

template <class V>
constexpr bool kHasStream = V::W > 1;

// By register size and element type (std::is_same on vector types trips -Wignored-attributes).
template <class V>
inline void stream_store(typename V::T* p, typename V::reg v) {
  constexpr std::size_t bytes = sizeof(typename V::reg);
  constexpr bool f32 = std::is_same_v<typename V::T, float>;
  if constexpr (bytes == 64 && f32) {
    _mm512_stream_ps(p, v);
  } else if constexpr (bytes == 64) {
    _mm512_stream_pd(p, v);
  } else if constexpr (bytes == 32 && f32) {
    _mm256_stream_ps(p, v);
  } else if constexpr (bytes == 32) {
    _mm256_stream_pd(p, v);
  } else {
    V::store(p, v);
  }
}

inline void stream_fence() { _mm_sfence(); }

// Elements of y before its first vector-aligned address (at most n).
template <class V>
inline std::int64_t stream_head(const typename V::T* y, std::int64_t n) {
  constexpr std::uintptr_t bytes = sizeof(typename V::reg);
  const std::uintptr_t mis = reinterpret_cast<std::uintptr_t>(y) % bytes;
  const std::int64_t head = mis ? std::int64_t((bytes - mis) / sizeof(typename V::T)) : 0;
  return head < n ? head : n;
}

// y[i] = f(x[i]), streamed.
template <class V, class F>
inline void map1_stream(typename V::T* y, const typename V::T* x, std::int64_t n, F f) {
  if constexpr (!kHasStream<V>) {
    for (std::int64_t i = 0; i < n; ++i) V::store(y + i, f(V::load(x + i)));
  } else {
    const std::int64_t head = stream_head<V>(y, n);
    if (head) V::storen(y, f(V::loadn(x, int(head))), int(head));
    std::int64_t i = head;
    for (; i + V::W <= n; i += V::W) stream_store<V>(y + i, f(V::load(x + i)));
    if (i < n) V::storen(y + i, f(V::loadn(x + i, int(n - i))), int(n - i));
    stream_fence();
  }
}

// out[i] = f(a[i], b[i]), streamed.
template <class V, class F>
inline void map2_stream(typename V::T* out, const typename V::T* a, const typename V::T* b,
                        std::int64_t n, F f) {
  if constexpr (!kHasStream<V>) {
    for (std::int64_t i = 0; i < n; ++i) V::store(out + i, f(V::load(a + i), V::load(b + i)));
  } else {
    const std::int64_t head = stream_head<V>(out, n);
    if (head) V::storen(out, f(V::loadn(a, int(head)), V::loadn(b, int(head))), int(head));
    std::int64_t i = head;
    for (; i + V::W <= n; i += V::W) stream_store<V>(out + i, f(V::load(a + i), V::load(b + i)));
    if (i < n) {
      const int r = int(n - i);
      V::storen(out + i, f(V::loadn(a + i, r), V::loadn(b + i, r)), r);
    }
    stream_fence();
  }
}

template <class V>
inline void stream_row(typename V::T* dst, const typename V::T* src, std::int64_t n) {
  map1_stream<V>(dst, src, n, [](auto v) { return v; });
}

}  // namespace
}  // namespace fastdl
