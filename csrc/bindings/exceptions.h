// exceptions.h: how fastdl's C++ exceptions reach Python, shared by the two extension modules.
// fastdl::ValueError derives from std::invalid_argument, which pybind11 already maps to
// ValueError; TypeError and RuntimeError need this module-local translator.
#pragma once

#include <pybind11/pybind11.h>

#include <exception>

#include "common/check.h"

namespace fastdl::bindings {

inline void register_exception_translators() {
  pybind11::register_local_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const fastdl::TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const fastdl::RuntimeError& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });
}

}  // namespace fastdl::bindings
