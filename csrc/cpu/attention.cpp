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
//   2. the tiled kernels: a block of kBq queries per task (OpenMP over (b, h, query block)),
//      K/V tiles of kBk keys streamed through cache, Q.K^T and P.V on the packed GEMM's
//      micro-kernels (gemm with max_threads = 1 inside the parallel loop), the online softmax
//      on the softmax family's row primitives (softmax.h: vexp of vec_math.h, per ISA).
//      Causal skips the tiles above the diagonal and masks only the diagonal ones.
//      The backward recomputes P tile by tile from lse; outer loop over key blocks, inner over
//      query blocks, as FA-2. dK and dV rows belong to the task of their key block; dQ is
//      accumulated without atomics: a task owns one (b, h) and a contiguous range of its key
//      blocks; with one range per (b, h) (B * H >= threads) it adds straight into dq, otherwise
//      each range adds into its own Sq x D partial and the partials are summed in range order.
//      Every split depends on the thread count only, so results are bitwise repeatable at a
//      fixed thread count.
// Workspace: forward, one kBq x kBk score tile per thread (plus the GEMM's packing buffers);
// backward, two tiles per thread, D_i (B * H * Sq values) and, when B * H < threads, the dQ
// partials: (ranges per (b, h)) * B * H * Sq * D values, ranges <= threads. Never Sq x Sk.
#include "cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "common/threading.h"
#include "cpu/gemm.h"
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

constexpr std::int64_t kBq = 64;   // query rows of a block (a task)
constexpr std::int64_t kBk = 128;  // keys of a K/V tile; the score tile is kBq x kBk

std::int64_t blocks(std::int64_t n, std::int64_t bsize) { return (n + bsize - 1) / bsize; }

// Keys of the tile [j0, j0 + kb) that query row i sees.
std::int64_t visible(bool causal, std::int64_t i, std::int64_t j0, std::int64_t kb) {
  return causal ? std::clamp<std::int64_t>(i - j0 + 1, 0, kb) : kb;
}

// The keys query block [i0, i0 + qb) reads: all, or causally [0, min(sk, i0 + qb)).
std::int64_t key_end(bool causal, std::int64_t i0, std::int64_t qb, std::int64_t sk) {
  return causal ? std::min(sk, i0 + qb) : sk;
}

template <typename T>
GemmParams<T> params(T alpha, T beta) {
  GemmParams<T> p;
  p.alpha = alpha;
  p.beta = beta;
  return p;
}

// One query block of one (b, h): out rows [i0, i0 + qb) and their lse.
template <typename T>
void forward_block(T* o, T* lse, const T* q, const T* k, const T* v, std::int64_t i0,
                   std::int64_t qb, std::int64_t sk, std::int64_t d, std::int64_t dv, bool causal,
                   T scale, const SoftmaxTable<T>& sm, Isa isa, T* s, T* m, T* l) {
  const T ninf = -std::numeric_limits<T>::infinity();
  std::fill(o, o + qb * dv, T(0));
  std::fill(m, m + qb, ninf);
  std::fill(l, l + qb, T(0));
  const std::int64_t kend = key_end(causal, i0, qb, sk);
  for (std::int64_t j0 = 0; j0 < kend; j0 += kBk) {
    const std::int64_t kb = std::min(kBk, kend - j0);
    // s = scale * Q_blk K_tile^T (qb x kb, row stride kBk)
    gemm(s, kBk, q, d, 1, k + j0 * d, 1, d, qb, kb, d, params(scale, T(0)), isa, 1);
    for (std::int64_t r = 0; r < qb; ++r) {
      T* sr = s + r * kBk;
      const std::int64_t n = visible(causal, i0 + r, j0, kb);
      if (n > 0) {
        const T mt = sm.row_max(sr, n);
        const T mn = std::max(m[r], mt);
        if (mn != ninf) {
          const T corr = m[r] == mn ? T(1) : std::exp(m[r] - mn);
          const T sum = sm.exp_sum_store(sr, sr, n, mn);
          if (corr != T(1)) sm.scale(o + r * dv, dv, corr);
          l[r] = l[r] * corr + sum;
          m[r] = mn;
        } else {  // every score -inf (overflowed): nothing to add
          std::fill(sr, sr + n, T(0));
        }
      }
      std::fill(sr + n, sr + kb, T(0));
    }
    // O_blk += P V_tile
    gemm(o, dv, s, kBk, 1, v + j0 * dv, dv, 1, qb, dv, kb, params(T(1), T(1)), isa, 1);
  }
  for (std::int64_t r = 0; r < qb; ++r) {
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
  const std::int64_t nqb = blocks(sq, kBq), tasks = b * h * nqb;
  const int threads = task_threads(tasks);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    std::vector<T> ws(static_cast<std::size_t>(kBq * kBk + 2 * kBq));
    T *s = ws.data(), *m = s + kBq * kBk, *l = m + kBq;
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t t = 0; t < tasks; ++t) {
      // Causal blocks lower down cost more: hand out the last (largest) ones first.
      const std::int64_t tt = causal ? tasks - 1 - t : t;
      const std::int64_t bh = tt / nqb, i0 = (tt % nqb) * kBq, qb = std::min(kBq, sq - i0);
      forward_block(out + (bh * sq + i0) * dv, lse + bh * sq + i0, q + (bh * sq + i0) * d,
                    k + bh * sk * d, v + bh * sk * dv, i0, qb, sk, d, dv, causal, T(scale), sm,
                    isa, s, m, l);
    }
  }
}

