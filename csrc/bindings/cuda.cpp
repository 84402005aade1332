// cuda.cpp: the only file that binds the CUDA kernels to Python (module fastdl._cuda).
//
// Functions are flat and verb-named with the same contract as their _core twins; outputs come
// first and are allocated by the Python layer (fastdl.ops), which also does the user-facing
// validation. Arrays arrive as any object exposing __cuda_array_interface__ (CuPy arrays):
// shape, typestr, data = (pointer, read-only flag) and strides (in bytes, or None for C order).
// The checks here are the last line of defence for direct callers, never a crash:
//   - not a CUDA array, or a dtype other than float32     -> TypeError
//   - wrong rank or shape                                 -> ValueError naming both shapes
//   - output not C-contiguous -> TypeError; read-only     -> ValueError (as in core.cpp)
//   - an array that is not GPU memory of the current device -> ValueError (a kernel would fault)
// Inputs may be strided views (element strides reach the kernels). Kernels are launched on
// `stream` (fastdl.ops passes CuPy's current stream as an int) with the GIL released, and run
// asynchronously: the interface's own "stream" entry is not synchronised with, since producer
// and kernel share CuPy's current stream. A launch error raises RuntimeError at once; a fault
// inside a kernel surfaces at the next synchronisation.
#include <cuda_runtime_api.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "common/check.h"
#include "cuda/common.cuh"
#include "cuda/gemm.cuh"
#include "cuda/reduce.cuh"

namespace py = pybind11;
using std::int64_t;

namespace {

// The parts of __cuda_array_interface__ the kernels need, with strides in elements.
struct CudaArray {
  const char* name = "";
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;
  std::uintptr_t ptr = 0;
  bool readonly = false;

