// attention.cpp: scaled dot-product attention, forward and backward, FlashAttention-2's structure
// on the CPU (Dao, "FlashAttention-2", 2023, algorithms 1 and 2).
//
// Shapes: q (B, H, Sq, D), k (B, H, Sk, D), v (B, H, Sk, Dv), out (B, H, Sq, Dv), lse (B, H, Sq),
// all C-contiguous; Dv may differ from D, Sq from Sk.
//   s_ij = scale * q_i . k_j      (masked to -inf when causal and j > i: top-left aligned, as
//                                  PyTorch's is_causal, also when Sq != Sk)
//   lse_i = log sum_j exp(s_ij)   (natural log over the unmasked j, scale applied)
//   out_i = sum_j exp(s_ij - lse_i) v_j
// A row with no unmasked key (only Sk = 0 makes one: top-left causal row i always sees key 0)
// gives out_i = 0 and lse_i = -inf, never NaN.
//   backward  p_ij = exp(s_ij - lse_i) (0 where lse_i = -inf), D_i = dout_i . out_i,
//             dv_j = sum_i p_ij dout_i, dp_ij = dout_i . v_j, ds_ij = p_ij (dp_ij - D_i),
//             dq_i = scale sum_j ds_ij k_j, dk_j = scale sum_i ds_ij q_i.
// Gradients are written (=).
//
// Variants, in order of increasing complexity:
//   1. *_reference: plain loops in double, one row of Sk scores at a time; the test oracle.
//   2. the tiled kernels. Forward: a task is a group of up to kGroupBlocks query blocks of kBq
//      rows of one (b, h) (OpenMP over (b, h, group), dynamic, causal largest first); K/V tiles
//      of kBk keys are streamed through cache, each packed once per group and shared by its
//      blocks; the online softmax keeps each row's running max and sum, only lse is saved.
//      Q.K^T and P.V run on the packed GEMM's micro-kernel (gemm_ukernel.h) called per register
//      tile: Q and P are read in place as A, K^T is packed as B, V (and the backward's row-major
//      B operands) read in place when whole NR-wide panels cover them. The softmax runs on the
//      softmax family's row primitives (softmax.h: vexp of vec_math.h, per ISA). Causal skips
//      the tiles above the diagonal, multiplies only the key columns a block's last row sees
//      and masks the diagonal ones.
//      Backward (FA-2's order): D_i = dout_i . out_i first, then per key block of kBkBwd keys
//      (K^T, V^T, K packed once) an inner loop over the query blocks that see it, recomputing
//      P from lse: dV += P^T dO, dP = dO V^T, dS = P (dP - D), dK += scale dS^T Q,
//      dQ += scale dS K. dK and dV rows belong to the task of their key block; dQ is
//      accumulated without atomics: a task owns one (b, h) and a contiguous range of its key
//      blocks; with one range per (b, h) (B * H >= threads) it adds straight into dq, otherwise
//      each range adds into its own Sq x D partial and the partials are summed in range order.
//      Every split depends on the thread count only, so results are bitwise repeatable at a
//      fixed thread count.
// Workspace (never Sq x Sk): forward, per thread a kBq x kBk score tile, the packed K^T and V
// tiles (kBk x D, kBk x Dv rounded up to NR) and 2 x kGroupBlocks x kBq row statistics: at
// D = Dv = 64 fp32, 100 KiB. Backward, per thread two kBq x kBkBwd tiles and five packed
// operands of at most max(D, Dv) x max(kBq, kBkBwd): 120 KiB at D = 64; per call D_i (B * H * Sq
// values) and, only when B * H < threads, the dQ partials, (ranges per (b, h)) x B * H * Sq * D
// values with ranges <= threads. Measured: B1 H1 S16384 D64 fp32 forward + backward adds
// 24.5 MiB of peak RSS, outputs included (the bound is 600 MB; S x S alone is 1 GiB).
#include "cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <vector>

#include "common/threading.h"
#include "cpu/gemm.h"
#include "cpu/gemm_ukernel.h"
#include "cpu/softmax.h"

