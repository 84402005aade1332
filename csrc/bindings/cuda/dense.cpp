// dense.cpp: _cuda bindings of the dense family -- gemm (csrc/cuda/gemm.*) and sum_rows
// (csrc/cuda/reduce.*).
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <string>

#include "bindings/args.h"
#include "bindings/cuda/families.h"
#include "cuda/gemm.cuh"
#include "cuda/reduce.cuh"

namespace fastdl::bindings {

namespace {

// out (B?, M, N) = act(alpha * a (B?, M, K) @ b (B?, K, N) + beta * out + bias); a 2-D operand
// is shared by every batch.
void gemm_py(const py::handle& out_obj, const py::handle& a_obj, const py::handle& b_obj,
             double alpha, double beta, const py::handle& bias_obj, int bias_axis, bool relu,
             bool tf32, std::uintptr_t stream, bool reference) {
  const ArrayView out = cuda_view(out_obj, "out");
  const ArrayView a = cuda_view(a_obj, "a");
  const ArrayView b = cuda_view(b_obj, "b");
  const GemmDims d = check_gemm(out, a, b, bias_axis);
  std::optional<ArrayView> bias;
  if (!bias_obj.is_none()) {
    bias = cuda_view(bias_obj, "bias");
    check_gemm_bias(*bias, out, d, bias_axis);
  }
  if (out.size == 0) return;

  const int oa = a.ndim - 2, ob = b.ndim - 2;
  const fastdl::cuda::StridedMatrix sa{a.data<float>(), a.ndim == 3 ? a.strides[0] : 0,
                                       a.strides[oa], a.strides[oa + 1]};
  const fastdl::cuda::StridedMatrix sb{b.data<float>(), b.ndim == 3 ? b.strides[0] : 0,
                                       b.strides[ob], b.strides[ob + 1]};
  fastdl::cuda::GemmEpilogue e;
  e.alpha = float(alpha);
  e.beta = float(beta);
  if (bias) (bias_axis == 0 ? e.bias_row : e.bias_col) = bias->data<float>();
  e.relu = relu;
  py::gil_scoped_release nogil;
  check_on_current_device({&out, &a, &b, bias ? &*bias : nullptr});
  if (reference)
    fastdl::cuda::gemm_reference(out.mutable_data<float>(), d.m * d.n, d.n, sa, sb, d.batch, d.m,
                                 d.n, d.k, e, as_stream(stream));
  else
    fastdl::cuda::gemm(out.mutable_data<float>(), d.m * d.n, d.n, sa, sb, d.batch, d.m, d.n, d.k,
                       e, tf32, as_stream(stream));
}

// out (N,) = x (M, N) summed over rows.
void sum_rows_py(const py::handle& out_obj, const py::handle& x_obj, std::uintptr_t stream) {
  const ArrayView out = cuda_view(out_obj, "out");
  const ArrayView x = cuda_view(x_obj, "x");
  check_sum_rows(out, x);
  if (out.size == 0) return;
  py::gil_scoped_release nogil;
  check_on_current_device({&out, &x});
  fastdl::cuda::sum_rows(out.mutable_data<float>(), x.data<float>(), x.shape[0], x.shape[1],
                         as_stream(stream));
}

}  // namespace

void bind_dense(py::module_& m) {
  m.def(
      "gemm",
      [](py::object out, py::object a, py::object b, double alpha, double beta, py::object bias,
         int bias_axis, bool relu, bool tf32, std::uintptr_t stream) {
        gemm_py(out, a, b, alpha, beta, bias, bias_axis, relu, tf32, stream, false);
      },
      py::arg("out"), py::arg("a"), py::arg("b"), py::kw_only(), py::arg("alpha") = 1.0,
      py::arg("beta") = 0.0, py::arg("bias") = py::none(), py::arg("bias_axis") = 1,
      py::arg("relu") = false, py::arg("tf32") = false, py::arg("stream") = 0,
      R"pbdoc(out = act(alpha * a @ b + beta * out + bias), in place, on the GPU.

a (B?, M, K) and b (B?, K, N) are float32 CUDA arrays and may be strided views (transposes are
free); a 2-D operand is shared across the batch. out (M, N) or (B, M, N) is C-contiguous float32.
beta == 0 means out is not read. bias has length N (bias_axis=1) or M (bias_axis=0). relu applies
max(0, .) last (NaN passes through). tf32=True multiplies on the tensor cores with inputs rounded
to TF32 (10-bit mantissa, fp32 accumulation); the default is exact fp32. stream is a
cudaStream_t as an int (0 = the legacy default stream); the call returns before the kernel ends.)pbdoc");
  m.def(
      "gemm_reference",
      [](py::object out, py::object a, py::object b, double alpha, double beta, py::object bias,
         int bias_axis, bool relu, std::uintptr_t stream) {
        gemm_py(out, a, b, alpha, beta, bias, bias_axis, relu, false, stream, true);
      },
      py::arg("out"), py::arg("a"), py::arg("b"), py::kw_only(), py::arg("alpha") = 1.0,
      py::arg("beta") = 0.0, py::arg("bias") = py::none(), py::arg("bias_axis") = 1,
      py::arg("relu") = false, py::arg("stream") = 0,
      "One thread per output element, same contract as gemm (fp32 only): the test oracle.");
  m.def("sum_rows", &sum_rows_py, py::arg("out"), py::arg("x"), py::kw_only(),
        py::arg("stream") = 0,
        "out (N,) = x (M, N) summed over its rows (the bias gradient); x C-contiguous float32.");
}

}  // namespace fastdl::bindings
