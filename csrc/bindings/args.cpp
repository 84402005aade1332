// args.cpp: the argument checks of args.h, shared by the _core and _cuda bindings.
#include "bindings/args.h"

#include <algorithm>
#include <cmath>


namespace fastdl::bindings {

namespace {

// "cupy.ndarray", for the message that an argument is not a CUDA array.
std::string qualified_type_name(const py::handle& obj) {
  const py::handle t = py::type::of(obj);
  return std::string(py::str(t.attr("__module__"))) + "." +
         std::string(py::str(t.attr("__qualname__")));
}

// '<f8' -> 'float64' for messages; the raw typestr, quoted, if NumPy cannot parse it.
std::string typestr_name(const std::string& typestr) {
  try {
    return std::string(py::str(py::dtype(typestr)));
  } catch (const py::error_already_set&) {
    return "'" + typestr + "'";
  }
}

bool overlap(const ArrayView& a, const ArrayView& b) {
  const auto pa = reinterpret_cast<std::uintptr_t>(a.ptr);
  const auto pb = reinterpret_cast<std::uintptr_t>(b.ptr);
  const auto na = std::uintptr_t(a.nbytes()), nb = std::uintptr_t(b.nbytes());
  return na > 0 && nb > 0 && pa < pb + nb && pb < pa + na;
}

}  // namespace

// ---- dtypes and views ------------------------------------------------------------------------

std::string DType::typestr() const { return byteorder + (kind + std::to_string(itemsize)); }

std::string DType::name() const {
  const std::string bits = std::to_string(itemsize * 8);
  switch (kind) {
    case 'f': return "float" + bits;
    case 'i': return "int" + bits;
    case 'u': return "uint" + bits;
    case 'b': return "bool";
    default: return "'" + typestr() + "'";
  }
}

DType dtype_of(const py::dtype& dt) {
  const char order = dt.byteorder();
  return {dt.kind(), order == '=' ? '<' : order, int64_t(dt.itemsize())};
}

std::string ArrayView::dtype_name() const {
  return descr ? std::string(py::str(py::handle(descr))) : dtype.name();
}

ArrayView view_of(const py::array& a, const char* name) {
  ArrayView v;
  v.name = name;
  const py::dtype dt = a.dtype();
  v.descr = dt.ptr();  // borrowed: the array holds its descriptor
  v.dtype = dtype_of(dt);
  v.ndim = int(a.ndim());
  FASTDL_CHECK(v.ndim <= ArrayView::kMaxDims, ValueError, name, ": expected at most ",
               ArrayView::kMaxDims, " axes, got ", v.ndim);
  const int64_t item = v.dtype.itemsize;
  const py::ssize_t* shape = a.shape();
  const py::ssize_t* strides = a.strides();
  for (int i = 0; i < v.ndim; ++i) {
    v.shape[i] = shape[i];
    v.size *= shape[i];
    v.whole_strides = v.whole_strides && item > 0 && strides[i] % item == 0;
    v.strides[i] = item > 0 ? strides[i] / item : 0;
  }
  v.ptr = const_cast<void*>(a.data());
  v.readonly = !a.writeable();
  v.c_contig = (a.flags() & py::array::c_style) != 0;
  return v;
}

ArrayView cuda_view(const py::handle& obj, const char* name, const DType& want) {
  FASTDL_CHECK(py::hasattr(obj, "__cuda_array_interface__"), TypeError, name,
               ": expected a CUDA array exposing __cuda_array_interface__ (a CuPy array), got ",
               qualified_type_name(obj));
  const py::dict cai = obj.attr("__cuda_array_interface__");
  ArrayView v;
  v.name = name;
  v.dtype = want;
  const auto typestr = cai["typestr"].cast<std::string>();
  FASTDL_CHECK(typestr == want.typestr(), TypeError, name, ": expected dtype ", want.name(),
               ", got ", typestr_name(typestr));
  FASTDL_CHECK(!cai.contains("mask") || cai["mask"].is_none(), TypeError, name,
               ": masked CUDA arrays are not supported");
  const auto shape = cai["shape"].cast<py::tuple>();
  FASTDL_CHECK(shape.size() <= size_t(ArrayView::kMaxDims), ValueError, name,
               ": expected at most ", ArrayView::kMaxDims, " axes, got ", shape.size());
  for (const py::handle d : shape) {
    v.shape[v.ndim] = d.cast<int64_t>();
    v.size *= v.shape[v.ndim++];
  }
  const auto data = cai["data"].cast<py::tuple>();
  v.ptr = reinterpret_cast<void*>(data[0].cast<std::uintptr_t>());
  v.readonly = data[1].cast<bool>();
  if (cai.contains("strides") && !cai["strides"].is_none()) {
    std::vector<int64_t> strides;
    for (const py::handle s : cai["strides"].cast<py::tuple>()) {
      const auto bytes = s.cast<int64_t>();
      FASTDL_CHECK(bytes % want.itemsize == 0, ValueError, name,
                   ": strides must be multiples of the item size, got ", bytes, " bytes");
      strides.push_back(bytes / want.itemsize);
    }
    FASTDL_CHECK(strides.size() == size_t(v.ndim), ValueError, name, ": ", strides.size(),
                 " strides for shape ", shape_str(v));
    std::copy(strides.begin(), strides.end(), v.strides);
  } else {  // C order
    if (v.ndim > 0) v.strides[v.ndim - 1] = 1;
    for (int i = v.ndim - 2; i >= 0; --i) v.strides[i] = v.strides[i + 1] * v.shape[i + 1];
  }
  // NumPy's rule, which the CPU views take from NumPy itself: axes of length 1 may have any
  // stride, and an empty array is contiguous.
  if (v.size != 0) {
    int64_t expect = 1;
    for (int i = v.ndim - 1; i >= 0; --i) {
      if (v.shape[i] != 1 && v.strides[i] != expect) v.c_contig = false;
      expect *= v.shape[i];
    }
  }
  return v;
}

// ---- checks on one or two views --------------------------------------------------------------

std::string shape_str(const ArrayView& a) {
  std::string s = "(";
  for (int i = 0; i < a.ndim; ++i) {
    if (i) s += ", ";
    s += std::to_string(a.shape[i]);
  }
  return s + (a.ndim == 1 ? ",)" : ")");
}

std::string shape_str(std::initializer_list<int64_t> shape) {
  std::string s = "(";
  int i = 0;
  for (const int64_t d : shape) s += (i++ ? ", " : "") + std::to_string(d);
  return s + (shape.size() == 1 ? ",)" : ")");
}

bool has_shape(const ArrayView& a, std::initializer_list<int64_t> shape) {
  return a.ndim == int(shape.size()) && std::equal(shape.begin(), shape.end(), a.shape);
}

bool same_shape(const ArrayView& a, const ArrayView& b) {
  return a.ndim == b.ndim && std::equal(a.shape, a.shape + a.ndim, b.shape);
}

void check_dtype(const ArrayView& a, const ArrayView& like) {
  FASTDL_CHECK(a.dtype == like.dtype, TypeError, a.name, ": expected dtype ", like.dtype_name(),
               ", got ", a.dtype_name());
}

void check_dtype(const ArrayView& a, const DType& want) {
  FASTDL_CHECK(a.dtype == want, TypeError, a.name, ": expected dtype ", want.name(), ", got ",
               a.dtype_name());
}

void check_ndim(const ArrayView& a, int lo, int hi) {
  FASTDL_CHECK(a.ndim >= lo && a.ndim <= hi, ValueError, a.name, ": expected ", lo,
               (lo == hi ? "" : " or " + std::to_string(hi)), "-D array, got shape ",
               shape_str(a));
}

void check_dim(const ArrayView& a, int axis, int64_t want) {
  FASTDL_CHECK(a.shape[axis] == want, ValueError, a.name, ": expected size ", want,
               " along axis ", axis, ", got shape ", shape_str(a));
}

void check_shape(const ArrayView& a, const ArrayView& like) {
  FASTDL_CHECK(same_shape(a, like), ValueError, a.name, ": expected shape ", shape_str(like),
               ", got shape ", shape_str(a));
}

void check_shape(const ArrayView& a, std::initializer_list<int64_t> want) {
  FASTDL_CHECK(has_shape(a, want), ValueError, a.name, ": expected shape ", shape_str(want),
               ", got shape ", shape_str(a));
}

void check_contiguous(const ArrayView& a) {
  FASTDL_CHECK(a.c_contiguous(), TypeError, a.name, ": must be C-contiguous");
}

void check_whole_strides(const ArrayView& a) {
  FASTDL_CHECK(a.whole_strides, ValueError, a.name,
               ": strides must be multiples of the item size");
}

void check_output(const ArrayView& out) {
  FASTDL_CHECK(!out.readonly, ValueError, out.name, ": output array is read-only");
  FASTDL_CHECK(out.c_contiguous(), TypeError, out.name,
               ": output must be C-contiguous, got strides that are not");
}

void check_like(const ArrayView& a, const ArrayView& like) {
  check_dtype(a, like);
  check_shape(a, like);
  check_contiguous(a);
}

// ---- dense: gemm and sum_rows ----------------------------------------------------------------

GemmDims check_gemm(const ArrayView& out, const ArrayView& a, const ArrayView& b, int bias_axis) {
  check_output(out);
  check_ndim(out, 2, 3);
  check_ndim(a, 2, 3);
  check_ndim(b, 2, 3);
  check_dtype(a, out);
  check_dtype(b, out);
  const bool batched = out.ndim == 3;
  FASTDL_CHECK(batched || (a.ndim == 2 && b.ndim == 2), ValueError,
               "out: expected a 3-D output for a batched product, got shape ", shape_str(out));
  const int oa = a.ndim - 2, ob = b.ndim - 2, oc = out.ndim - 2;
  GemmDims d{batched ? out.shape[0] : 1, a.shape[oa], b.shape[ob + 1], a.shape[oa + 1]};
  FASTDL_CHECK(b.shape[ob] == d.k, ValueError, "b: expected ", d.k, " rows to match a of shape ",
               shape_str(a), ", got shape ", shape_str(b));
  check_dim(out, oc, d.m);
  check_dim(out, oc + 1, d.n);
  if (a.ndim == 3) check_dim(a, 0, d.batch);
  if (b.ndim == 3) check_dim(b, 0, d.batch);
  FASTDL_CHECK(bias_axis == 0 || bias_axis == 1, ValueError, "bias_axis: expected 0 or 1, got ",
               bias_axis);
  return d;
}

void check_gemm_bias(const ArrayView& bias, const ArrayView& out, const GemmDims& d,
                     int bias_axis) {
  check_dtype(bias, out);
  check_ndim(bias, 1, 1);
  check_dim(bias, 0, bias_axis == 0 ? d.m : d.n);
  FASTDL_CHECK(bias.c_contiguous(), TypeError, bias.name, ": must be contiguous");
}

void check_sum_rows(const ArrayView& out, const ArrayView& x) {
  check_output(out);
  check_ndim(x, 2, 2);
  check_ndim(out, 1, 1);
  check_dtype(x, out);
  check_dim(out, 0, x.shape[1]);
  check_contiguous(x);
}

// ---- softmax and losses ----------------------------------------------------------------------

std::pair<int64_t, int64_t> rows_cols(const ArrayView& a) {
  FASTDL_CHECK(a.ndim >= 1, ValueError, a.name, ": expected at least 1-D, got a 0-D array");
  const int64_t n = a.shape[a.ndim - 1];
  return {n ? a.size / n : 0, n};
}

void check_targets(const ArrayView& probs, const ArrayView& target) {
  check_ndim(probs, 2, 2);
  check_dtype(target, kInt64);
  check_ndim(target, 1, 1);
  check_dim(target, 0, probs.shape[0]);
  check_contiguous(target);
}

void check_batch(int64_t n, const char* what) {
  FASTDL_CHECK(n > 0, ValueError, what, ": the mean over an empty batch (N = 0) is undefined");
}

void check_elements(int64_t n, const char* what) {
  FASTDL_CHECK(n > 0, ValueError, what, ": the mean over zero elements is undefined");
}

// ---- dropout and element-wise ----------------------------------------------------------------

void check_p(double p) {
  FASTDL_CHECK(p >= 0.0 && p <= 1.0, ValueError, "p: expected a probability in [0, 1], got ", p);
}

BiasAddDims check_bias_add(const ArrayView& out, const ArrayView& x, const ArrayView& b,
                           int axis) {
  check_output(out);
  check_like(x, out);
  check_dtype(b, out);
  check_ndim(b, 1, 1);
  check_contiguous(b);
  FASTDL_CHECK(axis >= 0 && axis < out.ndim, ValueError, "axis: expected 0 <= axis < ",
               out.ndim, ", got ", axis);
  check_dim(b, 0, out.shape[axis]);
  BiasAddDims d{1, out.shape[axis], 1};
  for (int i = 0; i < axis; ++i) d.outer *= out.shape[i];
  for (int i = axis + 1; i < out.ndim; ++i) d.inner *= out.shape[i];
  return d;
}

// ---- conv ------------------------------------------------------------------------------------

namespace {
// Output extent along one axis, or ValueError naming the axis when the window does not fit.
int64_t conv_extent(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dil,
                    const char* axis) {
  const int64_t span = in + 2 * pad - dil * (kernel - 1) - 1;
  FASTDL_CHECK(span >= 0, ValueError, "w: the dilated kernel (", dil * (kernel - 1) + 1,
               ") is larger than the padded input (", in + 2 * pad, ") along ", axis);
  return span / stride + 1;
}
}  // namespace

Conv2dDims check_conv2d(const ArrayView& image, const ArrayView& w, int64_t stride_h,
                        int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h,
                        int64_t dil_w, int64_t groups) {
  check_ndim(image, 4, 4);
  check_ndim(w, 4, 4);
  FASTDL_CHECK(stride_h >= 1 && stride_w >= 1, ValueError, "stride: expected >= 1, got (",
               stride_h, ", ", stride_w, ")");
  FASTDL_CHECK(dil_h >= 1 && dil_w >= 1, ValueError, "dilation: expected >= 1, got (", dil_h,
               ", ", dil_w, ")");
  FASTDL_CHECK(pad_h >= 0 && pad_w >= 0, ValueError, "padding: expected >= 0, got (", pad_h, ", ",
               pad_w, ")");
  FASTDL_CHECK(groups >= 1, ValueError, "groups: expected >= 1, got ", groups);
  const int64_t c = image.shape[1], k = w.shape[0];
  FASTDL_CHECK(c % groups == 0, ValueError, "groups: ", groups,
               " does not divide the input channels C = ", c, " of ", image.name, " of shape ",
               shape_str(image));
  FASTDL_CHECK(k % groups == 0, ValueError, "groups: ", groups,
               " does not divide the output channels K = ", k, " of w of shape ", shape_str(w));
  FASTDL_CHECK(w.shape[1] * groups == c, ValueError, "w: expected ", c / groups,
               " input channels per group (C / groups) along axis 1, got shape ", shape_str(w));
  FASTDL_CHECK(w.shape[2] >= 1 && w.shape[3] >= 1, ValueError,
               "w: expected a kernel of at least 1 x 1, got shape ", shape_str(w));
  FASTDL_CHECK(image.shape[2] >= 1 && image.shape[3] >= 1, ValueError, image.name,
               ": expected H, W >= 1, got shape ", shape_str(image));
  Conv2dDims d{};
  d.n = image.shape[0], d.c = c, d.h = image.shape[2], d.w = image.shape[3];
  d.k = k, d.r = w.shape[2], d.s = w.shape[3];
  d.stride_h = stride_h, d.stride_w = stride_w, d.pad_h = pad_h, d.pad_w = pad_w;
  d.dil_h = dil_h, d.dil_w = dil_w, d.groups = groups;
  d.oh = conv_extent(d.h, d.r, stride_h, pad_h, dil_h, "H");
  d.ow = conv_extent(d.w, d.s, stride_w, pad_w, dil_w, "W");
  return d;
}

void check_conv2d_array(const ArrayView& a, const ArrayView& like,
                        std::initializer_list<int64_t> shape, bool output) {
  if (output) FASTDL_CHECK(!a.readonly, ValueError, a.name, ": output array is read-only");
  check_dtype(a, like);
  check_shape(a, shape);
  if (output)
    FASTDL_CHECK(a.c_contiguous(), TypeError, a.name,
                 ": output must be C-contiguous, got strides that are not");
  else
    check_contiguous(a);
}

// ---- optimizers ------------------------------------------------------------------------------

void check_inplace(const ArrayView& a, const std::string& op) {
  FASTDL_CHECK(a.c_contiguous(), TypeError, op, ": ", a.name,
               ": expected a C-contiguous array (it is updated in place), got strides that are not");
  FASTDL_CHECK(!a.readonly, ValueError, op, ": ", a.name, ": array is read-only");
}

void check_state(const ArrayView& a, const ArrayView& p, const std::string& op) {
  FASTDL_CHECK(a.dtype == p.dtype, TypeError, op, ": ", a.name, ": expected dtype ",
               p.dtype_name(), " (that of p), got ", a.dtype_name());
  FASTDL_CHECK(same_shape(a, p), ValueError, op, ": ", a.name, ": expected shape ", shape_str(p),
               " (that of p), got ", shape_str(a));
}

void check_grad_shape(const ArrayView& g, const ArrayView& p, const std::string& op) {
  FASTDL_CHECK(same_shape(g, p), ValueError, op, ": ", g.name, ": expected shape ", shape_str(p),
               " (that of p), got ", shape_str(g));
}

void check_distinct(const std::string& op, const std::vector<const ArrayView*>& w,
                    const ArrayView& g) {
  for (size_t i = 0; i < w.size(); ++i) {
    for (size_t j = i + 1; j < w.size(); ++j)
      FASTDL_CHECK(!overlap(*w[i], *w[j]), ValueError, op, ": ", w[i]->name, " and ", w[j]->name,
                   " share memory; each must be its own array");
    FASTDL_CHECK(!overlap(*w[i], g) || (w[i]->ptr == g.ptr && i == 0), ValueError, op,
                 ": g shares memory with ", w[i]->name);
  }
}

fastdl::SgdHyper sgd_hyper(double lr, double momentum, double weight_decay, bool nesterov,
                           double dampening, bool maximize, bool first_step) {
  fastdl::SgdHyper h;
  h.lr = lr, h.momentum = momentum, h.dampening = dampening, h.weight_decay = weight_decay;
  h.nesterov = nesterov, h.maximize = maximize, h.first_step = first_step;
  return h;
}

fastdl::AdamHyper adam_hyper(double step, double lr, double beta1, double beta2, double eps,
                             double weight_decay, bool decoupled, bool amsgrad, bool maximize) {
  fastdl::AdamHyper h;
  h.step = step, h.lr = lr, h.beta1 = beta1, h.beta2 = beta2, h.eps = eps;
  h.weight_decay = weight_decay, h.decoupled = decoupled, h.amsgrad = amsgrad;
  h.maximize = maximize;
  return h;
}

fastdl::RmspropHyper rmsprop_hyper(double lr, double alpha, double eps, double weight_decay,
                                   double momentum, bool centered, bool maximize) {
  fastdl::RmspropHyper h;
  h.lr = lr, h.alpha = alpha, h.eps = eps, h.weight_decay = weight_decay;
  h.momentum = momentum, h.centered = centered, h.maximize = maximize;
  return h;
}

fastdl::AdagradHyper adagrad_hyper(double lr, double eps, double weight_decay, bool maximize) {
  fastdl::AdagradHyper h;
  h.lr = lr, h.eps = eps, h.weight_decay = weight_decay, h.maximize = maximize;
  return h;
}

void check_clip_args(double max_norm, double norm_type) {
  const char* op = "clip_grad_norm_";
  fastdl::check_hyper(max_norm >= 0, op, "max_norm", max_norm, ">= 0");
  fastdl::check_hyper(norm_type > 0, op, "norm_type", norm_type, "a positive number or inf");
}

// PyTorch's clip_grad_norm_: coef = max_norm / (total + 1e-6), applied unless coef >= 1 (a NaN
// total therefore makes the gradients NaN, as clamp(coef, max=1) does in PyTorch).
double clip_coef(double total, double max_norm, double norm_type, bool error_if_nonfinite) {
  FASTDL_CHECK(!error_if_nonfinite || std::isfinite(total), RuntimeError, "clip_grad_norm_",
               ": the total norm of order ", norm_type, " of the gradients is non-finite (",
               total, "), so it cannot be clipped; pass error_if_nonfinite=False to scale anyway");
  return max_norm / (total + 1e-6);
}

// ---- pooling ---------------------------------------------------------------------------------

namespace {
// One pooled axis ('h' or 'w'): checks the window and returns the output size (see args.h).
int64_t check_pool_axis(char axis, int64_t in, int64_t k, int64_t s, int64_t p, int64_t d,
                        bool ceil_mode) {
  FASTDL_CHECK(k >= 1, ValueError, "kernel_", axis, ": expected a kernel size >= 1, got ", k);
  FASTDL_CHECK(s >= 1, ValueError, "stride_", axis, ": expected a stride >= 1, got ", s);
  FASTDL_CHECK(d >= 1, ValueError, "dilation_", axis, ": expected a dilation >= 1, got ", d);
  FASTDL_CHECK(p >= 0 && p <= k / 2, ValueError, "pad_", axis,
               ": expected 0 <= pad <= kernel / 2 = ", k / 2, ", got ", p);
  // A window no output can hold (also keeps d (k - 1) from overflowing below).
  const bool fits = k - 1 <= (in + 2 * p + (ceil_mode ? s : 0)) / d;
  const int64_t extent = fits ? d * (k - 1) + 1 : 0;
  const int64_t span = in + 2 * p - extent + (ceil_mode ? s - 1 : 0);
  int64_t out = fits && span >= 0 ? span / s + 1 : 0;
  if (ceil_mode && out >= 1 && (out - 1) * s >= in + p) --out;  // the last window starts in the image
  if (d == 1) {
    FASTDL_CHECK(out >= 1, ValueError, "kernel_", axis, ": kernel size ", k,
                 " is larger than the padded input (", in, " + 2 * ", p, " = ", in + 2 * p, ")");
  } else {
    FASTDL_CHECK(out >= 1, ValueError, "kernel_", axis, ": kernel size ", k, " dilated by ", d,
                 " (extent ", d, " * (", k, " - 1) + 1) is larger than the padded input (", in,
                 " + 2 * ", p, " = ", in + 2 * p, ")");
    // Dilated cells can straddle the image: each window needs one inside it.
    for (int64_t o = 0; o < out; ++o) {
      const int64_t start = o * s - p;
      const int64_t first = start >= 0 ? start : start + (-start + d - 1) / d * d;
      FASTDL_CHECK(first < in && first <= start + d * (k - 1), ValueError, "dilation_", axis,
                   ": window ", o, " (cells ", start, ", ", start + d, ", ... ",
                   start + d * (k - 1), ") holds no cell of the input's ", in,
                   " along this axis, only padding");
    }
  }
  return out;
}

void check_image(const ArrayView& a) {
  check_ndim(a, 4, 4);
  FASTDL_CHECK(a.shape[2] >= 1 && a.shape[3] >= 1, ValueError, a.name,
               ": expected an image of at least 1 x 1 (N, C, H, W), got shape ", shape_str(a));
}

// The array written is an output; the other one an input of its dtype.
void check_pair(const ArrayView& image, const ArrayView& pooled, bool image_is_output) {
  const ArrayView& out = image_is_output ? image : pooled;
  const ArrayView& in = image_is_output ? pooled : image;
  check_output(out);
  check_dtype(in, out);
  check_contiguous(in);
  check_image(image);
  check_ndim(pooled, 4, 4);
}
}  // namespace

Pool2dDims check_pool2d(const ArrayView& image, const ArrayView& pooled, bool image_is_output,
                        int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                        int64_t dh, int64_t dw, bool ceil_mode) {
  check_pair(image, pooled, image_is_output);
  const int64_t n = image.shape[0], c = image.shape[1], h = image.shape[2], w = image.shape[3];
  const int64_t oh = check_pool_axis('h', h, kh, sh, ph, dh, ceil_mode);
  const int64_t ow = check_pool_axis('w', w, kw, sw, pw, dw, ceil_mode);
  check_shape(pooled, {n, c, oh, ow});
  Pool2dDims d{n * c, h, w, oh, ow, kh, kw, sh, sw, ph, pw};
  d.dh = dh, d.dw = dw;
  return d;
}

Pool2dDims check_avg_pool2d(const ArrayView& image, const ArrayView& pooled, bool image_is_output,
                            int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                            bool ceil_mode, bool count_include_pad,
                            const std::optional<int64_t>& divisor_override) {
  FASTDL_CHECK(!divisor_override || *divisor_override > 0, ValueError,
               "divisor_override: expected None or a positive int, got ",
               divisor_override ? *divisor_override : 0);
  Pool2dDims d = check_pool2d(image, pooled, image_is_output, kh, kw, sh, sw, ph, pw, 1, 1,
                              ceil_mode);
  d.count_include_pad = count_include_pad;
  d.divisor_override = divisor_override ? *divisor_override : 0;
  return d;
}

void check_argmax(const ArrayView& argmax, const ArrayView& pooled, bool output) {
  check_dtype(argmax, kInt64);
  check_shape(argmax, pooled);
  if (output)
    check_output(argmax);
  else
    check_contiguous(argmax);
}

Pool2dDims check_max_pool2d_backward(const ArrayView& dx, const ArrayView& dy,
                                     const ArrayView& argmax) {
  check_pair(dx, dy, true);
  check_shape(dy, {dx.shape[0], dx.shape[1], dy.shape[2], dy.shape[3]});
  check_argmax(argmax, dy, false);
  return {dx.shape[0] * dx.shape[1], dx.shape[2], dx.shape[3], dy.shape[2], dy.shape[3],
          1, 1, 1, 1, 0, 0};
}

Pool2dDims check_adaptive_pool2d(const ArrayView& image, const ArrayView& pooled,
                                 bool image_is_output) {
  check_pair(image, pooled, image_is_output);
  check_shape(pooled, {image.shape[0], image.shape[1], pooled.shape[2], pooled.shape[3]});
  return {image.shape[0] * image.shape[1], image.shape[2], image.shape[3], pooled.shape[2],
          pooled.shape[3], 1, 1, 1, 1, 0, 0};
}

// ---- normalisation ---------------------------------------------------------------------------

namespace {
void check_channels(const ArrayView& a, const ArrayView& like, int64_t c, bool output) {
  check_dtype(a, like);
  check_shape(a, {c});
  if (output)
    check_output(a);
  else
    check_contiguous(a);
}
}  // namespace

NormDims check_batch_norm_forward(const ArrayView& y, const ArrayView& save_mean,
                                  const ArrayView& save_invstd, const ArrayView& x,
                                  const ArrayView* weight, const ArrayView* bias,
                                  const ArrayView* running_mean, const ArrayView* running_var,
                                  bool training, double momentum, double eps) {
  check_output(y);
  check_ndim(y, 3, 3);
  check_like(x, y);
  const NormDims d{y.shape[0], y.shape[1], y.shape[2]};
  check_channels(save_mean, y, d.c, true);
  check_channels(save_invstd, y, d.c, true);
  for (const ArrayView* a : {weight, bias})
    if (a) check_channels(*a, y, d.c, false);
  // One statistic updated without the other would leave the pair silently inconsistent.
  FASTDL_CHECK(!running_mean == !running_var, ValueError,
               "running_mean, running_var: expected both or neither, got only ",
               running_mean ? "running_mean" : "running_var");
  for (const ArrayView* a : {running_mean, running_var}) {
    if (!a) continue;
    check_channels(*a, y, d.c, false);
    if (training)
      FASTDL_CHECK(!a->readonly, ValueError, a->name, ": updated in place, but read-only");
  }
  if (training)
    FASTDL_CHECK(d.n * d.l > 1, ValueError,
                 "x: expected more than 1 value per channel when training, got shape ",
                 shape_str(x), " (", d.n * d.l, " per channel)");
  else
    FASTDL_CHECK(running_mean && running_var, ValueError,
                 "running_mean, running_var: required in eval mode (training=False), got None");
  FASTDL_CHECK(std::isfinite(eps) && eps >= 0, ValueError, "eps: expected a finite value >= 0, got ", eps);
  FASTDL_CHECK(std::isfinite(momentum), ValueError, "momentum: expected a finite value, got ", momentum);
  return d;
}

NormDims check_batch_norm_backward(const ArrayView& dx, const ArrayView& dweight,
                                   const ArrayView& dbias, const ArrayView& dy, const ArrayView& x,
                                   const ArrayView* weight, const ArrayView& save_mean,
                                   const ArrayView& save_invstd) {
  check_output(dx);
  check_ndim(dx, 3, 3);
  check_like(dy, dx);
  check_like(x, dx);
  const NormDims d{dx.shape[0], dx.shape[1], dx.shape[2]};
  check_channels(dweight, dx, d.c, true);
  check_channels(dbias, dx, d.c, true);
  if (weight) check_channels(*weight, dx, d.c, false);
  check_channels(save_mean, dx, d.c, false);
  check_channels(save_invstd, dx, d.c, false);
  return d;
}

// ---- embedding -------------------------------------------------------------------------------

EmbeddingDims check_embedding(const ArrayView& rows, const ArrayView& indices,
                              const ArrayView& table, bool table_is_output) {
  const ArrayView& out = table_is_output ? table : rows;
  const ArrayView& in = table_is_output ? rows : table;
  check_output(out);
  check_ndim(table, 2, 2);
  check_dtype(in, out);
  check_dtype(indices, kInt64);
  check_ndim(indices, 1, 1);
  check_contiguous(indices);
  const EmbeddingDims d{indices.shape[0], table.shape[0], table.shape[1]};
  check_shape(rows, {d.m, d.d});
  check_contiguous(in);
  return d;
}

void check_padding_idx(int64_t padding_idx, int64_t v) {
  FASTDL_CHECK(padding_idx == -1 || (padding_idx >= 0 && padding_idx < v), ValueError,
               "padding_idx: expected -1 (none) or a row in [0, V) with V = ", v, ", got ",
               padding_idx);
}

// ---- rnn ---------------------------------------------------------------------------------------

namespace {

// One array of an rnn call: want (the symbolic formula, e.g. "(4H, H)", and its sizes), the
// dtype of x, C-contiguous, writable when an output.
struct RnnCheck {
  const char* op;
  const ArrayView& x;
  const ArrayView& h;

