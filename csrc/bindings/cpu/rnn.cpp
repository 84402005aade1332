// rnn.cpp: _core bindings of the rnn family (csrc/cpu/rnn.*): the tanh RNN cell, the LSTM cell
// and the whole-sequence LSTM, forward and backward; the cells also with their plain-loop
// oracles (*_reference).
//
// Outputs first, then inputs, as the pinned extension API (the CUDA module has the same names and
// positional arguments). Every array is C-contiguous and of x's dtype (float32 or float64);
// optional arrays are None. Sizes come from the shapes: x (N, I) or (T, N, I), h / h0 (N, H);
// the checks (bindings/args.h, shared with the CUDA bindings) name the argument, the expected
// shape and the one given.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>

#include "bindings/args.h"
#include "bindings/cpu/families.h"
#include "cpu/rnn.h"

namespace fastdl::bindings {

namespace {

using Opt = std::optional<py::array>;
using OptIsa = std::optional<std::string>;

void rnn_cell_forward_py(const py::array& h_new_a, const py::array& x_a, const py::array& h_a,
                         const py::array& w_ih_a, const py::array& w_hh_a, const Opt& b_ih_a,
                         const Opt& b_hh_a, const OptIsa& isa, bool reference) {
  const ArrayView h_new = view_of(h_new_a, "h_new"), x = view_of(x_a, "x"), h = view_of(h_a, "h"),
                  w_ih = view_of(w_ih_a, "w_ih"), w_hh = view_of(w_hh_a, "w_hh");
  const OptionalView b_ih(b_ih_a, "b_ih"), b_hh(b_hh_a, "b_hh");
  const RnnDims d = check_rnn_cell_forward(h_new, x, h, w_ih, w_hh, b_ih.get(), b_hh.get());
  const Isa chosen = isa_arg(isa);
  dispatch_float(x, [&](auto zero) {
    using T = decltype(zero);
    T* out = h_new.mutable_data<T>();
    const T *px = x.data<T>(), *ph = h.data<T>(), *wi = w_ih.data<T>(), *wh = w_hh.data<T>(),
            *bi = b_ih.data<T>(), *bh = b_hh.data<T>();
    py::gil_scoped_release nogil;
    if (reference)
      rnn_cell_forward_reference(out, px, ph, wi, wh, bi, bh, d.n, d.i, d.h);
    else
      rnn_cell_forward(out, px, ph, wi, wh, bi, bh, d.n, d.i, d.h, chosen);
    return 0;
  });
}

void rnn_cell_backward_py(const py::array& dx_a, const py::array& dh_a, const py::array& dw_ih_a,
                          const py::array& dw_hh_a, const py::array& db_a,
                          const py::array& dh_new_a, const py::array& x_a, const py::array& h_a,
                          const py::array& w_ih_a, const py::array& w_hh_a,
                          const py::array& h_new_a, const OptIsa& isa, bool reference) {
  const ArrayView dx = view_of(dx_a, "dx"), dh = view_of(dh_a, "dh"),
                  dw_ih = view_of(dw_ih_a, "dw_ih"), dw_hh = view_of(dw_hh_a, "dw_hh"),
                  db = view_of(db_a, "db"), dh_new = view_of(dh_new_a, "dh_new"),
                  x = view_of(x_a, "x"), h = view_of(h_a, "h"), w_ih = view_of(w_ih_a, "w_ih"),
                  w_hh = view_of(w_hh_a, "w_hh"), h_new = view_of(h_new_a, "h_new");
  const RnnDims d =
      check_rnn_cell_backward(dx, dh, dw_ih, dw_hh, db, dh_new, x, h, w_ih, w_hh, h_new);
  const Isa chosen = isa_arg(isa);
  dispatch_float(x, [&](auto zero) {
    using T = decltype(zero);
    T *o_dx = dx.mutable_data<T>(), *o_dh = dh.mutable_data<T>(),
      *o_dwi = dw_ih.mutable_data<T>(), *o_dwh = dw_hh.mutable_data<T>(),
      *o_db = db.mutable_data<T>();
    const T *g = dh_new.data<T>(), *px = x.data<T>(), *ph = h.data<T>(), *wi = w_ih.data<T>(),
            *wh = w_hh.data<T>(), *hn = h_new.data<T>();
    py::gil_scoped_release nogil;
    if (reference)
      rnn_cell_backward_reference(o_dx, o_dh, o_dwi, o_dwh, o_db, g, px, ph, wi, wh, hn, d.n,
                                  d.i, d.h);
    else
      rnn_cell_backward(o_dx, o_dh, o_dwi, o_dwh, o_db, g, px, ph, wi, wh, hn, d.n, d.i, d.h,
                        chosen);
    return 0;
  });
}

void lstm_cell_forward_py(const py::array& h_new_a, const py::array& c_new_a,
                          const py::array& gates_a, const py::array& x_a, const py::array& h_a,
                          const py::array& c_a, const py::array& w_ih_a, const py::array& w_hh_a,
                          const Opt& b_ih_a, const Opt& b_hh_a, const OptIsa& isa,
                          bool reference) {
  const ArrayView h_new = view_of(h_new_a, "h_new"), c_new = view_of(c_new_a, "c_new"),
                  gates = view_of(gates_a, "gates"), x = view_of(x_a, "x"), h = view_of(h_a, "h"),
                  c = view_of(c_a, "c"), w_ih = view_of(w_ih_a, "w_ih"),
                  w_hh = view_of(w_hh_a, "w_hh");
  const OptionalView b_ih(b_ih_a, "b_ih"), b_hh(b_hh_a, "b_hh");
  const RnnDims d =
      check_lstm_cell_forward(h_new, c_new, gates, x, h, c, w_ih, w_hh, b_ih.get(), b_hh.get());
  const Isa chosen = isa_arg(isa);
  dispatch_float(x, [&](auto zero) {
    using T = decltype(zero);
    T *hn = h_new.mutable_data<T>(), *cn = c_new.mutable_data<T>(), *gt = gates.mutable_data<T>();
    const T *px = x.data<T>(), *ph = h.data<T>(), *pc = c.data<T>(), *wi = w_ih.data<T>(),
            *wh = w_hh.data<T>(), *bi = b_ih.data<T>(), *bh = b_hh.data<T>();
    py::gil_scoped_release nogil;
    if (reference)
      lstm_cell_forward_reference(hn, cn, gt, px, ph, pc, wi, wh, bi, bh, d.n, d.i, d.h);
    else
      lstm_cell_forward(hn, cn, gt, px, ph, pc, wi, wh, bi, bh, d.n, d.i, d.h, chosen);
    return 0;
  });
}

void lstm_cell_backward_py(const py::array& dx_a, const py::array& dh_a, const py::array& dc_a,
                           const py::array& dw_ih_a, const py::array& dw_hh_a,
                           const py::array& db_a, const Opt& dh_new_a, const Opt& dc_new_a,
                           const py::array& x_a, const py::array& h_a, const py::array& c_a,
                           const py::array& w_ih_a, const py::array& w_hh_a,
                           const py::array& gates_a, const py::array& c_new_a, const OptIsa& isa,
                           bool reference) {
  const ArrayView dx = view_of(dx_a, "dx"), dh = view_of(dh_a, "dh"), dc = view_of(dc_a, "dc"),
                  dw_ih = view_of(dw_ih_a, "dw_ih"), dw_hh = view_of(dw_hh_a, "dw_hh"),
                  db = view_of(db_a, "db"), x = view_of(x_a, "x"), h = view_of(h_a, "h"),
                  c = view_of(c_a, "c"), w_ih = view_of(w_ih_a, "w_ih"),
                  w_hh = view_of(w_hh_a, "w_hh"), gates = view_of(gates_a, "gates"),
                  c_new = view_of(c_new_a, "c_new");
  const OptionalView dh_new(dh_new_a, "dh_new"), dc_new(dc_new_a, "dc_new");
  const RnnDims d = check_lstm_cell_backward(dx, dh, dc, dw_ih, dw_hh, db, dh_new.get(),
                                             dc_new.get(), x, h, c, w_ih, w_hh, gates, c_new);
  const Isa chosen = isa_arg(isa);
  dispatch_float(x, [&](auto zero) {
    using T = decltype(zero);
    T *o_dx = dx.mutable_data<T>(), *o_dh = dh.mutable_data<T>(), *o_dc = dc.mutable_data<T>(),
      *o_dwi = dw_ih.mutable_data<T>(), *o_dwh = dw_hh.mutable_data<T>(),
      *o_db = db.mutable_data<T>();
    const T *gh = dh_new.data<T>(), *gc = dc_new.data<T>(), *px = x.data<T>(), *ph = h.data<T>(),
            *pc = c.data<T>(), *wi = w_ih.data<T>(), *wh = w_hh.data<T>(),
            *gt = gates.data<T>(), *cn = c_new.data<T>();
    py::gil_scoped_release nogil;
    if (reference)
      lstm_cell_backward_reference(o_dx, o_dh, o_dc, o_dwi, o_dwh, o_db, gh, gc, px, ph, pc, wi,
                                   wh, gt, cn, d.n, d.i, d.h);
    else
      lstm_cell_backward(o_dx, o_dh, o_dc, o_dwi, o_dwh, o_db, gh, gc, px, ph, pc, wi, wh, gt,
                         cn, d.n, d.i, d.h, chosen);
    return 0;
  });
}

void lstm_forward_py(const py::array& y_a, const py::array& h_n_a, const py::array& c_n_a,
                     const Opt& gates_a, const Opt& cells_a, const py::array& x_a,
                     const py::array& h0_a, const py::array& c0_a, const py::array& w_ih_a,
                     const py::array& w_hh_a, const Opt& b_ih_a, const Opt& b_hh_a,
                     const OptIsa& isa) {
  const ArrayView y = view_of(y_a, "y"), h_n = view_of(h_n_a, "h_n"), c_n = view_of(c_n_a, "c_n"),
                  x = view_of(x_a, "x"), h0 = view_of(h0_a, "h0"), c0 = view_of(c0_a, "c0"),
                  w_ih = view_of(w_ih_a, "w_ih"), w_hh = view_of(w_hh_a, "w_hh");
  const OptionalView gates(gates_a, "gates"), cells(cells_a, "cells"), b_ih(b_ih_a, "b_ih"),
      b_hh(b_hh_a, "b_hh");
  const RnnDims d = check_lstm_forward(y, h_n, c_n, gates.get(), cells.get(), x, h0, c0, w_ih,
                                       w_hh, b_ih.get(), b_hh.get());
  const Isa chosen = isa_arg(isa);
  dispatch_float(x, [&](auto zero) {
    using T = decltype(zero);
    T *py_ = y.mutable_data<T>(), *hn = h_n.mutable_data<T>(), *cn = c_n.mutable_data<T>(),
      *gt = gates.data<T>(), *cl = cells.data<T>();
    const T *px = x.data<T>(), *ph = h0.data<T>(), *pc = c0.data<T>(), *wi = w_ih.data<T>(),
            *wh = w_hh.data<T>(), *bi = b_ih.data<T>(), *bh = b_hh.data<T>();
    py::gil_scoped_release nogil;
    lstm_forward(py_, hn, cn, gt, cl, px, ph, pc, wi, wh, bi, bh, d.t, d.n, d.i, d.h, chosen);
    return 0;
  });
}

void lstm_backward_py(const py::array& dx_a, const py::array& dh0_a, const py::array& dc0_a,
                      const py::array& dw_ih_a, const py::array& dw_hh_a, const py::array& db_a,
                      const Opt& dy_a, const Opt& dh_n_a, const Opt& dc_n_a, const py::array& x_a,
                      const py::array& h0_a, const py::array& c0_a, const py::array& w_ih_a,
                      const py::array& w_hh_a, const py::array& y_a, const py::array& gates_a,
                      const py::array& cells_a, const OptIsa& isa) {
  const ArrayView dx = view_of(dx_a, "dx"), dh0 = view_of(dh0_a, "dh0"),
                  dc0 = view_of(dc0_a, "dc0"), dw_ih = view_of(dw_ih_a, "dw_ih"),
                  dw_hh = view_of(dw_hh_a, "dw_hh"), db = view_of(db_a, "db"),
                  x = view_of(x_a, "x"), h0 = view_of(h0_a, "h0"), c0 = view_of(c0_a, "c0"),
                  w_ih = view_of(w_ih_a, "w_ih"), w_hh = view_of(w_hh_a, "w_hh"),
                  y = view_of(y_a, "y"), gates = view_of(gates_a, "gates"),
                  cells = view_of(cells_a, "cells");
  const OptionalView dy(dy_a, "dy"), dh_n(dh_n_a, "dh_n"), dc_n(dc_n_a, "dc_n");
  const RnnDims d = check_lstm_backward(dx, dh0, dc0, dw_ih, dw_hh, db, dy.get(), dh_n.get(),
                                        dc_n.get(), x, h0, c0, w_ih, w_hh, y, gates, cells);
  const Isa chosen = isa_arg(isa);
  dispatch_float(x, [&](auto zero) {
    using T = decltype(zero);
    T *o_dx = dx.mutable_data<T>(), *o_dh0 = dh0.mutable_data<T>(),
      *o_dc0 = dc0.mutable_data<T>(), *o_dwi = dw_ih.mutable_data<T>(),
      *o_dwh = dw_hh.mutable_data<T>(), *o_db = db.mutable_data<T>();
    const T *gy = dy.data<T>(), *gh = dh_n.data<T>(), *gc = dc_n.data<T>(), *px = x.data<T>(),
            *ph = h0.data<T>(), *pc = c0.data<T>(), *wi = w_ih.data<T>(), *wh = w_hh.data<T>(),
            *py_ = y.data<T>(), *gt = gates.data<T>(), *cl = cells.data<T>();
    py::gil_scoped_release nogil;
    lstm_backward(o_dx, o_dh0, o_dc0, o_dwi, o_dwh, o_db, gy, gh, gc, px, ph, pc, wi, wh, py_, gt,
                  cl, d.t, d.n, d.i, d.h, chosen);
    return 0;
  });
}

}  // namespace

void bind_rnn(py::module_& m) {
  // ---- rnn_cell ----
  auto rnn_fwd = [](bool reference) {
    return [reference](py::array h_new, py::array x, py::array h, py::array w_ih, py::array w_hh,
                       Opt b_ih, Opt b_hh, OptIsa isa) {
      rnn_cell_forward_py(h_new, x, h, w_ih, w_hh, b_ih, b_hh, isa, reference);
    };
  };
  const char* rnn_fwd_doc = R"pbdoc(h_new (N, H) = tanh(x w_ih^T + b_ih + h w_hh^T + b_hh).

x (N, I), h (N, H), w_ih (H, I), w_hh (H, H), b_ih / b_hh (H,) or None.)pbdoc";
  for (const bool ref : {false, true})
    m.def(ref ? "rnn_cell_forward_reference" : "rnn_cell_forward", rnn_fwd(ref),
          py::arg("h_new").noconvert(), py::arg("x").noconvert(), py::arg("h").noconvert(),
          py::arg("w_ih").noconvert(), py::arg("w_hh").noconvert(),
          py::arg("b_ih").noconvert().none(true), py::arg("b_hh").noconvert().none(true),
          py::kw_only(), py::arg("isa") = py::none(),
          ref ? "Plain-loop oracle (double) for rnn_cell_forward." : rnn_fwd_doc);