namespace fastdl {

// ---------------------------------------------------------------------------------------------
// Reference
// ---------------------------------------------------------------------------------------------

template <typename T>
void attention_forward_reference(T* out, T* lse, const T* q, const T* k, const T* v,
                                 std::int64_t b, std::int64_t h, std::int64_t sq, std::int64_t sk,
                                 std::int64_t d, std::int64_t dv, bool causal, double scale) {
  std::vector<double> s(static_cast<std::size_t>(std::max<std::int64_t>(sk, 1)));
  for (std::int64_t bh = 0; bh < b * h; ++bh) {
    const T *qh = q + bh * sq * d, *kh = k + bh * sk * d, *vh = v + bh * sk * dv;
    for (std::int64_t i = 0; i < sq; ++i) {
      const std::int64_t n = causal ? std::min(sk, i + 1) : sk;
      double m = -std::numeric_limits<double>::infinity();
      for (std::int64_t j = 0; j < n; ++j) {
        double acc = 0;
        for (std::int64_t p = 0; p < d; ++p) acc += double(qh[i * d + p]) * double(kh[j * d + p]);
        s[j] = scale * acc;
        m = std::max(m, s[j]);
      }
      double l = 0;
      for (std::int64_t j = 0; j < n; ++j) l += std::exp(s[j] - m);
      T* o = out + (bh * sq + i) * dv;
      if (n == 0) {
        std::fill(o, o + dv, T(0));
        lse[bh * sq + i] = -std::numeric_limits<T>::infinity();
        continue;
      }
      for (std::int64_t c = 0; c < dv; ++c) {
        double acc = 0;
        for (std::int64_t j = 0; j < n; ++j) acc += std::exp(s[j] - m) * double(vh[j * dv + c]);
        o[c] = T(acc / l);
      }
      lse[bh * sq + i] = T(m + std::log(l));
    }
  }
}

template <typename T>
void attention_backward_reference(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k,
                                  const T* v, const T* out, const T* lse, std::int64_t b,
                                  std::int64_t h, std::int64_t sq, std::int64_t sk,
                                  std::int64_t d, std::int64_t dv_, bool causal, double scale) {
  std::vector<double> gk(static_cast<std::size_t>(sk * d)), gv(static_cast<std::size_t>(sk * dv_)),
      gq(static_cast<std::size_t>(d));
  for (std::int64_t bh = 0; bh < b * h; ++bh) {
    const T *qh = q + bh * sq * d, *kh = k + bh * sk * d, *vh = v + bh * sk * dv_;
    const T *doh = dout + bh * sq * dv_, *oh = out + bh * sq * dv_;
    std::fill(gk.begin(), gk.end(), 0.0);
    std::fill(gv.begin(), gv.end(), 0.0);
    for (std::int64_t i = 0; i < sq; ++i) {
      std::fill(gq.begin(), gq.end(), 0.0);
      const double li = double(lse[bh * sq + i]);
      const std::int64_t n = causal ? std::min(sk, i + 1) : sk;
      double di = 0;
      for (std::int64_t c = 0; c < dv_; ++c) di += double(doh[i * dv_ + c]) * double(oh[i * dv_ + c]);
      for (std::int64_t j = 0; j < n && std::isfinite(li); ++j) {
        double s = 0, dp = 0;
        for (std::int64_t p = 0; p < d; ++p) s += double(qh[i * d + p]) * double(kh[j * d + p]);
        for (std::int64_t c = 0; c < dv_; ++c) dp += double(doh[i * dv_ + c]) * double(vh[j * dv_ + c]);
        const double pij = std::exp(scale * s - li), ds = pij * (dp - di);
        for (std::int64_t c = 0; c < dv_; ++c) gv[j * dv_ + c] += pij * double(doh[i * dv_ + c]);
        for (std::int64_t p = 0; p < d; ++p) {
          gq[p] += scale * ds * double(kh[j * d + p]);
          gk[j * d + p] += scale * ds * double(qh[i * d + p]);
        }
      }
      for (std::int64_t p = 0; p < d; ++p) dq[(bh * sq + i) * d + p] = T(gq[p]);
    }
    for (std::int64_t x = 0; x < sk * d; ++x) dk[bh * sk * d + x] = T(gk[x]);
    for (std::int64_t x = 0; x < sk * dv_; ++x) dv[bh * sk * dv_ + x] = T(gv[x]);
  }
}

// ---------------------------------------------------------------------------------------------
// Tiled kernels
// ---------------------------------------------------------------------------------------------

namespace {

// kBq = 72: a whole number of micro-kernel row panels for every register tile (MR 12, 6, 4).
constexpr std::int64_t kBq = 72;   // query rows of a block (a task)
// Keys of a K/V tile; the score tile is kBq x kBk. Measured, 1 thread, B2H8S512D64 fp32
// (GFLOP/s, thread CPU time, under load) for kBk 64 / 128 / 256: forward 89 / 91-96 / 91,
// backward 108 / 104 / 103, causal backward 87 / 79 / 66; the backward's five products on a
// smaller tile stay in L1.
constexpr std::int64_t kBk = 128;     // forward
constexpr std::int64_t kBkBwd = 64;   // backward
// Forward: query blocks of a task, sharing each packed K/V tile (8 x 72 rows x Dv of output
// live in L2: 147 KiB at Dv = 64).
constexpr std::int64_t kGroupBlocks = 8;

std::int64_t blocks(std::int64_t n, std::int64_t bsize) { return (n + bsize - 1) / bsize; }
std::int64_t round_up(std::int64_t n, std::int64_t unit) { return blocks(n, unit) * unit; }

// Keys of the tile [j0, j0 + kb) that query row i sees.
std::int64_t visible(bool causal, std::int64_t i, std::int64_t j0, std::int64_t kb) {
  return causal ? std::clamp<std::int64_t>(i - j0 + 1, 0, kb) : kb;
}

// The keys query block [i0, i0 + qb) reads: all, or causally [0, min(sk, i0 + qb)).
std::int64_t key_end(bool causal, std::int64_t i0, std::int64_t qb, std::int64_t sk) {
  return causal ? std::min(sk, i0 + qb) : sk;
}

// A thread's scratch: one allocation, 64-byte aligned pieces.
template <typename T>
class Workspace {
 public:
  explicit Workspace(std::initializer_list<std::int64_t> sizes) {
    std::int64_t total = 0;
    for (const std::int64_t n : sizes) total += round_up(n, kAlign);
    buf_.resize(static_cast<std::size_t>(total + kAlign));
    T* p = buf_.data();
    p += (kAlign - (reinterpret_cast<std::uintptr_t>(p) / sizeof(T)) % kAlign) % kAlign;
    for (const std::int64_t n : sizes) {
      parts_.push_back(p);
      p += round_up(n, kAlign);
    }
  }
  T* operator[](std::size_t i) const { return parts_[i]; }

