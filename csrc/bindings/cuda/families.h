// families.h: one bind_<family>(m) per binding file of fastdl._cuda, called from cuda.cpp.
#pragma once

#include <pybind11/pybind11.h>

namespace fastdl::bindings {

void bind_conv(pybind11::module_& m);
void bind_pool(pybind11::module_& m);
void bind_norm(pybind11::module_& m);

}  // namespace fastdl::bindings
