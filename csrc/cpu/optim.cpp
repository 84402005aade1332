// optim.cpp: fused optimizer steps (SGD, Adam/AdamW, RMSprop, Adagrad) and gradient-norm
// clipping. Each step reads and writes a parameter p and its state in one pass, in place.
//
// Shapes: every array of a step is a flat run of n elements of one type T (float or double).
// d is the gradient the step uses; in the element type T (constants rounded to T once per call):
//
//   d = g                              (d = -g with maximize)
//   SGD        if weight_decay:  d = d + weight_decay * p
//              if momentum:      buf = d                                    on the first step
//                                buf = momentum * buf + (1 - dampening) * d otherwise
//                                d = nesterov ? d + momentum * buf : buf
//              p = p - lr * d
//   Adam       if weight_decay:  decoupled (AdamW): p = p * (1 - lr * weight_decay)
//                                else (L2):         d = d + weight_decay * p
//              m = lerp(m, d, 1 - beta1)         PyTorch's lerp: m + w*(d - m) if |w| < 0.5,
//                                                                else d + (w - 1)*(d - m)
//              v = beta2 * v + (1 - beta2) * d * d
//              amsgrad: max_v = max(max_v, v), v_hat = max_v; else v_hat = v
//              step_size = lr / (1 - beta1^step)   bc2_sqrt = sqrt(1 - beta2^step)  (in double)
//              p = p - step_size * m / (sqrt(v_hat) / bc2_sqrt + eps)
//   RMSprop    if weight_decay:  d = d + weight_decay * p
//              square_avg = alpha * square_avg + (1 - alpha) * d * d
//              centered: grad_avg = lerp(grad_avg, d, 1 - alpha)
//                        avg = sqrt(square_avg - grad_avg * grad_avg) + eps
//              else:     avg = sqrt(square_avg) + eps
//              momentum > 0: buf = momentum * buf + d / avg;  p = p - lr * buf
//              else:         p = p - lr * d / avg
//   Adagrad    if weight_decay:  d = d + weight_decay * p
//              sum_sq = sum_sq + d * d
//              p = p - lr * d / (sqrt(sum_sq) + eps)     (lr is PyTorch's lr / (1 + (step-1)*lr_decay))
//
// These are PyTorch's single-tensor and fused CPU updates (epsilon after the square root and,
// for Adam, after dividing by sqrt of the bias correction). No backward: these are the end of it.
//
// Gradient clipping: total = (sum over all arrays of |x|^q)^(1/q), accumulated in double (q = 2
// is the fast path; q = inf is max |x|); clip_grad_norm_ (in the bindings) then multiplies every
// array by max_norm / (total + 1e-6) unless that is >= 1 (a NaN total gives NaN gradients, as in
// PyTorch, whose clamp(coef, max=1) keeps the NaN).
//
// Variants, in order of increasing complexity:
//   1. *_reference: plain scalar loops, the oracle for the tests.
//   2. the generic table: the optim_simd.h bodies over one-element "vectors" (the compiler
//      vectorizes them for baseline x86-64).
//   3. the AVX2 and AVX-512 tables (optim_avx2.cpp / optim_avx512.cpp).
// Threads each take one contiguous range of the arrays (rounded to whole cache lines); since a
// body gives every element the same arithmetic wherever a range starts, the results do not
// depend on the thread count.
#include "cpu/optim.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common/check.h"
#include "common/threading.h"
#include "cpu/optim_simd.h"
#include "cpu/vec_generic.h"

