// bindings/cuda/attention.cpp: the attention family of fastdl._cuda (attention_forward,
// attention_backward), the pinned extension API shared with fastdl._core plus a keyword-only
// `stream`.
//
// q (B, H, Sq, D), k (B, H, Sk, D), v (B, H, Sk, Dv), out / dout (B, H, Sq, Dv), lse (B, H, Sq)
// float32 C-contiguous CUDA arrays; dq, dk, dv the shapes of q, k, v. The checks are
// bindings/args.h's attention section, the CPU binding's too, so both modules refuse the same
// calls with the same messages.
#include <cuda_runtime_api.h>
#include <pybind11/pybind11.h>

#include <cstdint>

#include "bindings/args.h"
#include "bindings/cuda/families.h"
#include "cuda/attention.cuh"

namespace fastdl::bindings {
namespace {

void attention_forward_py(const py::handle& out_obj, const py::handle& lse_obj,
                          const py::handle& q_obj, const py::handle& k_obj,
                          const py::handle& v_obj, bool causal, double scale,
                          std::uintptr_t stream) {
  const ArrayView out = cuda_view(out_obj, "out"), lse = cuda_view(lse_obj, "lse"),
                  q = cuda_view(q_obj, "q"), k = cuda_view(k_obj, "k"), v = cuda_view(v_obj, "v");
  const AttentionDims d = check_attention_forward(out, lse, q, k, v, scale);
  py::gil_scoped_release nogil;
  check_on_current_device({&out, &lse, &q, &k, &v});
  cuda::attention_forward(out.mutable_data<float>(), lse.mutable_data<float>(), q.data<float>(),
                          k.data<float>(), v.data<float>(), d.b, d.h, d.sq, d.sk, d.d, d.dv,
                          causal, float(scale), as_stream(stream));
}

void attention_backward_py(const py::handle& dq_obj, const py::handle& dk_obj,
                           const py::handle& dv_obj, const py::handle& dout_obj,
                           const py::handle& q_obj, const py::handle& k_obj,
                           const py::handle& v_obj, const py::handle& out_obj,
                           const py::handle& lse_obj, bool causal, double scale,
                           std::uintptr_t stream) {
  const ArrayView dq = cuda_view(dq_obj, "dq"), dk = cuda_view(dk_obj, "dk"),
                  dv = cuda_view(dv_obj, "dv"), dout = cuda_view(dout_obj, "dout"),
                  q = cuda_view(q_obj, "q"), k = cuda_view(k_obj, "k"), v = cuda_view(v_obj, "v"),
                  out = cuda_view(out_obj, "out"), lse = cuda_view(lse_obj, "lse");
  const AttentionDims d = check_attention_backward(dq, dk, dv, dout, q, k, v, out, lse, scale);
  py::gil_scoped_release nogil;
  check_on_current_device({&dq, &dk, &dv, &dout, &q, &k, &v, &out, &lse});
  cuda::attention_backward(dq.mutable_data<float>(), dk.mutable_data<float>(),
                           dv.mutable_data<float>(), dout.data<float>(), q.data<float>(),
                           k.data<float>(), v.data<float>(), out.data<float>(), lse.data<float>(),
                           d.b, d.h, d.sq, d.sk, d.d, d.dv, causal, float(scale),
                           as_stream(stream));
}

}  // namespace

void bind_attention(py::module_& m) {
  m.def("attention_forward", &attention_forward_py, py::arg("out"), py::arg("lse"), py::arg("q"),
        py::arg("k"), py::arg("v"), py::arg("causal"), py::arg("scale"), py::kw_only(),
        py::arg("stream") = 0,
        R"pbdoc(Scaled dot-product attention on the GPU, flash-style (no Sq x Sk matrix in memory).

q (B, H, Sq, D), k (B, H, Sk, D), v (B, H, Sk, Dv) float32; writes out (B, H, Sq, Dv) =
softmax(scale q k^T) v and lse (B, H, Sq) = log sum_j exp(scale q_i . k_j) over the unmasked keys.
causal: query i sees keys j <= i (top-left aligned). A row with no key: out 0, lse -inf.)pbdoc");
  m.def("attention_backward", &attention_backward_py, py::arg("dq"), py::arg("dk"),
        py::arg("dv"), py::arg("dout"), py::arg("q"), py::arg("k"), py::arg("v"), py::arg("out"),
        py::arg("lse"), py::arg("causal"), py::arg("scale"), py::kw_only(), py::arg("stream") = 0,
        R"pbdoc(Gradients of attention_forward, written (=) into dq, dk, dv: probabilities recomputed
from lse tile by tile, D_i = rowsum(dout_i * out_i) first. Deterministic: dk/dv and dq are
separate passes, no atomics.)pbdoc");
}

}  // namespace fastdl::bindings
