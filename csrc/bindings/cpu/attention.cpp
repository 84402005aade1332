// attention.cpp: _core bindings of the attention family (csrc/cpu/attention.*): scaled
// dot-product attention forward (out, lse) and backward (dq, dk, dv), each with its plain-loop
// oracle. Shapes are checked by bindings/args.h (shared with the CUDA module).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>

#include "bindings/args.h"
#include "bindings/cpu/families.h"
#include "cpu/attention.h"

namespace fastdl::bindings {

namespace {

void attention_forward_py(const py::array& out_arr, const py::array& lse_arr,
                          const py::array& q_arr, const py::array& k_arr, const py::array& v_arr,
                          bool causal, double scale, const std::optional<std::string>& isa,
                          bool reference) {
  const ArrayView out = view_of(out_arr, "out"), lse = view_of(lse_arr, "lse"),
                  q = view_of(q_arr, "q"), k = view_of(k_arr, "k"), v = view_of(v_arr, "v");
  const AttentionDims d = check_attention_forward(out, lse, q, k, v, scale);
  const fastdl::Isa chosen = isa_arg(isa);
  dispatch_float(q, [&](auto zero) {
    using T = decltype(zero);
    T* po = out.mutable_data<T>();
    T* pl = lse.mutable_data<T>();
    const T *pq = q.data<T>(), *pk = k.data<T>(), *pv = v.data<T>();
    py::gil_scoped_release nogil;
    if (reference)
      fastdl::attention_forward_reference(po, pl, pq, pk, pv, d.b, d.h, d.sq, d.sk, d.d, d.dv,
                                          causal, scale);
    else
      fastdl::attention_forward(po, pl, pq, pk, pv, d.b, d.h, d.sq, d.sk, d.d, d.dv, causal,
                                scale, chosen);
    return 0;
  });
}

void attention_backward_py(const py::array& dq_arr, const py::array& dk_arr,
                           const py::array& dv_arr, const py::array& dout_arr,
                           const py::array& q_arr, const py::array& k_arr, const py::array& v_arr,
                           const py::array& out_arr, const py::array& lse_arr, bool causal,
                           double scale, const std::optional<std::string>& isa, bool reference) {
  const ArrayView dq = view_of(dq_arr, "dq"), dk = view_of(dk_arr, "dk"),
                  dv = view_of(dv_arr, "dv"), dout = view_of(dout_arr, "dout"),
                  q = view_of(q_arr, "q"), k = view_of(k_arr, "k"), v = view_of(v_arr, "v"),
                  out = view_of(out_arr, "out"), lse = view_of(lse_arr, "lse");
  const AttentionDims d = check_attention_backward(dq, dk, dv, dout, q, k, v, out, lse, scale);
  const fastdl::Isa chosen = isa_arg(isa);
  dispatch_float(q, [&](auto zero) {
    using T = decltype(zero);
    T *pdq = dq.mutable_data<T>(), *pdk = dk.mutable_data<T>(), *pdv = dv.mutable_data<T>();
    const T *pdo = dout.data<T>(), *pq = q.data<T>(), *pk = k.data<T>(), *pv = v.data<T>(),
            *po = out.data<T>(), *pl = lse.data<T>();
    py::gil_scoped_release nogil;
    if (reference)
      fastdl::attention_backward_reference(pdq, pdk, pdv, pdo, pq, pk, pv, po, pl, d.b, d.h,
                                           d.sq, d.sk, d.d, d.dv, causal, scale);
    else
      fastdl::attention_backward(pdq, pdk, pdv, pdo, pq, pk, pv, po, pl, d.b, d.h, d.sq, d.sk,
                                 d.d, d.dv, causal, scale, chosen);
    return 0;
  });
}

constexpr const char* kForwardDoc = R"pbdoc(out, lse = softmax(scale * q k^T (+ causal mask)) v, written in place.

q (B, H, Sq, D), k (B, H, Sk, D), v (B, H, Sk, Dv), out (B, H, Sq, Dv), lse (B, H, Sq): one
float dtype, C-contiguous. causal: query i sees keys j <= i (top-left aligned). lse is the
natural log of each row's softmax denominator (scale applied). A row with no key (Sk = 0) gives
a zero row and lse = -inf. Never builds an Sq x Sk matrix.)pbdoc";

constexpr const char* kBackwardDoc = R"pbdoc(dq, dk, dv (=) of attention_forward from dout and the forward's q, k, v, out, lse.

FlashAttention-2's backward: D_i = rowsum(dout * out) first, the probabilities recomputed tile
by tile from lse. Deterministic (no atomics): bitwise repeatable at a fixed thread count.)pbdoc";

}  // namespace

void bind_attention(py::module_& m) {
  m.def(
      "attention_forward",
      [](py::array out, py::array lse, py::array q, py::array k, py::array v, bool causal,
         double scale, std::optional<std::string> isa) {
        attention_forward_py(out, lse, q, k, v, causal, scale, isa, false);
      },
      py::arg("out").noconvert(), py::arg("lse").noconvert(), py::arg("q").noconvert(),
      py::arg("k").noconvert(), py::arg("v").noconvert(), py::arg("causal"), py::arg("scale"),
      py::kw_only(), py::arg("isa") = py::none(), kForwardDoc);
  m.def(
      "attention_forward_reference",
      [](py::array out, py::array lse, py::array q, py::array k, py::array v, bool causal,
         double scale) { attention_forward_py(out, lse, q, k, v, causal, scale, std::nullopt, true); },
      py::arg("out").noconvert(), py::arg("lse").noconvert(), py::arg("q").noconvert(),
      py::arg("k").noconvert(), py::arg("v").noconvert(), py::arg("causal"), py::arg("scale"),
      "Plain-loop oracle for attention_forward (double accumulation, one row of scores at a time).");
  m.def(
      "attention_backward",
      [](py::array dq, py::array dk, py::array dv, py::array dout, py::array q, py::array k,
         py::array v, py::array out, py::array lse, bool causal, double scale,
         std::optional<std::string> isa) {
        attention_backward_py(dq, dk, dv, dout, q, k, v, out, lse, causal, scale, isa, false);
      },
      py::arg("dq").noconvert(), py::arg("dk").noconvert(), py::arg("dv").noconvert(),
      py::arg("dout").noconvert(), py::arg("q").noconvert(), py::arg("k").noconvert(),
      py::arg("v").noconvert(), py::arg("out").noconvert(), py::arg("lse").noconvert(),
      py::arg("causal"), py::arg("scale"), py::kw_only(), py::arg("isa") = py::none(),
      kBackwardDoc);
  m.def(
      "attention_backward_reference",
      [](py::array dq, py::array dk, py::array dv, py::array dout, py::array q, py::array k,
         py::array v, py::array out, py::array lse, bool causal, double scale) {
        attention_backward_py(dq, dk, dv, dout, q, k, v, out, lse, causal, scale, std::nullopt,
                              true);
      },
      py::arg("dq").noconvert(), py::arg("dk").noconvert(), py::arg("dv").noconvert(),
      py::arg("dout").noconvert(), py::arg("q").noconvert(), py::arg("k").noconvert(),
      py::arg("v").noconvert(), py::arg("out").noconvert(), py::arg("lse").noconvert(),
      py::arg("causal"), py::arg("scale"), "Plain-loop oracle for attention_backward.");
}

}  // namespace fastdl::bindings
