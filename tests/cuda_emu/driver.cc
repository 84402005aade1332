// driver.cc: runs the emulated CUDA kernels (conv, pool, norm incl. layer_norm, gelu) against the
// CPU references of csrc/cpu (see run.sh).
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>
#include "cpu/activation.h"
#include "cpu/conv.h"
#include "cpu/norm.h"
#include "cpu/pool.h"
#include "cuda/activation.cuh"
#include "cuda/conv.cuh"
#include "cuda/norm.cuh"
#include "cuda/pool.cuh"

static std::mt19937 gen(1);
static std::vector<float> randn(size_t n) {
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (auto& x : v) x = d(gen);
  return v;
}
static std::vector<float> randint(size_t n) {
  std::uniform_int_distribution<int> d(-3, 3);
  std::vector<float> v(n);
  for (auto& x : v) x = float(d(gen));
  return v;
}
static int fails = 0;
static void cmp(const char* what, const std::vector<float>& a, const std::vector<float>& b, double tol) {
  double err = 0, scale = 1;
  size_t worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double e = std::fabs(double(a[i]) - double(b[i]));
    if (!(e <= err)) { err = e; worst = i; }
    scale = std::max(scale, std::fabs(double(b[i])));
  }
  const bool ok = a.size() == b.size() && err <= tol * scale;
  if (!ok) ++fails;
  std::printf("  %-34s %s  max err %.3g (scale %.3g)%s\n", what, ok ? "ok  " : "FAIL", err, scale,
              ok ? "" : (" at " + std::to_string(worst)).c_str());
}

static void conv_case(int64_t n, int c, int h, int w, int k, int r, int s, int sh, int sw, int ph,
                      int pw, int dh, int dw, int g, int extra_h = 0, bool ints = false) {
  fastdl::cuda::ConvShape cs{};
  cs.n = n, cs.c = c, cs.h = h, cs.w = w, cs.k = k, cs.r = r, cs.s = s;
  cs.stride_h = sh, cs.stride_w = sw, cs.pad_h = ph, cs.pad_w = pw, cs.dil_h = dh, cs.dil_w = dw;
  cs.groups = g;
  cs.oh = (h - extra_h + 2 * ph - dh * (r - 1) - 1) / sh + 1;
  cs.ow = (w + 2 * pw - dw * (s - 1) - 1) / sw + 1;
  fastdl::ConvShape ps{n, c, h, w, k, r, s, cs.oh, cs.ow, sh, sw, ph, pw, dh, dw, g};
  std::printf("conv N=%ld C=%d %dx%d K=%d %dx%d s=%d,%d p=%d,%d d=%d,%d g=%d (OH=%d OW=%d)\n", long(n), c,
              h, w, k, r, s, sh, sw, ph, pw, dh, dw, g, cs.oh, cs.ow);
  const size_t nx = size_t(n) * c * h * w, nw = size_t(k) * (c / g) * r * s,
               ny = size_t(n) * k * cs.oh * cs.ow;
  auto gen_ = ints ? randint : randn;
  auto x = gen_(nx), wt = gen_(nw), b = gen_(k), dy = gen_(ny);
  const double tol = ints ? 0 : 2e-6 * std::sqrt(double(std::max<size_t>(nw / k, ny / k)));
  std::vector<float> y1(ny, NAN), y2(ny, NAN), y3(ny, NAN);
  if (extra_h == 0) {
    fastdl::cuda::conv2d_forward(y1.data(), x.data(), wt.data(), b.data(), cs, nullptr);
    fastdl::cuda::conv2d_forward_reference(y2.data(), x.data(), wt.data(), b.data(), cs, nullptr);
    fastdl::conv2d_forward(y3.data(), x.data(), wt.data(), b.data(), ps, fastdl::ConvAlgo::reference);
    cmp("forward fast vs cpu", y1, y3, tol);
    cmp("forward reference vs cpu", y2, y3, tol);
  }
  std::vector<float> dx1(nx, NAN), dx2(nx, NAN), dx3(nx, NAN);
  fastdl::cuda::conv2d_backward_data(dx1.data(), dy.data(), wt.data(), cs, nullptr);
  fastdl::cuda::conv2d_backward_data_reference(dx2.data(), dy.data(), wt.data(), cs, nullptr);
  fastdl::conv2d_backward_data(dx3.data(), dy.data(), wt.data(), ps, fastdl::ConvAlgo::reference);
  cmp("backward_data fast vs cpu", dx1, dx3, tol);
  cmp("backward_data reference vs cpu", dx2, dx3, tol);
  if (extra_h == 0) {
    std::vector<float> dw1(nw, NAN), dw2(nw, NAN), dw3(nw, NAN), db1(k, NAN), db2(k, NAN), db3(k, NAN);
    fastdl::cuda::conv2d_backward_weight(dw1.data(), db1.data(), dy.data(), x.data(), cs, nullptr);
    fastdl::cuda::conv2d_backward_weight_reference(dw2.data(), db2.data(), dy.data(), x.data(), cs, nullptr);
    fastdl::conv2d_backward_weight(dw3.data(), db3.data(), dy.data(), x.data(), ps, fastdl::ConvAlgo::reference);
    cmp("backward_weight fast vs cpu", dw1, dw3, tol);
    cmp("backward_weight reference vs cpu", dw2, dw3, tol);
    cmp("db fast vs cpu", db1, db3, tol);
    cmp("db reference vs cpu", db2, db3, tol);
  }
}

