// optim_simd.h: the per-element bodies of the fused optimizer steps and of the gradient-norm
// kernels, written once over a vector-traits type V and instantiated by optim.cpp (scalar traits,
// the generic ISA), optim_avx2.cpp and optim_avx512.cpp with their own compiler flags.
//
// V provides: T, reg, W (lanes), set1, load, store, add, sub, mul, div, sqrt, max(a, b) = a > b ?
// a : b; and for the norms a double accumulator: acc, acc_zero,
// acc_sq(acc, x) (acc += x*x in double, lane by lane), acc_sum(acc) -> double.
//
// A body runs over [0, n) of the arrays it is given: whole vectors, then the last n % W elements
// through a zero-padded copy in a local buffer, so the tail gets exactly the vector arithmetic.
// Every element therefore sees the same sequence of operations wherever a chunk boundary falls,
// which is what makes the threaded results independent of the thread count. Hyper-parameters come
// folded into the *Const structs (built once per call by optim.cpp); the options that change the
// equations are template parameters, so each combination is a straight-line loop.
//
// Only intrinsics and builtins are used here (no std:: inline functions): this header is compiled
// with AVX-512 flags in one translation unit and must not emit shared symbols (COMDATs) that the
// generic code could pick up.
#pragma once

#include <cstdint>
#include <cstring>

