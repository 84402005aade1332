// bindings/cuda/rnn.cpp: the rnn family of fastdl._cuda (rnn_cell_*, lstm_cell_*, lstm_*), the
// pinned extension API shared with fastdl._core plus a keyword-only `stream`.
//
// Every array is a C-contiguous float32 CUDA array; optional ones are None. Sizes come from
// x (N, I) or (T, N, I) and h / h0 (N, H); the shape checks are bindings/args.h's rnn section,
// the CPU binding's too, so both modules refuse the same calls with the same messages. The
// kernels only enqueue work on `stream` (cuda/rnn.cu): no call here synchronises.
#include <cuda_runtime_api.h>
#include <pybind11/pybind11.h>

#include <cstdint>

#include "bindings/args.h"
#include "bindings/cuda/families.h"
#include "cuda/rnn.cuh"

namespace fastdl::bindings {
namespace {

using Obj = const py::handle&;  // an array argument (a CuPy array or None)

void rnn_cell_forward_py(Obj h_new_o, Obj x_o, Obj h_o, Obj w_ih_o, Obj w_hh_o, Obj b_ih_o, Obj b_hh_o,
                         std::uintptr_t stream) {
  const ArrayView h_new = cuda_view(h_new_o, "h_new"), x = cuda_view(x_o, "x"),
                  h = cuda_view(h_o, "h"), w_ih = cuda_view(w_ih_o, "w_ih"),
                  w_hh = cuda_view(w_hh_o, "w_hh");
  ArrayView bi, bh;
  const ArrayView* b_ih = optional_view(b_ih_o, "b_ih", bi);
  const ArrayView* b_hh = optional_view(b_hh_o, "b_hh", bh);
  const RnnDims d = check_rnn_cell_forward(h_new, x, h, w_ih, w_hh, b_ih, b_hh);
  py::gil_scoped_release nogil;
  check_on_current_device({&h_new, &x, &h, &w_ih, &w_hh, b_ih, b_hh});
  cuda::rnn_cell_forward(h_new.mutable_data<float>(), x.data<float>(), h.data<float>(),
                         w_ih.data<float>(), w_hh.data<float>(), data_or_null<const float>(b_ih),
                         data_or_null<const float>(b_hh), d.n, d.i, d.h, as_stream(stream));
}

void rnn_cell_backward_py(Obj dx_o, Obj dh_o, Obj dw_ih_o, Obj dw_hh_o, Obj db_o, Obj dh_new_o, Obj x_o, Obj h_o,
                          Obj w_ih_o, Obj w_hh_o, Obj h_new_o, std::uintptr_t stream) {
  const ArrayView dx = cuda_view(dx_o, "dx"), dh = cuda_view(dh_o, "dh"),
                  dw_ih = cuda_view(dw_ih_o, "dw_ih"), dw_hh = cuda_view(dw_hh_o, "dw_hh"),
                  db = cuda_view(db_o, "db"), dh_new = cuda_view(dh_new_o, "dh_new"),
                  x = cuda_view(x_o, "x"), h = cuda_view(h_o, "h"),
                  w_ih = cuda_view(w_ih_o, "w_ih"), w_hh = cuda_view(w_hh_o, "w_hh"),
                  h_new = cuda_view(h_new_o, "h_new");
  const RnnDims d =
      check_rnn_cell_backward(dx, dh, dw_ih, dw_hh, db, dh_new, x, h, w_ih, w_hh, h_new);
  py::gil_scoped_release nogil;
  check_on_current_device({&dx, &dh, &dw_ih, &dw_hh, &db, &dh_new, &x, &h, &w_ih, &w_hh, &h_new});
  cuda::rnn_cell_backward(dx.mutable_data<float>(), dh.mutable_data<float>(),
                          dw_ih.mutable_data<float>(), dw_hh.mutable_data<float>(),
                          db.mutable_data<float>(), dh_new.data<float>(), x.data<float>(),
                          h.data<float>(), w_ih.data<float>(), w_hh.data<float>(),
                          h_new.data<float>(), d.n, d.i, d.h, as_stream(stream));
}

void lstm_cell_forward_py(Obj h_new_o, Obj c_new_o, Obj gates_o, Obj x_o, Obj h_o, Obj c_o, Obj w_ih_o,
                          Obj w_hh_o, Obj b_ih_o, Obj b_hh_o, std::uintptr_t stream) {
  const ArrayView h_new = cuda_view(h_new_o, "h_new"), c_new = cuda_view(c_new_o, "c_new"),
                  gates = cuda_view(gates_o, "gates"), x = cuda_view(x_o, "x"),
                  h = cuda_view(h_o, "h"), c = cuda_view(c_o, "c"),
                  w_ih = cuda_view(w_ih_o, "w_ih"), w_hh = cuda_view(w_hh_o, "w_hh");
  ArrayView bi, bh;
  const ArrayView* b_ih = optional_view(b_ih_o, "b_ih", bi);
  const ArrayView* b_hh = optional_view(b_hh_o, "b_hh", bh);
  const RnnDims d = check_lstm_cell_forward(h_new, c_new, gates, x, h, c, w_ih, w_hh, b_ih, b_hh);
  py::gil_scoped_release nogil;
  check_on_current_device({&h_new, &c_new, &gates, &x, &h, &c, &w_ih, &w_hh, b_ih, b_hh});
  cuda::lstm_cell_forward(h_new.mutable_data<float>(), c_new.mutable_data<float>(),
                          gates.mutable_data<float>(), x.data<float>(), h.data<float>(),
                          c.data<float>(), w_ih.data<float>(), w_hh.data<float>(),
                          data_or_null<const float>(b_ih), data_or_null<const float>(b_hh), d.n,
                          d.i, d.h, as_stream(stream));
}

void lstm_cell_backward_py(Obj dx_o, Obj dh_o, Obj dc_o, Obj dw_ih_o, Obj dw_hh_o, Obj db_o, Obj dh_new_o,
                           Obj dc_new_o, Obj x_o, Obj h_o, Obj c_o, Obj w_ih_o, Obj w_hh_o, Obj gates_o,
                           Obj c_new_o, std::uintptr_t stream) {
  const ArrayView dx = cuda_view(dx_o, "dx"), dh = cuda_view(dh_o, "dh"),
                  dc = cuda_view(dc_o, "dc"), dw_ih = cuda_view(dw_ih_o, "dw_ih"),
                  dw_hh = cuda_view(dw_hh_o, "dw_hh"), db = cuda_view(db_o, "db"),
                  x = cuda_view(x_o, "x"), h = cuda_view(h_o, "h"), c = cuda_view(c_o, "c"),
                  w_ih = cuda_view(w_ih_o, "w_ih"), w_hh = cuda_view(w_hh_o, "w_hh"),
                  gates = cuda_view(gates_o, "gates"), c_new = cuda_view(c_new_o, "c_new");
  ArrayView gh, gc;
  const ArrayView* dh_new = optional_view(dh_new_o, "dh_new", gh);
  const ArrayView* dc_new = optional_view(dc_new_o, "dc_new", gc);
  const RnnDims d = check_lstm_cell_backward(dx, dh, dc, dw_ih, dw_hh, db, dh_new, dc_new, x, h,
                                             c, w_ih, w_hh, gates, c_new);
  py::gil_scoped_release nogil;
  check_on_current_device({&dx, &dh, &dc, &dw_ih, &dw_hh, &db, dh_new, dc_new, &x, &h, &c, &w_ih,
                           &w_hh, &gates, &c_new});
  cuda::lstm_cell_backward(dx.mutable_data<float>(), dh.mutable_data<float>(),
                           dc.mutable_data<float>(), dw_ih.mutable_data<float>(),
                           dw_hh.mutable_data<float>(), db.mutable_data<float>(),
                           data_or_null<const float>(dh_new), data_or_null<const float>(dc_new),
                           x.data<float>(), h.data<float>(), c.data<float>(), w_ih.data<float>(),
                           w_hh.data<float>(), gates.data<float>(), c_new.data<float>(), d.n, d.i,
                           d.h, as_stream(stream));
}

void lstm_forward_py(Obj y_o, Obj h_n_o, Obj c_n_o, Obj gates_o, Obj cells_o, Obj x_o, Obj h0_o, Obj c0_o,
                     Obj w_ih_o, Obj w_hh_o, Obj b_ih_o, Obj b_hh_o, std::uintptr_t stream) {
  const ArrayView y = cuda_view(y_o, "y"), h_n = cuda_view(h_n_o, "h_n"),
                  c_n = cuda_view(c_n_o, "c_n"), x = cuda_view(x_o, "x"),
                  h0 = cuda_view(h0_o, "h0"), c0 = cuda_view(c0_o, "c0"),
                  w_ih = cuda_view(w_ih_o, "w_ih"), w_hh = cuda_view(w_hh_o, "w_hh");
  ArrayView gt, cl, bi, bh;
  const ArrayView* gates = optional_view(gates_o, "gates", gt);
  const ArrayView* cells = optional_view(cells_o, "cells", cl);
  const ArrayView* b_ih = optional_view(b_ih_o, "b_ih", bi);
  const ArrayView* b_hh = optional_view(b_hh_o, "b_hh", bh);
  const RnnDims d =
      check_lstm_forward(y, h_n, c_n, gates, cells, x, h0, c0, w_ih, w_hh, b_ih, b_hh);
  py::gil_scoped_release nogil;
  check_on_current_device({&y, &h_n, &c_n, gates, cells, &x, &h0, &c0, &w_ih, &w_hh, b_ih, b_hh});
  cuda::lstm_forward(y.mutable_data<float>(), h_n.mutable_data<float>(),
                     c_n.mutable_data<float>(), data_or_null<float>(gates),
                     data_or_null<float>(cells), x.data<float>(), h0.data<float>(),
                     c0.data<float>(), w_ih.data<float>(), w_hh.data<float>(),
                     data_or_null<const float>(b_ih), data_or_null<const float>(b_hh), d.t, d.n,
                     d.i, d.h, as_stream(stream));
}

void lstm_backward_py(Obj dx_o, Obj dh0_o, Obj dc0_o, Obj dw_ih_o, Obj dw_hh_o, Obj db_o, Obj dy_o, Obj dh_n_o,
                      Obj dc_n_o, Obj x_o, Obj h0_o, Obj c0_o, Obj w_ih_o, Obj w_hh_o, Obj y_o, Obj gates_o,
                      Obj cells_o, std::uintptr_t stream) {
  const ArrayView dx = cuda_view(dx_o, "dx"), dh0 = cuda_view(dh0_o, "dh0"),
                  dc0 = cuda_view(dc0_o, "dc0"), dw_ih = cuda_view(dw_ih_o, "dw_ih"),
                  dw_hh = cuda_view(dw_hh_o, "dw_hh"), db = cuda_view(db_o, "db"),
                  x = cuda_view(x_o, "x"), h0 = cuda_view(h0_o, "h0"),
                  c0 = cuda_view(c0_o, "c0"), w_ih = cuda_view(w_ih_o, "w_ih"),
                  w_hh = cuda_view(w_hh_o, "w_hh"), y = cuda_view(y_o, "y"),
                  gates = cuda_view(gates_o, "gates"), cells = cuda_view(cells_o, "cells");
  ArrayView gy, gh, gc;
  const ArrayView* dy = optional_view(dy_o, "dy", gy);
  const ArrayView* dh_n = optional_view(dh_n_o, "dh_n", gh);
  const ArrayView* dc_n = optional_view(dc_n_o, "dc_n", gc);
  const RnnDims d = check_lstm_backward(dx, dh0, dc0, dw_ih, dw_hh, db, dy, dh_n, dc_n, x, h0, c0,
                                        w_ih, w_hh, y, gates, cells);
  py::gil_scoped_release nogil;
  check_on_current_device({&dx, &dh0, &dc0, &dw_ih, &dw_hh, &db, dy, dh_n, dc_n, &x, &h0, &c0,
                           &w_ih, &w_hh, &y, &gates, &cells});
  cuda::lstm_backward(dx.mutable_data<float>(), dh0.mutable_data<float>(),
                      dc0.mutable_data<float>(), dw_ih.mutable_data<float>(),
                      dw_hh.mutable_data<float>(), db.mutable_data<float>(),
                      data_or_null<const float>(dy), data_or_null<const float>(dh_n),
                      data_or_null<const float>(dc_n), x.data<float>(), h0.data<float>(),
                      c0.data<float>(), w_ih.data<float>(), w_hh.data<float>(), y.data<float>(),
                      gates.data<float>(), cells.data<float>(), d.t, d.n, d.i, d.h,
                      as_stream(stream));
}

}  // namespace

void bind_rnn(py::module_& m) {
  m.def("rnn_cell_forward", &rnn_cell_forward_py, py::arg("h_new"), py::arg("x"), py::arg("h"),
        py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih").none(true), py::arg("b_hh").none(true),
        py::kw_only(), py::arg("stream") = 0,
        R"pbdoc(h_new (N, H) = tanh(x w_ih^T + b_ih + h w_hh^T + b_hh) on the GPU.

x (N, I), h (N, H), w_ih (H, I), w_hh (H, H), b_ih / b_hh (H,) or None.)pbdoc");
  m.def("rnn_cell_backward", &rnn_cell_backward_py, py::arg("dx"), py::arg("dh"),
        py::arg("dw_ih"), py::arg("dw_hh"), py::arg("db"), py::arg("dh_new"), py::arg("x"),
        py::arg("h"), py::arg("w_ih"), py::arg("w_hh"), py::arg("h_new"), py::kw_only(),
        py::arg("stream") = 0,
        R"pbdoc(Gradients of rnn_cell_forward from its output h_new: da = dh_new (1 - h_new^2),
dx = da w_ih, dh = da w_hh, dw_ih = da^T x, dw_hh = da^T h, db = sum_n da (all written).)pbdoc");
  m.def("lstm_cell_forward", &lstm_cell_forward_py, py::arg("h_new"), py::arg("c_new"),
        py::arg("gates"), py::arg("x"), py::arg("h"), py::arg("c"), py::arg("w_ih"),
        py::arg("w_hh"), py::arg("b_ih").none(true), py::arg("b_hh").none(true), py::kw_only(),
        py::arg("stream") = 0,
        R"pbdoc(One LSTM step on the GPU: z = x w_ih^T + h w_hh^T + b_ih + b_hh (N, 4H); gates =
[sigmoid(z_i), sigmoid(z_f), tanh(z_g), sigmoid(z_o)] (activated, column blocks i | f | g | o);
c_new = f c + i g; h_new = o tanh(c_new). Two GEMMs and one fused point-wise kernel.)pbdoc");
  m.def("lstm_cell_backward", &lstm_cell_backward_py, py::arg("dx"), py::arg("dh"),
        py::arg("dc"), py::arg("dw_ih"), py::arg("dw_hh"), py::arg("db"),
        py::arg("dh_new").none(true), py::arg("dc_new").none(true), py::arg("x"), py::arg("h"),
        py::arg("c"), py::arg("w_ih"), py::arg("w_hh"), py::arg("gates"), py::arg("c_new"),
        py::kw_only(), py::arg("stream") = 0,
        R"pbdoc(Gradients of lstm_cell_forward (dh_new / dc_new None: zero): dx, dh, dc,
dw_ih (4H, I), dw_hh (4H, H), db (4H,) = the gradient of b_ih and of b_hh; all written.)pbdoc");
  m.def("lstm_forward", &lstm_forward_py, py::arg("y"), py::arg("h_n"), py::arg("c_n"),
        py::arg("gates").none(true), py::arg("cells").none(true), py::arg("x"), py::arg("h0"),
        py::arg("c0"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih").none(true),
        py::arg("b_hh").none(true), py::kw_only(), py::arg("stream") = 0,
        R"pbdoc(The LSTM over a whole sequence x (T, N, I) from h0, c0 (N, H), on the GPU: y (T, N, H) =
h_1..h_T, h_n = h_T, c_n = c_T; gates (T, N, 4H) and cells (T, N, H) receive every step's
activated gates and cell (both None: inference, a bounded workspace instead). T = 0 gives
h_n = h0, c_n = c0. One input-projection GEMM for all steps, then per step one recurrent GEMM
and one fused point-wise kernel, all enqueued on `stream` (no synchronisation).)pbdoc");
  m.def("lstm_backward", &lstm_backward_py, py::arg("dx"), py::arg("dh0"), py::arg("dc0"),
        py::arg("dw_ih"), py::arg("dw_hh"), py::arg("db"), py::arg("dy").none(true),
        py::arg("dh_n").none(true), py::arg("dc_n").none(true), py::arg("x"), py::arg("h0"),
        py::arg("c0"), py::arg("w_ih"), py::arg("w_hh"), py::arg("y"), py::arg("gates"),
        py::arg("cells"), py::kw_only(), py::arg("stream") = 0,
        R"pbdoc(Backpropagation through time of lstm_forward on the GPU (dy, dh_n, dc_n None: zero):
dx (T, N, I), dh0, dc0 (N, H), dw_ih (4H, I), dw_hh (4H, H), db (4H,), all written. The weight
gradients and dx are single GEMMs over all T N rows after the step loop; db a column sum.)pbdoc");
}

}  // namespace fastdl::bindings