static void pool_case(int64_t planes, int h, int w, int kh, int kw, int sh, int sw, int ph, int pw) {
  fastdl::cuda::PoolShape s{planes, h, w, (h + 2 * ph - kh) / sh + 1, (w + 2 * pw - kw) / sw + 1,
                            kh, kw, sh, sw, ph, pw};
  fastdl::Pool2dShape ps{planes, h, w, s.oh, s.ow, kh, kw, sh, sw, ph, pw};
  std::printf("pool P=%ld %dx%d k=%d,%d s=%d,%d p=%d,%d (OH=%d OW=%d)\n", long(planes), h, w, kh, kw,
              sh, sw, ph, pw, s.oh, s.ow);
  const size_t nx = size_t(planes) * h * w, ny = size_t(planes) * s.oh * s.ow;
  auto x = randint(nx), dy = randn(ny);
  if (nx > 3) x[3] = NAN;
  std::vector<float> y1(ny), y2(ny);
  std::vector<int64_t> a1(ny), a2(ny);
  fastdl::cuda::max_pool2d_forward(y1.data(), a1.data(), x.data(), s, nullptr);
  fastdl::max_pool2d_forward_reference(y2.data(), a2.data(), x.data(), ps);
  bool same = true;
  for (size_t i = 0; i < ny; ++i)
    same &= a1[i] == a2[i] && (y1[i] == y2[i] || (std::isnan(y1[i]) && std::isnan(y2[i])));
  std::printf("  %-34s %s\n", "max forward (y, argmax) exact", same ? "ok" : "FAIL");
  fails += !same;
  std::vector<float> dx1(nx, NAN), dx2(nx, NAN);
  fastdl::cuda::max_pool2d_backward(dx1.data(), dy.data(), a2.data(), s, nullptr);
  fastdl::max_pool2d_backward_reference(dx2.data(), dy.data(), a2.data(), ps);
  cmp("max backward", dx1, dx2, 1e-6);
  auto xf = randn(nx);
  fastdl::cuda::avg_pool2d_forward(y1.data(), xf.data(), s, nullptr);
  fastdl::avg_pool2d_forward_reference(y2.data(), xf.data(), ps);
  cmp("avg forward", y1, y2, 1e-6);
  fastdl::cuda::avg_pool2d_backward(dx1.data(), dy.data(), s, nullptr);
  fastdl::avg_pool2d_backward_reference(dx2.data(), dy.data(), ps);
  cmp("avg backward", dx1, dx2, 1e-6);
  for (auto [oh, ow] : {std::pair{s.oh, s.ow}, std::pair{h + 2, w / 2 + 1}, std::pair{1, 1}}) {
    fastdl::cuda::PoolShape a{planes, h, w, oh, ow, 1, 1, 1, 1, 0, 0};
    fastdl::Pool2dShape pa{planes, h, w, oh, ow, 1, 1, 1, 1, 0, 0};
    const size_t no = size_t(planes) * oh * ow;
    std::vector<float> ya(no), yb(no), g = randn(no);
    fastdl::cuda::adaptive_avg_pool2d_forward(ya.data(), xf.data(), a, nullptr);
    fastdl::adaptive_avg_pool2d_forward_reference(yb.data(), xf.data(), pa);
    cmp(("adaptive forward -> " + std::to_string(oh) + "x" + std::to_string(ow)).c_str(), ya, yb, 1e-6);
    fastdl::cuda::adaptive_avg_pool2d_backward(dx1.data(), g.data(), a, nullptr);
    fastdl::adaptive_avg_pool2d_backward_reference(dx2.data(), g.data(), pa);
    cmp("adaptive backward", dx1, dx2, 1e-6);
  }
}