namespace fastdl {

// ---------------------------------------------------------------------------------------------
// Reference
// ---------------------------------------------------------------------------------------------

namespace {
template <typename T>
T lerp_ref(T a, T b, T w) {  // PyTorch's lerp
  return std::abs(w) < T(0.5) ? a + w * (b - a) : b - (b - a) * (T(1) - w);
}
}  // namespace

template <typename T>
void sgd_step_reference(T* p, T* buf, const T* g, std::int64_t n, const SgdHyper& h) {
  for (std::int64_t i = 0; i < n; ++i) {
    T d = h.maximize ? -g[i] : g[i];
    if (h.weight_decay != 0) d += T(h.weight_decay) * p[i];
    if (h.momentum != 0) {
      buf[i] = h.first_step ? d : T(h.momentum) * buf[i] + T(1 - h.dampening) * d;
      d = h.nesterov ? d + T(h.momentum) * buf[i] : buf[i];
    }
    p[i] -= T(h.lr) * d;
  }
}

template <typename T>
void adam_step_reference(T* p, T* m, T* v, T* max_v, const T* g, std::int64_t n,
                         const AdamHyper& h) {
  const double step_size = h.lr / (1 - std::pow(h.beta1, h.step));
  const double bc2_sqrt = std::sqrt(1 - std::pow(h.beta2, h.step));
  for (std::int64_t i = 0; i < n; ++i) {
    T d = h.maximize ? -g[i] : g[i];
    if (h.weight_decay != 0) {
      if (h.decoupled)
        p[i] *= T(1 - h.lr * h.weight_decay);
      else
        d += T(h.weight_decay) * p[i];
    }
    m[i] = lerp_ref(m[i], d, T(1 - h.beta1));
    v[i] = T(h.beta2) * v[i] + T(1 - h.beta2) * d * d;
    T vhat = v[i];
    if (h.amsgrad) vhat = max_v[i] = max_v[i] > v[i] ? max_v[i] : v[i];  // NaN in v wins
    p[i] -= T(step_size) * m[i] / (std::sqrt(vhat) / T(bc2_sqrt) + T(h.eps));
  }
}

template <typename T>
void rmsprop_step_reference(T* p, T* square_avg, T* buf, T* grad_avg, const T* g,
                            std::int64_t n, const RmspropHyper& h) {
  for (std::int64_t i = 0; i < n; ++i) {
    T d = h.maximize ? -g[i] : g[i];
    if (h.weight_decay != 0) d += T(h.weight_decay) * p[i];
    square_avg[i] = T(h.alpha) * square_avg[i] + T(1 - h.alpha) * d * d;
    T avg;
    if (h.centered) {
      grad_avg[i] = lerp_ref(grad_avg[i], d, T(1 - h.alpha));
      avg = std::sqrt(square_avg[i] - grad_avg[i] * grad_avg[i]) + T(h.eps);
    } else {
      avg = std::sqrt(square_avg[i]) + T(h.eps);
    }
    if (h.momentum > 0) {
      buf[i] = T(h.momentum) * buf[i] + d / avg;
      p[i] -= T(h.lr) * buf[i];
    } else {
      p[i] -= T(h.lr) * (d / avg);
    }
  }
}

template <typename T>
void adagrad_step_reference(T* p, T* sum_sq, const T* g, std::int64_t n, const AdagradHyper& h) {
  for (std::int64_t i = 0; i < n; ++i) {
    T d = h.maximize ? -g[i] : g[i];
    if (h.weight_decay != 0) d += T(h.weight_decay) * p[i];
    sum_sq[i] += d * d;
    p[i] -= T(h.lr) * (d / (std::sqrt(sum_sq[i]) + T(h.eps)));
  }
}

// ---------------------------------------------------------------------------------------------
// Generic table: the optim_simd.h bodies over scalars
// ---------------------------------------------------------------------------------------------

namespace {
template <typename TT>
struct Scalar : VecScalar<TT> {
  using typename VecScalar<TT>::T;
  using typename VecScalar<TT>::reg;
  using acc = double;
  static acc acc_zero() { return 0.0; }
  static acc acc_sq(acc s, reg x) { return s + double(x) * double(x); }
  static double acc_sum(acc s) { return s; }
};
}  // namespace

const OptimTable<float> optim_table_generic_f32 = make_optim_table<Scalar<float>>();
const OptimTable<double> optim_table_generic_f64 = make_optim_table<Scalar<double>>();

// ---------------------------------------------------------------------------------------------
// Dispatch: table, constants, threads
// ---------------------------------------------------------------------------------------------

namespace {

template <typename T>
const OptimTable<T>& optim_table(Isa isa);
template <>
const OptimTable<float>& optim_table<float>(Isa isa) {
  return pick_isa(isa, optim_table_generic_f32, optim_table_avx2_f32, optim_table_avx512_f32);
}
template <>
const OptimTable<double>& optim_table<double>(Isa isa) {
  return pick_isa(isa, optim_table_generic_f64, optim_table_avx2_f64, optim_table_avx512_f64);
}

// A thread is worth its start-up (~1 us for an OpenMP team) from about this many bytes of traffic
// per thread; measured with Adam and SGD on Zen 5 (benchmarks/RESULTS.md, "Optimizers": Adam
// breaks even near 12K floats = 340 KB, SGD with momentum near 24K floats = 480 KB).
constexpr std::int64_t kMinBytesPerThread = 256 << 10;
constexpr std::int64_t kChunkBytes = 1 << 20;  // traffic per chunk of work
constexpr std::int64_t kAlign = 64;             // chunk boundaries in elements: whole cache lines

// f(begin, end) over [0, n) in chunks of about kChunkBytes of traffic, handed out dynamically:
// on a busy machine a thread that is descheduled holds up only its current chunk, not a fixed
// half of the array. bytes: traffic per element.
template <typename F>
void parallel_ranges(std::int64_t n, std::int64_t bytes, F&& f) {
  const int threads = int(std::min<std::int64_t>(
      get_num_threads(), std::max<std::int64_t>(1, n * bytes / kMinBytesPerThread)));
  if (threads <= 1) {
    f(std::int64_t(0), n);
    return;
  }
  const std::int64_t chunk = std::max<std::int64_t>(kAlign, kChunkBytes / bytes / kAlign * kAlign);
  const std::int64_t chunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (std::int64_t c = 0; c < chunks; ++c) f(c * chunk, std::min(n, (c + 1) * chunk));
}

template <typename T>
void lerp_consts(double w, T& lw, T& lw1, bool& from_a) {
  lw = T(w);
  lw1 = T(w - 1);
  from_a = std::abs(w) < 0.5;
}

}  // namespace

template <typename T>
void sgd_step(T* p, T* buf, const T* g, std::int64_t n, const SgdHyper& h, Isa isa) {
  const auto& tab = optim_table<T>(isa);
  const SgdConst<T> c{T(h.maximize ? -1 : 1), T(h.weight_decay), T(h.momentum),
                      T(1 - h.dampening), T(-h.lr)};
  const bool wd = h.weight_decay != 0, mom = h.momentum != 0;
  parallel_ranges(n, std::int64_t(sizeof(T)) * (mom ? 5 : 3), [&](std::int64_t lo, std::int64_t hi) {
    tab.sgd(p + lo, mom ? buf + lo : nullptr, g + lo, hi - lo, c, wd, mom, h.nesterov,
            h.first_step);
  });
}

template <typename T>
void adam_step(T* p, T* m, T* v, T* max_v, const T* g, std::int64_t n, const AdamHyper& h,
               Isa isa) {
  const auto& tab = optim_table<T>(isa);
  AdamConst<T> c{};
  bool from_m = true;
  c.sign = T(h.maximize ? -1 : 1);
  c.weight_decay = T(h.weight_decay);
  c.decay = T(1 - h.lr * h.weight_decay);
  lerp_consts(1 - h.beta1, c.lerp_w, c.lerp_w1, from_m);
  c.beta2 = T(h.beta2);
  c.c2 = T(1 - h.beta2);
  c.bc2_sqrt = T(std::sqrt(1 - std::pow(h.beta2, h.step)));
  c.eps = T(h.eps);
  c.step_size = T(h.lr / (1 - std::pow(h.beta1, h.step)));
  const bool wd = h.weight_decay != 0;
  parallel_ranges(n, std::int64_t(sizeof(T)) * (h.amsgrad ? 9 : 7), [&](std::int64_t lo, std::int64_t hi) {
    tab.adam(p + lo, m + lo, v + lo, h.amsgrad ? max_v + lo : nullptr, g + lo, hi - lo, c, wd,
             h.decoupled, h.amsgrad, from_m);
  });
}

template <typename T>
void rmsprop_step(T* p, T* square_avg, T* buf, T* grad_avg, const T* g, std::int64_t n,
                  const RmspropHyper& h, Isa isa) {
  const auto& tab = optim_table<T>(isa);
  RmspropConst<T> c{};
  bool from_a = true;
  c.sign = T(h.maximize ? -1 : 1);
  c.weight_decay = T(h.weight_decay);
  c.alpha = T(h.alpha);
  c.c1 = T(1 - h.alpha);
  lerp_consts(1 - h.alpha, c.lerp_w, c.lerp_w1, from_a);
  c.eps = T(h.eps);
  c.momentum = T(h.momentum);
  c.neg_lr = T(-h.lr);
  const bool wd = h.weight_decay != 0, mom = h.momentum > 0;
  const int streams = 5 + (mom ? 2 : 0) + (h.centered ? 2 : 0);
  parallel_ranges(n, std::int64_t(sizeof(T)) * streams, [&](std::int64_t lo, std::int64_t hi) {
    tab.rmsprop(p + lo, square_avg + lo, mom ? buf + lo : nullptr,
                h.centered ? grad_avg + lo : nullptr, g + lo, hi - lo, c, wd, mom, h.centered,
                from_a);
  });
}

template <typename T>
void adagrad_step(T* p, T* sum_sq, const T* g, std::int64_t n, const AdagradHyper& h, Isa isa) {
  const auto& tab = optim_table<T>(isa);
  const AdagradConst<T> c{T(h.maximize ? -1 : 1), T(h.weight_decay), T(h.eps), T(-h.lr)};
  const bool wd = h.weight_decay != 0;
  parallel_ranges(n, std::int64_t(sizeof(T)) * 5, [&](std::int64_t lo, std::int64_t hi) {
    tab.adagrad(p + lo, sum_sq + lo, g + lo, hi - lo, c, wd);
  });
}

// ---------------------------------------------------------------------------------------------
// Gradient norms and scaling
// ---------------------------------------------------------------------------------------------

namespace {

constexpr std::int64_t kNormBlock = 1 << 16;  // elements per partial result (fixed: determinism)

template <typename T>
double block_norm(const OptimTable<T>& tab, const T* x, std::int64_t n, double q) {
  if (q == 2) return tab.sumsq(x, n);
  if (std::isinf(q)) {  // max |x|, NaN sticky
    double mx = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      const double a = std::abs(double(x[i]));
      mx = (a > mx || a != a) && !(mx != mx) ? a : mx;
    }
    return mx;
  }
  double s = 0;
  if (q == 1)
    for (std::int64_t i = 0; i < n; ++i) s += std::abs(double(x[i]));
  else
    for (std::int64_t i = 0; i < n; ++i) s += std::pow(std::abs(double(x[i])), q);
  return s;
}

struct Block {
  std::int64_t array, begin, end;
};

// The arrays cut into blocks of kNormBlock elements; bytes: their total size.
std::vector<Block> make_blocks(const GradView* grads, std::int64_t count, std::int64_t& bytes) {
  std::vector<Block> blocks;
  bytes = 0;
  for (std::int64_t a = 0; a < count; ++a) {
    bytes += grads[a].n * (grads[a].is_double ? 8 : 4);
    for (std::int64_t b = 0; b < grads[a].n; b += kNormBlock)
      blocks.push_back({a, b, std::min(grads[a].n, b + kNormBlock)});
  }
  return blocks;
}

int threads_for(std::int64_t bytes, std::int64_t tasks) {
  return int(std::min<std::int64_t>({std::int64_t(get_num_threads()), tasks,
                                     std::max<std::int64_t>(1, bytes / kMinBytesPerThread)}));
}

}  // namespace

