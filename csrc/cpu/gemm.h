// gemm.h: fastdl's internal matrix product, used by linear, matmul, conv, LSTM and attention.
//
//   C (m x n, row stride ldc, unit column stride)
//     = act( alpha * A (m x k) * B (k x n) + beta * C + bias )
//
// A and B are read through arbitrary element strides (rs = between rows, cs = between columns),
// so a transposed operand is just swapped strides and never copied; the packing routines absorb
// the layout. beta == 0 means C is not read (it may hold garbage). The bias is per row (length m)
// or per column (length n); act is applied last.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/cpu.h"

namespace fastdl {

enum class Act : int { none = 0, relu = 1 };
enum class BiasAxis : int { row = 0, col = 1 };  // bias[i] (length m) or bias[j] (length n)

template <typename T>
struct GemmParams {
  T alpha = T(1);
  T beta = T(0);
  const T* bias = nullptr;
  BiasAxis bias_axis = BiasAxis::col;
  Act act = Act::none;
};

// The fast path: packed, cache-blocked, OpenMP over blocks of C, micro-kernel chosen by `isa`.
// max_threads caps the threads (0: get_num_threads()); 1 runs on the calling thread with no
// OpenMP region, so a caller may run products inside its own parallel loop.
template <typename T>
void gemm(T* c, std::int64_t ldc,
          const T* a, std::int64_t rsa, std::int64_t csa,
          const T* b, std::int64_t rsb, std::int64_t csb,
          std::int64_t m, std::int64_t n, std::int64_t k,
          const GemmParams<T>& p = {}, Isa isa = cpu_isa(), int max_threads = 0);

// A B operand that exists only as a packing routine (implicit GEMM: a convolution's im2col
// matrix is never formed; its panels are gathered straight into the packed format).
// pack(ctx, dst, k0, kc, j0, nc, nr) writes rows [k0, k0 + kc) x columns [j0, j0 + nc) of B into
// dst as gemm_ukernel.h's packed panels of nr columns, dst[(j / nr)*nr*kc + p*nr + j % nr] =
// B(k0 + p, j0 + j), the last panel zero-padded to nr columns. It is called where the loop nest
// packs B (once per KC x NC block of each thread's part of C), from several threads at once, and
// returns false only if it could not get memory (gemm_packed_b then throws std::bad_alloc).
template <typename T>
struct GemmPackB {
  bool (*pack)(const void* ctx, T* dst, std::int64_t k0, std::int64_t kc, std::int64_t j0,
               std::int64_t nc, int nr);
  const void* ctx;
};

// A fused epilogue: fn(ctx, c, ldc, i0, j0, m, n) runs on every finished micro-tile of C -- the
// m x n block at row i0, column j0 of the whole product (c points at it), after its last k slice
// and the GemmParams epilogue -- by the thread that computed it, while the tile is in L1. With a
// hook, threads (and the nest's NC blocks) split C's columns only at multiples of `grain`
// (0: gemm_tile's nr; else a multiple of nr), so a caller can give each group of grain columns
// one meaning: the tiles of a group are computed by one thread, left to right for each row
// panel, so the hook of a group's last tile may read the group's earlier tiles (the LSTM's four
// gates of nr units). n < nr only at the right edge. fn may be null (alignment only).
template <typename T>
struct GemmTileHook {
  void (*fn)(const void* ctx, T* c, std::int64_t ldc, std::int64_t i0, std::int64_t j0, int m,
             int n);
  const void* ctx;
  std::int64_t grain = 0;
};

// C = act(alpha * A * B + beta * C + bias) with B given by its packer: the same loop nest,
// blocking, threading and micro-kernels as gemm (B is always packed; no skinny kernels).
template <typename T>
void gemm_packed_b(T* c, std::int64_t ldc,
                   const T* a, std::int64_t rsa, std::int64_t csa,
                   const GemmPackB<T>& b,
                   std::int64_t m, std::int64_t n, std::int64_t k,
                   const GemmParams<T>& p = {}, Isa isa = cpu_isa(), int max_threads = 0,
                   const GemmTileHook<T>* hook = nullptr);

// dst = k x n of B (strides rsb, csb) in the micro-kernel's packed format for `isa` (panels of
// gemm_tile's nr columns, k rows each, the last panel zero-padded) by the ISA's vectorised
// packing routine: the building block of a GemmPackB packer that assembles panels from pieces.
template <typename T>
void gemm_pack_b(T* dst, const T* b, std::int64_t rsb, std::int64_t csb, std::int64_t k,
                 std::int64_t n, Isa isa = cpu_isa());

// A B operand packed once and reused by many products (the recurrent weights of every step of a
// sequence): all of B (k x n) as the micro-kernel's panels of nr columns, each panel's k rows
// contiguous, so a product reads it in place with no per-call packing -- for a k x n weight
// that is k * n elements of copying saved per call. Packed for one ISA (the table's nr).
template <typename T>
class GemmPackedB {
 public:
  GemmPackedB() = default;
  GemmPackedB(const GemmPackedB&) = delete;
  GemmPackedB& operator=(const GemmPackedB&) = delete;
  ~GemmPackedB();
  // B read through strides (as gemm's b, rsb, csb), or gathered by a packer (GemmPackB).
  void pack(const T* b, std::int64_t rsb, std::int64_t csb, std::int64_t k, std::int64_t n,
            Isa isa = cpu_isa());
  void pack(const GemmPackB<T>& packer, std::int64_t k, std::int64_t n, Isa isa = cpu_isa());
  std::int64_t k() const { return k_; }
  std::int64_t n() const { return n_; }
  Isa isa() const { return isa_; }
  const T* data() const { return data_; }

 private:
  T* reserve(std::int64_t k, std::int64_t n, Isa isa);
  T* data_ = nullptr;
  std::size_t bytes_ = 0;
  std::int64_t k_ = 0, n_ = 0;
  Isa isa_ = Isa::generic;
};

// C = act(alpha * A * B + beta * C + bias) with B prepacked (its k x n, its ISA): the gemm nest
// with the B panels read in place, threads splitting columns at whole panels; hook as above.
template <typename T>
void gemm_prepacked_b(T* c, std::int64_t ldc,
                      const T* a, std::int64_t rsa, std::int64_t csa,
                      const GemmPackedB<T>& b, std::int64_t m,
                      const GemmParams<T>& p = {}, int max_threads = 0,
                      const GemmTileHook<T>* hook = nullptr);

// The register tile (mr x nr) and k block (kc) of the micro-kernel `isa` runs for T, for callers
// that size their own packing to it.
template <typename T>
void gemm_tile(Isa isa, int* mr, int* nr, std::int64_t* kc);

// `batch` independent products; each operand advances by its batch stride (0 broadcasts it).
template <typename T>
void gemm_batched(T* c, std::int64_t sc, std::int64_t ldc,
                  const T* a, std::int64_t sa, std::int64_t rsa, std::int64_t csa,
                  const T* b, std::int64_t sb, std::int64_t rsb, std::int64_t csb,
                  std::int64_t batch, std::int64_t m, std::int64_t n, std::int64_t k,
                  const GemmParams<T>& p = {}, Isa isa = cpu_isa());

// Plain triple loop: the test oracle for the packed path.
template <typename T>
void gemm_reference(T* c, std::int64_t ldc,
                    const T* a, std::int64_t rsa, std::int64_t csa,
                    const T* b, std::int64_t rsb, std::int64_t csb,
                    std::int64_t m, std::int64_t n, std::int64_t k, const GemmParams<T>& p = {});

}  // namespace fastdl