static void norm_case(int64_t n, int64_t c, int64_t l, bool training, bool affine, float offset) {
  std::printf("batch_norm N=%ld C=%ld L=%ld training=%d affine=%d offset=%g\n", long(n), long(c),
              long(l), training, affine, offset);
  const size_t nx = size_t(n * c * l);
  auto x = randn(nx), dy = randn(nx), w = randn(c), b = randn(c), rm = randn(c), rv = randn(c);
  for (auto& v : x) v += offset;
  for (auto& v : rv) v = std::fabs(v) + 0.5f;
  auto rm2 = rm, rv2 = rv;
  std::vector<float> y1(nx), y2(nx), m1(c), m2(c), i1(c), i2(c);
  const float* pw = affine ? w.data() : nullptr;
  const float* pb = affine ? b.data() : nullptr;
  fastdl::cuda::batch_norm_forward(y1.data(), m1.data(), i1.data(), x.data(), pw, pb, rm.data(),
                                   rv.data(), n, c, l, training, 0.1, 1e-5, nullptr);
  fastdl::batch_norm_forward_reference(y2.data(), m2.data(), i2.data(), x.data(), pw, pb, rm2.data(),
                                       rv2.data(), n, c, l, training, 0.1, 1e-5);
  cmp("y", y1, y2, 1e-5);
  cmp("save_mean", m1, m2, 1e-6);
  cmp("save_invstd", i1, i2, 1e-5);
  cmp("running_mean", rm, rm2, 1e-6);
  cmp("running_var", rv, rv2, 1e-6);
  std::vector<float> dx1(nx), dx2(nx), dw1(c), dw2(c), db1(c), db2(c);
  fastdl::cuda::batch_norm_backward(dx1.data(), dw1.data(), db1.data(), dy.data(), x.data(), pw,
                                    m2.data(), i2.data(), n, c, l, training, nullptr);
  fastdl::batch_norm_backward_reference(dx2.data(), dw2.data(), db2.data(), dy.data(), x.data(), pw,
                                        m2.data(), i2.data(), n, c, l, training);
  cmp("dx", dx1, dx2, 1e-5);
  cmp("dweight", dw1, dw2, 1e-5);
  cmp("dbias", db1, db2, 1e-5);
}

static void layer_norm_case(int64_t m, int64_t d, bool weight, bool bias, float offset) {
  std::printf("layer_norm M=%ld D=%ld weight=%d bias=%d offset=%g\n", long(m), long(d), weight,
              bias, offset);
  const size_t nx = size_t(m * d);
  auto x = randn(nx), dy = randn(nx), w = randn(d), b = randn(d);
  for (auto& v : x) v += offset;
  const float* pw = weight ? w.data() : nullptr;
  const float* pb = bias ? b.data() : nullptr;
  std::vector<float> y1(nx), y2(nx), m1(m), m2(m), r1(m), r2(m);
  fastdl::cuda::layer_norm_forward(y1.data(), m1.data(), r1.data(), x.data(), pw, pb, m, d, 1e-5,
                                   nullptr);
  fastdl::layer_norm_forward_reference(y2.data(), m2.data(), r2.data(), x.data(), pw, pb, m, d, 1e-5);
  cmp("y", y1, y2, 1e-5);
  cmp("mean", m1, m2, 1e-6);
  cmp("rstd", r1, r2, 1e-5);
  std::vector<float> dx1(nx), dx2(nx), dw1(d), dw2(d), db1(d), db2(d);
  fastdl::cuda::layer_norm_backward(dx1.data(), dw1.data(), db1.data(), dy.data(), x.data(), pw,
                                    m2.data(), r2.data(), m, d, nullptr);
  fastdl::layer_norm_backward_reference(dx2.data(), dw2.data(), db2.data(), dy.data(), x.data(), pw,
                                        m2.data(), r2.data(), m, d);
  cmp("dx", dx1, dx2, 1e-5);
  cmp("dweight", dw1, dw2, 1e-5);
  cmp("dbias", db1, db2, 1e-5);
}