  auto rnn_bwd = [](bool reference) {
    return [reference](py::array dx, py::array dh, py::array dw_ih, py::array dw_hh, py::array db,
                       py::array dh_new, py::array x, py::array h, py::array w_ih,
                       py::array w_hh, py::array h_new, OptIsa isa) {
      rnn_cell_backward_py(dx, dh, dw_ih, dw_hh, db, dh_new, x, h, w_ih, w_hh, h_new, isa,
                           reference);
    };
  };
  const char* rnn_bwd_doc = R"pbdoc(Gradients of rnn_cell_forward, all written (=):
da = dh_new (1 - h_new^2); dx = da w_ih; dh = da w_hh; dw_ih = da^T x; dw_hh = da^T h;
db (H,) = sum_n da (the gradient of b_ih and of b_hh).)pbdoc";
  for (const bool ref : {false, true})
    m.def(ref ? "rnn_cell_backward_reference" : "rnn_cell_backward", rnn_bwd(ref),
          py::arg("dx").noconvert(), py::arg("dh").noconvert(), py::arg("dw_ih").noconvert(),
          py::arg("dw_hh").noconvert(), py::arg("db").noconvert(), py::arg("dh_new").noconvert(),
          py::arg("x").noconvert(), py::arg("h").noconvert(), py::arg("w_ih").noconvert(),
          py::arg("w_hh").noconvert(), py::arg("h_new").noconvert(), py::kw_only(),
          py::arg("isa") = py::none(),
          ref ? "Plain-loop oracle (double) for rnn_cell_backward." : rnn_bwd_doc);

  // ---- lstm_cell ----
  auto lstm_fwd = [](bool reference) {
    return [reference](py::array h_new, py::array c_new, py::array gates, py::array x,
                       py::array h, py::array c, py::array w_ih, py::array w_hh, Opt b_ih,
                       Opt b_hh, OptIsa isa) {
      lstm_cell_forward_py(h_new, c_new, gates, x, h, c, w_ih, w_hh, b_ih, b_hh, isa, reference);
    };
  };
  const char* lstm_fwd_doc = R"pbdoc(One LSTM step: z = x w_ih^T + h w_hh^T + b_ih + b_hh (N, 4H);
