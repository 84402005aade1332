// norm.cpp: batch normalisation over the channels of an (N, C, L) array, and layer normalisation
// over the rows of an (M, D) array, forward and backward.
//
// Shapes: x, y, dy, dx (N, C, L) contiguous (the ops layer views (N, C) as (N, C, 1) and
// (N, C, *) as (N, C, prod(*))); weight, bias, running_mean, running_var, save_mean,
// save_invstd, dweight, dbias (C,). Statistics run over N and L, m = N * L values a channel.
//   training  mean = sum x / m, var = sum (x - mean)^2 / m (biased), invstd = 1 / sqrt(var + eps)
//             running_mean = (1 - momentum) running_mean + momentum mean
//             running_var  = (1 - momentum) running_var  + momentum var m / (m - 1) (unbiased)
//   eval      mean, var = running_mean, running_var
//   y = (x - mean) * invstd * weight + bias;  save_mean, save_invstd = the mean and invstd used
//   backward  xhat = (x - mean) invstd, dbias = sum dy, dweight = sum dy xhat (always written);
//             training: dx = weight invstd (dy - mean(dy) - xhat mean(dy xhat))
//             eval:     dx = weight invstd dy
// Gradients are written (=).
//
// Variants, in order of increasing complexity:
//   1. *_reference: plain loops in double; the oracle for tests.
//   2. the run primitives of norm_simd.h over a one-lane vector (generic ISA),
//   3. ... over AVX2 and AVX-512 vectors (norm_avx2.cpp, norm_avx512.cpp).
// Statistics in one pass over memory: each (n, c) row is cut into runs of at most kRun elements
// (they stay in L1), each run's mean and M2 come from two passes over it, and the runs merge per
// channel in double with Chan's formula, in a fixed order. Rows shorter than kMinRow (the (N, C)
// case) go by blocks of rows with double accumulators instead. The split into runs and blocks
// never depends on the thread count, so results are bitwise the same for every thread count.
// When the channels share evenly among the threads, each thread takes whole channels and runs
// the statistics pass and the element-wise pass over a channel back to back, the second reading
// it from L2 (same runs, same merge order); otherwise the passes split rows.
// The normalised output is (x - a) * scale + shift with a = mean rounded to T and the rounding
// folded into shift: x - a is exact for x near the mean, so a large mean costs no digits.
// Outputs of kStreamBytes and more leave through non-temporal stores (vec_stream.h).
//
// layer_norm: x, y, dy, dx (M, D) contiguous (the ops layer flattens the leading axes into M and
// the normalised ones into D); weight, bias, dweight, dbias (D,); mean, rstd (M,).
//   mean_i = sum_j x_ij / D, rstd_i = 1 / sqrt(sum_j (x_ij - mean_i)^2 / D + eps)
//   y = (x - mean) rstd weight + bias          (weight, bias null: 1 and 0)
//   backward  xhat = (x - mean) rstd, g = dy weight
//             dx = rstd (g - mean_j(g) - xhat mean_j(g xhat)),
//             dweight = sum_i dy xhat, dbias = sum_i dy (always written)
// Rows in parallel. A row's statistics come from the same run primitive as batch_norm's (runs of
// kLnRun elements, two passes each from L1, merged in double), then one element-wise pass writes y
// with the mean's rounding folded into a shift as above: a row of 1e4 + small noise keeps the
// noise. The backward reads a row twice (its sums, then dx), the second time from L1/L2, and
// adds dy xhat and dy into the partial dweight / dbias of its block of rows; blocks are fixed
// (kLnBlock elements, never the thread count), and the partials are summed in double in block
// order, so dweight and dbias are bitwise the same for every thread count.
#include "cpu/norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/threading.h"
#include "cpu/norm_simd.h"
#include "cpu/vec_generic.h"