double grads_norm(const GradView* grads, std::int64_t count, double norm_type, Isa isa) {
  FASTDL_CHECK(norm_type > 0, ValueError, "norm_type: expected a positive number or inf, got ",
               norm_type);
  std::int64_t bytes = 0;
  const std::vector<Block> blocks = make_blocks(grads, count, bytes);
  const std::int64_t nb = std::int64_t(blocks.size());
  std::vector<double> partial(blocks.size(), 0.0);
  const auto& t32 = optim_table<float>(isa);
  const auto& t64 = optim_table<double>(isa);
  const int threads = threads_for(bytes, nb);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (std::int64_t b = 0; b < nb; ++b) {
    const Block& k = blocks[size_t(b)];
    const GradView& gv = grads[k.array];
    partial[size_t(b)] =
        gv.is_double
            ? block_norm(t64, static_cast<const double*>(gv.data) + k.begin, k.end - k.begin, norm_type)
            : block_norm(t32, static_cast<const float*>(gv.data) + k.begin, k.end - k.begin, norm_type);
  }
  // Combine in block order, on one thread.
  if (std::isinf(norm_type)) {
    double mx = 0;
    for (double x : partial) mx = (x > mx || x != x) && !(mx != mx) ? x : mx;
    return mx;
  }
  double s = 0;
  for (double x : partial) s += x;
  return norm_type == 2 ? std::sqrt(s) : norm_type == 1 ? s : std::pow(s, 1.0 / norm_type);
}