gates (N, 4H) = [sigmoid(z_i), sigmoid(z_f), tanh(z_g), sigmoid(z_o)] in column blocks
i | f | g | o; c_new = f c + i g; h_new = o tanh(c_new). w_ih (4H, I), w_hh (4H, H),
b_ih / b_hh (4H,) or None.)pbdoc";
  for (const bool ref : {false, true})
    m.def(ref ? "lstm_cell_forward_reference" : "lstm_cell_forward", lstm_fwd(ref),
          py::arg("h_new").noconvert(), py::arg("c_new").noconvert(),
          py::arg("gates").noconvert(), py::arg("x").noconvert(), py::arg("h").noconvert(),
          py::arg("c").noconvert(), py::arg("w_ih").noconvert(), py::arg("w_hh").noconvert(),
          py::arg("b_ih").noconvert().none(true), py::arg("b_hh").noconvert().none(true),
          py::kw_only(), py::arg("isa") = py::none(),
          ref ? "Plain-loop oracle (double) for lstm_cell_forward." : lstm_fwd_doc);

  auto lstm_bwd = [](bool reference) {
    return [reference](py::array dx, py::array dh, py::array dc, py::array dw_ih,
                       py::array dw_hh, py::array db, Opt dh_new, Opt dc_new, py::array x,
                       py::array h, py::array c, py::array w_ih, py::array w_hh,
                       py::array gates, py::array c_new, OptIsa isa) {
      lstm_cell_backward_py(dx, dh, dc, dw_ih, dw_hh, db, dh_new, dc_new, x, h, c, w_ih, w_hh,
                            gates, c_new, isa, reference);
    };
  };
  const char* lstm_bwd_doc = R"pbdoc(Gradients of lstm_cell_forward, all written (=); dh_new and