namespace fastdl {

// ---------------------------------------------------------------------------------------------
// Reference
// ---------------------------------------------------------------------------------------------

template <typename T>
void batch_norm_forward_reference(T* y, T* save_mean, T* save_invstd, const T* x,
                                  const T* weight, const T* bias, T* running_mean, T* running_var,
                                  std::int64_t n, std::int64_t c, std::int64_t l, bool training,
                                  double momentum, double eps) {
  const double m = double(n * l);
  for (std::int64_t ch = 0; ch < c; ++ch) {
    double mean, var;
    if (training) {
      double s = 0, s2 = 0;
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t j = 0; j < l; ++j) s += double(x[(i * c + ch) * l + j]);
      mean = s / m;
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t j = 0; j < l; ++j) {
          const double d = double(x[(i * c + ch) * l + j]) - mean;
          s2 += d * d;
        }
      var = s2 / m;
      if (running_mean)
        running_mean[ch] = T((1 - momentum) * double(running_mean[ch]) + momentum * mean);
      if (running_var)
        running_var[ch] = T((1 - momentum) * double(running_var[ch]) + momentum * var * m / (m - 1));
    } else {
      mean = double(running_mean[ch]);
      var = double(running_var[ch]);
    }
    const double invstd = 1 / std::sqrt(var + eps);
    save_mean[ch] = T(mean);
    save_invstd[ch] = T(invstd);
    const double w = weight ? double(weight[ch]) : 1.0, b = bias ? double(bias[ch]) : 0.0;
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < l; ++j) {
        const std::int64_t k = (i * c + ch) * l + j;
        y[k] = T((double(x[k]) - mean) * invstd * w + b);
      }
  }
}

template <typename T>
void batch_norm_backward_reference(T* dx, T* dweight, T* dbias, const T* dy, const T* x,
                                   const T* weight, const T* save_mean, const T* save_invstd,
                                   std::int64_t n, std::int64_t c, std::int64_t l, bool training) {
  const double m = double(n * l);
  for (std::int64_t ch = 0; ch < c; ++ch) {
    const double mean = double(save_mean[ch]), invstd = double(save_invstd[ch]);
    double sdy = 0, sdyx = 0;
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < l; ++j) {
        const std::int64_t k = (i * c + ch) * l + j;
        sdy += double(dy[k]);
        sdyx += double(dy[k]) * (double(x[k]) - mean);
      }
    dbias[ch] = T(sdy);
    dweight[ch] = T(sdyx * invstd);
    const double w = weight ? double(weight[ch]) : 1.0;
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < l; ++j) {
        const std::int64_t k = (i * c + ch) * l + j;
        const double g = double(dy[k]);
        if (training) {
          const double xhat = (double(x[k]) - mean) * invstd;
          dx[k] = T(w * invstd * (g - sdy / m - xhat * sdyx * invstd / m));
        } else {
          dx[k] = T(w * invstd * g);
        }
      }
  }
}

template <typename T>
void layer_norm_forward_reference(T* y, T* mean, T* rstd, const T* x, const T* weight,
                                  const T* bias, std::int64_t m, std::int64_t d, double eps) {
  for (std::int64_t i = 0; i < m; ++i) {
    const T* xr = x + i * d;
    double s = 0, s2 = 0;
    for (std::int64_t j = 0; j < d; ++j) s += double(xr[j]);
    const double mu = s / double(d);
    for (std::int64_t j = 0; j < d; ++j) s2 += (double(xr[j]) - mu) * (double(xr[j]) - mu);
    const double r = 1 / std::sqrt(s2 / double(d) + eps);
    mean[i] = T(mu);
    rstd[i] = T(r);
    for (std::int64_t j = 0; j < d; ++j)
      y[i * d + j] = T((double(xr[j]) - mu) * r * (weight ? double(weight[j]) : 1.0) +
                       (bias ? double(bias[j]) : 0.0));
  }
}

template <typename T>
void layer_norm_backward_reference(T* dx, T* dweight, T* dbias, const T* dy, const T* x,
                                   const T* weight, const T* mean, const T* rstd, std::int64_t m,
                                   std::int64_t d) {
  std::vector<double> dw(static_cast<std::size_t>(d), 0.0), db(dw.size(), 0.0);
  for (std::int64_t i = 0; i < m; ++i) {
    const double mu = double(mean[i]), r = double(rstd[i]);
    double sg = 0, sgx = 0;
    for (std::int64_t j = 0; j < d; ++j) {
      const double xh = (double(x[i * d + j]) - mu) * r;
      const double g = double(dy[i * d + j]) * (weight ? double(weight[j]) : 1.0);
      sg += g;
      sgx += g * xh;
      dw[std::size_t(j)] += double(dy[i * d + j]) * xh;
      db[std::size_t(j)] += double(dy[i * d + j]);
    }
    for (std::int64_t j = 0; j < d; ++j) {
      const double xh = (double(x[i * d + j]) - mu) * r;
      const double g = double(dy[i * d + j]) * (weight ? double(weight[j]) : 1.0);
      dx[i * d + j] = T(r * (g - sg / double(d) - xh * sgx / double(d)));
    }
  }
  for (std::int64_t j = 0; j < d; ++j) {
    dweight[j] = T(dw[std::size_t(j)]);
    dbias[j] = T(db[std::size_t(j)]);
  }
}