namespace fastdl {

// ---- folded constants (element type T) -------------------------------------------------------

template <typename T>
struct SgdConst {
  T sign;          // -1 with maximize, else +1
  T weight_decay;  // d = sign*g + weight_decay*p
  T momentum;      // buf = momentum*buf + damp1*d
  T damp1;         // 1 - dampening
  T neg_lr;        // p = p + neg_lr*d
};

template <typename T>
struct AdamConst {
  T sign, weight_decay;
  T decay;         // decoupled: p *= decay = 1 - lr*weight_decay
  T lerp_w;        // m = m + lerp_w*(d - m)  (lerp_w = 1 - beta1, |lerp_w| < 0.5)
  T lerp_w1;       //   or d + lerp_w1*(d - m) (lerp_w1 = lerp_w - 1), PyTorch's lerp rule
  T beta2, c2;     // v = beta2*v + c2*d*d, c2 = 1 - beta2
  T bc2_sqrt;      // sqrt(1 - beta2^step), in double then rounded
  T eps;
  T step_size;     // lr / (1 - beta1^step), in double then rounded
};

template <typename T>
struct RmspropConst {
  T sign, weight_decay;
  T alpha, c1;     // square_avg = alpha*square_avg + c1*d*d, c1 = 1 - alpha
  T lerp_w, lerp_w1;  // grad_avg.lerp_(d, 1 - alpha), as AdamConst
  T eps, momentum, neg_lr;
};

template <typename T>
struct AdagradConst {
  T sign, weight_decay, eps, neg_lr;
};

// One ISA's kernels for one element type.
template <typename T>
struct OptimTable {
  void (*sgd)(T* p, T* buf, const T* g, std::int64_t n, const SgdConst<T>& c, bool wd,
              bool momentum, bool nesterov, bool first);
  void (*adam)(T* p, T* m, T* v, T* max_v, const T* g, std::int64_t n, const AdamConst<T>& c,
               bool wd, bool decoupled, bool amsgrad, bool lerp_from_m);
  void (*rmsprop)(T* p, T* sq, T* buf, T* gavg, const T* g, std::int64_t n,
                  const RmspropConst<T>& c, bool wd, bool momentum, bool centered,
                  bool lerp_from_m);
  void (*adagrad)(T* p, T* sum_sq, const T* g, std::int64_t n, const AdagradConst<T>& c,
                  bool wd);
  double (*sumsq)(const T* x, std::int64_t n);  // sum of x*x in double
  void (*scale)(T* x, std::int64_t n, T alpha);
};

extern const OptimTable<float> optim_table_generic_f32;
extern const OptimTable<double> optim_table_generic_f64;
extern const OptimTable<float> optim_table_avx2_f32;
extern const OptimTable<double> optim_table_avx2_f64;
extern const OptimTable<float> optim_table_avx512_f32;
extern const OptimTable<double> optim_table_avx512_f64;

namespace {  // internal linkage: each ISA translation unit gets its own copy, built with its flags

// Turns runtime flags into compile-time ones (flash-attention's BOOL_SWITCH, in one place).
#define FASTDL_BOOL_SWITCH(COND, NAME, ...) \
  [&] {                                     \
    if (COND) {                             \
      constexpr bool NAME = true;           \
      return __VA_ARGS__();                 \
    } else {                                \
      constexpr bool NAME = false;          \
      return __VA_ARGS__();                 \
    }                                       \
  }()

// Runs f(i, k) over whole vectors (k == W, a constant once inlined), then once for the k < W
// leftover elements.
template <class V, class F>
inline void for_each_vector(std::int64_t n, F&& f) {
  std::int64_t i = 0;
  for (; i + V::W <= n; i += V::W) f(i, V::W);
  if (i < n) f(i, int(n - i));
}

// Loads k <= W elements (zero-padded) and stores the first k lanes back.
template <class V>
inline typename V::reg load_k(const typename V::T* a, int k) {
  if (k == V::W) return V::load(a);
  alignas(64) typename V::T tmp[V::W] = {};
  std::memcpy(tmp, a, sizeof(typename V::T) * unsigned(k));
  return V::load(tmp);
}
template <class V>
inline void store_k(typename V::T* a, int k, typename V::reg x) {
  if (k == V::W) return V::store(a, x);
  alignas(64) typename V::T tmp[V::W];
  V::store(tmp, x);
  std::memcpy(a, tmp, sizeof(typename V::T) * unsigned(k));
}

// a*b + c rounded twice, like the reference loops and PyTorch's element-wise ops: fused
// multiply-adds would round once and drift from both over many steps. (The library is built with
// -ffp-contract=off, so the compiler does not fuse them behind our back either.)
template <class V>
inline typename V::reg madd(typename V::reg a, typename V::reg b, typename V::reg c) {
  return V::add(V::mul(a, b), c);
}

// PyTorch's lerp(a, b, w) for a uniform weight: a + w*(b - a) when |w| < 0.5, else
// b + (w - 1)*(b - a); FROM_A chooses which, once per call.
template <class V, bool FROM_A>
inline typename V::reg lerp(typename V::reg a, typename V::reg b, typename V::reg w,
                            typename V::reg w1) {
  const auto diff = V::sub(b, a);
  return FROM_A ? madd<V>(w, diff, a) : madd<V>(w1, diff, b);
}

// ---- SGD --------------------------------------------------------------------------------------

template <class V, bool WD, bool MOM, bool NESTEROV, bool FIRST>
void sgd_body(typename V::T* __restrict p, typename V::T* __restrict buf,
              const typename V::T* g, std::int64_t n, const SgdConst<typename V::T>& c) {
  const auto sign = V::set1(c.sign), wd = V::set1(c.weight_decay), mom = V::set1(c.momentum),
             damp1 = V::set1(c.damp1), neg_lr = V::set1(c.neg_lr);
  for_each_vector<V>(n, [&](std::int64_t i, int k) {
    auto pv = load_k<V>(p + i, k);
    auto d = V::mul(sign, load_k<V>(g + i, k));
    if (WD) d = madd<V>(wd, pv, d);
    if (MOM) {
      auto b = FIRST ? d : madd<V>(mom, load_k<V>(buf + i, k), V::mul(damp1, d));
      store_k<V>(buf + i, k, b);
      d = NESTEROV ? madd<V>(mom, b, d) : b;
    }
    store_k<V>(p + i, k, madd<V>(neg_lr, d, pv));
  });
}

template <class V>
void sgd_kernel(typename V::T* p, typename V::T* buf, const typename V::T* g, std::int64_t n,
                const SgdConst<typename V::T>& c, bool wd, bool momentum, bool nesterov,
                bool first) {
  FASTDL_BOOL_SWITCH(wd, WD, [&] {
    if (!momentum) return sgd_body<V, WD, false, false, false>(p, buf, g, n, c);
    FASTDL_BOOL_SWITCH(nesterov, NEST, [&] {
      FASTDL_BOOL_SWITCH(first, FIRST, [&] { sgd_body<V, WD, true, NEST, FIRST>(p, buf, g, n, c); });
    });
  });
}

// ---- Adam / AdamW -----------------------------------------------------------------------------

template <class V, bool WD, bool DECOUPLED, bool AMSGRAD, bool FROM_M>
void adam_body(typename V::T* __restrict p, typename V::T* __restrict m,
               typename V::T* __restrict v, typename V::T* __restrict max_v,
               const typename V::T* g, std::int64_t n, const AdamConst<typename V::T>& c) {
  const auto sign = V::set1(c.sign), wd = V::set1(c.weight_decay), decay = V::set1(c.decay),
             w = V::set1(c.lerp_w), w1 = V::set1(c.lerp_w1), beta2 = V::set1(c.beta2),
             c2 = V::set1(c.c2), bc2_sqrt = V::set1(c.bc2_sqrt), eps = V::set1(c.eps),
             step_size = V::set1(c.step_size);
  for_each_vector<V>(n, [&](std::int64_t i, int k) {
    auto pv = load_k<V>(p + i, k);
    auto d = V::mul(sign, load_k<V>(g + i, k));
    if (WD && !DECOUPLED) d = madd<V>(wd, pv, d);
    if (WD && DECOUPLED) pv = V::mul(pv, decay);
    const auto mv = lerp<V, FROM_M>(load_k<V>(m + i, k), d, w, w1);
    const auto vv = madd<V>(V::mul(c2, d), d, V::mul(beta2, load_k<V>(v + i, k)));
    store_k<V>(m + i, k, mv);
    store_k<V>(v + i, k, vv);
    auto vhat = vv;
    if (AMSGRAD) {
      vhat = V::max(load_k<V>(max_v + i, k), vv);
      store_k<V>(max_v + i, k, vhat);
    }
    const auto denom = V::add(V::div(V::sqrt(vhat), bc2_sqrt), eps);
    store_k<V>(p + i, k, V::sub(pv, V::div(V::mul(step_size, mv), denom)));
  });
}

template <class V>
void adam_kernel(typename V::T* p, typename V::T* m, typename V::T* v, typename V::T* max_v,
                 const typename V::T* g, std::int64_t n, const AdamConst<typename V::T>& c,
                 bool wd, bool decoupled, bool amsgrad, bool from_m) {
  FASTDL_BOOL_SWITCH(wd, WD, [&] {
    FASTDL_BOOL_SWITCH(decoupled, DEC, [&] {
      FASTDL_BOOL_SWITCH(amsgrad, AMS, [&] {
        FASTDL_BOOL_SWITCH(from_m, FROM_M, [&] {
          adam_body<V, WD, DEC, AMS, FROM_M>(p, m, v, max_v, g, n, c);
        });
      });
    });
  });
}

// ---- RMSprop ----------------------------------------------------------------------------------

template <class V, bool WD, bool MOM, bool CENTERED, bool FROM_A>
void rmsprop_body(typename V::T* __restrict p, typename V::T* __restrict sq,
                  typename V::T* __restrict buf, typename V::T* __restrict gavg,
                  const typename V::T* g, std::int64_t n, const RmspropConst<typename V::T>& c) {
  const auto sign = V::set1(c.sign), wd = V::set1(c.weight_decay), alpha = V::set1(c.alpha),
             c1 = V::set1(c.c1), w = V::set1(c.lerp_w), w1 = V::set1(c.lerp_w1),
             eps = V::set1(c.eps), mom = V::set1(c.momentum), neg_lr = V::set1(c.neg_lr);
  for_each_vector<V>(n, [&](std::int64_t i, int k) {
    const auto pv = load_k<V>(p + i, k);
    auto d = V::mul(sign, load_k<V>(g + i, k));
    if (WD) d = madd<V>(wd, pv, d);
    const auto sv = madd<V>(V::mul(c1, d), d, V::mul(alpha, load_k<V>(sq + i, k)));
    store_k<V>(sq + i, k, sv);
    auto avg = sv;
    if (CENTERED) {
      const auto ga = lerp<V, FROM_A>(load_k<V>(gavg + i, k), d, w, w1);
      store_k<V>(gavg + i, k, ga);
      avg = V::sub(sv, V::mul(ga, ga));
    }
    avg = V::add(V::sqrt(avg), eps);
    auto step = V::div(d, avg);
    if (MOM) {
      step = madd<V>(mom, load_k<V>(buf + i, k), step);
      store_k<V>(buf + i, k, step);
    }
    store_k<V>(p + i, k, madd<V>(neg_lr, step, pv));
  });
}

template <class V>
void rmsprop_kernel(typename V::T* p, typename V::T* sq, typename V::T* buf,
                    typename V::T* gavg, const typename V::T* g, std::int64_t n,
                    const RmspropConst<typename V::T>& c, bool wd, bool momentum, bool centered,
                    bool from_a) {
  FASTDL_BOOL_SWITCH(wd, WD, [&] {
    FASTDL_BOOL_SWITCH(momentum, MOM, [&] {
      if (!centered) return rmsprop_body<V, WD, MOM, false, true>(p, sq, buf, gavg, g, n, c);
      FASTDL_BOOL_SWITCH(from_a, FROM_A, [&] {
        rmsprop_body<V, WD, MOM, true, FROM_A>(p, sq, buf, gavg, g, n, c);
      });
    });
  });
}

// ---- Adagrad ----------------------------------------------------------------------------------

template <class V, bool WD>
void adagrad_body(typename V::T* __restrict p, typename V::T* __restrict sum_sq,
                  const typename V::T* g, std::int64_t n, const AdagradConst<typename V::T>& c) {
  const auto sign = V::set1(c.sign), wd = V::set1(c.weight_decay), eps = V::set1(c.eps),
             neg_lr = V::set1(c.neg_lr);
  for_each_vector<V>(n, [&](std::int64_t i, int k) {
    const auto pv = load_k<V>(p + i, k);
    auto d = V::mul(sign, load_k<V>(g + i, k));
    if (WD) d = madd<V>(wd, pv, d);
    const auto s = madd<V>(d, d, load_k<V>(sum_sq + i, k));
    store_k<V>(sum_sq + i, k, s);
    const auto std_ = V::add(V::sqrt(s), eps);
    store_k<V>(p + i, k, madd<V>(neg_lr, V::div(d, std_), pv));
  });
}

template <class V>
void adagrad_kernel(typename V::T* p, typename V::T* sum_sq, const typename V::T* g,
                    std::int64_t n, const AdagradConst<typename V::T>& c, bool wd) {
  FASTDL_BOOL_SWITCH(wd, WD, [&] { adagrad_body<V, WD>(p, sum_sq, g, n, c); });
}

// ---- gradient norm: sum of squares in double, and scaling ------------------------------------

template <class V>
double sumsq_kernel(const typename V::T* x, std::int64_t n) {
  auto a0 = V::acc_zero(), a1 = V::acc_zero();
  std::int64_t i = 0;
  for (; i + 2 * V::W <= n; i += 2 * V::W) {
    a0 = V::acc_sq(a0, V::load(x + i));
    a1 = V::acc_sq(a1, V::load(x + i + V::W));
  }
  for (; i < n; i += V::W) a0 = V::acc_sq(a0, load_k<V>(x + i, n - i < V::W ? int(n - i) : V::W));
  return V::acc_sum(a0) + V::acc_sum(a1);
}

template <class V>
void scale_kernel(typename V::T* x, std::int64_t n, typename V::T alpha) {
  const auto a = V::set1(alpha);
  for_each_vector<V>(n, [&](std::int64_t i, int k) {
    store_k<V>(x + i, k, V::mul(a, load_k<V>(x + i, k)));
  });
}

template <class V>
constexpr OptimTable<typename V::T> make_optim_table() {
  return {&sgd_kernel<V>,    &adam_kernel<V>,   &rmsprop_kernel<V>,
          &adagrad_kernel<V>, &sumsq_kernel<V>, &scale_kernel<V>};
}

}  // namespace

}  // namespace fastdl