namespace {

// One key block [j0, j0 + kb) of one (b, h), against every query block that sees it: dk, dv rows
// of the block written, dq rows (all of this (b, h)'s, as a partial) added to.
template <typename T>
void backward_block(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v,
                    const T* lse, const T* di, std::int64_t j0, std::int64_t kb, std::int64_t sq,
                    std::int64_t d, std::int64_t dvn, bool causal, T scale,
                    const SoftmaxTable<T>& sm, Isa isa, T* p, T* ds) {
  const T ninf = -std::numeric_limits<T>::infinity();
  T* dkb = dk + j0 * d;
  T* dvb = dv + j0 * dvn;
  std::fill(dkb, dkb + kb * d, T(0));
  std::fill(dvb, dvb + kb * dvn, T(0));
  const T* kt = k + j0 * d;
  const T* vt = v + j0 * dvn;
  // Causal: query rows i < j0 see none of these keys.
  for (std::int64_t i0 = causal ? j0 / kBq * kBq : 0; i0 < sq; i0 += kBq) {
    const std::int64_t qb = std::min(kBq, sq - i0);
    const T* qblk = q + i0 * d;
    const T* doblk = dout + i0 * dvn;
    // p = exp(scale * Q_blk K_tile^T - lse)
    gemm(p, kBk, qblk, d, 1, kt, 1, d, qb, kb, d, params(scale, T(0)), isa, 1);
    for (std::int64_t r = 0; r < qb; ++r) {
      T* pr = p + r * kBk;
      const T lr = lse[i0 + r];
      const std::int64_t n = lr == ninf ? 0 : visible(causal, i0 + r, j0, kb);
      if (n > 0) sm.exp_sum_store(pr, pr, n, lr);
      std::fill(pr + n, pr + kb, T(0));
    }
    // dV_tile += P^T dO_blk
    gemm(dvb, dvn, p, 1, kBk, doblk, dvn, 1, kb, dvn, qb, params(T(1), T(1)), isa, 1);
    // dP = dO_blk V_tile^T, then dS = P (dP - D_i) in place
    gemm(ds, kBk, doblk, dvn, 1, vt, 1, dvn, qb, kb, dvn, params(T(1), T(0)), isa, 1);
    for (std::int64_t r = 0; r < qb; ++r)
      sm.softmax_bwd(ds + r * kBk, ds + r * kBk, p + r * kBk, kb, di[i0 + r]);
    // dK_tile += scale dS^T Q_blk;  dQ_blk += scale dS K_tile
    gemm(dkb, d, ds, 1, kBk, qblk, d, 1, kb, d, qb, params(scale, T(1)), isa, 1);
    gemm(dq + i0 * d, d, ds, kBk, 1, kt, d, 1, qb, d, kb, params(scale, T(1)), isa, 1);
  }
}

}  // namespace

template <typename T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v,
                        const T* out, const T* lse, std::int64_t b, std::int64_t h,
                        std::int64_t sq, std::int64_t sk, std::int64_t d, std::int64_t dvn,
                        bool causal, double scale, Isa isa) {
  const SoftmaxTable<T>& sm = softmax_table<T>(isa);
  const std::int64_t bhn = b * h, rows = bhn * sq;
  // D_i = dout_i . out_i, first (FA-2).
  std::vector<T> di(static_cast<std::size_t>(rows));
  {
    const int threads = task_threads(rows * dvn / 32768);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (std::int64_t r = 0; r < rows; ++r) di[r] = sm.dot(dout + r * dvn, out + r * dvn, dvn);
  }
  const std::int64_t nkb = blocks(sk, kBk);
  // Ranges of key blocks per (b, h): enough tasks for every thread, one when B * H suffices.
  const int nt = get_num_threads();
  const std::int64_t ranges =
      std::max<std::int64_t>(1, std::min<std::int64_t>(nkb, (nt + bhn - 1) / bhn));
  std::vector<T> partial;
  if (ranges > 1) partial.resize(std::size_t(bhn * ranges * sq * d));
  const std::int64_t tasks = bhn * ranges;
  if (nkb == 0) {  // no keys: dk, dv empty, dq = 0
    std::fill(dq, dq + rows * d, T(0));
    return;
  }
  const int threads = task_threads(tasks);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    std::vector<T> ws(static_cast<std::size_t>(2 * kBq * kBk));
    T *p = ws.data(), *ds = p + kBq * kBk;
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t t = 0; t < tasks; ++t) {
      const std::int64_t bh = t / ranges, r = t % ranges;
      // Causal: early key blocks meet more queries; ranges are equal in blocks (simple, and
      // the dynamic schedule evens out what it can).
      const std::int64_t kb0 = r * nkb / ranges, kb1 = (r + 1) * nkb / ranges;
      T* dqt = ranges > 1 ? partial.data() + t * sq * d : dq + bh * sq * d;
      std::fill(dqt, dqt + sq * d, T(0));
      for (std::int64_t kbi = kb0; kbi < kb1; ++kbi) {
        const std::int64_t j0 = kbi * kBk, kb = std::min(kBk, sk - j0);
        backward_block(dqt, dk + bh * sk * d, dv + bh * sk * dvn, dout + bh * sq * dvn,
                       q + bh * sq * d, k + bh * sk * d, v + bh * sk * dvn, lse + bh * sq,
                       di.data() + bh * sq, j0, kb, sq, d, dvn, causal, T(scale), sm, isa, p, ds);
      }
    }
  }
  if (ranges > 1) {
    const std::int64_t n = sq * d;
    const int sthreads = task_threads(rows * d / 32768);
#pragma omp parallel for schedule(static) num_threads(sthreads) if (sthreads > 1)
    for (std::int64_t x = 0; x < bhn * n; ++x) {
      const std::int64_t bh = x / n, e = x % n;
      T acc = partial[std::size_t((bh * ranges) * n + e)];
      for (std::int64_t r = 1; r < ranges; ++r) acc += partial[std::size_t((bh * ranges + r) * n + e)];
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