// ---------------------------------------------------------------------------------------------
// Fast kernels: the generic table here, the SIMD tables in norm_avx2/avx512.cpp
// ---------------------------------------------------------------------------------------------

namespace {
const NormTable<float> norm_table_generic_f32 = make_norm_table<VecScalar<float>>();
const NormTable<double> norm_table_generic_f64 = make_norm_table<VecScalar<double>>();

constexpr std::int64_t kRun = 2048;     // elements of a run: 8 KiB of floats, resident in L1
constexpr std::int64_t kMinRow = 32;    // shorter rows go by blocks of rows
constexpr std::int64_t kBlock = 8192;   // elements of such a block (about)
constexpr std::int64_t kGrain = 1 << 15;  // elements per thread worth waking a thread for
// Outputs of at least this many bytes are written with non-temporal stores (vec_stream.h): far
// beyond the L2s, they would only be read back from memory anyway.
constexpr std::int64_t kStreamBytes = std::int64_t(16) << 20;

int norm_threads(std::int64_t elems, std::int64_t items) {
  return int(std::min<std::int64_t>(
      {get_num_threads(), std::max<std::int64_t>(items, 1), std::max<std::int64_t>(1, elems / kGrain)}));
}

// Count, mean and M2 of a set of values, merged with another set's (Chan et al.).
struct Moments {
  double count = 0, mean = 0, m2 = 0;
  void merge(double cb, double mb, double m2b) {
    if (cb == 0) return;
    const double total = count + cb, d = mb - mean;
    mean += d * (cb / total);
    m2 += m2b + d * d * (count * cb / total);
    count = total;
  }
};

std::int64_t runs_of(std::int64_t l) { return (l + kRun - 1) / kRun; }
std::int64_t run_length(std::int64_t l, std::int64_t r) { return std::min(kRun, l - r * kRun); }

// Whether each thread takes whole channels: then the two passes over a channel (statistics,
// then the element-wise map) run back to back on one core and the second reads the channel
// from cache, not memory. Needs rows long enough for the run primitives and channels enough to
// share evenly; otherwise the passes split rows across threads (same arithmetic, same order).
bool by_channel(std::int64_t c, std::int64_t l, int threads) {
  return l >= kMinRow && (c % threads == 0 || c >= 4 * threads);
}

// ---- one channel's statistics, runs in (row, run) order: the channel path -------------------

template <typename T>
Moments moments_of_channel(const NormTable<T>& t, const T* x, std::int64_t n, std::int64_t c,
                           std::int64_t l, std::int64_t ch) {
  Moments acc;
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t r = 0; r < runs_of(l); ++r) {
      double m, m2;
      t.moments(&m, &m2, x + (i * c + ch) * l + r * kRun, run_length(l, r));
      acc.merge(double(run_length(l, r)), m, m2);
    }
  return acc;
}

template <typename T>
void grad_sums_of_channel(double* sdy, double* sdyx, const NormTable<T>& t, const T* dy,
                          const T* x, T mean, std::int64_t n, std::int64_t c, std::int64_t l,
                          std::int64_t ch) {
  double s = 0, sx = 0;
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t r = 0; r < runs_of(l); ++r) {
      const std::int64_t off = (i * c + ch) * l + r * kRun;
      double a, b;
      t.grad_sums(&a, &b, dy + off, x + off, run_length(l, r), mean);
      s += a;
      sx += b;
    }
  *sdy = s;
  *sdyx = sx;
}

// ---- every channel's statistics, rows split across threads: the rows path -------------------

// The rows of a block of the short-row path.
std::int64_t block_rows(std::int64_t c, std::int64_t l) {
  return std::max<std::int64_t>(1, kBlock / std::max<std::int64_t>(c * l, 1));
}

