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

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "bindings/exceptions.h"
#include "common/check.h"
#include "cuda/activation.cuh"
#include "cuda/common.cuh"
#include "cuda/dropout.cuh"
#include "cuda/elementwise.cuh"
#include "cuda/gemm.cuh"
#include "cuda/loss.cuh"
#include "cuda/optim.cuh"
#include "cuda/reduce.cuh"
#include "cuda/softmax.cuh"

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
  template <class T>
  const T* data_as() const { return reinterpret_cast<const T*>(ptr); }
  template <class T>
  T* mutable_data_as() const { return reinterpret_cast<T*>(ptr); }
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

// The element types the kernels read: the interface's typestr and the NumPy name for messages.
struct Dtype {
  const char* typestr;
  const char* name;
  int64_t itemsize;
};
constexpr Dtype kFloat32{"<f4", "float32", 4};
constexpr Dtype kUint8{"|u1", "uint8", 1};
constexpr Dtype kInt64{"<i8", "int64", 8};

CudaArray cuda_array(const py::handle& obj, const char* name, const Dtype& dtype = kFloat32) {
  FASTDL_CHECK(py::hasattr(obj, "__cuda_array_interface__"), TypeError, name,
               ": expected a CUDA array exposing __cuda_array_interface__ (a CuPy array), got ",
               type_name(obj));
  const py::dict cai = obj.attr("__cuda_array_interface__");
  CudaArray a;
  a.name = name;
  const auto typestr = cai["typestr"].cast<std::string>();
  FASTDL_CHECK(typestr == dtype.typestr, TypeError, name, ": expected dtype ", dtype.name,
               ", got ", dtype_name(typestr));
  FASTDL_CHECK(!cai.contains("mask") || cai["mask"].is_none(), TypeError, name,
               ": masked CUDA arrays are not supported");
  for (const py::handle d : cai["shape"].cast<py::tuple>()) a.shape.push_back(d.cast<int64_t>());
  const auto data = cai["data"].cast<py::tuple>();
  a.ptr = data[0].cast<std::uintptr_t>();
  a.readonly = data[1].cast<bool>();
  if (cai.contains("strides") && !cai["strides"].is_none()) {
    for (const py::handle s : cai["strides"].cast<py::tuple>()) {
      const auto bytes = s.cast<int64_t>();
      FASTDL_CHECK(bytes % dtype.itemsize == 0, ValueError, name,
                   ": strides must be multiples of the item size, got ", bytes, " bytes");
      a.strides.push_back(bytes / dtype.itemsize);
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

// ---- activations, softmax, losses, dropout, element-wise ------------------------------------

// An input of an element-wise kernel: the shape of `like`, C-contiguous (fastdl.ops copies views).
void check_like(const CudaArray& a, const CudaArray& like) {
  FASTDL_CHECK(a.shape == like.shape, ValueError, a.name, ": expected shape ", shape_str(like),
               ", got shape ", shape_str(a));
  FASTDL_CHECK(a.c_contiguous(), TypeError, a.name, ": must be C-contiguous");
}

fastdl::cuda::Activation activation_of(const std::string& name) {
  if (name == "relu") return fastdl::cuda::Activation::relu;
  if (name == "sigmoid") return fastdl::cuda::Activation::sigmoid;
  return fastdl::cuda::Activation::tanh;
}

// out = act(x)
void activation_forward_py(const std::string& act, const py::handle& out_obj,
                           const py::handle& x_obj, std::uintptr_t stream, bool reference) {
  const CudaArray out = cuda_array(out_obj, "out");
  const CudaArray x = cuda_array(x_obj, "x");
  check_output(out);
  check_like(x, out);
  if (out.size() == 0) return;
  py::gil_scoped_release nogil;
  check_on_current_device({&out, &x});
  if (reference)
    fastdl::cuda::activation_forward_reference(activation_of(act), out.mutable_data(), x.data(),
                                               out.size(), as_stream(stream));
  else
    fastdl::cuda::activation_forward(activation_of(act), out.mutable_data(), x.data(), out.size(),
                                     as_stream(stream));
}

// out = dy * act'(x), from the forward output y
void activation_backward_py(const std::string& act, const py::handle& out_obj,
                            const py::handle& dy_obj, const py::handle& y_obj,
                            std::uintptr_t stream) {
  const CudaArray out = cuda_array(out_obj, "out");
  const CudaArray dy = cuda_array(dy_obj, "dy");
  const CudaArray y = cuda_array(y_obj, "y");
  check_output(out);
  check_like(dy, out);
  check_like(y, out);
  if (out.size() == 0) return;
  py::gil_scoped_release nogil;
  check_on_current_device({&out, &dy, &y});
  fastdl::cuda::activation_backward(activation_of(act), out.mutable_data(), dy.data(), y.data(),
                                    out.size(), as_stream(stream));
}

// (rows, n) of a softmax over the last axis.
std::pair<int64_t, int64_t> rows_cols(const CudaArray& a) {
  FASTDL_CHECK(a.ndim() >= 1, ValueError, a.name, ": expected at least 1-D, got a 0-D array");
  const int64_t n = a.shape.back();
  return {n ? a.size() / n : 0, n};
}

void softmax_forward_py(const py::handle& out_obj, const py::handle& x_obj, bool log,
                        std::uintptr_t stream, bool reference) {
  const CudaArray out = cuda_array(out_obj, "out");
  const CudaArray x = cuda_array(x_obj, "x");
  check_output(out);
  check_like(x, out);
  const auto [rows, n] = rows_cols(out);
  if (out.size() == 0) return;
  py::gil_scoped_release nogil;
  check_on_current_device({&out, &x});
  if (reference)
    fastdl::cuda::softmax_forward_reference(out.mutable_data(), x.data(), rows, n, log,
                                            as_stream(stream));
  else
    fastdl::cuda::softmax_forward(out.mutable_data(), x.data(), rows, n, log, as_stream(stream));
}

void softmax_backward_py(const py::handle& out_obj, const py::handle& dy_obj,
                         const py::handle& y_obj, bool log, std::uintptr_t stream) {
  const CudaArray out = cuda_array(out_obj, "out");
  const CudaArray dy = cuda_array(dy_obj, "dy");
  const CudaArray y = cuda_array(y_obj, "y");
  check_output(out);
  check_like(dy, out);
  check_like(y, out);
  const auto [rows, n] = rows_cols(out);
  if (out.size() == 0) return;
  py::gil_scoped_release nogil;
  check_on_current_device({&out, &dy, &y});
  fastdl::cuda::softmax_backward(out.mutable_data(), dy.data(), y.data(), rows, n, log,
                                 as_stream(stream));
}

// target: int64 (N,) C-contiguous, N = probs' rows. Its VALUES are checked on the device.
CudaArray targets_for(const py::handle& target_obj, const CudaArray& probs) {
  check_ndim(probs, 2, 2);
  const CudaArray t = cuda_array(target_obj, "target", kInt64);
  check_ndim(t, 1, 1);
  check_dim(t, 0, probs.shape[0]);
  FASTDL_CHECK(t.c_contiguous(), TypeError, "target: must be C-contiguous");
  return t;
}

// probs = softmax(logits); returns the mean loss (synchronises the stream)
double cross_entropy_forward_py(const py::handle& probs_obj, const py::handle& logits_obj,
                                const py::handle& target_obj, std::uintptr_t stream) {
  const CudaArray probs = cuda_array(probs_obj, "probs");
  const CudaArray logits = cuda_array(logits_obj, "logits");
  check_output(probs);
  check_like(logits, probs);
  const CudaArray t = targets_for(target_obj, probs);
  FASTDL_CHECK(probs.shape[0] > 0, ValueError,
               "cross_entropy: the mean over an empty batch (N = 0) is undefined");
  py::gil_scoped_release nogil;
  check_on_current_device({&probs, &logits, &t});
  return fastdl::cuda::cross_entropy_forward(probs.mutable_data(), logits.data(),
                                             t.data_as<int64_t>(), probs.shape[0],
                                             probs.shape[1], as_stream(stream));
}

void cross_entropy_backward_py(const py::handle& out_obj, const py::handle& probs_obj,
                               const py::handle& target_obj, std::uintptr_t stream) {
  const CudaArray out = cuda_array(out_obj, "out");
  const CudaArray probs = cuda_array(probs_obj, "probs");
  check_output(out);
  check_like(probs, out);
  const CudaArray t = targets_for(target_obj, out);
  FASTDL_CHECK(out.shape[0] > 0, ValueError,
               "cross_entropy_backward: the mean over an empty batch (N = 0) is undefined");
  py::gil_scoped_release nogil;
  check_on_current_device({&out, &probs, &t});
  fastdl::cuda::cross_entropy_backward(out.mutable_data(), probs.data(), t.data_as<int64_t>(),
                                       out.shape[0], out.shape[1], as_stream(stream));
}

// mean loss of (pred, target) for kind "mse" or "bce" (binary cross-entropy with logits)
double pointwise_loss_py(const std::string& kind, const py::handle& pred_obj,
                         const py::handle& target_obj, std::uintptr_t stream) {
  const CudaArray pred = cuda_array(pred_obj, kind == "mse" ? "pred" : "logits");
  const CudaArray target = cuda_array(target_obj, "target");
  FASTDL_CHECK(pred.c_contiguous(), TypeError, pred.name, ": must be C-contiguous");
  check_like(target, pred);
  FASTDL_CHECK(pred.size() > 0, ValueError,
               kind == "mse" ? "mse_loss" : "binary_cross_entropy_with_logits",
               ": the mean over zero elements is undefined");
  py::gil_scoped_release nogil;
  check_on_current_device({&pred, &target});
  return kind == "mse"
             ? fastdl::cuda::mse_forward(pred.data(), target.data(), pred.size(), as_stream(stream))
             : fastdl::cuda::bce_with_logits_forward(pred.data(), target.data(), pred.size(),
                                                     as_stream(stream));
}

void pointwise_loss_backward_py(const std::string& kind, const py::handle& out_obj,
                                const py::handle& pred_obj, const py::handle& target_obj,
                                std::uintptr_t stream) {
  const CudaArray out = cuda_array(out_obj, "out");
  const CudaArray pred = cuda_array(pred_obj, kind == "mse" ? "pred" : "logits");
  const CudaArray target = cuda_array(target_obj, "target");
  check_output(out);
  check_like(pred, out);
  check_like(target, out);
  FASTDL_CHECK(out.size() > 0, ValueError,
               kind == "mse" ? "mse_loss_backward" : "binary_cross_entropy_with_logits_backward",
               ": the mean over zero elements is undefined");
  py::gil_scoped_release nogil;
  check_on_current_device({&out, &pred, &target});
  if (kind == "mse")
    fastdl::cuda::mse_backward(out.mutable_data(), pred.data(), target.data(), out.size(),
                               as_stream(stream));
  else
    fastdl::cuda::bce_with_logits_backward(out.mutable_data(), pred.data(), target.data(),
                                           out.size(), as_stream(stream));
}

void check_p(double p) {
  FASTDL_CHECK(p >= 0.0 && p <= 1.0, ValueError, "p: expected a probability in [0, 1], got ", p);
}

void dropout_forward_py(const py::handle& out_obj, const py::handle& mask_obj,
                        const py::handle& x_obj, double p, uint64_t seed, std::uintptr_t stream,
                        bool reference) {
  const CudaArray out = cuda_array(out_obj, "out");
  const CudaArray mask = cuda_array(mask_obj, "mask", kUint8);
  const CudaArray x = cuda_array(x_obj, "x");
  check_output(out);
  check_output(mask);
  check_like(x, out);
  FASTDL_CHECK(mask.shape == out.shape, ValueError, "mask: expected shape ", shape_str(out),
               ", got shape ", shape_str(mask));
  check_p(p);
  if (out.size() == 0) return;
  py::gil_scoped_release nogil;
  check_on_current_device({&out, &mask, &x});
  auto* m = mask.mutable_data_as<uint8_t>();
  if (reference)
    fastdl::cuda::dropout_forward_reference(out.mutable_data(), m, x.data(), out.size(), p, seed,
                                            as_stream(stream));
  else
    fastdl::cuda::dropout_forward(out.mutable_data(), m, x.data(), out.size(), p, seed,
                                  as_stream(stream));
}

void dropout_backward_py(const py::handle& out_obj, const py::handle& dy_obj,
                         const py::handle& mask_obj, double p, std::uintptr_t stream) {
  const CudaArray out = cuda_array(out_obj, "out");
  const CudaArray dy = cuda_array(dy_obj, "dy");
  const CudaArray mask = cuda_array(mask_obj, "mask", kUint8);
  check_output(out);
  check_like(dy, out);
  check_like(mask, out);
  check_p(p);
  if (out.size() == 0) return;
  py::gil_scoped_release nogil;
  check_on_current_device({&out, &dy, &mask});
  fastdl::cuda::dropout_backward(out.mutable_data(), dy.data(), mask.data_as<uint8_t>(),
                                 out.size(), p, as_stream(stream));
}

// out = x + b broadcast along `axis` of x
void bias_add_py(const py::handle& out_obj, const py::handle& x_obj, const py::handle& b_obj,
                 int axis, std::uintptr_t stream) {
  const CudaArray out = cuda_array(out_obj, "out");
  const CudaArray x = cuda_array(x_obj, "x");
  const CudaArray b = cuda_array(b_obj, "b");
  check_output(out);
  check_like(x, out);
  check_ndim(b, 1, 1);
  FASTDL_CHECK(b.c_contiguous(), TypeError, "b: must be C-contiguous");
  FASTDL_CHECK(axis >= 0 && axis < out.ndim(), ValueError, "axis: expected 0 <= axis < ",
               out.ndim(), ", got ", axis);
  check_dim(b, 0, out.shape[size_t(axis)]);
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < axis; ++i) outer *= out.shape[size_t(i)];
  for (int i = axis + 1; i < out.ndim(); ++i) inner *= out.shape[size_t(i)];
  if (out.size() == 0) return;
  py::gil_scoped_release nogil;
  check_on_current_device({&out, &x, &b});
  fastdl::cuda::bias_add(out.mutable_data(), x.data(), b.data(), outer, out.shape[size_t(axis)],
                         inner, as_stream(stream));
}

// ---- optimizers and gradient clipping --------------------------------------------------------

// Optimizer steps update p and its state in place: each must be a writable C-contiguous float32
// CUDA array of p's shape (TypeError for type/dtype/layout, ValueError for shape or read-only).
// g is only read: a float32 CUDA array of p's shape, C-contiguous (fastdl.ops.optim copies
// views). Hyper-parameters are checked as in core.cpp (PyTorch's checks, ValueError).
CudaArray inplace_arg(const py::handle& o, const std::string& op, const char* name) {
  FASTDL_CHECK(!o.is_none(), ValueError, op, ": ", name,
               ": expected an array of p's shape and dtype, got None");
  const CudaArray a = cuda_array(o, name);
  FASTDL_CHECK(a.c_contiguous(), TypeError, op, ": ", name,
               ": expected a C-contiguous array (it is updated in place), got strides that are not");
  FASTDL_CHECK(!a.readonly, ValueError, op, ": ", name, ": array is read-only");
  return a;
}

CudaArray state_arg(const py::handle& o, const CudaArray& p, const std::string& op,
                    const char* name) {
  const CudaArray a = inplace_arg(o, op, name);
  FASTDL_CHECK(a.shape == p.shape, ValueError, op, ": ", name, ": expected shape ", shape_str(p),
               " (that of p), got ", shape_str(a));
  return a;
}

CudaArray grad_arg(const py::handle& o, const CudaArray& p, const std::string& op) {
  FASTDL_CHECK(!o.is_none(), TypeError, op, ": g: expected an array, got None");
  const CudaArray g = cuda_array(o, "g");
  FASTDL_CHECK(g.shape == p.shape, ValueError, op, ": g: expected shape ", shape_str(p),
               " (that of p), got ", shape_str(g));
  FASTDL_CHECK(g.c_contiguous(), TypeError, op, ": g: must be C-contiguous");
  return g;
}

bool overlap(const CudaArray& a, const CudaArray& b) {
  const std::uintptr_t na = std::uintptr_t(a.size()) * 4, nb = std::uintptr_t(b.size()) * 4;
  return na > 0 && nb > 0 && a.ptr < b.ptr + nb && b.ptr < a.ptr + na;
}

// Buffers written by one step must not share memory (g may be p itself, nothing else).
void check_distinct(const std::string& op, const std::vector<const CudaArray*>& w,
                    const CudaArray& g) {
  for (size_t i = 0; i < w.size(); ++i) {
    for (size_t j = i + 1; j < w.size(); ++j)
      FASTDL_CHECK(!overlap(*w[i], *w[j]), ValueError, op, ": ", w[i]->name, " and ", w[j]->name,
                   " share memory; each must be its own array");
    FASTDL_CHECK(!overlap(*w[i], g) || (w[i]->ptr == g.ptr && i == 0), ValueError, op,
                 ": g shares memory with ", w[i]->name);
  }
}

void sgd_step_py(const py::handle& p_, const py::handle& g_, const py::handle& buf_,
                 const fastdl::SgdHyper& h, std::uintptr_t stream) {
  const std::string op = "sgd_step_";
  fastdl::validate(h);
  FASTDL_CHECK(!h.nesterov || (h.momentum > 0 && h.dampening == 0), ValueError, op,
               ": nesterov momentum requires momentum > 0 and dampening == 0, got momentum=",
               h.momentum, ", dampening=", h.dampening);
  const CudaArray p = inplace_arg(p_, op, "p");
  const bool mom = h.momentum != 0;
  const CudaArray buf = mom ? state_arg(buf_, p, op, "buf") : p;
  const CudaArray g = grad_arg(g_, p, op);
  if (mom) check_distinct(op, {&p, &buf}, g);
  else check_distinct(op, {&p}, g);
  if (p.size() == 0) return;
  py::gil_scoped_release nogil;
  check_on_current_device({&p, &g, mom ? &buf : nullptr});
  fastdl::cuda::sgd_step(p.mutable_data(), mom ? buf.mutable_data() : nullptr, g.data(), p.size(),
                         h, as_stream(stream));
}

void adam_step_py(const py::handle& p_, const py::handle& g_, const py::handle& m_,
                  const py::handle& v_, const py::handle& max_v_, const fastdl::AdamHyper& h,
                  std::uintptr_t stream) {
  const std::string op = "adam_step_";
  fastdl::validate(h);
  FASTDL_CHECK(h.amsgrad || max_v_.is_none(), ValueError, op,
               ": max_v is only used with amsgrad=True");
  const CudaArray p = inplace_arg(p_, op, "p");
  const CudaArray m = state_arg(m_, p, op, "m");
  const CudaArray v = state_arg(v_, p, op, "v");
  const CudaArray mv = h.amsgrad ? state_arg(max_v_, p, op, "max_v") : p;
  const CudaArray g = grad_arg(g_, p, op);
  if (h.amsgrad) check_distinct(op, {&p, &m, &v, &mv}, g);
  else check_distinct(op, {&p, &m, &v}, g);
  if (p.size() == 0) return;
  py::gil_scoped_release nogil;
  check_on_current_device({&p, &g, &m, &v, h.amsgrad ? &mv : nullptr});
  fastdl::cuda::adam_step(p.mutable_data(), m.mutable_data(), v.mutable_data(),
                          h.amsgrad ? mv.mutable_data() : nullptr, g.data(), p.size(), h,
                          as_stream(stream));
}

void rmsprop_step_py(const py::handle& p_, const py::handle& g_, const py::handle& sq_,
                     const py::handle& buf_, const py::handle& gavg_,
                     const fastdl::RmspropHyper& h, std::uintptr_t stream) {
  const std::string op = "rmsprop_step_";
  fastdl::validate(h);
  const CudaArray p = inplace_arg(p_, op, "p");
  const CudaArray sq = state_arg(sq_, p, op, "square_avg");
  const bool mom = h.momentum > 0;
  const CudaArray buf = mom ? state_arg(buf_, p, op, "buf") : p;
  const CudaArray gavg = h.centered ? state_arg(gavg_, p, op, "grad_avg") : p;
  const CudaArray g = grad_arg(g_, p, op);
  std::vector<const CudaArray*> written{&p, &sq};
  if (mom) written.push_back(&buf);
  if (h.centered) written.push_back(&gavg);
  check_distinct(op, written, g);
  if (p.size() == 0) return;
  py::gil_scoped_release nogil;
  check_on_current_device({&p, &g, &sq, mom ? &buf : nullptr, h.centered ? &gavg : nullptr});
  fastdl::cuda::rmsprop_step(p.mutable_data(), sq.mutable_data(),
                             mom ? buf.mutable_data() : nullptr,
                             h.centered ? gavg.mutable_data() : nullptr, g.data(), p.size(), h,
                             as_stream(stream));
}

void adagrad_step_py(const py::handle& p_, const py::handle& g_, const py::handle& s_,
                     const fastdl::AdagradHyper& h, std::uintptr_t stream) {
  const std::string op = "adagrad_step_";
  fastdl::validate(h);
  const CudaArray p = inplace_arg(p_, op, "p");
  const CudaArray s = state_arg(s_, p, op, "sum_sq");
  const CudaArray g = grad_arg(g_, p, op);
  check_distinct(op, {&p, &s}, g);
  if (p.size() == 0) return;
  py::gil_scoped_release nogil;
  check_on_current_device({&p, &g, &s});
  fastdl::cuda::adagrad_step(p.mutable_data(), s.mutable_data(), g.data(), p.size(), h,
                             as_stream(stream));
}

// PyTorch's clip_grad_norm_: coef = max_norm / (total + 1e-6); grads *= coef unless coef >= 1
double clip_grad_norm_py(const py::iterable& grads, double max_norm, double norm_type,
                         bool error_if_nonfinite, std::uintptr_t stream) {
  const std::string op = "clip_grad_norm_";
  fastdl::check_hyper(max_norm >= 0, op.c_str(), "max_norm", max_norm, ">= 0");
  fastdl::check_hyper(norm_type > 0, op.c_str(), "norm_type", norm_type, "a positive number or inf");
  std::vector<CudaArray> arrays;
  for (const py::handle o : grads) {
    if (o.is_none()) continue;
    arrays.push_back(inplace_arg(o, op, "grads"));
  }
  std::vector<float*> ptrs;
  std::vector<int64_t> sizes;
  for (const CudaArray& a : arrays) {
    ptrs.push_back(a.mutable_data());
    sizes.push_back(a.size());
  }
  const auto count = int64_t(arrays.size());
  double total = 0;
  {
    py::gil_scoped_release nogil;
    std::vector<const CudaArray*> on;
    for (const CudaArray& a : arrays) on.push_back(&a);
    for (const CudaArray* a : on) check_on_current_device({a});
    total = fastdl::cuda::grads_norm(ptrs.data(), sizes.data(), count, norm_type, as_stream(stream));
  }
  FASTDL_CHECK(!error_if_nonfinite || std::isfinite(total), RuntimeError, op,
               ": the total norm of order ", norm_type, " of the gradients is non-finite (",
               total, "), so it cannot be clipped; pass error_if_nonfinite=False to scale anyway");
  const double coef = max_norm / (total + 1e-6);
  if (!(coef >= 1.0)) {
    py::gil_scoped_release nogil;
    fastdl::cuda::grads_scale(ptrs.data(), sizes.data(), count, coef, as_stream(stream));
  }
  return total;
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

  fastdl::bindings::register_exception_translators();

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

  // ---- activations, softmax, losses, dropout, element-wise ----------------------------------

  for (const char* act : {"relu", "sigmoid", "tanh"}) {
    const std::string a = act;
    m.def((a + "_forward").c_str(),
          [a](py::object out, py::object x, std::uintptr_t stream) {
            activation_forward_py(a, out, x, stream, false);
          },
          py::arg("out"), py::arg("x"), py::kw_only(), py::arg("stream") = 0,
          ("out = " + a + "(x), element-wise; out and x C-contiguous float32 of one shape.").c_str());
    m.def((a + "_forward_reference").c_str(),
          [a](py::object out, py::object x, std::uintptr_t stream) {
            activation_forward_py(a, out, x, stream, true);
          },
          py::arg("out"), py::arg("x"), py::kw_only(), py::arg("stream") = 0,
          ("One thread per element, scalar loads: the oracle for " + a + "_forward.").c_str());
    m.def((a + "_backward").c_str(),
          [a](py::object out, py::object dy, py::object y, std::uintptr_t stream) {
            activation_backward_py(a, out, dy, y, stream);
          },
          py::arg("out"), py::arg("dy"), py::arg("y"), py::kw_only(), py::arg("stream") = 0,
          ("out = dy * " + a + "'(x), computed from the forward output y.").c_str());
  }

  m.def(
      "softmax_forward",
      [](py::object out, py::object x, bool log, std::uintptr_t stream) {
        softmax_forward_py(out, x, log, stream, false);
      },
      py::arg("out"), py::arg("x"), py::kw_only(), py::arg("log") = false, py::arg("stream") = 0,
      R"pbdoc(out = softmax(x) (or log_softmax with log=True) along the LAST axis, on the GPU.

x and out C-contiguous float32 of one shape. A row that is all -inf gives zeros (log: -inf).)pbdoc");
  m.def(
      "softmax_forward_reference",
      [](py::object out, py::object x, bool log, std::uintptr_t stream) {
        softmax_forward_py(out, x, log, stream, true);
      },
      py::arg("out"), py::arg("x"), py::kw_only(), py::arg("log") = false, py::arg("stream") = 0,
      "One thread per row, plain loops: the oracle for softmax_forward.");
  m.def("softmax_backward", &softmax_backward_py, py::arg("out"), py::arg("dy"), py::arg("y"),
        py::kw_only(), py::arg("log") = false, py::arg("stream") = 0,
        "out = dx of softmax (y * (dy - sum(dy * y))) or log_softmax (dy - exp(y) * sum(dy)) "
        "along the last axis, from the forward output y.");

  m.def("cross_entropy_forward", &cross_entropy_forward_py, py::arg("probs"), py::arg("logits"),
        py::arg("target"), py::kw_only(), py::arg("stream") = 0,
        R"pbdoc(Fused softmax + cross-entropy: fills probs (N, C) = softmax(logits) and returns the
mean loss over the N rows as a Python float (so it synchronises the stream). target is int64 (N,);
a value outside [0, C) raises ValueError naming the first bad row (checked on the device).)pbdoc");
  m.def("cross_entropy_backward", &cross_entropy_backward_py, py::arg("out"), py::arg("probs"),
        py::arg("target"), py::kw_only(), py::arg("stream") = 0,
        "out (N, C) = (probs - onehot(target)) / N; checks target on the device (synchronises).");
  m.def(
      "mse_forward",
      [](py::object pred, py::object target, std::uintptr_t stream) {
        return pointwise_loss_py("mse", pred, target, stream);
      },
      py::arg("pred"), py::arg("target"), py::kw_only(), py::arg("stream") = 0,
      "mean((pred - target)^2) as a Python float (accumulated in double; synchronises).");
  m.def(
      "mse_backward",
      [](py::object out, py::object pred, py::object target, std::uintptr_t stream) {
        pointwise_loss_backward_py("mse", out, pred, target, stream);
      },
      py::arg("out"), py::arg("pred"), py::arg("target"), py::kw_only(), py::arg("stream") = 0,
      "out = 2 (pred - target) / numel.");
  m.def(
      "bce_with_logits_forward",
      [](py::object logits, py::object target, std::uintptr_t stream) {
        return pointwise_loss_py("bce", logits, target, stream);
      },
      py::arg("logits"), py::arg("target"), py::kw_only(), py::arg("stream") = 0,
      "mean(max(x, 0) - x t + log1p(exp(-|x|))) as a Python float (double; synchronises).");
  m.def(
      "bce_with_logits_backward",
      [](py::object out, py::object logits, py::object target, std::uintptr_t stream) {
        pointwise_loss_backward_py("bce", out, logits, target, stream);
      },
      py::arg("out"), py::arg("logits"), py::arg("target"), py::kw_only(), py::arg("stream") = 0,
      "out = (sigmoid(logits) - target) / numel.");

  m.def(
      "dropout_forward",
      [](py::object out, py::object mask, py::object x, double p, uint64_t seed,
         std::uintptr_t stream) { dropout_forward_py(out, mask, x, p, seed, stream, false); },
      py::arg("out"), py::arg("mask"), py::arg("x"), py::arg("p"), py::arg("seed"), py::kw_only(),
      py::arg("stream") = 0,
      R"pbdoc(Inverted dropout: mask (uint8, 1 = kept) from a counter-based hash of (seed, index),
out = mask ? x / (1 - p) : 0. Bit-identical to the CPU kernel's mask and output for the same seed.)pbdoc");
  m.def(
      "dropout_forward_reference",
      [](py::object out, py::object mask, py::object x, double p, uint64_t seed,
         std::uintptr_t stream) { dropout_forward_py(out, mask, x, p, seed, stream, true); },
      py::arg("out"), py::arg("mask"), py::arg("x"), py::arg("p"), py::arg("seed"), py::kw_only(),
      py::arg("stream") = 0, "One thread per element: the oracle for dropout_forward.");
  m.def("dropout_backward", &dropout_backward_py, py::arg("out"), py::arg("dy"), py::arg("mask"),
        py::arg("p"), py::kw_only(), py::arg("stream") = 0, "out = mask ? dy / (1 - p) : 0.");
  m.def("bias_add", &bias_add_py, py::arg("out"), py::arg("x"), py::arg("b"), py::arg("axis") = 1,
        py::kw_only(), py::arg("stream") = 0,
        "out = x + b, b (x.shape[axis],) broadcast along `axis`; all C-contiguous float32.");

  // ---- optimizers and gradient clipping ------------------------------------------------------
  m.def(
      "sgd_step_",
      [](py::object p, py::object g, py::object buf, double lr, double momentum,
         double weight_decay, bool nesterov, double dampening, bool maximize, bool first_step,
         std::uintptr_t stream) {
        fastdl::SgdHyper h;
        h.lr = lr, h.momentum = momentum, h.dampening = dampening, h.weight_decay = weight_decay;
        h.nesterov = nesterov, h.maximize = maximize, h.first_step = first_step;
        sgd_step_py(p, g, buf, h, stream);
      },
      py::arg("p"), py::arg("g"), py::arg("buf"), py::arg("lr"), py::arg("momentum") = 0.0,
      py::arg("weight_decay") = 0.0, py::arg("nesterov") = false, py::arg("dampening") = 0.0,
      py::kw_only(), py::arg("maximize") = false, py::arg("first_step") = false,
      py::arg("stream") = 0,
      "One SGD step in place on float32 CUDA arrays p and buf (the _core contract).");
  m.def(
      "adam_step_",
      [](py::object p, py::object g, py::object m_, py::object v, double step, double lr,
         double beta1, double beta2, double eps, double weight_decay, bool decoupled,
         bool amsgrad, py::object max_v, bool maximize, std::uintptr_t stream) {
        fastdl::AdamHyper h;
        h.step = step, h.lr = lr, h.beta1 = beta1, h.beta2 = beta2, h.eps = eps;
        h.weight_decay = weight_decay, h.decoupled = decoupled, h.amsgrad = amsgrad;
        h.maximize = maximize;
        adam_step_py(p, g, m_, v, max_v, h, stream);
      },
      py::arg("p"), py::arg("g"), py::arg("m"), py::arg("v"), py::arg("step"), py::arg("lr"),
      py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay") = 0.0,
      py::arg("decoupled") = false, py::kw_only(), py::arg("amsgrad") = false,
      py::arg("max_v") = py::none(), py::arg("maximize") = false, py::arg("stream") = 0,
      "One Adam / AdamW (decoupled=True) step in place on float32 CUDA arrays p, m, v.");
  m.def(
      "rmsprop_step_",
      [](py::object p, py::object g, py::object square_avg, double lr, double alpha, double eps,
         double weight_decay, double momentum, py::object buf, bool centered,
         py::object grad_avg, bool maximize, std::uintptr_t stream) {
        fastdl::RmspropHyper h;
        h.lr = lr, h.alpha = alpha, h.eps = eps, h.weight_decay = weight_decay;
        h.momentum = momentum, h.centered = centered, h.maximize = maximize;
        rmsprop_step_py(p, g, square_avg, buf, grad_avg, h, stream);
      },
      py::arg("p"), py::arg("g"), py::arg("square_avg"), py::arg("lr"), py::arg("alpha") = 0.99,
      py::arg("eps") = 1e-8, py::arg("weight_decay") = 0.0, py::arg("momentum") = 0.0,
      py::arg("buf") = py::none(), py::arg("centered") = false,
      py::arg("grad_avg") = py::none(), py::kw_only(), py::arg("maximize") = false,
      py::arg("stream") = 0, "One RMSprop step in place on float32 CUDA arrays.");
  m.def(
      "adagrad_step_",
      [](py::object p, py::object g, py::object sum_sq, double lr, double eps,
         double weight_decay, bool maximize, std::uintptr_t stream) {
        fastdl::AdagradHyper h;
        h.lr = lr, h.eps = eps, h.weight_decay = weight_decay, h.maximize = maximize;
        adagrad_step_py(p, g, sum_sq, h, stream);
      },
      py::arg("p"), py::arg("g"), py::arg("sum_sq"), py::arg("lr"), py::arg("eps") = 1e-10,
      py::arg("weight_decay") = 0.0, py::kw_only(), py::arg("maximize") = false,
      py::arg("stream") = 0, "One Adagrad step in place on float32 CUDA arrays.");
  m.def("clip_grad_norm_", &clip_grad_norm_py, py::arg("grads"), py::arg("max_norm"),
        py::arg("norm_type") = 2.0, py::arg("error_if_nonfinite") = false, py::kw_only(),
        py::arg("stream") = 0,
        R"pbdoc(Scale a list of float32 CUDA arrays in place so their total norm is <= max_norm; returns
the total norm before clipping (a deterministic double reduction; synchronises the stream).)pbdoc");
}
