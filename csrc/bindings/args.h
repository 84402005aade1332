// args.h: the one set of argument checks behind both extension modules (_core and _cuda).
//
// Adding a family's bindings (say conv):
//   1. csrc/bindings/cpu/conv.cpp defines `void bind_conv(py::module_& m)` in namespace
//      fastdl::bindings; declare it in csrc/bindings/cpu/families.h and call it once from
//      PYBIND11_MODULE in csrc/bindings/core.cpp. Likewise csrc/bindings/cuda/conv.cpp,
//      cuda/families.h and cuda.cpp for the GPU. CMake globs both folders: no CMake edit.
//   2. Turn every array argument into an ArrayView first -- view_of(py::array, "x") on the CPU,
//      cuda_view(obj, "x") on the GPU (it also checks the dtype, float32 by default) -- and
//      check the views with the functions below, never with a private copy: the messages are
//      the contract the tests match (TypeError for type/dtype/layout, ValueError for shape and
//      value, each naming the argument, what was expected and what was given).
//   3. Checks a family's CPU and GPU bindings share beyond these (gemm's shapes, the optimizer
//      state rules) belong here too, in that family's section, so the two stay one.
//   4. Release the GIL around the kernel only: a view holds borrowed pointers, so the Python
//      objects it was made from must outlive it (function arguments always do).
//
// An ArrayView is a non-owning description of an array -- shape, element strides, dtype, data
// pointer, read-only and C-contiguous flags -- built the same way from a NumPy array and from an
// object's __cuda_array_interface__, so one check serves both modules. Host code only: compiled
// by the host compiler in both targets, and pybind11 is included only by csrc/bindings/.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/check.h"
#include "cpu/optim.h"  // the hyper-parameter structs (plain, shared by both modules)

namespace fastdl::bindings {

namespace py = pybind11;
using std::int64_t;

// An element type as __cuda_array_interface__ spells it ("<f4"): NumPy's kind character, byte
// order ('<' little, '>' big, '|' not applicable; NumPy's native '=' is stored as '<', x86-64
// being little-endian) and size in bytes.
struct DType {
  char kind = '?';
  char byteorder = '|';
  int64_t itemsize = 0;

  friend bool operator==(const DType& a, const DType& b) {
    return a.kind == b.kind && a.byteorder == b.byteorder && a.itemsize == b.itemsize;
  }
  friend bool operator!=(const DType& a, const DType& b) { return !(a == b); }
  std::string typestr() const;  // "<f4"
  std::string name() const;     // NumPy's name, "float32", for the kinds f, i, u and b
};
inline constexpr DType kFloat32{'f', '<', 4};
inline constexpr DType kFloat64{'f', '<', 8};
inline constexpr DType kInt64{'i', '<', 8};
inline constexpr DType kUint8{'u', '|', 1};

DType dtype_of(const py::dtype& dt);

struct ArrayView {
  // NumPy's limit (NPY_MAXDIMS); a CUDA array with more axes is refused by cuda_view.
  static constexpr int kMaxDims = 64;

  const char* name = "";           // the argument's name, as messages print it
  int ndim = 0;
  // Entries [0, ndim) are set; the rest stay uninitialised (a view is made on every call).
  int64_t shape[kMaxDims];
  int64_t strides[kMaxDims];  // in elements; meaningful only when whole_strides
  bool whole_strides = true;       // every byte stride is a multiple of the item size
  int64_t size = 1;                // number of elements
  DType dtype;
  void* ptr = nullptr;
  bool readonly = false;
  bool c_contig = true;            // NumPy's rule: axes of length 1 may have any stride
  PyObject* descr = nullptr;       // the NumPy dtype (borrowed) for messages; null for CUDA views