  int ndim() const { return int(shape.size()); }
  int64_t size() const {
    int64_t s = 1;
    for (int64_t d : shape) s *= d;
    return s;
  }
  bool c_contiguous() const {  // NumPy's rule: axes of length 1 may have any stride
    if (size() == 0) return true;
    int64_t expect = 1;
    for (int i = ndim() - 1; i >= 0; --i) {
      if (shape[size_t(i)] != 1 && strides[size_t(i)] != expect) return false;
      expect *= shape[size_t(i)];
    }
    return true;
  }
  const float* data() const { return reinterpret_cast<const float*>(ptr); }
  float* mutable_data() const { return reinterpret_cast<float*>(ptr); }
};

std::string shape_str(const CudaArray& a) {
  std::string s = "(";
  for (int i = 0; i < a.ndim(); ++i) {
    if (i) s += ", ";
    s += std::to_string(a.shape[size_t(i)]);
  }
  return s + (a.ndim() == 1 ? ",)" : ")");
}

std::string type_name(const py::handle& obj) {
  const py::handle t = py::type::of(obj);
  return std::string(py::str(t.attr("__module__"))) + "." +
         std::string(py::str(t.attr("__qualname__")));
}

// '<f8' -> 'float64' for messages; the raw typestr if NumPy cannot parse it.
std::string dtype_name(const std::string& typestr) {
  try {
    return std::string(py::str(py::dtype(typestr)));
  } catch (const py::error_already_set&) {
    return "'" + typestr + "'";
  }
}

CudaArray cuda_array(const py::handle& obj, const char* name) {
  FASTDL_CHECK(py::hasattr(obj, "__cuda_array_interface__"), TypeError, name,
               ": expected a CUDA array exposing __cuda_array_interface__ (a CuPy array), got ",
               type_name(obj));
  const py::dict cai = obj.attr("__cuda_array_interface__");
  CudaArray a;
  a.name = name;
  const auto typestr = cai["typestr"].cast<std::string>();
  FASTDL_CHECK(typestr == "<f4", TypeError, name, ": expected dtype float32, got ",
               dtype_name(typestr));
  FASTDL_CHECK(!cai.contains("mask") || cai["mask"].is_none(), TypeError, name,
               ": masked CUDA arrays are not supported");
  for (const py::handle d : cai["shape"].cast<py::tuple>()) a.shape.push_back(d.cast<int64_t>());
  const auto data = cai["data"].cast<py::tuple>();
  a.ptr = data[0].cast<std::uintptr_t>();
  a.readonly = data[1].cast<bool>();
  if (cai.contains("strides") && !cai["strides"].is_none()) {
    for (const py::handle s : cai["strides"].cast<py::tuple>()) {
      const auto bytes = s.cast<int64_t>();
      FASTDL_CHECK(bytes % int64_t(sizeof(float)) == 0, ValueError, name,
                   ": strides must be multiples of the item size, got ", bytes, " bytes");
      a.strides.push_back(bytes / int64_t(sizeof(float)));
    }
    FASTDL_CHECK(a.strides.size() == a.shape.size(), ValueError, name, ": ", a.strides.size(),
                 " strides for shape ", shape_str(a));
  } else {  // C order
    a.strides.assign(a.shape.size(), 1);
    for (int i = a.ndim() - 2; i >= 0; --i)
      a.strides[size_t(i)] = a.strides[size_t(i) + 1] * a.shape[size_t(i) + 1];
  }
  return a;
}

void check_ndim(const CudaArray& a, int lo, int hi) {
  FASTDL_CHECK(a.ndim() >= lo && a.ndim() <= hi, ValueError, a.name, ": expected ", lo,
               (lo == hi ? "" : " or " + std::to_string(hi)), "-D array, got shape ",
               shape_str(a));
}

void check_dim(const CudaArray& a, int axis, int64_t want) {
  FASTDL_CHECK(a.shape[size_t(axis)] == want, ValueError, a.name, ": expected size ", want,
               " along axis ", axis, ", got shape ", shape_str(a));
}

void check_output(const CudaArray& out) {
  FASTDL_CHECK(!out.readonly, ValueError, out.name, ": output array is read-only");
  FASTDL_CHECK(out.c_contiguous(), TypeError, out.name,
               ": output must be C-contiguous, got strides that are not");
}

// Every non-empty array must be device (or managed) memory of the current device: a kernel
// reading host memory or another GPU's memory would fault and poison the CUDA context.
void check_on_current_device(std::initializer_list<const CudaArray*> arrays) {
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  for (const CudaArray* a : arrays) {
    if (a == nullptr || a->size() == 0) continue;
    cudaPointerAttributes attr{};
    CUDA_CHECK(cudaPointerGetAttributes(&attr, reinterpret_cast<const void*>(a->ptr)));
    FASTDL_CHECK(attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged,
                 ValueError, a->name, ": data pointer is not GPU memory");
    FASTDL_CHECK(attr.type == cudaMemoryTypeManaged || attr.device == device, ValueError,
                 a->name, ": lives on CUDA device ", attr.device, " but the current device is ",
                 device, " (use `with cupy.cuda.Device(", attr.device, "):`)");
  }
}

cudaStream_t as_stream(std::uintptr_t stream) { return reinterpret_cast<cudaStream_t>(stream); }

// out (B?, M, N) = act(alpha * a (B?, M, K) @ b (B?, K, N) + beta * out + bias); a 2-D operand
// is shared by every batch.
void gemm_py(const py::handle& out_obj, const py::handle& a_obj, const py::handle& b_obj,
             double alpha, double beta, const py::handle& bias_obj, int bias_axis, bool relu,
             bool tf32, std::uintptr_t stream, bool reference) {
  const CudaArray out = cuda_array(out_obj, "out");
  const CudaArray a = cuda_array(a_obj, "a");
  const CudaArray b = cuda_array(b_obj, "b");
  check_output(out);
  check_ndim(out, 2, 3);
  check_ndim(a, 2, 3);
  check_ndim(b, 2, 3);
  const bool batched = out.ndim() == 3;
  FASTDL_CHECK(batched || (a.ndim() == 2 && b.ndim() == 2), ValueError,
               "out: expected a 3-D output for a batched product, got shape ", shape_str(out));
  const size_t oa = size_t(a.ndim() - 2), ob = size_t(b.ndim() - 2);
  const int oc = out.ndim() - 2;
  const int64_t m = a.shape[oa], k = a.shape[oa + 1], n = b.shape[ob + 1];
  FASTDL_CHECK(b.shape[ob] == k, ValueError, "b: expected ", k, " rows to match a of shape ",
               shape_str(a), ", got shape ", shape_str(b));
  check_dim(out, oc, m);
  check_dim(out, oc + 1, n);
  const int64_t batch = batched ? out.shape[0] : 1;
  if (a.ndim() == 3) check_dim(a, 0, batch);
  if (b.ndim() == 3) check_dim(b, 0, batch);
  FASTDL_CHECK(bias_axis == 0 || bias_axis == 1, ValueError, "bias_axis: expected 0 or 1, got ",
               bias_axis);
  std::optional<CudaArray> bias;
  if (!bias_obj.is_none()) {
    bias = cuda_array(bias_obj, "bias");
    check_ndim(*bias, 1, 1);
    check_dim(*bias, 0, bias_axis == 0 ? m : n);
    FASTDL_CHECK(bias->c_contiguous(), TypeError, "bias: must be contiguous");
  }
  if (out.size() == 0) return;

  const fastdl::cuda::StridedMatrix sa{a.data(), a.ndim() == 3 ? a.strides[0] : 0,
                                       a.strides[oa], a.strides[oa + 1]};
  const fastdl::cuda::StridedMatrix sb{b.data(), b.ndim() == 3 ? b.strides[0] : 0,
                                       b.strides[ob], b.strides[ob + 1]};
  fastdl::cuda::GemmEpilogue e;
  e.alpha = float(alpha);
  e.beta = float(beta);
  if (bias) (bias_axis == 0 ? e.bias_row : e.bias_col) = bias->data();
  e.relu = relu;
  py::gil_scoped_release nogil;
  check_on_current_device({&out, &a, &b, bias ? &*bias : nullptr});
  if (reference)
    fastdl::cuda::gemm_reference(out.mutable_data(), m * n, n, sa, sb, batch, m, n, k, e,
                                 as_stream(stream));
  else
    fastdl::cuda::gemm(out.mutable_data(), m * n, n, sa, sb, batch, m, n, k, e, tf32,
                       as_stream(stream));
}

// out (N,) = x (M, N) summed over rows.
void sum_rows_py(const py::handle& out_obj, const py::handle& x_obj, std::uintptr_t stream) {
  const CudaArray out = cuda_array(out_obj, "out");
  const CudaArray x = cuda_array(x_obj, "x");
  check_output(out);
  check_ndim(x, 2, 2);
  check_ndim(out, 1, 1);
  check_dim(out, 0, x.shape[1]);
  FASTDL_CHECK(x.c_contiguous(), TypeError, "x: must be C-contiguous");
  if (out.size() == 0) return;
  py::gil_scoped_release nogil;
  check_on_current_device({&out, &x});
  fastdl::cuda::sum_rows(out.mutable_data(), x.data(), x.shape[0], x.shape[1], as_stream(stream));
}

// Visible devices; 0 when there is no driver or no GPU (the error is cleared, never raised).
int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

}  // namespace

PYBIND11_MODULE(_cuda, m, py::mod_gil_not_used()) {
  m.doc() = "fastdl CUDA kernels (float32, CuPy arrays). Use fastdl.ops, not this module directly.";

  py::register_local_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const fastdl::TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const fastdl::RuntimeError& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });

  m.def("device_count", &device_count, py::call_guard<py::gil_scoped_release>(),
        "Number of visible CUDA devices; 0 when there is no driver or GPU (never raises).");

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
