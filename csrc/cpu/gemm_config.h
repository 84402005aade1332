// gemm_config.h: every GEMM blocking constant, derived in one place from the cache sizes.
//
// Register tile MR x NR (rows of C x columns of C, row-major C) is fixed by the micro-kernel's
// register budget; the cache blocks follow BLIS's analytical model (Low et al., "Analytical
// modeling is enough for high-performance BLIS", TOMS 2016):
//   KC: the packed B micro-panel (KC x NR) stays in L1 across the whole 1st loop, leaving a third
//       of L1 for the streamed A micro-panel (MR x KC) and the C tile; capped at 256, which also
//       bounds each sequential chain of rounding errors along k to 256 terms;
//   MC: the packed A block (MC x KC) occupies about half of the (private) L2;
//   NC: the packed B panel (KC x NC) occupies about an eighth of the shared L3 (one panel per
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

constexpr std::int64_t round_down(std::int64_t x, std::int64_t unit) {
  return x / unit * unit > 0 ? x / unit * unit : unit;
}

template <typename T, int MR_, int NR_>
struct Blocking {
  static constexpr int MR = MR_;
  static constexpr int NR = NR_;
  static constexpr std::int64_t KC_model = kL1Bytes * 2 / 3 / (NR * std::int64_t(sizeof(T)));
  static constexpr std::int64_t KC = round_down(KC_model < 256 ? KC_model : 256, 8);
  static constexpr std::int64_t MC = round_down(kL2Bytes / 2 / (KC * std::int64_t(sizeof(T))), MR);
  static constexpr std::int64_t NC = round_down(kL3Bytes / 8 / (KC * std::int64_t(sizeof(T))), NR);
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