void grads_scale(const GradView* grads, std::int64_t count, double alpha, Isa isa) {
  std::int64_t bytes = 0;
  const std::vector<Block> blocks = make_blocks(grads, count, bytes);
  const std::int64_t nb = std::int64_t(blocks.size());
  const auto& t32 = optim_table<float>(isa);
  const auto& t64 = optim_table<double>(isa);
  const int threads = threads_for(2 * bytes, nb);  // read and written
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (std::int64_t b = 0; b < nb; ++b) {
    const Block& k = blocks[size_t(b)];
    const GradView& gv = grads[k.array];
    if (gv.is_double)
      t64.scale(static_cast<double*>(gv.data) + k.begin, k.end - k.begin, alpha);
    else
      t32.scale(static_cast<float*>(gv.data) + k.begin, k.end - k.begin, float(alpha));
  }
}

// ---------------------------------------------------------------------------------------------
// Instantiations
// ---------------------------------------------------------------------------------------------

#define FASTDL_OPTIM_INSTANTIATE(T)                                                             \
  template void sgd_step<T>(T*, T*, const T*, std::int64_t, const SgdHyper&, Isa);             \
  template void adam_step<T>(T*, T*, T*, T*, const T*, std::int64_t, const AdamHyper&, Isa);   \
  template void rmsprop_step<T>(T*, T*, T*, T*, const T*, std::int64_t, const RmspropHyper&,   \
                                Isa);                                                           \
  template void adagrad_step<T>(T*, T*, const T*, std::int64_t, const AdagradHyper&, Isa);     \
  template void sgd_step_reference<T>(T*, T*, const T*, std::int64_t, const SgdHyper&);        \
  template void adam_step_reference<T>(T*, T*, T*, T*, const T*, std::int64_t,                 \
                                       const AdamHyper&);                                       \
  template void rmsprop_step_reference<T>(T*, T*, T*, T*, const T*, std::int64_t,              \
                                          const RmspropHyper&);                                 \
  template void adagrad_step_reference<T>(T*, T*, const T*, std::int64_t, const AdagradHyper&);

FASTDL_OPTIM_INSTANTIATE(float)
FASTDL_OPTIM_INSTANTIATE(double)
#undef FASTDL_OPTIM_INSTANTIATE

}  // namespace fastdl