 private:
  static constexpr std::int64_t kAlign = 64 / std::int64_t(sizeof(T));
  std::vector<T> buf_;
  std::vector<T*> parts_;
};

// C (m x n, row stride ldc) = alpha * A B + beta * C on the GEMM's micro-kernel: A (m x kc)
// read in place (row stride lda) when lda != 0, else packed panels of MR rows (pack_a, packed
// with this kc); B read in place (row stride ldb) when ldb != 0 (n a multiple of NR: the kernel
// reads whole panels), else packed panels of NR columns (pack_b) packed for bkc >= kc rows, of
// which the first kc are used. The tiles fit in cache: no blocking here.
template <typename T>
void tile_mm(const GemmTable<T>& t, T* c, std::int64_t ldc, const T* a, std::int64_t lda,
             const T* b, std::int64_t ldb, std::int64_t bkc, std::int64_t m, std::int64_t n,
             std::int64_t kc, T alpha, T beta) {
  if (m <= 0 || n <= 0) return;
  const UkEpilogue<T> e{alpha, beta, nullptr, nullptr, false};
  for (std::int64_t jr = 0; jr < n; jr += t.nr) {
    const int nn = int(std::min<std::int64_t>(t.nr, n - jr));
    const T* bp = ldb ? b + jr : b + jr * bkc;
    for (std::int64_t ir = 0; ir < m; ir += t.mr) {
      const int mm = int(std::min<std::int64_t>(t.mr, m - ir));
      t.ukernel(kc, lda ? a + ir * lda : a + ir * kc, lda, bp, ldb, c + ir * ldc + jr, ldc, mm,
                nn, e);
    }
  }
}

// A row-major B operand (kc x n, row stride ld) for tile_mm: in place when whole NR-wide panels
// cover it, else packed into buf. Returns the pointer and sets *ldb (0: packed).
template <typename T>
const T* b_operand(const GemmTable<T>& t, T* buf, const T* src, std::int64_t ld, std::int64_t n,
                   std::int64_t kc, std::int64_t* ldb) {
  if (n % t.nr == 0) {
    *ldb = ld;
    return src;
  }
  t.pack_b(buf, src, 1, ld, n, kc);
  *ldb = 0;
  return buf;
}

// Query rows [g0, g0 + gq) of one (b, h), in blocks of kBq: out rows and their lse. Key tiles
// outer (each K^T / V tile packed once for the whole group), query blocks inner; the running
// max m, sum l and the unnormalised output of every row stay live across tiles.
template <typename T>
void forward_group(T* o, T* lse, const T* q, const T* k, const T* v, std::int64_t g0,
                   std::int64_t gq, std::int64_t sk, std::int64_t d, std::int64_t dv, bool causal,
                   T scale, const SoftmaxTable<T>& sm, const GemmTable<T>& t,
                   const Workspace<T>& ws) {
  const T ninf = -std::numeric_limits<T>::infinity();
  T *s = ws[0], *m = ws[1], *l = ws[2], *pk = ws[3], *pv = ws[4];
  std::fill(o, o + gq * dv, T(0));
  std::fill(m, m + gq, ninf);
  std::fill(l, l + gq, T(0));
  const std::int64_t kend = key_end(causal, g0, gq, sk);
  for (std::int64_t j0 = 0; j0 < kend; j0 += kBk) {
    const std::int64_t kt = std::min(kBk, kend - j0);
    t.pack_b(pk, k + j0 * d, d, 1, kt, d);  // K_tile^T as B
    std::int64_t ldv;
    const T* vb = b_operand(t, pv, v + j0 * dv, dv, dv, kt, &ldv);
    // Causal: blocks whose last row is above the tile see none of it.
    for (std::int64_t b0 = causal ? std::max<std::int64_t>(0, (j0 - g0) / kBq * kBq) : 0; b0 < gq;
         b0 += kBq) {
      const std::int64_t qb = std::min(kBq, gq - b0), i0 = g0 + b0;
      // Causal: the block's last row sees keys < i0 + qb only; the tile's columns past that are
      // neither computed nor multiplied.
      const std::int64_t kb = causal ? std::min(kt, i0 + qb - j0) : kt;
      T *ob = o + b0 * dv, *mb = m + b0, *lb = l + b0;
      // s = scale * Q_blk K_tile^T (qb x kb, row stride kBk), Q read in place
      // Causal diagonal tiles go by register-tile row panels, each to the last key it sees.
      const std::int64_t step = causal && j0 + kb > i0 ? t.mr : qb;
      for (std::int64_t ir = 0; ir < qb; ir += step) {
        const std::int64_t mm = std::min(step, qb - ir);
        const std::int64_t nc = causal ? std::min(kb, i0 + ir + mm - j0) : kb;
        tile_mm(t, s + ir * kBk, kBk, q + (b0 + ir) * d, d, pk, 0, d, mm, nc, d, scale, T(0));
      }
      for (std::int64_t r = 0; r < qb; ++r) {
        T* sr = s + r * kBk;
        const std::int64_t n = visible(causal, i0 + r, j0, kb);
        if (n > 0) {
          const T mn = std::max(mb[r], sm.row_max(sr, n));
          if (mn != ninf) {
            const T corr = mb[r] == mn ? T(1) : std::exp(mb[r] - mn);
            const T sum = sm.exp_sum_store(sr, sr, n, mn);
            if (corr != T(1)) sm.scale(ob + r * dv, dv, corr);
            lb[r] = lb[r] * corr + sum;
            mb[r] = mn;
          } else {  // every score -inf (overflowed): nothing to add
            std::fill(sr, sr + n, T(0));
          }
        }
        std::fill(sr + n, sr + kb, T(0));
      }
      // O_blk += P V_tile, P read in place
      for (std::int64_t ir = 0; ir < qb; ir += step) {
        const std::int64_t mm = std::min(step, qb - ir);
        const std::int64_t nc = causal ? std::min(kb, i0 + ir + mm - j0) : kb;
        if (nc > 0)
          tile_mm(t, ob + ir * dv, dv, s + ir * kBk, kBk, vb, ldv, kt, mm, dv, nc, T(1), T(1));
      }
    }
  }
  for (std::int64_t r = 0; r < gq; ++r) {
    if (l[r] > T(0)) {
      sm.scale(o + r * dv, dv, T(1) / l[r]);
      lse[r] = m[r] + std::log(l[r]);
    } else {
      std::fill(o + r * dv, o + (r + 1) * dv, T(0));
      lse[r] = ninf;
    }
  }
}

int task_threads(std::int64_t tasks) {
  return int(std::min<std::int64_t>(get_num_threads(), std::max<std::int64_t>(tasks, 1)));
}

}  // namespace

template <typename T>
void attention_forward(T* out, T* lse, const T* q, const T* k, const T* v, std::int64_t b,
                       std::int64_t h, std::int64_t sq, std::int64_t sk, std::int64_t d,
                       std::int64_t dv, bool causal, double scale, Isa isa) {
  const SoftmaxTable<T>& sm = softmax_table<T>(isa);
  const GemmTable<T>& gt = gemm_table<T>(isa);
  const std::int64_t bhn = b * h, nqb = blocks(sq, kBq);
  // Blocks per group: up to kGroupBlocks, fewer while that leaves under 4 tasks a thread.
  const std::int64_t want = 4 * std::int64_t(get_num_threads());
  const std::int64_t gb = std::clamp<std::int64_t>(bhn * nqb / want, 1, std::min(kGroupBlocks, std::max<std::int64_t>(nqb, 1)));
  const std::int64_t ng = blocks(nqb, gb), tasks = bhn * ng;
  const int threads = task_threads(tasks);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const Workspace<T> ws{kBq * kBk, gb * kBq, gb * kBq, round_up(kBk, gt.nr) * d,
                          round_up(dv, gt.nr) * kBk};
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t t = 0; t < tasks; ++t) {
      // Causal groups lower down cost more: hand out the last (largest) ones first.
      const std::int64_t tt = causal ? tasks - 1 - t : t;
      const std::int64_t bh = tt / ng, g0 = (tt % ng) * gb * kBq, gq = std::min(gb * kBq, sq - g0);
      forward_group(out + (bh * sq + g0) * dv, lse + bh * sq + g0, q + (bh * sq + g0) * d,
                    k + bh * sk * d, v + bh * sk * dv, g0, gq, sk, d, dv, causal, T(scale), sm,
                    gt, ws);
    }
  }
}