// Per-channel mean and biased variance of x (n, c, l), n * l > 0.
template <typename T>
void channel_moments(double* mean, double* var, const NormTable<T>& t, const T* x, std::int64_t n,
                     std::int64_t c, std::int64_t l) {
  const std::int64_t elems = n * c * l;
  std::vector<double> pm, pm2;  // per run (or per block and channel): mean, M2
  std::int64_t parts, runs = 0, rows = 0;
  if (l >= kMinRow) {
    runs = runs_of(l);
    parts = n * c * runs;
    pm.resize(std::size_t(parts));
    pm2.resize(std::size_t(parts));
    const int threads = norm_threads(elems, parts);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (std::int64_t it = 0; it < parts; ++it) {
      const std::int64_t row = it / runs, r = it % runs;
      t.moments(&pm[std::size_t(it)], &pm2[std::size_t(it)], x + row * l + r * kRun, run_length(l, r));
    }
  } else {
    rows = block_rows(c, l);
    const std::int64_t blocks = (n + rows - 1) / rows;
    parts = blocks * c;
    pm.assign(std::size_t(parts), 0.0);
    pm2.assign(std::size_t(parts), 0.0);
    const int threads = norm_threads(elems, blocks);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (std::int64_t b = 0; b < blocks; ++b) {
      double* bm = &pm[std::size_t(b * c)];
      double* bm2 = &pm2[std::size_t(b * c)];
      const std::int64_t i0 = b * rows, i1 = std::min(n, i0 + rows);
      const double cnt = double((i1 - i0) * l);
      for (std::int64_t i = i0; i < i1; ++i)
        for (std::int64_t ch = 0; ch < c; ++ch)
          for (std::int64_t j = 0; j < l; ++j) bm[ch] += double(x[(i * c + ch) * l + j]);
      for (std::int64_t ch = 0; ch < c; ++ch) bm[ch] /= cnt;
      for (std::int64_t i = i0; i < i1; ++i)
        for (std::int64_t ch = 0; ch < c; ++ch)
          for (std::int64_t j = 0; j < l; ++j) {
            const double d = double(x[(i * c + ch) * l + j]) - bm[ch];
            bm2[ch] += d * d;
          }
    }
  }
  const int threads = norm_threads(parts, c);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (std::int64_t ch = 0; ch < c; ++ch) {
    Moments acc;
    if (runs) {
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t r = 0; r < runs; ++r) {
          const std::size_t it = std::size_t((i * c + ch) * runs + r);
          acc.merge(double(run_length(l, r)), pm[it], pm2[it]);
        }
    } else {
      for (std::int64_t i0 = 0, b = 0; i0 < n; i0 += rows, ++b) {
        const std::size_t it = std::size_t(b * c + ch);
        acc.merge(double((std::min(n, i0 + rows) - i0) * l), pm[it], pm2[it]);
      }
    }
    mean[ch] = acc.mean;
    var[ch] = acc.m2 / acc.count;
  }
}

// Per-channel sum dy and sum dy (x - mean) over n and l.
template <typename T>
void channel_grad_sums(double* sdy, double* sdyx, const NormTable<T>& t, const T* dy, const T* x,
                       const T* mean, std::int64_t n, std::int64_t c, std::int64_t l) {
  const std::int64_t elems = n * c * l;
  std::vector<double> ps, psx;
  std::int64_t parts, runs = 0, rows = 0;
  if (l >= kMinRow) {
    runs = runs_of(l);
    parts = n * c * runs;
    ps.resize(std::size_t(parts));
    psx.resize(std::size_t(parts));
    const int threads = norm_threads(2 * elems, parts);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (std::int64_t it = 0; it < parts; ++it) {
      const std::int64_t row = it / runs, r = it % runs, off = row * l + r * kRun;
      t.grad_sums(&ps[std::size_t(it)], &psx[std::size_t(it)], dy + off, x + off,
                  run_length(l, r), mean[row % c]);
    }
  } else {
    rows = block_rows(c, l);
    const std::int64_t blocks = (n + rows - 1) / rows;
    parts = blocks * c;
    ps.assign(std::size_t(parts), 0.0);
    psx.assign(std::size_t(parts), 0.0);
    const int threads = norm_threads(2 * elems, blocks);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (std::int64_t b = 0; b < blocks; ++b) {
      double* bs = &ps[std::size_t(b * c)];
      double* bsx = &psx[std::size_t(b * c)];
      for (std::int64_t i = b * rows; i < std::min(n, (b + 1) * rows); ++i)
        for (std::int64_t ch = 0; ch < c; ++ch)
          for (std::int64_t j = 0; j < l; ++j) {
            const std::int64_t k = (i * c + ch) * l + j;
            bs[ch] += double(dy[k]);
            bsx[ch] += double(dy[k]) * double(x[k] - mean[ch]);
          }
    }
  }
  const int threads = norm_threads(parts, c);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (std::int64_t ch = 0; ch < c; ++ch) {
    double s = 0, sx = 0;
    if (runs) {
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t r = 0; r < runs; ++r) {
          const std::size_t it = std::size_t((i * c + ch) * runs + r);
          s += ps[it];
          sx += psx[it];
        }
    } else {
      for (std::int64_t b = 0; b * rows < n; ++b) {
        s += ps[std::size_t(b * c + ch)];
        sx += psx[std::size_t(b * c + ch)];
      }
    }
    sdy[ch] = s;
    sdyx[ch] = sx;
  }
}