  bool c_contiguous() const { return c_contig; }
  int64_t nbytes() const { return size * dtype.itemsize; }
  template <class T>
  const T* data() const { return static_cast<const T*>(ptr); }
  template <class T>
  T* mutable_data() const { return static_cast<T*>(ptr); }
  // How messages print the dtype: NumPy's str() of it ("float32", ">f4").
  std::string dtype_name() const;
};

// A view of a NumPy array (any dtype, any strides); never raises.
ArrayView view_of(const py::array& a, const char* name);

// A view of an object exposing __cuda_array_interface__ (a CuPy array) whose dtype must be
// `want`: TypeError if it is not a CUDA array or has another dtype, ValueError for strides that
// are not whole elements.
ArrayView cuda_view(const py::handle& obj, const char* name, const DType& want = kFloat32);

// ---- checks on one or two views --------------------------------------------------------------

std::string shape_str(const ArrayView& a);                // "(3, 4)", "(5,)"
std::string shape_str(std::initializer_list<int64_t> shape);  // the same for a wanted shape
bool has_shape(const ArrayView& a, std::initializer_list<int64_t> shape);
bool same_shape(const ArrayView& a, const ArrayView& b);
void check_dtype(const ArrayView& a, const ArrayView& like);  // TypeError
void check_dtype(const ArrayView& a, const DType& want);      // TypeError
void check_ndim(const ArrayView& a, int lo, int hi);          // ValueError: lo <= ndim <= hi
void check_dim(const ArrayView& a, int axis, int64_t want);   // ValueError: shape[axis] == want
void check_shape(const ArrayView& a, const ArrayView& like);  // ValueError: like's shape
void check_shape(const ArrayView& a, std::initializer_list<int64_t> want);  // ValueError
void check_contiguous(const ArrayView& a);                    // TypeError: C-contiguous input
void check_whole_strides(const ArrayView& a);                 // ValueError
// An output: writable (ValueError) and C-contiguous (TypeError).
void check_output(const ArrayView& out);
// An input of an element-wise kernel: the dtype and shape of `like`, C-contiguous.
void check_like(const ArrayView& a, const ArrayView& like);

// Runs f(float{}) or f(double{}) for dt; TypeError "<name>: expected dtype float32 or float64,
// got <dt_name()>" for any other dtype.
template <typename F, typename Name>
auto dispatch_float(const DType& dt, const char* name, Name&& dt_name, F&& f) {
  if (dt == kFloat32) return f(float{});
  if (dt == kFloat64) return f(double{});
  throw fastdl::TypeError(std::string(name) + ": expected dtype float32 or float64, got " +
                          dt_name());
}
template <typename F>
auto dispatch_float(const ArrayView& a, F&& f) {
  return dispatch_float(a.dtype, a.name, [&] { return a.dtype_name(); }, std::forward<F>(f));
}
template <typename F>
auto dispatch_float(const py::dtype& dt, const char* name, F&& f) {
  return dispatch_float(dtype_of(dt), name, [&] { return std::string(py::str(dt)); },
                        std::forward<F>(f));
}

// ---- dense: gemm and sum_rows ----------------------------------------------------------------

// gemm's shapes: out (B?, M, N), a (B?, M, K), b (B?, K, N), a 2-D operand shared by the batch.
struct GemmDims {
  int64_t batch, m, n, k;
};
// Checks out, a, b and bias_axis (0 or 1) of one gemm call.
GemmDims check_gemm(const ArrayView& out, const ArrayView& a, const ArrayView& b, int bias_axis);
// Then the bias, when there is one: out's dtype, length M for bias_axis 0, N for 1, contiguous.
void check_gemm_bias(const ArrayView& bias, const ArrayView& out, const GemmDims& d,
                     int bias_axis);
// out (N,) = x (M, N) summed over rows; x C-contiguous.
void check_sum_rows(const ArrayView& out, const ArrayView& x);

// ---- softmax and losses ----------------------------------------------------------------------

// (rows, n) of a softmax over the last axis: rows = size / n.
std::pair<int64_t, int64_t> rows_cols(const ArrayView& a);
// Class indices of probs (N, C): target int64 (N,), C-contiguous (their values are the
// caller's to check: on the host or on the device).
void check_targets(const ArrayView& probs, const ArrayView& target);
// The mean over an empty batch or zero elements is undefined: ValueError "<what>: ...".
void check_batch(int64_t n, const char* what);
void check_elements(int64_t n, const char* what);

// ---- dropout and element-wise ----------------------------------------------------------------

void check_p(double p);  // a probability in [0, 1]
// out = x + b broadcast along `axis`: returns (outer, c, inner) with c = out.shape[axis].
struct BiasAddDims {
  int64_t outer, c, inner;
};
BiasAddDims check_bias_add(const ArrayView& out, const ArrayView& x, const ArrayView& b,
                           int axis);

// ---- conv ------------------------------------------------------------------------------------

// One conv2d call's geometry: image (N, C, H, W) -- x, or dx for backward-data, whose H, W may
// exceed the smallest input giving OH, OW --, w (K, C/groups, R, S), y/dy (N, K, OH, OW).
struct Conv2dDims {
  int64_t n, c, h, w, k, r, s, oh, ow;
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
};
// Checks image and w (4-D each) and the sizes: stride and dilation >= 1, padding >= 0,
// 1 <= groups dividing C and K, w.shape[1] * groups == C, a kernel of at least 1 x 1 no larger
// (dilated) than the padded input; returns the geometry with OH, OW.
Conv2dDims check_conv2d(const ArrayView& image, const ArrayView& w, int64_t stride_h,
                        int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h,
                        int64_t dil_w, int64_t groups);
// One array of a conv2d pass: like's dtype (TypeError), exactly `shape` (ValueError "<name>:
// expected shape (...), got shape (...)"), C-contiguous (TypeError), and writable if an output.
void check_conv2d_array(const ArrayView& a, const ArrayView& like,
                        std::initializer_list<int64_t> shape, bool output);

// ---- optimizers ------------------------------------------------------------------------------
// Messages open with the op ("sgd_step_: buf: ...").

// An array updated in place: C-contiguous (TypeError) and writable (ValueError).
void check_inplace(const ArrayView& a, const std::string& op);
// A state buffer of p: p's dtype (TypeError) and shape (ValueError).
void check_state(const ArrayView& a, const ArrayView& p, const std::string& op);
// The gradient: p's shape (ValueError).
void check_grad_shape(const ArrayView& g, const ArrayView& p, const std::string& op);
// Buffers one step writes must not share memory; g may be p itself (written[0]), nothing else.
void check_distinct(const std::string& op, const std::vector<const ArrayView*>& written,
                    const ArrayView& g);
// The steps' keyword arguments, as both modules take them, packed for the kernels.
fastdl::SgdHyper sgd_hyper(double lr, double momentum, double weight_decay, bool nesterov,
                           double dampening, bool maximize, bool first_step);
fastdl::AdamHyper adam_hyper(double step, double lr, double beta1, double beta2, double eps,
                             double weight_decay, bool decoupled, bool amsgrad, bool maximize);
fastdl::RmspropHyper rmsprop_hyper(double lr, double alpha, double eps, double weight_decay,
                                   double momentum, bool centered, bool maximize);
fastdl::AdagradHyper adagrad_hyper(double lr, double eps, double weight_decay, bool maximize);
// clip_grad_norm_: PyTorch's checks of max_norm and norm_type before anything is read, and the
// factor to scale by once the total norm is known (>= 1: leave the gradients as they are);
// RuntimeError for a non-finite total when error_if_nonfinite.
void check_clip_args(double max_norm, double norm_type);
double clip_coef(double total, double max_norm, double norm_type, bool error_if_nonfinite);

// ---- pooling ---------------------------------------------------------------------------------
// image: x or dx (N, C, H, W); pooled: y, dy or argmax (N, C, OH, OW). One float dtype (argmax
// int64); the array written is an output (writable, C-contiguous), the others C-contiguous inputs.

// One pooling call's sizes: planes = N * C, the window (1 / 1 / 0 for the adaptive pools), the
// max pool's dilation, the avg pool's divisor options (divisor_override 0: none).
struct Pool2dDims {
  int64_t planes, h, w, oh, ow, kh, kw, sh, sw, ph, pw;
  int64_t dh = 1, dw = 1;
  bool count_include_pad = true;
  int64_t divisor_override = 0;
};
// A windowed pool, forward (image read, pooled written) or backward (the reverse): kernel >= 1,
// stride >= 1, dilation >= 1, 0 <= pad <= kernel / 2 (PyTorch's rule), H, W >= 1, pooled of
// PyTorch's shape (E = dilation (kernel - 1) + 1):
//   floor mode  OH = (H + 2 pad - E) / stride + 1,
//   ceil mode   OH = ceil((H + 2 pad - E) / stride) + 1, less one if the last window would
//               start at or past H + pad,
// at least 1 (ValueError "kernel_h: ... larger than the padded input" otherwise); with
// dilation, every window must hold a cell of the image (PyTorch would give -inf and an argmax
// outside the plane).
Pool2dDims check_pool2d(const ArrayView& image, const ArrayView& pooled, bool image_is_output,
                        int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                        int64_t dh = 1, int64_t dw = 1, bool ceil_mode = false);
// avg_pool2d (forward or backward): check_pool2d without dilation, then the divisor options:
// divisor_override None or > 0 (ValueError naming it).
Pool2dDims check_avg_pool2d(const ArrayView& image, const ArrayView& pooled, bool image_is_output,
                            int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                            bool ceil_mode, bool count_include_pad,
                            const std::optional<int64_t>& divisor_override);
// max_pool2d's argmax: int64 of pooled's shape; written by the forward, read by the backward
// (its values are the kernel's to check: on the host or on the device).
void check_argmax(const ArrayView& argmax, const ArrayView& pooled, bool output);
// max_pool2d_backward: dx written, dy and argmax (N, C, any OH, OW) read.
Pool2dDims check_max_pool2d_backward(const ArrayView& dx, const ArrayView& dy,
                                     const ArrayView& argmax);
// An adaptive pool: the output size is the pooled array's (any OH, OW >= 0).
Pool2dDims check_adaptive_pool2d(const ArrayView& image, const ArrayView& pooled,
                                 bool image_is_output);

// ---- normalisation ---------------------------------------------------------------------------
// x, y, dy, dx (N, C, L) of one float dtype; per-channel vectors (C,) of that dtype,
// C-contiguous; the optional ones are null pointers when None.

struct NormDims {
  int64_t n, c, l;
};
// batch_norm_forward: y, save_mean, save_invstd written; the running statistics both or neither,
// writable when training (updated in place); eval needs them; training needs N * L > 1
// (PyTorch: "expected more than 1 value per channel"); eps finite and >= 0, momentum finite.
NormDims check_batch_norm_forward(const ArrayView& y, const ArrayView& save_mean,
                                  const ArrayView& save_invstd, const ArrayView& x,
                                  const ArrayView* weight, const ArrayView* bias,
                                  const ArrayView* running_mean, const ArrayView* running_var,
                                  bool training, double momentum, double eps);
// batch_norm_backward: dx, dweight, dbias written.
NormDims check_batch_norm_backward(const ArrayView& dx, const ArrayView& dweight,
                                   const ArrayView& dbias, const ArrayView& dy, const ArrayView& x,
                                   const ArrayView* weight, const ArrayView& save_mean,
                                   const ArrayView& save_invstd);

// ---- embedding -------------------------------------------------------------------------------
// rows: y (forward, written) or dy (backward, read), (M, D); table: weight (forward, read) or
// dweight (backward, written), (V, D); indices int64 (M,). One float dtype (table's; TypeError),
// every array C-contiguous (TypeError), the written one writable. The index VALUES are the
// kernels' to check (on the host or on the device). padding_idx: -1 (none) or in [0, V).
struct EmbeddingDims {
  int64_t m, v, d;
};
EmbeddingDims check_embedding(const ArrayView& rows, const ArrayView& indices,
                              const ArrayView& table, bool table_is_output);
void check_padding_idx(int64_t padding_idx, int64_t v);

// ---- rnn: RNN and LSTM cells, whole-sequence LSTM (csrc/cpu/rnn.*, csrc/cuda/rnn.cu) ----------
// Every array has x's dtype (TypeError) and is C-contiguous (TypeError); outputs are writable.
// Sizes come from x (N, I) -- (T, N, I) for the sequence -- and h (N, H) (h0 for the sequence);
// every other shape is derived from them and a mismatch is a ValueError naming the argument:
//   "lstm_cell: w_hh must have shape (4H, H) = (2048, 512) for x of shape (64, 256) and h of
//    shape (64, 512), got (2048, 256)".
// Optional arrays are null pointers (None): the biases; dh_new / dc_new, dy / dh_n / dc_n of the
// backward passes; gates / cells of lstm_forward (both or neither: inference keeps neither).
struct RnnDims {
  int64_t t, n, i, h;  // t = 1 for the cells; t = 0 is a valid sequence
};
RnnDims check_rnn_cell_forward(const ArrayView& h_new, const ArrayView& x, const ArrayView& h,
                               const ArrayView& w_ih, const ArrayView& w_hh,
                               const ArrayView* b_ih, const ArrayView* b_hh);
RnnDims check_rnn_cell_backward(const ArrayView& dx, const ArrayView& dh, const ArrayView& dw_ih,
                                const ArrayView& dw_hh, const ArrayView& db,
                                const ArrayView& dh_new, const ArrayView& x, const ArrayView& h,
                                const ArrayView& w_ih, const ArrayView& w_hh,
                                const ArrayView& h_new);
RnnDims check_lstm_cell_forward(const ArrayView& h_new, const ArrayView& c_new,
                                const ArrayView& gates, const ArrayView& x, const ArrayView& h,
                                const ArrayView& c, const ArrayView& w_ih, const ArrayView& w_hh,
                                const ArrayView* b_ih, const ArrayView* b_hh);
RnnDims check_lstm_cell_backward(const ArrayView& dx, const ArrayView& dh, const ArrayView& dc,
                                 const ArrayView& dw_ih, const ArrayView& dw_hh,
                                 const ArrayView& db, const ArrayView* dh_new,
                                 const ArrayView* dc_new, const ArrayView& x, const ArrayView& h,
                                 const ArrayView& c, const ArrayView& w_ih, const ArrayView& w_hh,
                                 const ArrayView& gates, const ArrayView& c_new);
RnnDims check_lstm_forward(const ArrayView& y, const ArrayView& h_n, const ArrayView& c_n,
                           const ArrayView* gates, const ArrayView* cells, const ArrayView& x,
                           const ArrayView& h0, const ArrayView& c0, const ArrayView& w_ih,
                           const ArrayView& w_hh, const ArrayView* b_ih, const ArrayView* b_hh);
RnnDims check_lstm_backward(const ArrayView& dx, const ArrayView& dh0, const ArrayView& dc0,
                            const ArrayView& dw_ih, const ArrayView& dw_hh, const ArrayView& db,
                            const ArrayView* dy, const ArrayView* dh_n, const ArrayView* dc_n,
                            const ArrayView& x, const ArrayView& h0, const ArrayView& c0,
                            const ArrayView& w_ih, const ArrayView& w_hh, const ArrayView& y,
                            const ArrayView& gates, const ArrayView& cells);
// ---- attention -------------------------------------------------------------------------------
// q (B, H, Sq, D), k (B, H, Sk, D), v (B, H, Sk, Dv), out / dout (B, H, Sq, Dv), lse (B, H, Sq),
// dq / dk / dv the shapes of q / k / v: one float dtype (q's), all C-contiguous, the written
// ones writable. Sk = 0 or D = 0 pass here (the kernels define them: zero rows, lse = -inf);
// the ops layer refuses them as undefined.

struct AttentionDims {
  int64_t b, h, sq, sk, d, dv;
};
// attention_forward: out, lse written; q, k, v read; scale finite (ValueError).
AttentionDims check_attention_forward(const ArrayView& out, const ArrayView& lse,
                                      const ArrayView& q, const ArrayView& k, const ArrayView& v,
                                      double scale);
// attention_backward: dq, dk, dv written; dout, q, k, v, out, lse read; scale finite.
AttentionDims check_attention_backward(const ArrayView& dq, const ArrayView& dk,
                                       const ArrayView& dv, const ArrayView& dout,
                                       const ArrayView& q, const ArrayView& k, const ArrayView& v,
                                       const ArrayView& out, const ArrayView& lse, double scale);
// ---- layer_norm (norm family) ----------------------------------------------------------------
// x, y, dy, dx (M, D) of one float dtype, C-contiguous; weight, bias, dweight, dbias (D,);
// mean, rstd (M,). The ops layer flattens the leading and the normalised axes.
struct LayerNormDims {
  int64_t m, d;
};
// layer_norm_forward: y, mean, rstd written; weight / bias optional; eps finite and >= 0.
LayerNormDims check_layer_norm_forward(const ArrayView& y, const ArrayView& mean,
                                       const ArrayView& rstd, const ArrayView& x,
                                       const ArrayView* weight, const ArrayView* bias, double eps);
// layer_norm_backward: dx, dweight, dbias written; weight optional.
LayerNormDims check_layer_norm_backward(const ArrayView& dx, const ArrayView& dweight,
                                        const ArrayView& dbias, const ArrayView& dy,
                                        const ArrayView& x, const ArrayView* weight,
                                        const ArrayView& mean, const ArrayView& rstd);

// ---- gelu (activation family) ----------------------------------------------------------------
// approximate: 0 (exact erf) or 1 (tanh form); ValueError otherwise.
void check_gelu_approximate(int approximate);

}  // namespace fastdl::bindings
