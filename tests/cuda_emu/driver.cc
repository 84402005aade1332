// driver.cc: runs the emulated CUDA kernels (conv, pool, norm) against the CPU references of csrc/cpu (see run.sh).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>
#include "cpu/conv.h"
#include "cpu/norm.h"
#include "cpu/pool.h"
#include "cuda/conv.cuh"
#include "cuda/norm.cuh"
#include "cuda/pool.cuh"
// ---- embedding (issue 10) ----
#include <string>
#include "common/check.h"
#include "cpu/embedding.h"
#include "cuda/embedding.cuh"
// ---- rnn (issue 10) ----
#include "cpu/rnn.h"
#include "cuda/gemm.cuh"
#include "cuda/rnn.cuh"

// gemm.cu's tensor-core code cannot be emulated: this plain loop implements gemm.cuh's contract
// (strided A and B, alpha, beta = 0 meaning C unread, per-row / per-column bias, relu) so the
// callers' operand strides and epilogues are what is checked.
namespace fastdl::cuda {
void gemm(float* c, std::int64_t sc, std::int64_t ldc, const StridedMatrix& a, const StridedMatrix& b,
          std::int64_t batch, std::int64_t m, std::int64_t n, std::int64_t k, const GemmEpilogue& e, bool,
          cudaStream_t) {
  for (std::int64_t z = 0; z < batch; ++z)
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (std::int64_t q = 0; q < k; ++q)
          s += double(a.ptr[z * a.batch_stride + i * a.rs + q * a.cs]) *
               double(b.ptr[z * b.batch_stride + q * b.rs + j * b.cs]);
        float* out = c + z * sc + i * ldc + j;
        float v = e.alpha * float(s);
        if (e.beta != 0.f) v += e.beta * *out;
        if (e.bias_row) v += e.bias_row[i];
        if (e.bias_col) v += e.bias_col[j];
        if (e.relu) v = v > 0.f ? v : (v == v ? 0.f : v);
        *out = v;
      }
}
}  // namespace fastdl::cuda

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

// PyTorch's pooled size (bindings/args.cpp): floor or ceil mode, dilated extent d (k - 1) + 1.
static int pool_out(int n, int k, int s, int p, int d, bool ceil) {
  const int o = (n + 2 * p - d * (k - 1) - 1 + (ceil ? s - 1 : 0)) / s + 1;
  return ceil && (o - 1) * s >= n + p ? o - 1 : o;
}