namespace {

// The backward's per-thread buffers (Workspace indices).
enum : std::size_t { kP, kDs, kKt, kVt, kKp, kPa, kPb };

// One key block [j0, j0 + kb) of one (b, h), against every query block that sees it: dk, dv rows
// of the block written, dq rows (all of this (b, h)'s, as a partial) added to.
template <typename T>
void backward_block(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v,
                    const T* lse, const T* di, std::int64_t j0, std::int64_t kb, std::int64_t sq,
                    std::int64_t d, std::int64_t dvn, bool causal, T scale,
                    const SoftmaxTable<T>& sm, const GemmTable<T>& t, const Workspace<T>& ws) {
  const T ninf = -std::numeric_limits<T>::infinity();
  T *p = ws[kP], *ds = ws[kDs], *pkt = ws[kKt], *pvt = ws[kVt], *pkp = ws[kKp], *pa = ws[kPa],
    *pb = ws[kPb];
  T* dkb = dk + j0 * d;
  T* dvb = dv + j0 * dvn;
  std::fill(dkb, dkb + kb * d, T(0));
  std::fill(dvb, dvb + kb * dvn, T(0));
  // The key block's operands, packed once for every query block: K^T (for S), V^T (for dP), K
  // (for dQ).
  t.pack_b(pkt, k + j0 * d, d, 1, kb, d);
  t.pack_b(pvt, v + j0 * dvn, dvn, 1, kb, dvn);
  std::int64_t ldk;
  const T* kp = b_operand(t, pkp, k + j0 * d, d, d, kb, &ldk);
  // Causal: query rows i < j0 see none of these keys, so the blocks start at row j0.
  for (std::int64_t i0 = causal ? j0 : 0; i0 < sq; i0 += kBq) {
    const std::int64_t qb = std::min(kBq, sq - i0);
    const T* qblk = q + i0 * d;
    const T* doblk = dout + i0 * dvn;
    // Causal diagonal blocks go by register-tile row panels, each to the last key it sees (the
    // products over the block's rows, P^T dO and dS^T Q, take the zeros instead).
    const std::int64_t step = causal && i0 < j0 + kb ? t.mr : qb;
    auto panels = [&](auto&& f) {
      for (std::int64_t ir = 0; ir < qb; ir += step) {
        const std::int64_t mm = std::min(step, qb - ir);
        const std::int64_t nc = causal ? std::min(kb, i0 + ir + mm - j0) : kb;
        if (nc > 0) f(ir, mm, nc);
      }
    };
    // p = exp(scale * Q_blk K_tile^T - lse)
    panels([&](std::int64_t ir, std::int64_t mm, std::int64_t nc) {
      tile_mm(t, p + ir * kBkBwd, kBkBwd, qblk + ir * d, d, pkt, 0, d, mm, nc, d, scale, T(0));
    });
    for (std::int64_t r = 0; r < qb; ++r) {
      T* pr = p + r * kBkBwd;
      const T lr = lse[i0 + r];
      const std::int64_t n = lr == ninf ? 0 : visible(causal, i0 + r, j0, kb);
      if (n > 0) sm.exp_sum_store(pr, pr, n, lr);
      std::fill(pr + n, pr + kb, T(0));
    }
    // dV_tile += P^T dO_blk (P^T packed as A, dO as B)
    std::int64_t ldb;
    t.pack_a(pa, p, 1, kBkBwd, kb, qb);
    const T* dob = b_operand(t, pb, doblk, dvn, dvn, qb, &ldb);
    tile_mm(t, dvb, dvn, pa, 0, dob, ldb, qb, kb, dvn, qb, T(1), T(1));
    // dP = dO_blk V_tile^T, then dS = P (dP - D_i) in place
    panels([&](std::int64_t ir, std::int64_t mm, std::int64_t nc) {
      tile_mm(t, ds + ir * kBkBwd, kBkBwd, doblk + ir * dvn, dvn, pvt, 0, dvn, mm, nc, dvn, T(1),
              T(0));
    });
    for (std::int64_t r = 0; r < qb; ++r) {
      // Past the keys row r sees, dP was not computed (may hold anything): dS = 0 there.
      T* dr = ds + r * kBkBwd;
      const std::int64_t n = visible(causal, i0 + r, j0, kb);
      sm.softmax_bwd(dr, dr, p + r * kBkBwd, n, di[i0 + r]);
      std::fill(dr + n, dr + kb, T(0));
    }
    // dK_tile += scale dS^T Q_blk;  dQ_blk += scale dS K_tile
    t.pack_a(pa, ds, 1, kBkBwd, kb, qb);
    const T* qbp = b_operand(t, pb, qblk, d, d, qb, &ldb);
    tile_mm(t, dkb, d, pa, 0, qbp, ldb, qb, kb, d, qb, scale, T(1));
    panels([&](std::int64_t ir, std::int64_t mm, std::int64_t nc) {
      tile_mm(t, dq + (i0 + ir) * d, d, ds + ir * kBkBwd, kBkBwd, kp, ldk, kb, mm, d, nc, scale,
              T(1));
    });
  }
}

}  // namespace