// Runs f(row, channel) over the n * c rows of l elements.
template <class F>
void for_rows(std::int64_t n, std::int64_t c, std::int64_t l, std::int64_t streams, F f) {
  const int threads = norm_threads(streams * n * c * l, n * c);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (std::int64_t row = 0; row < n * c; ++row) f(row, row % c);
}
}  // namespace

template <>
const NormTable<float>& norm_table<float>(Isa isa) {
  return pick_isa(isa, norm_table_generic_f32, norm_table_avx2_f32, norm_table_avx512_f32);
}
template <>
const NormTable<double>& norm_table<double>(Isa isa) {
  return pick_isa(isa, norm_table_generic_f64, norm_table_avx2_f64, norm_table_avx512_f64);
}

// ---------------------------------------------------------------------------------------------
// Dispatch
// ---------------------------------------------------------------------------------------------

template <typename T>
void batch_norm_forward(T* y, T* save_mean, T* save_invstd, const T* x, const T* weight,
                        const T* bias, T* running_mean, T* running_var, std::int64_t n,
                        std::int64_t c, std::int64_t l, bool training, double momentum,
                        double eps, Isa isa) {
  const NormTable<T>& t = norm_table<T>(isa);
  const double m = double(n * l);
  std::vector<T> a(static_cast<std::size_t>(c)), scale(a.size()), shift(a.size());
  // Channel ch's statistics -> save_*, the running update and the map (x - a) scale + shift.
  auto coefficients = [&](std::int64_t ch, double mean, double var) {
    const std::size_t k = std::size_t(ch);
    const double invstd = 1 / std::sqrt(var + eps);
    if (training) {
      if (running_mean) running_mean[ch] = T((1 - momentum) * double(running_mean[ch]) + momentum * mean);
      if (running_var)
        running_var[ch] = T((1 - momentum) * double(running_var[ch]) + momentum * var * m / (m - 1));
    }
    save_mean[ch] = T(mean);
    save_invstd[ch] = T(invstd);
    const double sc = (weight ? double(weight[ch]) : 1.0) * invstd;
    a[k] = T(mean);
    scale[k] = T(sc);
    shift[k] = T((bias ? double(bias[ch]) : 0.0) - (mean - double(a[k])) * sc);
  };
  const bool stream = n * c * l * std::int64_t(sizeof(T)) >= kStreamBytes;
  auto normalize = [&](std::int64_t row, std::int64_t ch) {
    const std::size_t k = std::size_t(ch);
    t.affine(y + row * l, x + row * l, l, a[k], scale[k], shift[k], stream);
  };
  const int threads = norm_threads(3 * n * c * l, n * c);
  if (training && by_channel(c, l, threads)) {
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (std::int64_t ch = 0; ch < c; ++ch) {
      const Moments s = moments_of_channel(t, x, n, c, l, ch);
      coefficients(ch, s.mean, s.m2 / s.count);
      for (std::int64_t i = 0; i < n; ++i) normalize(i * c + ch, ch);
    }
    return;
  }
  std::vector<double> mean(a.size()), var(a.size());
  if (training) {
    channel_moments(mean.data(), var.data(), t, x, n, c, l);
  } else {
    for (std::int64_t ch = 0; ch < c; ++ch) {
      mean[std::size_t(ch)] = double(running_mean[ch]);
      var[std::size_t(ch)] = double(running_var[ch]);
    }
  }
  for (std::int64_t ch = 0; ch < c; ++ch) coefficients(ch, mean[std::size_t(ch)], var[std::size_t(ch)]);
  for_rows(n, c, l, 2, normalize);
}