static void gelu_case(int64_t n, int approximate) {
  std::printf("gelu n=%ld approximate=%d\n", long(n), approximate);
  auto x = randn(size_t(n)), dy = randn(size_t(n));
  for (auto& v : x) v *= 5;
  if (n > 4) x[0] = -INFINITY, x[1] = INFINITY, x[2] = -1e4f, x[3] = 30.f;
  std::vector<float> y1(n), y2(n), dx1(n), dx2(n);
  fastdl::cuda::gelu_forward(y1.data(), x.data(), n, approximate, nullptr);
  fastdl::gelu_forward_reference(y2.data(), x.data(), n, approximate);
  if (n > 4) {  // gelu(inf) = inf on both; compared apart so the scale stays finite
    const bool inf_ok = std::isinf(y1[1]) && std::isinf(y2[1]);
    std::printf("  %-34s %s\n", "y(+inf) = inf", inf_ok ? "ok" : "FAIL");
    fails += !inf_ok;
    y1[1] = y2[1] = 0;
  }
  cmp("y", y1, y2, 1e-6);
  fastdl::cuda::gelu_backward(dx1.data(), dy.data(), x.data(), n, approximate, nullptr);
  fastdl::gelu_backward_reference(dx2.data(), dy.data(), x.data(), n, approximate);
  cmp("dx", dx1, dx2, 1e-6);
}

int main(int argc, char** argv) {
  const std::string only = argc > 1 ? argv[1] : "all";
  if (only == "all" || only == "conv") {
    conv_case(1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1);
    conv_case(2, 3, 7, 7, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1);
    conv_case(1, 4, 9, 11, 6, 3, 3, 2, 2, 1, 1, 1, 1, 2);
    conv_case(3, 6, 8, 5, 6, 3, 2, 2, 1, 1, 0, 2, 1, 3);
    conv_case(2, 8, 17, 17, 8, 3, 3, 1, 1, 1, 1, 1, 1, 8);
    conv_case(1, 3, 5, 5, 2, 5, 5, 1, 1, 2, 2, 1, 1, 1);
    conv_case(2, 16, 13, 13, 70, 1, 1, 1, 1, 0, 0, 1, 1, 1);
    conv_case(1, 70, 12, 12, 3, 3, 3, 3, 3, 0, 0, 1, 1, 1);
    conv_case(3, 12, 10, 9, 21, 3, 3, 2, 1, 1, 2, 1, 2, 3, 0, true);
    conv_case(2, 5, 12, 9, 3, 3, 4, 2, 2, 1, 0, 1, 1, 1, 1);  // dx one row taller (output_padding)
    conv_case(4, 20, 20, 20, 66, 3, 3, 1, 1, 1, 1, 1, 1, 2);  // multi-tile, split depth
    // stride phases of backward_data: dilation sharing a factor with the stride (phases
    // without taps), 1x1 stride 2 (odd rows get zeros), an image smaller than the stride
    conv_case(2, 3, 9, 10, 4, 3, 3, 2, 2, 0, 1, 2, 2, 1);
    conv_case(1, 4, 11, 8, 6, 3, 5, 3, 2, 1, 2, 2, 3, 2);
    conv_case(2, 3, 7, 7, 2, 1, 1, 2, 2, 0, 0, 1, 1, 1);
    conv_case(1, 2, 2, 5, 3, 2, 2, 3, 3, 1, 1, 1, 1, 1);
    conv_case(2, 4, 13, 11, 5, 4, 3, 4, 2, 2, 1, 1, 1, 1, 3);  // dx 3 rows taller, stride 4
  }
  if (only == "all" || only == "pool") {
    pool_case(1, 1, 1, 1, 1, 1, 1, 0, 0);
    pool_case(6, 8, 8, 2, 2, 2, 2, 0, 0);
    pool_case(2, 7, 9, 3, 3, 2, 2, 1, 1);
    pool_case(3, 17, 5, 3, 2, 1, 2, 1, 1);
    pool_case(4, 6, 11, 5, 4, 3, 1, 2, 2);
    pool_case(4, 13, 13, 4, 4, 3, 3, 0, 1);
  }
  if (only == "all" || only == "norm") {
    for (bool t : {true, false})
      for (bool a : {true, false}) {
        norm_case(2, 3, 1, t, a, 0);
        norm_case(3, 5, 100, t, a, 0);
      }
    norm_case(40, 2, 1000, true, true, 0);
    norm_case(20000, 3, 1, true, true, 0);
    norm_case(2, 2, 20000, true, false, 1000);
    layer_norm_case(3, 1, true, true, 0);
    layer_norm_case(5, 17, true, false, 0);
    layer_norm_case(4, 1025, false, true, 0);
    layer_norm_case(300, 33, false, false, 0);  // two parameter-gradient chunks
    layer_norm_case(6, 1000, true, true, 1e4f);  // 1e4 + noise keeps the noise
  }
  if (only == "all" || only == "activation") {
    for (int a : {0, 1}) {
      gelu_case(1, a);
      gelu_case(4099, a);
    }
  }
  std::printf("%s: %d failure(s)\n", fails ? "FAILED" : "ALL OK", fails);
  return fails != 0;
}