template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v,
                        const T* out, const T* lse, std::int64_t b, std::int64_t h,
                        std::int64_t sq, std::int64_t sk, std::int64_t d, std::int64_t dvn,
                        bool causal, double scale, Isa isa) {
  const SoftmaxTable<T>& sm = softmax_table<T>(isa);
  const GemmTable<T>& gt = gemm_table<T>(isa);
  const std::int64_t bhn = b * h, rows = bhn * sq;
  // D_i = dout_i . out_i, first (FA-2).
  std::vector<T> di(static_cast<std::size_t>(rows));
  {
    const int threads = task_threads(rows * dvn / 32768);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (std::int64_t r = 0; r < rows; ++r) di[r] = sm.dot(dout + r * dvn, out + r * dvn, dvn);
  }
  const std::int64_t nkb = blocks(sk, kBkBwd);
  if (nkb == 0) {  // no keys: dk, dv empty, dq = 0
    std::fill(dq, dq + rows * d, T(0));
    return;
  }
  // Ranges of key blocks per (b, h): enough tasks for every thread, one when B * H suffices.
  const int nt = get_num_threads();
  const std::int64_t ranges =
      std::max<std::int64_t>(1, std::min<std::int64_t>(nkb, (nt + bhn - 1) / bhn));
  std::vector<T> partial;
  if (ranges > 1) partial.resize(static_cast<std::size_t>(bhn * ranges * sq * d));
  const std::int64_t tasks = bhn * ranges;
  const int threads = task_threads(tasks);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const std::int64_t dmax = std::max(d, dvn);
    const Workspace<T> ws{kBq * kBkBwd,
                          kBq * kBkBwd,
                          round_up(kBkBwd, gt.nr) * d,
                          round_up(kBkBwd, gt.nr) * dvn,
                          round_up(d, gt.nr) * kBkBwd,
                          round_up(kBkBwd, gt.mr) * kBq,
                          round_up(dmax, gt.nr) * kBq};
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t t = 0; t < tasks; ++t) {
      const std::int64_t bh = t / ranges, r = t % ranges;
      // Causal: early key blocks meet more queries; ranges are equal in blocks (simple, and
      // the dynamic schedule evens out what it can).
      const std::int64_t kb0 = r * nkb / ranges, kb1 = (r + 1) * nkb / ranges;
      T* dqt = ranges > 1 ? partial.data() + t * sq * d : dq + bh * sq * d;
      std::fill(dqt, dqt + sq * d, T(0));
      for (std::int64_t kbi = kb0; kbi < kb1; ++kbi) {
        const std::int64_t j0 = kbi * kBkBwd, kb = std::min(kBkBwd, sk - j0);
        backward_block(dqt, dk + bh * sk * d, dv + bh * sk * dvn, dout + bh * sq * dvn,
                       q + bh * sq * d, k + bh * sk * d, v + bh * sk * dvn, lse + bh * sq,
                       di.data() + bh * sq, j0, kb, sq, d, dvn, causal, T(scale), sm, gt, ws);
      }
    }
  }
  if (ranges > 1) {
    const std::int64_t n = sq * d;
    const int sthreads = task_threads(rows * d / 32768);
#pragma omp parallel for schedule(static) num_threads(sthreads) if (sthreads > 1)
    for (std::int64_t x = 0; x < bhn * n; ++x) {
      const std::int64_t bh = x / n, e = x % n;
      const T* part = partial.data() + bh * ranges * n + e;
      T acc = part[0];
      for (std::int64_t r = 1; r < ranges; ++r) acc += part[r * n];
      dq[x] = acc;
    }
  }
}

#define FASTDL_INSTANTIATE(T)                                                                    \
  template void attention_forward<T>(T*, T*, const T*, const T*, const T*, std::int64_t,         \
                                     std::int64_t, std::int64_t, std::int64_t, std::int64_t,     \
                                     std::int64_t, bool, double, Isa);                            \
  template void attention_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,        \
                                      const T*, const T*, std::int64_t, std::int64_t,            \
                                      std::int64_t, std::int64_t, std::int64_t, std::int64_t,    \
                                      bool, double, Isa);                                         \
  template void attention_forward_reference<T>(T*, T*, const T*, const T*, const T*,             \
                                               std::int64_t, std::int64_t, std::int64_t,         \
                                               std::int64_t, std::int64_t, std::int64_t, bool,   \
                                               double);                                           \
  template void attention_backward_reference<T>(T*, T*, T*, const T*, const T*, const T*,        \
                                                const T*, const T*, const T*, std::int64_t,      \
                                                std::int64_t, std::int64_t, std::int64_t,        \
                                                std::int64_t, std::int64_t, bool, double);
FASTDL_INSTANTIATE(float)
FASTDL_INSTANTIATE(double)
#undef FASTDL_INSTANTIATE

}  // namespace fastdl