template <typename T>
void batch_norm_backward(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* weight,
                         const T* save_mean, const T* save_invstd, std::int64_t n, std::int64_t c,
                         std::int64_t l, bool training, Isa isa) {
  const NormTable<T>& t = norm_table<T>(isa);
  const double m = double(n * l);
  std::vector<T> k1(static_cast<std::size_t>(c)), b(k1.size()), off(k1.size());
  // Channel ch's sums -> dweight, dbias and the map dx = dy k1 + off - (x - mean) b.
  auto coefficients = [&](std::int64_t ch, double sdy, double sdyx) {
    const std::size_t k = std::size_t(ch);
    const double invstd = double(save_invstd[ch]);
    dbias[ch] = T(sdy);
    dweight[ch] = T(sdyx * invstd);
    const double g = (weight ? double(weight[ch]) : 1.0) * invstd;
    k1[k] = T(g);
    // dx = g (dy - mean(dy) - (x - mean) invstd^2 mean(dy (x - mean)))
    b[k] = training && m > 0 ? T(g * invstd * invstd * sdyx / m) : T(0);
    off[k] = training && m > 0 ? T(-g * sdy / m) : T(0);
  };
  const bool stream = n * c * l * std::int64_t(sizeof(T)) >= kStreamBytes;
  auto grad_input = [&](std::int64_t row, std::int64_t ch) {
    const std::size_t k = std::size_t(ch);
    if (training)
      t.grad_input(dx + row * l, dy + row * l, x + row * l, l, save_mean[ch], k1[k], b[k], off[k],
                   stream);
    else
      t.affine(dx + row * l, dy + row * l, l, T(0), k1[k], T(0), stream);
  };
  const int threads = norm_threads(5 * n * c * l, n * c);
  if (by_channel(c, l, threads)) {
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (std::int64_t ch = 0; ch < c; ++ch) {
      double sdy, sdyx;
      grad_sums_of_channel(&sdy, &sdyx, t, dy, x, save_mean[ch], n, c, l, ch);
      coefficients(ch, sdy, sdyx);
      for (std::int64_t i = 0; i < n; ++i) grad_input(i * c + ch, ch);
    }
    return;
  }
  std::vector<double> sdy(k1.size()), sdyx(k1.size());
  channel_grad_sums(sdy.data(), sdyx.data(), t, dy, x, save_mean, n, c, l);
  for (std::int64_t ch = 0; ch < c; ++ch) coefficients(ch, sdy[std::size_t(ch)], sdyx[std::size_t(ch)]);
  for_rows(n, c, l, 3, grad_input);
}

namespace {
constexpr std::int64_t kLnBlock = 32768;  // elements of a block of rows sharing dweight partials
// Elements a run of a layer_norm row's sums: shorter than batch_norm's kRun because the second
// sums ride on one accumulator, which on the generic ISA (one lane) adds a run's every element in
// turn: 256 keeps rstd of 1e4 + noise within 1e-6 there; the merges in double cost nothing.
constexpr std::int64_t kLnRun = 256;
std::int64_t ln_runs(std::int64_t d) { return (d + kLnRun - 1) / kLnRun; }
std::int64_t ln_run_length(std::int64_t d, std::int64_t r) { return std::min(kLnRun, d - r * kLnRun); }

std::int64_t ln_block_rows(std::int64_t d) { return std::max<std::int64_t>(1, kLnBlock / std::max<std::int64_t>(d, 1)); }
}  // namespace

template <typename T>
void layer_norm_forward(T* y, T* mean, T* rstd, const T* x, const T* weight, const T* bias,
                        std::int64_t m, std::int64_t d, double eps, Isa isa) {
  if (m == 0 || d == 0) return;
  const NormTable<T>& t = norm_table<T>(isa);
  const int threads = norm_threads(3 * m * d, m);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (std::int64_t i = 0; i < m; ++i) {
    const T* xr = x + i * d;
    Moments acc;
    for (std::int64_t r = 0; r < ln_runs(d); ++r) {
      double mu, m2;
      t.moments(&mu, &m2, xr + r * kLnRun, ln_run_length(d, r));
      acc.merge(double(ln_run_length(d, r)), mu, m2);
    }
    const double r = 1 / std::sqrt(std::max(acc.m2, 0.0) / double(d) + eps);
    const T a = T(acc.mean);
    mean[i] = a;
    rstd[i] = T(r);
    t.ln_affine(y + i * d, xr, weight, bias, d, a, T(r), T(-(acc.mean - double(a)) * r));
  }
}