dc_new may be None (zero). tc = tanh(c_new); do = dh_new tc; dct = dc_new + dh_new o (1 - tc^2);
dc = dct f; dz = [dct g i(1-i), dct c f(1-f), dct i (1-g^2), do o(1-o)]; dx = dz w_ih;
dh = dz w_hh; dw_ih = dz^T x; dw_hh = dz^T h; db (4H,) = sum_n dz.)pbdoc";
  for (const bool ref : {false, true})
    m.def(ref ? "lstm_cell_backward_reference" : "lstm_cell_backward", lstm_bwd(ref),
          py::arg("dx").noconvert(), py::arg("dh").noconvert(), py::arg("dc").noconvert(),
          py::arg("dw_ih").noconvert(), py::arg("dw_hh").noconvert(), py::arg("db").noconvert(),
          py::arg("dh_new").noconvert().none(true), py::arg("dc_new").noconvert().none(true),
          py::arg("x").noconvert(), py::arg("h").noconvert(), py::arg("c").noconvert(),
          py::arg("w_ih").noconvert(), py::arg("w_hh").noconvert(), py::arg("gates").noconvert(),
          py::arg("c_new").noconvert(), py::kw_only(), py::arg("isa") = py::none(),
          ref ? "Plain-loop oracle (double) for lstm_cell_backward." : lstm_bwd_doc);

  // ---- lstm (whole sequence) ----
  m.def("lstm_forward", &lstm_forward_py, py::arg("y").noconvert(), py::arg("h_n").noconvert(),
        py::arg("c_n").noconvert(), py::arg("gates").noconvert().none(true),
        py::arg("cells").noconvert().none(true), py::arg("x").noconvert(),
        py::arg("h0").noconvert(), py::arg("c0").noconvert(), py::arg("w_ih").noconvert(),
        py::arg("w_hh").noconvert(), py::arg("b_ih").noconvert().none(true),
        py::arg("b_hh").noconvert().none(true), py::kw_only(), py::arg("isa") = py::none(),
        R"pbdoc(The LSTM cell over a whole sequence x (T, N, I) from h0, c0 (N, H):
y (T, N, H) = h_1..h_T, h_n = h_T, c_n = c_T; gates (T, N, 4H) the activated gates of every step
and cells (T, N, H) = c_1..c_T, or both None (inference: nothing kept for a backward pass).
T = 0 gives h_n = h0, c_n = c0.)pbdoc");
  m.def("lstm_backward", &lstm_backward_py, py::arg("dx").noconvert(),
        py::arg("dh0").noconvert(), py::arg("dc0").noconvert(), py::arg("dw_ih").noconvert(),
        py::arg("dw_hh").noconvert(), py::arg("db").noconvert(),
        py::arg("dy").noconvert().none(true), py::arg("dh_n").noconvert().none(true),
        py::arg("dc_n").noconvert().none(true), py::arg("x").noconvert(),
        py::arg("h0").noconvert(), py::arg("c0").noconvert(), py::arg("w_ih").noconvert(),
        py::arg("w_hh").noconvert(), py::arg("y").noconvert(), py::arg("gates").noconvert(),
        py::arg("cells").noconvert(), py::kw_only(), py::arg("isa") = py::none(),
        R"pbdoc(Backpropagation through time of lstm_forward: dy (T, N, H), dh_n, dc_n (N, H),
each None for zero. Writes dx (T, N, I), dh0, dc0 (N, H), dw_ih (4H, I), dw_hh (4H, H) and
db (4H,) (the gradient of b_ih and of b_hh).)pbdoc");
}

}  // namespace fastdl::bindings