// dh / dw: the max pool's dilation (the avg passes run undilated on the same window).
static void pool_case(int64_t planes, int h, int w, int kh, int kw, int sh, int sw, int ph, int pw,
                      bool ceil = false, int dh = 1, int dw = 1) {
  fastdl::cuda::PoolShape s{planes, h, w, pool_out(h, kh, sh, ph, dh, ceil),
                            pool_out(w, kw, sw, pw, dw, ceil), kh, kw, sh, sw, ph, pw};
  s.dh = dh, s.dw = dw;
  fastdl::Pool2dShape ps{planes, h, w, s.oh, s.ow, kh, kw, sh, sw, ph, pw};
  ps.dh = dh, ps.dw = dw;
  std::printf("pool P=%ld %dx%d k=%d,%d s=%d,%d p=%d,%d ceil=%d d=%d,%d (OH=%d OW=%d)\n", long(planes),
              h, w, kh, kw, sh, sw, ph, pw, int(ceil), dh, dw, s.oh, s.ow);
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
  // The avg passes: undilated, so their own output size; each divisor mode.
  fastdl::cuda::PoolShape sa = s;
  sa.dh = sa.dw = 1, sa.oh = pool_out(h, kh, sh, ph, 1, ceil), sa.ow = pool_out(w, kw, sw, pw, 1, ceil);
  fastdl::Pool2dShape pa = ps;
  pa.dh = pa.dw = 1, pa.oh = sa.oh, pa.ow = sa.ow;
  const size_t na = size_t(planes) * sa.oh * sa.ow;
  const char* names[] = {"avg (count_include_pad)", "avg (count_include_pad=False)", "avg (divisor_override=5)"};
  for (int mode = 0; mode < 3; ++mode) {
    sa.divisor_mode = fastdl::cuda::PoolDivisor(mode), sa.divisor = mode == 2 ? 5 : 0;
    pa.divisor_mode = fastdl::PoolDivisor(mode), pa.divisor = sa.divisor;
    std::vector<float> ya(na), yb(na), ga = randn(na);
    fastdl::cuda::avg_pool2d_forward(ya.data(), xf.data(), sa, nullptr);
    fastdl::avg_pool2d_forward_reference(yb.data(), xf.data(), pa);
    cmp((std::string(names[mode]) + " forward").c_str(), ya, yb, 1e-6);
    fastdl::cuda::avg_pool2d_backward(dx1.data(), ga.data(), sa, nullptr);
    fastdl::avg_pool2d_backward_reference(dx2.data(), ga.data(), pa);
    cmp((std::string(names[mode]) + " backward").c_str(), dx1, dx2, 1e-6);
  }
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

// ---- embedding (issue 10) ----
// The emulated kernels against the CPU kernels, bit for bit (both add in index order); then a
// bad index must throw the CPU's ValueError from both launchers. offset shifts the float arrays
// off 16-byte alignment (the scalar path).
static void embedding_case(int64_t m, int64_t v, int64_t d, int64_t pad, int64_t hot, int offset) {
  std::printf("embedding M=%ld V=%ld D=%ld pad=%ld hot=%ld offset=%d\n", long(m), long(v), long(d),
              long(pad), long(hot), offset);
  std::uniform_int_distribution<int64_t> any(0, v - 1), few(0, std::max<int64_t>(0, hot - 1));
  std::vector<int64_t> idx(static_cast<size_t>(m));
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = (i % 3 == 0 || hot == 0) ? any(gen) : few(gen);
  auto wbuf = randn(size_t(v * d) + offset), dybuf = randn(size_t(m * d) + offset);
  std::vector<float> w(wbuf.begin() + offset, wbuf.end()), dy(dybuf.begin() + offset, dybuf.end());
  std::vector<float> ybuf(size_t(m * d) + offset, NAN), dwbuf(size_t(v * d) + offset, NAN);
  std::vector<float> y2(size_t(m * d), NAN), dw2(size_t(v * d), NAN);
  fastdl::cuda::embedding_forward(ybuf.data() + offset, idx.data(), wbuf.data() + offset, m, v, d, nullptr);
  fastdl::embedding_forward(y2.data(), idx.data(), w.data(), m, v, d);
  cmp("forward vs cpu", std::vector<float>(ybuf.begin() + offset, ybuf.end()), y2, 0);
  fastdl::cuda::embedding_backward(dwbuf.data() + offset, dybuf.data() + offset, idx.data(), pad, m, v, d, nullptr);
  fastdl::embedding_backward(dw2.data(), dy.data(), idx.data(), pad, m, v, d);
  cmp("backward vs cpu", std::vector<float>(dwbuf.begin() + offset, dwbuf.end()), dw2, 0);
  if (m > 2) {
    idx[size_t(m / 2)] = v + 5;
    idx[size_t(m - 1)] = -1;
    const std::string want = "indices: indices[" + std::to_string(m / 2) + "] = " + std::to_string(v + 5);
    for (int pass = 0; pass < 2; ++pass) {
      std::string got = "(no exception)";
      try {
        if (pass == 0)
          fastdl::cuda::embedding_forward(ybuf.data(), idx.data(), wbuf.data(), m, v, d, nullptr);
        else
          fastdl::cuda::embedding_backward(dwbuf.data(), dybuf.data(), idx.data(), pad, m, v, d, nullptr);
      } catch (const fastdl::ValueError& e) {
        got = e.what();
      }
      const bool ok = got.rfind(want, 0) == 0;
      if (!ok) ++fails;
      std::printf("  %-34s %s  %s\n", pass ? "backward bad index" : "forward bad index", ok ? "ok  " : "FAIL",
                  got.c_str());
    }
  }
}

// ---- rnn (issue 10) ----
// The emulated CUDA rnn launchers against the CPU kernels (both float32; different summation
// orders, so a tolerance of a few ulps of the scale times sqrt of the reduction length).
static std::vector<float> nans(size_t n) { return std::vector<float>(n, NAN); }
static void rnn_case(int64_t n, int64_t in, int64_t hid, int64_t t, bool bias) {
  std::printf("rnn N=%ld I=%ld H=%ld T=%ld bias=%d\n", long(n), long(in), long(hid), long(t), int(bias));
  const size_t N = size_t(n), I = size_t(in), Hd = size_t(hid), G = 4 * Hd, T = size_t(t);
  const double tol = 3e-6 * std::sqrt(double(std::max<int64_t>({in, hid, 4 * hid, n * std::max<int64_t>(t, 1), 1})));
  namespace fc = fastdl::cuda;
  auto bptr = [&](std::vector<float>& v) { return bias ? v.data() : nullptr; };
  {  // RNN cell
    auto x = randn(N * I), h = randn(N * Hd), wi = randn(Hd * I), wh = randn(Hd * Hd), bi = randn(Hd),
         bh = randn(Hd), dhn = randn(N * Hd);
    auto h1 = nans(N * Hd), h2 = nans(N * Hd);
    fc::rnn_cell_forward(h1.data(), x.data(), h.data(), wi.data(), wh.data(), bptr(bi), bptr(bh), n, in, hid, nullptr);
    fastdl::rnn_cell_forward(h2.data(), x.data(), h.data(), wi.data(), wh.data(), bptr(bi), bptr(bh), n, in, hid);
    cmp("rnn_cell h_new", h1, h2, tol);
    std::vector<float> o1[5] = {nans(N * I), nans(N * Hd), nans(Hd * I), nans(Hd * Hd), nans(Hd)};
    std::vector<float> o2[5] = {nans(N * I), nans(N * Hd), nans(Hd * I), nans(Hd * Hd), nans(Hd)};
    fc::rnn_cell_backward(o1[0].data(), o1[1].data(), o1[2].data(), o1[3].data(), o1[4].data(), dhn.data(),
                          x.data(), h.data(), wi.data(), wh.data(), h2.data(), n, in, hid, nullptr);
    fastdl::rnn_cell_backward(o2[0].data(), o2[1].data(), o2[2].data(), o2[3].data(), o2[4].data(), dhn.data(),
                              x.data(), h.data(), wi.data(), wh.data(), h2.data(), n, in, hid);
    const char* names[5] = {"rnn_cell dx", "rnn_cell dh", "rnn_cell dw_ih", "rnn_cell dw_hh", "rnn_cell db"};
    for (int q = 0; q < 5; ++q) cmp(names[q], o1[q], o2[q], tol);
  }
  auto wi = randn(G * I), wh = randn(G * Hd), bi = randn(G), bh = randn(G);
  for (auto* w : {&wi, &wh}) for (auto& v : *w) v *= 0.5f;
  {  // LSTM cell, then its backward with each of dh_new / dc_new present or absent
    auto x = randn(N * I), h = randn(N * Hd), c = randn(N * Hd), dhn = randn(N * Hd), dcn = randn(N * Hd);
    auto h1 = nans(N * Hd), c1 = nans(N * Hd), g1 = nans(N * G), h2 = nans(N * Hd), c2 = nans(N * Hd), g2 = nans(N * G);
    fc::lstm_cell_forward(h1.data(), c1.data(), g1.data(), x.data(), h.data(), c.data(), wi.data(), wh.data(),
                          bptr(bi), bptr(bh), n, in, hid, nullptr);
    fastdl::lstm_cell_forward(h2.data(), c2.data(), g2.data(), x.data(), h.data(), c.data(), wi.data(), wh.data(),
                              bptr(bi), bptr(bh), n, in, hid);
    cmp("lstm_cell h_new", h1, h2, tol);
    cmp("lstm_cell c_new", c1, c2, tol);
    cmp("lstm_cell gates", g1, g2, tol);
    for (int mask = 0; mask < 4; ++mask) {
      const float* gh = mask & 1 ? dhn.data() : nullptr;
      const float* gc = mask & 2 ? dcn.data() : nullptr;
      std::vector<float> o1[6] = {nans(N * I), nans(N * Hd), nans(N * Hd), nans(G * I), nans(G * Hd), nans(G)};
      std::vector<float> o2[6] = {nans(N * I), nans(N * Hd), nans(N * Hd), nans(G * I), nans(G * Hd), nans(G)};
      fc::lstm_cell_backward(o1[0].data(), o1[1].data(), o1[2].data(), o1[3].data(), o1[4].data(), o1[5].data(), gh,
                             gc, x.data(), h.data(), c.data(), wi.data(), wh.data(), g2.data(), c2.data(), n, in,
                             hid, nullptr);
      fastdl::lstm_cell_backward(o2[0].data(), o2[1].data(), o2[2].data(), o2[3].data(), o2[4].data(), o2[5].data(),
                                 gh, gc, x.data(), h.data(), c.data(), wi.data(), wh.data(), g2.data(), c2.data(),
                                 n, in, hid);
      const char* names[6] = {"dx", "dh", "dc", "dw_ih", "dw_hh", "db"};
      for (int q = 0; q < 6; ++q)
        cmp(("lstm_cell_backward[" + std::to_string(mask) + "] " + names[q]).c_str(), o1[q], o2[q], tol);
    }
  }
  {  // the sequence: training (gates, cells kept) and inference, then BPTT
    auto x = randn(T * N * I), h0 = randn(N * Hd), c0 = randn(N * Hd), dy = randn(T * N * Hd),
         dhn = randn(N * Hd), dcn = randn(N * Hd);
    auto y1 = nans(T * N * Hd), hn1 = nans(N * Hd), cn1 = nans(N * Hd), g1 = nans(T * N * G), cl1 = nans(T * N * Hd);
    auto y2 = nans(T * N * Hd), hn2 = nans(N * Hd), cn2 = nans(N * Hd), g2 = nans(T * N * G), cl2 = nans(T * N * Hd);
    auto y3 = nans(T * N * Hd), hn3 = nans(N * Hd), cn3 = nans(N * Hd);
    fc::lstm_forward(y1.data(), hn1.data(), cn1.data(), g1.data(), cl1.data(), x.data(), h0.data(), c0.data(),
                     wi.data(), wh.data(), bptr(bi), bptr(bh), t, n, in, hid, nullptr);
    fc::lstm_forward(y3.data(), hn3.data(), cn3.data(), nullptr, nullptr, x.data(), h0.data(), c0.data(),
                     wi.data(), wh.data(), bptr(bi), bptr(bh), t, n, in, hid, nullptr);
    fastdl::lstm_forward(y2.data(), hn2.data(), cn2.data(), g2.data(), cl2.data(), x.data(), h0.data(), c0.data(),
                         wi.data(), wh.data(), bptr(bi), bptr(bh), t, n, in, hid);
    cmp("lstm y", y1, y2, tol);
    cmp("lstm h_n", hn1, hn2, tol);
    cmp("lstm c_n", cn1, cn2, tol);
    cmp("lstm gates", g1, g2, tol);
    cmp("lstm cells", cl1, cl2, tol);
    cmp("lstm inference y", y3, y2, tol);
    cmp("lstm inference h_n", hn3, hn2, tol);
    cmp("lstm inference c_n", cn3, cn2, tol);
    for (int mask : {7, 1, 6, 0}) {
      const float* gy = mask & 1 ? dy.data() : nullptr;
      const float* gh = mask & 2 ? dhn.data() : nullptr;
      const float* gc = mask & 4 ? dcn.data() : nullptr;
      std::vector<float> o1[6] = {nans(T * N * I), nans(N * Hd), nans(N * Hd), nans(G * I), nans(G * Hd), nans(G)};
      std::vector<float> o2[6] = {nans(T * N * I), nans(N * Hd), nans(N * Hd), nans(G * I), nans(G * Hd), nans(G)};
      fc::lstm_backward(o1[0].data(), o1[1].data(), o1[2].data(), o1[3].data(), o1[4].data(), o1[5].data(), gy, gh,
                        gc, x.data(), h0.data(), c0.data(), wi.data(), wh.data(), y2.data(), g2.data(), cl2.data(),
                        t, n, in, hid, nullptr);
      fastdl::lstm_backward(o2[0].data(), o2[1].data(), o2[2].data(), o2[3].data(), o2[4].data(), o2[5].data(), gy,
                            gh, gc, x.data(), h0.data(), c0.data(), wi.data(), wh.data(), y2.data(), g2.data(),
                            cl2.data(), t, n, in, hid);
      const char* names[6] = {"dx", "dh0", "dc0", "dw_ih", "dw_hh", "db"};
      for (int q = 0; q < 6; ++q)
        cmp(("lstm_backward[" + std::to_string(mask) + "] " + names[q]).c_str(), o1[q], o2[q], 10 * tol);
    }
  }
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
    // PyTorch's options: ceil mode (windows past the padding, a last window dropped), dilation
    pool_case(2, 7, 9, 2, 2, 2, 2, 0, 0, true);
    pool_case(3, 9, 13, 3, 3, 2, 2, 1, 1, true);
    pool_case(2, 5, 7, 3, 2, 3, 2, 1, 1, true);
    pool_case(1, 1, 1, 2, 2, 2, 2, 0, 0, true);  // kernel larger than the image
    pool_case(2, 13, 5, 3, 3, 1, 2, 1, 1, false, 2, 3);
    pool_case(3, 9, 11, 3, 2, 2, 3, 1, 1, true, 3, 2);
    pool_case(1, 7, 7, 2, 2, 1, 1, 1, 0, true, 2, 2);
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
  }
  // ---- embedding (issue 10) ----
  if (only == "all" || only == "embedding") {
    embedding_case(1, 1, 1, -1, 0, 0);
    embedding_case(7, 3, 17, -1, 0, 0);
    embedding_case(7, 3, 17, 1, 0, 1);
    embedding_case(600, 9, 8, 2, 3, 0);      // several index tiles, float4 path, repeats
    embedding_case(600, 9, 8, -1, 3, 1);     // the same, misaligned: scalar path
    embedding_case(300, 2, 1030, -1, 2, 0);  // a short, wide table: column blocks
    embedding_case(513, 100, 4, 0, 5, 0);    // more rows than the 12 emulated blocks
    embedding_case(5, 4, 0, -1, 0, 0);       // D = 0
    embedding_case(2500, 50, 12, 7, 4, 0);   // index tiles of 4 x 32 threads: 20 of them
  }
  // ---- rnn (issue 10) ----
  if (only == "all" || only == "rnn") {
    rnn_case(1, 1, 1, 1, true);
    rnn_case(3, 5, 7, 4, true);
    rnn_case(2, 3, 17, 1, false);
    rnn_case(4, 6, 5, 0, true);    // T = 0
    rnn_case(5, 8, 16, 6, true);   // float4 paths of the element-wise maps; several inference chunks
    rnn_case(1, 2, 3, 9, false);
  }
  std::printf("%s: %d failure(s)\n", fails ? "FAILED" : "ALL OK", fails);
  return fails != 0;
}