template <typename T>
void layer_norm_backward(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* weight,
                         const T* mean, const T* rstd, std::int64_t m, std::int64_t d, Isa isa) {
  if (d == 0) return;
  const NormTable<T>& t = norm_table<T>(isa);
  const std::int64_t rows = ln_block_rows(d), blocks = (m + rows - 1) / rows;
  // Per block: its rows' partial dweight (d) then dbias (d).
  std::vector<T> part(static_cast<std::size_t>(blocks * 2 * d));
  const int threads = norm_threads(5 * m * d, blocks);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (std::int64_t blk = 0; blk < blocks; ++blk) {
    T* pw = part.data() + blk * 2 * d;
    T* pb = pw + d;
    std::fill(pw, pw + 2 * d, T(0));
    for (std::int64_t i = blk * rows; i < std::min(m, (blk + 1) * rows); ++i) {
      const T *dyr = dy + i * d, *xr = x + i * d;
      const T a = mean[i], r = rstd[i];
      double sg = 0, sgx = 0;
      for (std::int64_t k = 0; k < ln_runs(d); ++k) {
        double s1, s2;
        t.ln_grad_sums(&s1, &s2, dyr + k * kLnRun, xr + k * kLnRun,
                       weight ? weight + k * kLnRun : nullptr, ln_run_length(d, k), a, r);
        sg += s1;
        sgx += s2;
      }
      const double rd = double(r) / double(d);
      t.ln_grad_input(dx + i * d, pw, pb, dyr, xr, weight, d, a, r, T(-rd * sg), T(rd * sgx));
    }
  }
  const int rthreads = norm_threads(2 * blocks * d, d);
#pragma omp parallel for schedule(static) num_threads(rthreads) if (rthreads > 1)
  for (std::int64_t j = 0; j < d; ++j) {
    double sw = 0, sb = 0;
    for (std::int64_t blk = 0; blk < blocks; ++blk) {
      sw += double(part[std::size_t(blk * 2 * d + j)]);
      sb += double(part[std::size_t(blk * 2 * d + d + j)]);
    }
    dweight[j] = T(sw);
    dbias[j] = T(sb);
  }
}

#define FASTDL_INSTANTIATE(T)                                                                     \
  template void layer_norm_forward<T>(T*, T*, T*, const T*, const T*, const T*, std::int64_t,     \
                                      std::int64_t, double, Isa);                                 \
  template void layer_norm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,        \
                                       const T*, std::int64_t, std::int64_t, Isa);                \
  template void layer_norm_forward_reference<T>(T*, T*, T*, const T*, const T*, const T*,         \
                                                std::int64_t, std::int64_t, double);              \
  template void layer_norm_backward_reference<T>(T*, T*, T*, const T*, const T*, const T*,        \
                                                 const T*, const T*, std::int64_t, std::int64_t); \
  template void batch_norm_forward<T>(T*, T*, T*, const T*, const T*, const T*, T*, T*,           \
                                      std::int64_t, std::int64_t, std::int64_t, bool, double,     \
                                      double, Isa);                                               \
  template void batch_norm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,        \
                                       const T*, std::int64_t, std::int64_t, std::int64_t, bool,  \
                                       Isa);                                                      \
  template void batch_norm_forward_reference<T>(T*, T*, T*, const T*, const T*, const T*, T*, T*, \
                                                std::int64_t, std::int64_t, std::int64_t, bool,   \
                                                double, double);                                  \
  template void batch_norm_backward_reference<T>(T*, T*, T*, const T*, const T*, const T*,        \
                                                 const T*, const T*, std::int64_t, std::int64_t,  \
                                                 std::int64_t, bool);
FASTDL_INSTANTIATE(float)
FASTDL_INSTANTIATE(double)
#undef FASTDL_INSTANTIATE

}  // namespace fastdl