  std::string basis() const {
    return "x of shape " + shape_str(x) + " and " + h.name + " of shape " + shape_str(h);
  }
  void operator()(const ArrayView& a, const char* formula, std::initializer_list<int64_t> want,
                  bool output = false) const {
    check_dtype(a, x);
    FASTDL_CHECK(has_shape(a, want), ValueError, op, ": ", a.name, " must have shape ", formula,
                 " = ", shape_str(want), " for ", basis(), ", got ", shape_str(a));
    if (output)
      check_output(a);
    else
      check_contiguous(a);
  }
};

// x (lead..., N, I) and h (N, H): the sizes every other array is checked against.
RnnDims rnn_dims(const char* op, const ArrayView& x, const ArrayView& h, bool sequence) {
  const int xd = sequence ? 3 : 2;
  FASTDL_CHECK(x.ndim == xd, ValueError, op, ": x must be ", xd, "-D ",
               sequence ? "(T, N, I)" : "(N, I)", ", got shape ", shape_str(x));
  dispatch_float(x, [](auto) { return 0; });  // TypeError for a non-float x
  check_contiguous(x);
  check_dtype(h, x);
  const int64_t t = sequence ? x.shape[0] : 1, n = x.shape[xd - 2], i = x.shape[xd - 1];
  FASTDL_CHECK(h.ndim == 2 && h.shape[0] == n, ValueError, op, ": ", h.name,
               " must have shape (N, H) with N = ", n, " for x of shape ", shape_str(x),
               ", got ", shape_str(h));
  check_contiguous(h);
  return {t, n, i, h.shape[1]};
}

}  // namespace

RnnDims check_rnn_cell_forward(const ArrayView& h_new, const ArrayView& x, const ArrayView& h,
                               const ArrayView& w_ih, const ArrayView& w_hh,
                               const ArrayView* b_ih, const ArrayView* b_hh) {
  const char* op = "rnn_cell";
  const RnnDims d = rnn_dims(op, x, h, false);
  const RnnCheck chk{op, x, h};
  chk(w_ih, "(H, I)", {d.h, d.i});
  chk(w_hh, "(H, H)", {d.h, d.h});
  if (b_ih) chk(*b_ih, "(H,)", {d.h});
  if (b_hh) chk(*b_hh, "(H,)", {d.h});
  chk(h_new, "(N, H)", {d.n, d.h}, true);
  return d;
}

RnnDims check_rnn_cell_backward(const ArrayView& dx, const ArrayView& dh, const ArrayView& dw_ih,
                                const ArrayView& dw_hh, const ArrayView& db,
                                const ArrayView& dh_new, const ArrayView& x, const ArrayView& h,
                                const ArrayView& w_ih, const ArrayView& w_hh,
                                const ArrayView& h_new) {
  const char* op = "rnn_cell_backward";
  const RnnDims d = rnn_dims(op, x, h, false);
  const RnnCheck chk{op, x, h};
  chk(w_ih, "(H, I)", {d.h, d.i});
  chk(w_hh, "(H, H)", {d.h, d.h});
  chk(h_new, "(N, H)", {d.n, d.h});
  chk(dh_new, "(N, H)", {d.n, d.h});
  chk(dx, "(N, I)", {d.n, d.i}, true);
  chk(dh, "(N, H)", {d.n, d.h}, true);
  chk(dw_ih, "(H, I)", {d.h, d.i}, true);
  chk(dw_hh, "(H, H)", {d.h, d.h}, true);
  chk(db, "(H,)", {d.h}, true);
  return d;
}

RnnDims check_lstm_cell_forward(const ArrayView& h_new, const ArrayView& c_new,
                                const ArrayView& gates, const ArrayView& x, const ArrayView& h,
                                const ArrayView& c, const ArrayView& w_ih, const ArrayView& w_hh,
                                const ArrayView* b_ih, const ArrayView* b_hh) {
  const char* op = "lstm_cell";
  const RnnDims d = rnn_dims(op, x, h, false);
  const RnnCheck chk{op, x, h};
  chk(c, "(N, H)", {d.n, d.h});
  chk(w_ih, "(4H, I)", {4 * d.h, d.i});
  chk(w_hh, "(4H, H)", {4 * d.h, d.h});
  if (b_ih) chk(*b_ih, "(4H,)", {4 * d.h});
  if (b_hh) chk(*b_hh, "(4H,)", {4 * d.h});
  chk(h_new, "(N, H)", {d.n, d.h}, true);
  chk(c_new, "(N, H)", {d.n, d.h}, true);
  chk(gates, "(N, 4H)", {d.n, 4 * d.h}, true);
  return d;
}

RnnDims check_lstm_cell_backward(const ArrayView& dx, const ArrayView& dh, const ArrayView& dc,
                                 const ArrayView& dw_ih, const ArrayView& dw_hh,
                                 const ArrayView& db, const ArrayView* dh_new,
                                 const ArrayView* dc_new, const ArrayView& x, const ArrayView& h,
                                 const ArrayView& c, const ArrayView& w_ih, const ArrayView& w_hh,
                                 const ArrayView& gates, const ArrayView& c_new) {
  const char* op = "lstm_cell_backward";
  const RnnDims d = rnn_dims(op, x, h, false);
  const RnnCheck chk{op, x, h};
  chk(c, "(N, H)", {d.n, d.h});
  chk(w_ih, "(4H, I)", {4 * d.h, d.i});
  chk(w_hh, "(4H, H)", {4 * d.h, d.h});
  chk(gates, "(N, 4H)", {d.n, 4 * d.h});
  chk(c_new, "(N, H)", {d.n, d.h});
  if (dh_new) chk(*dh_new, "(N, H)", {d.n, d.h});
  if (dc_new) chk(*dc_new, "(N, H)", {d.n, d.h});
  chk(dx, "(N, I)", {d.n, d.i}, true);
  chk(dh, "(N, H)", {d.n, d.h}, true);
  chk(dc, "(N, H)", {d.n, d.h}, true);
  chk(dw_ih, "(4H, I)", {4 * d.h, d.i}, true);
  chk(dw_hh, "(4H, H)", {4 * d.h, d.h}, true);
  chk(db, "(4H,)", {4 * d.h}, true);
  return d;
}

RnnDims check_lstm_forward(const ArrayView& y, const ArrayView& h_n, const ArrayView& c_n,
                           const ArrayView* gates, const ArrayView* cells, const ArrayView& x,
                           const ArrayView& h0, const ArrayView& c0, const ArrayView& w_ih,
                           const ArrayView& w_hh, const ArrayView* b_ih, const ArrayView* b_hh) {
  const char* op = "lstm";
  const RnnDims d = rnn_dims(op, x, h0, true);
  const RnnCheck chk{op, x, h0};
  chk(c0, "(N, H)", {d.n, d.h});
  chk(w_ih, "(4H, I)", {4 * d.h, d.i});
  chk(w_hh, "(4H, H)", {4 * d.h, d.h});
  if (b_ih) chk(*b_ih, "(4H,)", {4 * d.h});
  if (b_hh) chk(*b_hh, "(4H,)", {4 * d.h});
  chk(y, "(T, N, H)", {d.t, d.n, d.h}, true);
  chk(h_n, "(N, H)", {d.n, d.h}, true);
  chk(c_n, "(N, H)", {d.n, d.h}, true);
  FASTDL_CHECK(!gates == !cells, ValueError, op,
               ": gates and cells must both be arrays (training) or both be None (inference), "
               "got only ", gates ? "gates" : "cells");
  if (gates) chk(*gates, "(T, N, 4H)", {d.t, d.n, 4 * d.h}, true);
  if (cells) chk(*cells, "(T, N, H)", {d.t, d.n, d.h}, true);
  return d;
}

RnnDims check_lstm_backward(const ArrayView& dx, const ArrayView& dh0, const ArrayView& dc0,
                            const ArrayView& dw_ih, const ArrayView& dw_hh, const ArrayView& db,
                            const ArrayView* dy, const ArrayView* dh_n, const ArrayView* dc_n,
                            const ArrayView& x, const ArrayView& h0, const ArrayView& c0,
                            const ArrayView& w_ih, const ArrayView& w_hh, const ArrayView& y,
                            const ArrayView& gates, const ArrayView& cells) {
  const char* op = "lstm_backward";
  const RnnDims d = rnn_dims(op, x, h0, true);
  const RnnCheck chk{op, x, h0};
  chk(c0, "(N, H)", {d.n, d.h});
  chk(w_ih, "(4H, I)", {4 * d.h, d.i});
  chk(w_hh, "(4H, H)", {4 * d.h, d.h});
  chk(y, "(T, N, H)", {d.t, d.n, d.h});
  chk(gates, "(T, N, 4H)", {d.t, d.n, 4 * d.h});
  chk(cells, "(T, N, H)", {d.t, d.n, d.h});
  if (dy) chk(*dy, "(T, N, H)", {d.t, d.n, d.h});
  if (dh_n) chk(*dh_n, "(N, H)", {d.n, d.h});
  if (dc_n) chk(*dc_n, "(N, H)", {d.n, d.h});
  chk(dx, "(T, N, I)", {d.t, d.n, d.i}, true);
  chk(dh0, "(N, H)", {d.n, d.h}, true);
  chk(dc0, "(N, H)", {d.n, d.h}, true);
  chk(dw_ih, "(4H, I)", {4 * d.h, d.i}, true);
  chk(dw_hh, "(4H, H)", {4 * d.h, d.h}, true);
  chk(db, "(4H,)", {4 * d.h}, true);
  return d;
}

// ---- attention -------------------------------------------------------------------------------

namespace {
// q, k, v read: q 4-D, k and v q's dtype, 4-D, with q's B and H, one Sk, k's last axis q's D.
AttentionDims check_qkv(const ArrayView& q, const ArrayView& k, const ArrayView& v) {
  check_ndim(q, 4, 4);
  check_contiguous(q);
  dispatch_float(q, [](auto) { return 0; });  // TypeError for a non-float q, named
  for (const ArrayView* a : {&k, &v}) {
    check_dtype(*a, q);
    check_ndim(*a, 4, 4);
    check_contiguous(*a);
  }
  const AttentionDims d{q.shape[0], q.shape[1], q.shape[2], k.shape[2], q.shape[3], v.shape[3]};
  check_shape(k, {d.b, d.h, d.sk, d.d});
  check_shape(v, {d.b, d.h, d.sk, d.dv});
  return d;
}

void check_attention_array(const ArrayView& a, const ArrayView& like,
                           std::initializer_list<int64_t> shape, bool output) {
  check_dtype(a, like);
  check_shape(a, shape);
  if (output)
    check_output(a);
  else
    check_contiguous(a);
}

void check_scale(double scale) {
  FASTDL_CHECK(std::isfinite(scale), ValueError, "scale: expected a finite number, got ", scale);
}
}  // namespace

AttentionDims check_attention_forward(const ArrayView& out, const ArrayView& lse,
                                      const ArrayView& q, const ArrayView& k, const ArrayView& v,
                                      double scale) {
  const AttentionDims d = check_qkv(q, k, v);
  check_attention_array(out, q, {d.b, d.h, d.sq, d.dv}, true);
  check_attention_array(lse, q, {d.b, d.h, d.sq}, true);
  check_scale(scale);
  return d;
}

AttentionDims check_attention_backward(const ArrayView& dq, const ArrayView& dk,
                                       const ArrayView& dv, const ArrayView& dout,
                                       const ArrayView& q, const ArrayView& k, const ArrayView& v,
                                       const ArrayView& out, const ArrayView& lse, double scale) {
  const AttentionDims d = check_qkv(q, k, v);
  check_attention_array(dout, q, {d.b, d.h, d.sq, d.dv}, false);
  check_attention_array(out, q, {d.b, d.h, d.sq, d.dv}, false);
  check_attention_array(lse, q, {d.b, d.h, d.sq}, false);
  check_attention_array(dq, q, {d.b, d.h, d.sq, d.d}, true);
  check_attention_array(dk, q, {d.b, d.h, d.sk, d.d}, true);
  check_attention_array(dv, q, {d.b, d.h, d.sk, d.dv}, true);
  check_scale(scale);
  return d;
}

// ---- layer_norm (norm family) ----------------------------------------------------------------

LayerNormDims check_layer_norm_forward(const ArrayView& y, const ArrayView& mean,
                                       const ArrayView& rstd, const ArrayView& x,
                                       const ArrayView* weight, const ArrayView* bias, double eps) {
  check_output(y);
  check_ndim(y, 2, 2);
  check_like(x, y);
  const LayerNormDims d{y.shape[0], y.shape[1]};
  check_channels(mean, y, d.m, true);
  check_channels(rstd, y, d.m, true);
  for (const ArrayView* a : {weight, bias})
    if (a) check_channels(*a, y, d.d, false);
  FASTDL_CHECK(d.d > 0 || d.m == 0, ValueError,
               "x: the statistics of a row of 0 elements are undefined, got shape ", shape_str(x));
  FASTDL_CHECK(std::isfinite(eps) && eps >= 0, ValueError, "eps: expected a finite value >= 0, got ", eps);
  return d;
}

LayerNormDims check_layer_norm_backward(const ArrayView& dx, const ArrayView& dweight,
                                        const ArrayView& dbias, const ArrayView& dy,
                                        const ArrayView& x, const ArrayView* weight,
                                        const ArrayView& mean, const ArrayView& rstd) {
  check_output(dx);
  check_ndim(dx, 2, 2);
  check_like(dy, dx);
  check_like(x, dx);
  const LayerNormDims d{dx.shape[0], dx.shape[1]};
  check_channels(dweight, dx, d.d, true);
  check_channels(dbias, dx, d.d, true);
  if (weight) check_channels(*weight, dx, d.d, false);
  check_channels(mean, dx, d.m, false);
  check_channels(rstd, dx, d.m, false);
  return d;
}

// ---- gelu (activation family) ----------------------------------------------------------------

void check_gelu_approximate(int approximate) {
  FASTDL_CHECK(approximate == 0 || approximate == 1, ValueError,
               "approximate: expected 0 (exact) or 1 (tanh), got ", approximate);
}

}  // namespace fastdl::bindings
